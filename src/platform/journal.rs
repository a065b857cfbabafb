//! Chat events kept on disk from receipt until the bot has handled them.
//!
//! An adapter acknowledges an event to its platform (an HTTP 200 or a
//! Socket Mode ack for Slack, a saved `/sync` token for Matrix) before the
//! bot works on it. To lose nothing when the process dies in between, the
//! adapter keeps what it received in the store first and forgets it once
//! the bot has committed what it did with it
//! ([`Platform::handled`](crate::platform::Platform::handled)). At start the
//! items still kept are handed over again, ahead of new ones; the bot's
//! handled markers make an item that was in fact handled a no-op. When the
//! item must be on disk before the acknowledgement is each adapter's call
//! (Slack waits per payload, Matrix once per sync response).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{error, info, warn};

use crate::store::{Durable, Store};

/// One adapter's kept items, under its own key prefix.
pub(crate) struct Journal {
    store: Option<Store>,
    /// Store keys start with this (`slack:`, `matrix:`).
    prefix: &'static str,
    /// What an item is, for the log ("Slack payload").
    what: &'static str,
    next: AtomicU64,
    /// Event id → keys of the items that carried it (a platform may
    /// deliver one event more than once).
    waiting: Mutex<HashMap<String, Vec<String>>>,
}

impl Journal {
    /// A journal in `store` (`None` keeps nothing, as in tests).
    pub fn new(store: Option<Store>, prefix: &'static str, what: &'static str) -> Journal {
        // Keys sort in arrival order, also after a restart.
        let start = jiff::Timestamp::now().as_microsecond().max(0) as u64;
        Journal {
            store,
            prefix,
            what,
            next: AtomicU64::new(start),
            waiting: Mutex::new(HashMap::new()),
        }
    }

    /// Keeps `item` under a new key; the item is on disk once the returned
    /// [`Durable`] resolves. `Ok(None)` when there is no store.
    pub fn keep<T: Serialize>(&self, item: &T) -> Result<Option<(String, Durable)>, String> {
        let Some(store) = &self.store else {
            return Ok(None);
        };
        let key = format!(
            "{}{:020}",
            self.prefix,
            self.next.fetch_add(1, Ordering::Relaxed)
        );
        let bytes = serde_json::to_vec(item).map_err(|e| format!("encoding: {e}"))?;
        let durable = store.inbox_put(&key, &bytes).map_err(|e| e.to_string())?;
        Ok(Some((key, durable)))
    }

    /// Items kept by an earlier run, oldest first, each with its key.
    /// `read` turns stored bytes into an item; unreadable ones are dropped
    /// with an error in the log.
    pub fn kept<T>(&self, read: impl Fn(&[u8]) -> Option<T>) -> Vec<(String, T)> {
        let Some(store) = &self.store else {
            return Vec::new();
        };
        let entries = match store.inbox(self.prefix) {
            Ok(e) => e,
            Err(e) => {
                error!("reading kept {}s: {e}", self.what);
                return Vec::new();
            }
        };
        let kept: Vec<(String, T)> = entries
            .into_iter()
            .filter_map(|(key, bytes)| match read(&bytes) {
                Some(item) => Some((key, item)),
                None => {
                    error!(key, "dropping an unreadable kept {}", self.what);
                    self.forget(&key);
                    None
                }
            })
            .collect();
        if !kept.is_empty() {
            info!(
                items = kept.len(),
                "handing over {}s kept from before the restart", self.what
            );
        }
        kept
    }

    /// The item under `key` carried event `event_id`.
    pub fn translated(&self, key: Option<String>, event_id: &str) {
        if let Some(key) = key {
            self.lock()
                .entry(event_id.to_owned())
                .or_default()
                .push(key);
        }
    }

    /// Forgets one item (handled, or nothing in it to handle).
    pub fn forget(&self, key: &str) {
        if let Some(store) = &self.store
            && let Err(e) = store.inbox_remove(key)
        {
            warn!(key, "forgetting a kept {}: {e}", self.what);
        }
    }

    /// The bot has handled `event_id`: forget the items that carried it.
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

/// Reads an item stored as JSON.
pub(crate) fn read_json<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    serde_json::from_slice(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_come_back_in_order_until_their_event_is_handled() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let journal = Journal::new(Some(store.clone()), "test:", "test item");
        for (n, event) in [(1, "e1"), (2, "e2"), (3, "e1")] {
            let (key, durable) = journal.keep(&n).unwrap().unwrap();
            durable.wait().unwrap();
            journal.translated(Some(key), event);
        }
        store.inbox_put("test:zz-damaged", b"not json").unwrap();
        // A restart reads them in arrival order and drops the damaged one.
        let again = Journal::new(Some(store.clone()), "test:", "test item");
        let kept: Vec<u32> = again
            .kept(read_json::<u32>)
            .into_iter()
            .map(|(_, n)| n)
            .collect();
        assert_eq!(kept, [1, 2, 3]);
        assert_eq!(store.inbox("test:").unwrap().len(), 3);
        // Handling an event forgets every item that carried it.
        journal.handled("e1");
        let left: Vec<u32> = again
            .kept(read_json::<u32>)
            .into_iter()
            .map(|(_, n)| n)
            .collect();
        assert_eq!(left, [2]);
        assert!(Journal::new(None, "test:", "x").keep(&1).unwrap().is_none());
    }
}
