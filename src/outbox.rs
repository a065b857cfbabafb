//! The outbox: every message the bot sends is stored before it is sent.
//!
//! Handlers write messages into the store's outbox in the same atomic write
//! as the case change they report, then [`Outbox::wake`] the dispatcher. The
//! dispatcher gives each room its own sender task, so a busy or rate-limited
//! room never delays alerts in another, while messages within a room keep
//! their order. A sender retries until the platform accepts the message,
//! honouring rate limits (`Retry-After`, `M_LIMIT_EXCEEDED`) and backing off
//! on other failures. Each message carries a transaction id derived from its
//! outbox number, so a message retried after a crash is not posted twice on
//! platforms that deduplicate (Matrix).
//!
//! Cards are rendered when they are delivered ([`Renderer`]), so what goes
//! out is always the case's latest state. Card edits are coalesced: a burst
//! of changes to one case within [`EDIT_INTERVAL`] makes one edit, and an
//! edit waits until the card it edits has been posted.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::message::{Outgoing, ThreadRef};
use crate::platform::{Platform, SendError};
use crate::store::{Durable, Store};

/// How often the whole outbox is scanned.
const FULL_SCAN_EVERY: Duration = Duration::from_secs(5);

/// Longest wait between retries of a failing delivery.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often a message whose thread root is not yet known is retried before
/// it is sent without a thread.
const THREAD_WAITS: u32 = 20;

/// Shortest time between two edits of one message; changes in between are
/// coalesced into the later edit.
pub const EDIT_INTERVAL: Duration = Duration::from_secs(1);
/// How long an edit waits for the message it edits before it is set aside.
const EDIT_TARGET_WAIT: Duration = Duration::from_secs(600);
/// How long a room's sender remembers what a message showed ([`Shown`]).
const SHOWN_KEEP: Duration = Duration::from_secs(900);
/// [`Shown`] is not pruned below this many messages.
const SHOWN_MIN: usize = 4096;

/// Renders the messages that are made at delivery time
/// ([`Outgoing::render`]): the bot core implements it for case cards.
pub trait Renderer: Send + Sync + 'static {
    /// `msg` with its text and actions filled in from the current state;
    /// `None` when that cannot be done right now (retried later).
    fn render(&self, msg: &Outgoing) -> Option<Outgoing>;
}

/// A handle to wake the dispatcher after writing to the outbox.
#[derive(Clone, Default)]
pub struct Outbox {
    wake: Arc<Notify>,
    /// Woken with `wake` too: the helpdesk event deliverer, which reads the
    /// same kind of writes.
    outbound: Arc<Notify>,
    /// Set once by the bot core; messages to render wait for it.
    renderer: Arc<OnceLock<Arc<dyn Renderer>>>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").finish_non_exhaustive()
    }
}

impl Outbox {
    pub fn new() -> Outbox {
        Outbox::default()
    }

    /// Tells the dispatcher there is something new to send.
    pub fn wake(&self) {
        self.wake.notify_one();
        self.outbound.notify_one();
    }

    /// What the helpdesk event deliverer waits on.
    pub(crate) fn outbound_wake(&self) -> Arc<Notify> {
        self.outbound.clone()
    }

    /// Sets who renders cards (once; later calls are ignored).
    pub fn set_renderer(&self, renderer: Arc<dyn Renderer>) {
        let _ = self.renderer.set(renderer);
    }

    /// Delivers pending and future messages through `platform` until
    /// `shutdown`. Messages still pending at shutdown stay in the store and
    /// are delivered after the next start.
    pub fn spawn(
        &self,
        store: Store,
        platform: Arc<dyn Platform>,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) {
        let wake = self.wake.clone();
        let renderer = self.renderer.clone();
        let tracker2 = tracker.clone();
        tracker.spawn(async move {
            let mut rooms: HashMap<String, mpsc::UnboundedSender<Dispatched>> = HashMap::new();
            // Messages handed to a room sender and not yet delivered. Batches
            // from concurrent writers can land out of number order, so this
            // is a set, not a high-water mark; an entry leaves it only when a
            // full scan shows the message is no longer pending.
            let mut dispatched: std::collections::BTreeSet<u64> = Default::default();
            // A wake takes the messages the store handed over in memory
            // since the last one (`take_fresh_outbox`), so it reads nothing
            // from disk however long the backlog; a full scan runs at start,
            // every few seconds, and whenever the hand-over overflowed, to
            // catch anything else.
            let mut last_full: Option<std::time::Instant> = None;
            loop {
                let fresh = store.take_fresh_outbox();
                // Taken after the hand-over, so it covers those messages.
                let covered = store.covering();
                let full =
                    fresh.is_none() || last_full.is_none_or(|t| t.elapsed() >= FULL_SCAN_EVERY);
                // Boxed: a backlog of scanned numbers (`None`) is tens of
                // thousands of entries after an outage.
                let mut batch: Vec<(u64, Option<Box<Outgoing>>)> = fresh
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(seq, m)| (seq, Some(Box::new(m))))
                    .collect();
                if full {
                    match store.outbox_seqs_from(0) {
                        Ok(pending) => {
                            let still: std::collections::BTreeSet<u64> =
                                pending.iter().copied().collect();
                            dispatched.retain(|s| still.contains(s));
                            last_full = Some(std::time::Instant::now());
                            batch.extend(pending.into_iter().map(|seq| (seq, None)));
                        }
                        Err(e) => tracing::error!("cannot read the outbox: {e}"),
                    }
                }
                batch.sort_by_key(|(seq, _)| *seq);
                // A scanned message's writer may not have taken its flush
                // ticket yet: those wait for a new flush.
                let scanned = full.then(|| store.barrier());
                for (seq, msg) in batch {
                    if dispatched.contains(&seq) {
                        continue;
                    }
                    // A scanned message is read here for its room only; its
                    // sender reads it again when its turn comes, so a backlog
                    // waits in the store, not in memory.
                    let (room, msg, durable) = match msg {
                        Some(m) => (m.room.clone(), Some(m), covered.clone()),
                        None => match store.outbox_message(seq) {
                            Ok(Some(m)) => {
                                let durable = scanned.clone().unwrap_or_else(|| store.barrier());
                                (m.room, None, durable)
                            }
                            Ok(None) => continue,
                            Err(e) => {
                                tracing::error!(seq, "unreadable outbox message: {e}");
                                continue;
                            }
                        },
                    };
                    dispatched.insert(seq);
                    let tx = rooms.entry(room).or_insert_with(|| {
                        let (tx, rx) = mpsc::unbounded_channel();
                        tracker2.spawn(room_sender(
                            store.clone(),
                            platform.clone(),
                            renderer.get().cloned(),
                            rx,
                            shutdown.clone(),
                        ));
                        tx
                    });
                    let _ = tx.send(Dispatched { seq, msg, durable });
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(FULL_SCAN_EVERY) => {}
                }
            }
        });
    }
}

/// A message handed to its room's sender: in memory when it was just
/// written, else (`msg` empty) read from the store when its turn comes.
struct Dispatched {
    seq: u64,
    msg: Option<Box<Outgoing>>,
    durable: Durable,
}

/// When each message of a room was last posted or edited, and a hash of
/// what it showed: edits to one message are spaced by [`EDIT_INTERVAL`],
/// and an edit that would show the same text is not sent. Every case's
/// root card passes through here, so entries older than [`SHOWN_KEEP`] are
/// dropped as the map grows (a redundant edit after that is sent once);
/// kept forever with their text, they grew with every case the bot had
/// posted since it started.
#[derive(Default)]
struct Shown {
    at: HashMap<String, (Instant, u64)>,
    prune_above: usize,
}

impl Shown {
    fn get(&self, key: &str) -> Option<(Instant, u64)> {
        self.at.get(key).copied()
    }

    fn record(&mut self, key: String, text: &str, now: Instant) {
        self.at.insert(key, (now, text_hash(text)));
        if self.at.len() > self.prune_above.max(SHOWN_MIN) {
            self.at
                .retain(|_, (t, _)| now.saturating_duration_since(*t) < SHOWN_KEEP);
            // Pruning again only after the map doubles keeps it amortized.
            self.prune_above = 2 * self.at.len();
        }
    }
}

fn text_hash(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// A card edit waiting for its turn: the outbox numbers it stands for
/// (all removed once one edit carrying the latest state went out) and when
/// it may go.
struct PendingEdit {
    seqs: Vec<u64>,
    msg: Outgoing,
    due: Instant,
    /// Since when it waits for the message it edits to be delivered.
    waiting_since: Option<Instant>,
    backoff: Duration,
}

/// Delivers one room's messages in order. Card edits are kept aside per
/// edited message and go out at most once per [`EDIT_INTERVAL`] each, the
/// latest state rendered at that moment, never before the message they edit.
async fn room_sender(
    store: Store,
    platform: Arc<dyn Platform>,
    renderer: Option<Arc<dyn Renderer>>,
    mut rx: mpsc::UnboundedReceiver<Dispatched>,
    shutdown: CancellationToken,
) {
    let mut edits: HashMap<String, PendingEdit> = HashMap::new();
    let mut last = Shown::default();
    loop {
        let next_due = edits.values().map(|e| e.due).min();
        let sleep = tokio::time::sleep_until(next_due.unwrap_or_else(Instant::now));
        tokio::select! {
            _ = shutdown.cancelled() => return,
            m = rx.recv() => {
                let Some(Dispatched { seq, msg, durable }) = m else { return };
                let msg = match msg {
                    Some(m) => *m,
                    None => match read_queued(&store, seq, &shutdown).await {
                        Some(m) => m,
                        // Delivered (or set aside) since it was scanned.
                        None => continue,
                    },
                };
                if let Some(key) = msg.edits.clone() {
                    let now = Instant::now();
                    let earliest = last.get(&key).map_or(now, |(t, _)| t + EDIT_INTERVAL).max(now);
                    let e = edits.entry(key).or_insert_with(|| PendingEdit {
                        seqs: Vec::new(),
                        msg: msg.clone(),
                        due: earliest,
                        waiting_since: None,
                        backoff: Duration::from_millis(200),
                    });
                    e.seqs.push(seq);
                    continue;
                }
                let rendered = loop {
                    if let Some(m) = render(&renderer, &msg) {
                        break m;
                    }
                    // Nothing to render it from right now: try again soon.
                    if sleep_or_stop(Duration::from_millis(500), &shutdown).await {
                        return;
                    }
                };
                if !deliver(&store, &*platform, seq, &rendered, &durable, &shutdown).await {
                    return;
                }
                if let Some(key) = &msg.record_as {
                    last.record(key.clone(), &rendered.text, Instant::now());
                }
            }
            _ = sleep, if next_due.is_some() => {
                let Some(key) = edits
                    .iter()
                    .min_by_key(|(_, e)| e.due)
                    .map(|(k, _)| k.clone())
                else {
                    continue;
                };
                let Some(mut e) = edits.remove(&key) else { continue };
                match edit(&store, &*platform, &renderer, &key, &mut e, last.get(&key)).await {
                    EditOutcome::Done(text) => {
                        last.record(key, &text, Instant::now());
                    }
                    EditOutcome::Later(wait) => {
                        e.due = Instant::now() + wait;
                        edits.insert(key, e);
                    }
                    EditOutcome::Dropped => {}
                }
            }
        }
    }
}

/// Reads outbox message `seq` for delivery; `None` when it is no longer
/// pending or the bot is stopping. A read error is retried: the message
/// stays counted as dispatched, so skipping it would strand it.
async fn read_queued(store: &Store, seq: u64, shutdown: &CancellationToken) -> Option<Outgoing> {
    loop {
        match store.outbox_message(seq) {
            Ok(m) => return m,
            Err(e) => tracing::error!(seq, "unreadable outbox message, retrying: {e}"),
        }
        if sleep_or_stop(Duration::from_secs(1), shutdown).await {
            return None;
        }
    }
}

/// Fills in a message rendered at delivery (a card); `None` when it cannot
/// be rendered right now.
fn render(renderer: &Option<Arc<dyn Renderer>>, msg: &Outgoing) -> Option<Outgoing> {
    match (&msg.render, renderer) {
        (None, _) | (Some(_), None) => Some(msg.clone()),
        (Some(_), Some(r)) => r.render(msg),
    }
}

enum EditOutcome {
    /// Sent (or not needed): it showed this text.
    Done(String),
    /// Try again after this long.
    Later(Duration),
    /// Set aside for good.
    Dropped,
}

/// Sends one coalesced edit.
async fn edit(
    store: &Store,
    platform: &dyn Platform,
    renderer: &Option<Arc<dyn Renderer>>,
    key: &str,
    e: &mut PendingEdit,
    last: Option<(Instant, u64)>,
) -> EditOutcome {
    let target = match store.posted(key) {
        Ok(Some(id)) => id,
        Ok(None) => {
            // The message it edits is not delivered yet: an edit never
            // overtakes it.
            let since = *e.waiting_since.get_or_insert_with(Instant::now);
            if since.elapsed() > EDIT_TARGET_WAIT {
                tracing::warn!(
                    key,
                    "the message to edit was never delivered; edit set aside"
                );
                set_aside(
                    store,
                    &e.seqs,
                    &e.msg,
                    "the message to edit was never delivered",
                );
                return EditOutcome::Dropped;
            }
            return EditOutcome::Later(Duration::from_millis(250));
        }
        Err(err) => {
            tracing::error!("outbox: {err}");
            return EditOutcome::Later(Duration::from_secs(1));
        }
    };
    let Some(rendered) = render(renderer, &e.msg) else {
        return EditOutcome::Later(Duration::from_millis(500));
    };
    let done = |store: &Store, seqs: &[u64]| {
        if let Err(err) = store.outbox_done(seqs) {
            tracing::error!("outbox: {err}");
        }
    };
    if last.is_some_and(|(_, shown)| shown == text_hash(&rendered.text)) {
        done(store, &e.seqs);
        return EditOutcome::Done(rendered.text);
    }
    if let Err(err) = store.barrier().wait_async().await {
        tracing::error!("outbox: {err}");
        return EditOutcome::Later(e.backoff);
    }
    let txn = store.txn_id(e.seqs.iter().copied().max().unwrap_or_default());
    match platform.edit(&rendered, &target, &txn).await {
        Ok(()) => {
            done(store, &e.seqs);
            EditOutcome::Done(rendered.text)
        }
        Err(SendError::RateLimited(after)) => {
            crate::http::metrics::rate_limit_wait(platform.name(), after);
            EditOutcome::Later(after.max(Duration::from_millis(50)))
        }
        Err(SendError::Transient(err)) => {
            tracing::warn!(key, "card edit failed, retrying in {:?}: {err}", e.backoff);
            let w = e.backoff;
            e.backoff = (e.backoff * 2).min(MAX_BACKOFF);
            EditOutcome::Later(w)
        }
        Err(SendError::Permanent(err)) => {
            tracing::error!(key, "card edit cannot be delivered, set aside: {err}");
            set_aside(store, &e.seqs, &e.msg, &err);
            EditOutcome::Dropped
        }
    }
}

fn set_aside(store: &Store, seqs: &[u64], msg: &Outgoing, why: &str) {
    for seq in seqs {
        if let Err(err) = store.undeliverable(*seq, msg, why) {
            tracing::error!("outbox: {err}");
        }
    }
}

/// Delivers one message (retrying until it is accepted, set aside, or
/// shutdown); false when shutdown came first.
async fn deliver(
    store: &Store,
    platform: &dyn Platform,
    seq: u64,
    msg: &Outgoing,
    durable: &Durable,
    shutdown: &CancellationToken,
) -> bool {
    let txn = store.txn_id(seq);
    let mut backoff = Duration::from_millis(200);
    let mut thread_waits = 0;
    loop {
        let root = match &msg.thread {
            None => None,
            Some(ThreadRef::Message(id)) => Some(id.clone()),
            Some(ThreadRef::Key(key)) => match store.posted(key) {
                Ok(Some(id)) => Some(id),
                Ok(None) if thread_waits < THREAD_WAITS => {
                    thread_waits += 1;
                    if sleep_or_stop(Duration::from_millis(250), shutdown).await {
                        return false;
                    }
                    continue;
                }
                Ok(None) => {
                    tracing::warn!(
                        seq,
                        key,
                        "thread root never delivered; sending outside the thread"
                    );
                    None
                }
                Err(e) => {
                    tracing::error!("outbox: {e}");
                    None
                }
            },
        };
        // Only what is on disk goes out: a message about a case that a
        // crash could still lose is never posted. (`durable` covers the
        // write that queued it; a failed flush is retried with a new one.)
        let flushed = match durable.wait_async().await {
            Ok(()) => Ok(()),
            Err(_) => store.barrier().wait_async().await,
        };
        if let Err(e) = flushed {
            tracing::error!("outbox: {e}");
            if sleep_or_stop(backoff, shutdown).await {
                return false;
            }
            continue;
        }
        let sent = match &msg.redacts {
            Some(target) => platform.remove(&msg.room, target, &msg.text, &txn).await,
            None => platform.send(msg, root.as_deref(), &txn).await,
        };
        let wait = match sent {
            Ok(id) => {
                if let Some(q) = msg.queued_at {
                    let d = Timestamp::now().duration_since(q);
                    crate::http::metrics::delivery_latency(d.try_into().unwrap_or_default());
                }
                // Waiting asynchronously keeps the worker free for others.
                match store.delivered(seq, msg, platform.name(), &id, Timestamp::now()) {
                    Ok(d) => {
                        if let Err(e) = d.wait_async().await {
                            tracing::error!(seq, "delivered but not recorded: {e}");
                        }
                    }
                    Err(e) => tracing::error!(seq, "delivered but not recorded: {e}"),
                }
                return true;
            }
            Err(SendError::RateLimited(after)) => {
                tracing::info!(room = %msg.room, ?after, "rate limited; waiting");
                crate::http::metrics::rate_limit_wait(platform.name(), after);
                after.max(Duration::from_millis(50))
            }
            Err(SendError::Transient(e)) => {
                tracing::warn!(room = %msg.room, seq, "delivery failed, retrying in {backoff:?}: {e}");
                let w = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                w
            }
            Err(SendError::Permanent(e)) => {
                tracing::error!(room = %msg.room, seq, "message cannot be delivered, set aside: {e}");
                if let Err(e) = store.undeliverable(seq, msg, &e) {
                    tracing::error!("outbox: {e}");
                }
                return true;
            }
        };
        if sleep_or_stop(wait, shutdown).await {
            return false;
        }
    }
}

/// Sleeps; true when shutdown came first.
async fn sleep_or_stop(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the sender remembers stays bounded however many cards it has
    /// posted, and what is recent is still there.
    #[test]
    fn shown_forgets_old_messages_as_it_grows() {
        let mut shown = Shown::default();
        let t0 = Instant::now();
        for i in 0..3 * SHOWN_MIN {
            shown.record(format!("root:C-{i}"), "card", t0);
        }
        // Nothing is old yet: all kept.
        assert_eq!(shown.at.len(), 3 * SHOWN_MIN);
        let later = t0 + SHOWN_KEEP + Duration::from_secs(1);
        for i in 0..=3 * SHOWN_MIN {
            shown.record(format!("root:D-{i}"), "card D", later);
        }
        assert!(shown.get("root:C-0").is_none(), "old entries dropped");
        assert!(shown.at.len() <= 3 * SHOWN_MIN + 1);
        let (at, hash) = shown.get("root:D-7").unwrap();
        assert_eq!((at, hash), (later, text_hash("card D")));
        assert_ne!(text_hash("card D"), text_hash("card"));
    }
}
