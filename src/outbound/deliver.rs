//! Delivering queued helpdesk events: signed POSTs, in order per case,
//! several cases at once, retried with backoff, `Retry-After` honoured, set
//! aside after `max_attempts`. Replies to the customer are confirmed in the
//! case thread once the helpdesk accepted them (and the thread is told when
//! one is still pending).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Queued;
use crate::case::CaseId;
use crate::config::OutboundConfig;
use crate::message::{Outgoing, ThreadRef, root_key};
use crate::outbox::Outbox;
use crate::store::Store;

/// How often the whole queue is read again (events put back by `retry`).
const FULL_SCAN_EVERY: Duration = Duration::from_secs(5);
/// Longest wait between tries of one event.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Longest `Retry-After` honoured as given.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// What one POST came to.
#[derive(Debug)]
enum Outcome {
    Accepted,
    /// 429: wait this long; not counted as a failed try.
    RateLimited(Duration),
    /// 5xx, other refusals, timeouts, connection errors.
    Failed(String),
}

/// Starts delivering the store's queued helpdesk events until `shutdown`.
/// Events still queued then are delivered after the next start.
pub fn spawn(
    config: OutboundConfig,
    store: Store,
    outbox: Outbox,
    team_room: String,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(config.timeout)
        .user_agent(concat!("caseroom/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let d = Deliverer {
        config,
        store,
        outbox,
        team_room,
        client,
        down: std::sync::atomic::AtomicBool::new(false),
    };
    tracker.spawn(d.run(shutdown));
    Ok(())
}

struct Deliverer {
    config: OutboundConfig,
    store: Store,
    outbox: Outbox,
    team_room: String,
    client: reqwest::Client,
    /// Whether the last try failed: an outage is logged once when it starts
    /// and once when it ends, not for every event.
    down: std::sync::atomic::AtomicBool,
}

impl Deliverer {
    async fn run(self, shutdown: CancellationToken) {
        let this = Arc::new(self);
        let wake = this.outbox.outbound_wake();
        let mut queue: BTreeMap<u64, Queued> = BTreeMap::new();
        let mut next = 0u64;
        let mut last_full: Option<std::time::Instant> = None;
        let mut busy: HashSet<CaseId> = HashSet::new();
        let mut not_before: HashMap<u64, Instant> = HashMap::new();
        let mut inflight: JoinSet<(u64, Queued, Outcome)> = JoinSet::new();
        tracing::info!(url = %this.config.url, "delivering case events to the helpdesk");
        loop {
            // Read what is new (and, now and then, everything: events put
            // back by `outbound retry` keep their old numbers).
            let full = last_full.is_none_or(|t| t.elapsed() >= FULL_SCAN_EVERY);
            let mut fresh = false;
            match this.store.outbound_from(if full { 0 } else { next }) {
                Ok(found) => {
                    fresh = found.iter().any(|(s, _)| *s >= next);
                    if full {
                        let still: HashSet<u64> = found.iter().map(|(s, _)| *s).collect();
                        queue.retain(|s, _| still.contains(s));
                        last_full = Some(std::time::Instant::now());
                    }
                    for (seq, q) in found {
                        next = next.max(seq + 1);
                        queue.entry(seq).or_insert(q);
                    }
                }
                Err(e) => tracing::error!("outbound: cannot read the queue: {e}"),
            }
            // Only what is on disk goes out: wait for a flush when new
            // events were read (one flush covers all of them).
            if fresh && let Err(e) = this.store.barrier().wait_async().await {
                tracing::error!("outbound: {e}");
            }
            // Start the first event of every case that is free to go.
            let now = Instant::now();
            let mut heads: HashSet<CaseId> = HashSet::new();
            for (seq, q) in &queue {
                if inflight.len() >= this.config.concurrency {
                    break;
                }
                let case = q.event.case.id;
                if !heads.insert(case) || busy.contains(&case) {
                    continue;
                }
                if not_before.get(seq).is_some_and(|t| *t > now) {
                    continue;
                }
                busy.insert(case);
                let (seq, q, d) = (*seq, q.clone(), this.clone());
                inflight.spawn(async move {
                    let outcome = d.post(&q).await;
                    (seq, q, outcome)
                });
            }
            let soonest = not_before
                .values()
                .min()
                .copied()
                .unwrap_or(now + FULL_SCAN_EVERY)
                .min(now + FULL_SCAN_EVERY);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = wake.notified() => {}
                _ = tokio::time::sleep_until(soonest) => {}
                Some(done) = inflight.join_next(), if !inflight.is_empty() => {
                    let Ok((seq, q, outcome)) = done else { continue };
                    busy.remove(&q.event.case.id);
                    match this.settle(seq, q, outcome).await {
                        Some((q, wait)) => {
                            not_before.insert(seq, Instant::now() + wait);
                            let case = q.event.case.id;
                            let why = q.last_error.clone();
                            queue.insert(seq, q);
                            // Replies of this case waiting behind the failed
                            // event are pending too: say so, once each.
                            if let Some(why) = why {
                                for (s, r) in queue.range_mut(seq..) {
                                    if r.event.case.id == case
                                        && r.event.kind == "case.reply"
                                        && !r.told_pending
                                    {
                                        this.tell_pending(*s, r, &why);
                                    }
                                }
                            }
                        }
                        None => {
                            not_before.remove(&seq);
                            queue.remove(&seq);
                        }
                    }
                }
            }
        }
        // Unfinished tries are abandoned; their events stay queued.
        inflight.shutdown().await;
    }

    /// One signed POST.
    async fn post(&self, q: &Queued) -> Outcome {
        let body = match serde_json::to_vec(&q.event) {
            Ok(b) => b,
            Err(e) => return Outcome::Failed(format!("cannot encode the event: {e}")),
        };
        let Some(secret) = self.config.secrets.first() else {
            return Outcome::Failed("no signing secret".into());
        };
        let sig =
            crate::http::signature::sign(secret.expose(), Timestamp::now().as_second(), &body);
        let response = self
            .client
            .post(&self.config.url)
            .header("content-type", "application/json")
            .header("x-caseroom-signature", sig)
            .header("idempotency-key", &q.event.id)
            .body(body)
            .send()
            .await;
        match response {
            Ok(r) if r.status().is_success() => Outcome::Accepted,
            Ok(r) if r.status().as_u16() == 429 => {
                let after = r
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map_or(Duration::from_secs(1), Duration::from_secs);
                Outcome::RateLimited(after.min(MAX_RETRY_AFTER))
            }
            Ok(r) => Outcome::Failed(format!("the helpdesk answered {}", r.status())),
            Err(e) if e.is_timeout() => {
                Outcome::Failed("the helpdesk did not answer in time".into())
            }
            Err(e) => Outcome::Failed(format!("cannot reach the helpdesk: {}", error_chain(&e))),
        }
    }

    /// Records the outcome of a try. Returns the event and when to try
    /// again when it stays queued.
    async fn settle(
        &self,
        seq: u64,
        mut q: Queued,
        outcome: Outcome,
    ) -> Option<(Queued, Duration)> {
        let is_reply = q.event.kind == "case.reply";
        let case = q.event.case.id;
        match outcome {
            Outcome::Accepted => {
                crate::http::metrics::outbound("delivered");
                if self.down.swap(false, std::sync::atomic::Ordering::Relaxed) {
                    tracing::info!("the helpdesk accepts events again");
                }
                let mut out = Vec::new();
                if is_reply {
                    let text = q.event.data["text"].as_str().unwrap_or_default();
                    out.push(self.thread_note(
                        case,
                        &q,
                        format!(
                            "📤 **{case}**: the reply reached the helpdesk and goes to the customer:\n{}",
                            crate::view::quote(text)
                        ),
                    ));
                }
                // Not waited for: after a crash an event whose removal was
                // lost is sent again with the same id (at least once), and
                // the outbox posts the confirmation only once it is on disk.
                match self.store.outbound_done(seq, out) {
                    Ok(_) => self.outbox.wake(),
                    Err(e) => tracing::error!(seq, "outbound: delivered but not recorded: {e}"),
                }
                None
            }
            Outcome::RateLimited(after) => {
                crate::http::metrics::outbound("rate_limited");
                tracing::info!(seq, ?after, "the helpdesk asked us to slow down");
                Some((q, after))
            }
            Outcome::Failed(why) => {
                q.attempts += 1;
                q.last_error = Some(why.clone());
                if q.attempts >= self.config.max_attempts {
                    crate::http::metrics::outbound("set_aside");
                    tracing::error!(seq, id = %q.event.id, attempts = q.attempts, "helpdesk event set aside: {why}");
                    let mut out = Vec::new();
                    if is_reply {
                        out.push(self.thread_note(
                            case,
                            &q,
                            format!(
                                "❌ **{case}**: the reply could not be handed to the helpdesk after {} tries ({why}). It did not reach the customer; an operator can resend it with `caseroom outbound retry {}`.",
                                q.attempts, q.event.id
                            ),
                        ));
                    }
                    match self.store.outbound_set_aside(seq, &q, out) {
                        Ok(d) => {
                            let _ = d.wait_async().await;
                            self.outbox.wake();
                        }
                        Err(e) => tracing::error!(seq, "outbound: {e}"),
                    }
                    return None;
                }
                crate::http::metrics::outbound("retry");
                let wait = backoff(q.attempts);
                if !self.down.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    tracing::warn!(
                        "helpdesk events are not being accepted (retrying with backoff): {why}"
                    );
                }
                tracing::debug!(seq, id = %q.event.id, attempts = q.attempts, retry_in = ?wait, "helpdesk event not delivered: {why}");
                if let Err(e) = self.store.outbound_update(seq, &q) {
                    tracing::error!(seq, "outbound: {e}");
                }
                Some((q, wait))
            }
        }
    }

    /// Tells the case thread that reply `q` did not reach the helpdesk yet
    /// (once per reply; remembered in its record).
    fn tell_pending(&self, seq: u64, q: &mut Queued, why: &str) {
        q.told_pending = true;
        let case = q.event.case.id;
        let note = self.thread_note(
            case,
            q,
            format!(
                "⏳ **{case}**: the helpdesk has not accepted the reply yet ({why}). It is kept and retried; I'll say here when it goes out."
            ),
        );
        if let Err(e) = self
            .store
            .commit(None, "bot", Timestamp::now(), vec![], vec![note], None)
        {
            tracing::error!("outbound: {e}");
        }
        if let Err(e) = self.store.outbound_update(seq, q) {
            tracing::error!(seq, "outbound: {e}");
        }
        self.outbox.wake();
    }

    /// A line in the case's thread, mentioning the agent who replied.
    fn thread_note(&self, case: CaseId, q: &Queued, text: String) -> Outgoing {
        let mut out = Outgoing::new(self.team_room.clone(), text)
            .in_thread(Some(ThreadRef::Key(root_key(case))))
            .about(case, "reply-status");
        if let Some(actor) = q.event.data["actor"].as_str() {
            out = out.mention([actor.to_owned()]);
        }
        out
    }
}

/// 0.5 s, 1 s, 2 s ... up to a minute.
fn backoff(attempts: u32) -> Duration {
    let exp = attempts.saturating_sub(1).min(10);
    (Duration::from_millis(500) * 2u32.pow(exp)).min(MAX_BACKOFF)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_minute() {
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(4), Duration::from_secs(4));
        assert_eq!(backoff(30), MAX_BACKOFF);
    }
}
