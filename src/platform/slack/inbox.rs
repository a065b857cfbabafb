//! Received payloads kept on disk until the bot has handled them.
//!
//! Slack wants an answer within 3 seconds (an HTTP 200, a Socket Mode
//! ack), so the adapter acknowledges before the bot works on the event. To
//! lose nothing when the process dies in between, every verified payload is
//! written to the store (and flushed) *before* it is acknowledged, and
//! forgotten once the bot has committed what it did with it
//! ([`Platform::handled`](crate::platform::Platform::handled)) or the
//! translator has found nothing in it to handle. At start the payloads still
//! kept are translated again, ahead of new ones; the bot's handled markers
//! make a payload that was in fact handled a no-op.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{error, warn};

use super::Inbound;
use crate::store::Store;

/// Store keys of kept payloads start with this.
const PREFIX: &str = "slack:";

/// A payload on its way to the translator, with its store key (`None` when
/// nothing is kept, as in tests without a store).
#[derive(Debug)]
pub(crate) struct Kept {
    pub key: Option<String>,
    pub item: Inbound,
}

/// Why a payload was not accepted; the transport answers so that Slack
/// sends it again (HTTP 503, no Socket Mode ack).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The store could not keep it.
    Store,
    /// The translation queue stayed full.
    Busy,
    /// The bot is stopping.
    Closed,
}

/// The adapter's side of the journal: keeps payloads and maps handled
/// events back to them.
pub(crate) struct Inbox {
    store: Option<Store>,
    next: AtomicU64,
    /// Event id → keys of the payloads that carried it (Slack may deliver
    /// one event more than once).
    waiting: Mutex<HashMap<String, Vec<String>>>,
}

impl Inbox {
    pub fn new(store: Option<Store>) -> Inbox {
        // Keys sort in arrival order, also after a restart.
        let start = jiff::Timestamp::now().as_microsecond().max(0) as u64;
        Inbox {
            store,
            next: AtomicU64::new(start),
            waiting: Mutex::new(HashMap::new()),
        }
    }

    /// Payloads kept by an earlier run, oldest first. Unreadable ones are
    /// dropped with an error in the log.
    pub fn kept(&self) -> Vec<Kept> {
        let Some(store) = &self.store else {
            return Vec::new();
        };
        let entries = match store.inbox(PREFIX) {
            Ok(e) => e,
            Err(e) => {
                error!("reading kept Slack payloads: {e}");
                return Vec::new();
            }
        };
        entries
            .into_iter()
            .filter_map(
                |(key, bytes)| match serde_json::from_slice::<Inbound>(&bytes) {
                    Ok(item) => Some(Kept {
                        key: Some(key),
                        item,
                    }),
                    Err(e) => {
                        error!(key, "dropping an unreadable kept Slack payload: {e}");
                        self.forget(&key);
                        None
                    }
                },
            )
            .collect()
    }

    /// Keeps `item` durably; returns its key.
    async fn keep(&self, item: &Inbound) -> Result<Option<String>, Refused> {
        let Some(store) = &self.store else {
            return Ok(None);
        };
        let key = format!("{PREFIX}{:020}", self.next.fetch_add(1, Ordering::Relaxed));
        let bytes = serde_json::to_vec(item).map_err(|e| {
            error!("encoding a Slack payload: {e}");
            Refused::Store
        })?;
        let durable = store.inbox_put(&key, &bytes).map_err(|e| {
            error!("keeping a Slack payload: {e}");
            Refused::Store
        })?;
        durable.wait_async().await.map_err(|e| {
            error!("flushing a kept Slack payload: {e}");
            Refused::Store
        })?;
        Ok(Some(key))
    }

    /// The translator made event `event_id` of the payload under `key`.
    pub fn translated(&self, key: Option<String>, event_id: &str) {
        if let Some(key) = key {
            self.lock()
                .entry(event_id.to_owned())
                .or_default()
                .push(key);
        }
    }

    /// Forgets one payload (nothing in it to handle).
    pub fn forget(&self, key: &str) {
        if let Some(store) = &self.store
            && let Err(e) = store.inbox_remove(key)
        {
            warn!(key, "forgetting a kept Slack payload: {e}");
        }
    }

    /// The bot has handled `event_id`: forget the payloads that carried it.
    pub fn handled(&self, event_id: &str) {
        let keys = self.lock().remove(event_id).unwrap_or_default();
        for key in keys {
            self.forget(&key);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<String>>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What a transport hands verified payloads to: keeps each, then queues it
/// for translation. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Intake {
    pub tx: mpsc::Sender<Kept>,
    pub inbox: std::sync::Arc<Inbox>,
}

impl Intake {
    /// Keeps `item` and queues it, waiting at most `wait` for room in the
    /// queue. Acknowledge the payload to Slack only after `Ok`.
    pub async fn accept(&self, item: Inbound, wait: Duration) -> Result<(), Refused> {
        let key = self.inbox.keep(&item).await?;
        let kept = Kept {
            key: key.clone(),
            item,
        };
        let sent = tokio::time::timeout(wait, self.tx.send(kept)).await;
        let refused = match sent {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(_)) => Refused::Closed,
            Err(_) => Refused::Busy,
        };
        // Slack sends it again; the copy kept now would only be replayed at
        // the next start.
        if let Some(key) = key {
            self.inbox.forget(&key);
        }
        Err(refused)
    }
}
