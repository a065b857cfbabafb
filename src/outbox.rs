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

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::message::{Outgoing, ThreadRef};
use crate::platform::{Platform, SendError};
use crate::store::Store;

/// How many of the newest outbox numbers a wake looks at.
const SCAN_WINDOW: u64 = 4096;
/// How often the whole outbox is scanned.
const FULL_SCAN_EVERY: Duration = Duration::from_secs(5);

/// Longest wait between retries of a failing delivery.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often a message whose thread root is not yet known is retried before
/// it is sent without a thread.
const THREAD_WAITS: u32 = 20;

/// A handle to wake the dispatcher after writing to the outbox.
#[derive(Debug, Clone, Default)]
pub struct Outbox {
    wake: Arc<Notify>,
}

impl Outbox {
    pub fn new() -> Outbox {
        Outbox::default()
    }

    /// Tells the dispatcher there is something new to send.
    pub fn wake(&self) {
        self.wake.notify_one();
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
        let tracker2 = tracker.clone();
        tracker.spawn(async move {
            let mut rooms: HashMap<String, mpsc::UnboundedSender<(u64, Outgoing)>> = HashMap::new();
            // Messages handed to a room sender and not yet delivered. Batches
            // from concurrent writers can land out of number order, so this
            // is a set, not a high-water mark; an entry leaves it only when a
            // full scan shows the message is no longer pending.
            let mut dispatched: std::collections::BTreeSet<u64> = Default::default();
            // A wake scans only the newest numbers (a window wide enough for
            // out-of-order landings), so a long backlog in a slow room does
            // not make every wake read the whole outbox; a full scan runs
            // every few seconds to catch anything else.
            let mut high = 0u64;
            let mut last_full: Option<std::time::Instant> = None;
            loop {
                let full = last_full.is_none_or(|t| t.elapsed() >= FULL_SCAN_EVERY);
                let from = if full {
                    0
                } else {
                    high.saturating_sub(SCAN_WINDOW)
                };
                match store.outbox_seqs_from(from) {
                    Ok(pending) => {
                        if full {
                            let still: std::collections::BTreeSet<u64> =
                                pending.iter().copied().collect();
                            dispatched.retain(|s| still.contains(s));
                            last_full = Some(std::time::Instant::now());
                        }
                        for seq in pending {
                            if dispatched.contains(&seq) {
                                continue;
                            }
                            let msg = match store.outbox_message(seq) {
                                Ok(Some(m)) => m,
                                Ok(None) => continue,
                                Err(e) => {
                                    tracing::error!(seq, "unreadable outbox message: {e}");
                                    continue;
                                }
                            };
                            dispatched.insert(seq);
                            high = high.max(seq);
                            let tx = rooms.entry(msg.room.clone()).or_insert_with(|| {
                                let (tx, rx) = mpsc::unbounded_channel();
                                tracker2.spawn(room_sender(
                                    store.clone(),
                                    platform.clone(),
                                    rx,
                                    shutdown.clone(),
                                ));
                                tx
                            });
                            let _ = tx.send((seq, msg));
                        }
                    }
                    Err(e) => tracing::error!("cannot read the outbox: {e}"),
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

/// Delivers one room's messages in order.
async fn room_sender(
    store: Store,
    platform: Arc<dyn Platform>,
    mut rx: mpsc::UnboundedReceiver<(u64, Outgoing)>,
    shutdown: CancellationToken,
) {
    while let Some((seq, msg)) = tokio::select! {
        _ = shutdown.cancelled() => None,
        m = rx.recv() => m,
    } {
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
                        if sleep_or_stop(Duration::from_millis(250), &shutdown).await {
                            return;
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
            // crash could still lose is never posted.
            if let Err(e) = store.barrier().wait_async().await {
                tracing::error!("outbox: {e}");
                if sleep_or_stop(backoff, &shutdown).await {
                    return;
                }
                continue;
            }
            let wait = match platform.send(&msg, root.as_deref(), &txn).await {
                Ok(id) => {
                    if let Some(q) = msg.queued_at {
                        let d = Timestamp::now().duration_since(q);
                        crate::http::metrics::delivery_latency(d.try_into().unwrap_or_default());
                    }
                    // Waiting asynchronously keeps the worker free for others.
                    match store.delivered(seq, &msg, platform.name(), &id, Timestamp::now()) {
                        Ok(d) => {
                            if let Err(e) = d.wait_async().await {
                                tracing::error!(seq, "delivered but not recorded: {e}");
                            }
                        }
                        Err(e) => tracing::error!(seq, "delivered but not recorded: {e}"),
                    }
                    break;
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
                    if let Err(e) = store.undeliverable(seq, &msg, &e) {
                        tracing::error!("outbox: {e}");
                    }
                    break;
                }
            };
            if sleep_or_stop(wait, &shutdown).await {
                return;
            }
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
