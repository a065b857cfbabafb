//! Received payloads kept on disk until the bot has handled them.
//!
//! Slack wants an answer within 3 seconds (an HTTP 200, a Socket Mode
//! ack), so the adapter acknowledges before the bot works on the event:
//! every verified payload is kept in the [`Journal`] (and flushed) *before*
//! it is acknowledged, and forgotten once the bot has committed what it did
//! with it or the translator has found nothing in it to handle.

use std::time::Duration;

use tokio::sync::mpsc;
use tracing::error;

use super::Inbound;
use crate::platform::journal::{Journal, read_json};
use crate::store::Store;

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

/// The Slack adapter's journal.
pub(crate) type Inbox = Journal;

/// A journal for Slack payloads in `store`.
pub(crate) fn inbox(store: Option<Store>) -> Inbox {
    Journal::new(store, "slack:", "Slack payload")
}

/// Payloads kept by an earlier run, oldest first.
pub(crate) fn kept(inbox: &Inbox) -> Vec<Kept> {
    inbox
        .kept(read_json::<Inbound>)
        .into_iter()
        .map(|(key, item)| Kept {
            key: Some(key),
            item,
        })
        .collect()
}

/// Keeps `item` durably; returns its key.
async fn keep(inbox: &Inbox, item: &Inbound) -> Result<Option<String>, Refused> {
    let Some((key, durable)) = inbox.keep(item).map_err(|e| {
        error!("keeping a Slack payload: {e}");
        Refused::Store
    })?
    else {
        return Ok(None);
    };
    durable.wait_async().await.map_err(|e| {
        error!("flushing a kept Slack payload: {e}");
        Refused::Store
    })?;
    Ok(Some(key))
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
        let key = keep(&self.inbox, &item).await?;
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;

    fn payload(n: u32) -> Inbound {
        Inbound::Push(json!({"type": "event_callback", "event_id": format!("Ev{n}")}))
    }

    /// A payload Slack must send again (the queue stayed full, the bot is
    /// stopping) is refused and not left in the store, where it would be
    /// handled a second time at the next start; an accepted one stays
    /// kept until handled.
    #[tokio::test]
    async fn refused_payloads_are_not_kept_accepted_ones_are() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let inbox = Arc::new(inbox(Some(store)));
        let (tx, rx) = mpsc::channel(1);
        let intake = Intake {
            tx,
            inbox: inbox.clone(),
        };
        let wait = Duration::from_millis(50);
        intake.accept(payload(1), wait).await.unwrap();
        assert_eq!(intake.accept(payload(2), wait).await, Err(Refused::Busy));
        drop(rx);
        assert_eq!(intake.accept(payload(3), wait).await, Err(Refused::Closed));
        let kept: Vec<_> = kept(&inbox).into_iter().map(|k| k.item).collect();
        assert_eq!(kept.len(), 1);
        assert!(matches!(&kept[0], Inbound::Push(v) if v["event_id"] == "Ev1"));
    }
}
