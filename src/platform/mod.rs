//! Chat platforms: the adapters between the core and each chat network.
//!
//! An adapter does two things: it turns the network's events into
//! [`Incoming`](crate::message::Incoming) values sent to the bot, and it
//! delivers [`Outgoing`](crate::message::Outgoing) messages for the outbox.
//! Only `src/platform/<name>.rs` imports a chat SDK.

pub mod console;
pub mod fake;
#[cfg(feature = "matrix")]
pub mod matrix;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::message::Outgoing;

/// A boxed future, so adapters can sit behind `Arc<dyn Platform>`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a delivery failed, which decides what the outbox does next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The platform asked us to slow down (429, `M_LIMIT_EXCEEDED`).
    #[error("rate limited; retry after {0:?}")]
    RateLimited(Duration),
    /// A network or server problem; retried with backoff.
    #[error("temporary failure: {0}")]
    Transient(String),
    /// The message can never be delivered (no such room, forbidden); it is
    /// set aside so the room's queue moves on.
    #[error("permanent failure: {0}")]
    Permanent(String),
}

/// Sending side of a chat platform.
pub trait Platform: Send + Sync + 'static {
    /// Short name used in logs and case history (`matrix`, `console`...).
    fn name(&self) -> &'static str;

    /// Delivers one message. `thread_root` is the platform id of the thread
    /// root when the message belongs in a thread. `txn_id` is stable across
    /// retries and restarts: platforms that support idempotent sends (Matrix
    /// transaction ids) use it so a retried message is never posted twice.
    /// Returns the platform's id for the delivered message.
    fn send<'a>(
        &'a self,
        msg: &'a Outgoing,
        thread_root: Option<&'a str>,
        txn_id: &'a str,
    ) -> BoxFuture<'a, Result<String, SendError>>;
}
