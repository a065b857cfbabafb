//! Chat platforms: the adapters between the core and each chat network.
//!
//! An adapter is one module (`src/platform/<name>`, the only place its SDK
//! is imported) implementing [`Platform`]:
//!
//! - **receive** ([`Platform::run`]): turn the network's events into
//!   [`Incoming`] values — messages, reactions, clicks on actions — and send
//!   them to the bot until shutdown;
//! - **deliver** ([`Platform::send`]): post an [`Outgoing`] message, in a
//!   thread when asked, rendering its [`Action`](crate::message::Action)s
//!   natively (buttons, reaction hints, typed hints);
//! - **edit** ([`Platform::edit`]): replace an earlier message's content (a
//!   case's live card); a platform that cannot edit does nothing;
//! - **remove** ([`Platform::remove`]): delete someone's message that held a
//!   card number or password.
//!
//! Deliveries come from the outbox, which orders them per room, retries,
//! honours rate limits and coalesces card edits. [`connect`] picks the
//! platform from the config, so `app.rs` has no per-platform code.

pub mod console;
#[cfg(feature = "discord")]
pub mod discord;
pub mod fake;
#[cfg(any(feature = "matrix", feature = "slack"))]
mod journal;
#[cfg(feature = "matrix")]
pub mod matrix;
#[cfg(feature = "slack")]
pub mod slack;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::message::{Incoming, Outgoing};
use crate::store::Store;

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

    /// Replaces the content of the bot's message `target` (in `msg.room`)
    /// with `msg`'s text and actions. `txn_id` as for [`Platform::send`].
    /// The default does nothing: a platform that cannot edit posts nothing
    /// extra.
    fn edit<'a>(
        &'a self,
        msg: &'a Outgoing,
        target: &'a str,
        txn_id: &'a str,
    ) -> BoxFuture<'a, Result<(), SendError>> {
        let _ = (msg, target, txn_id);
        Box::pin(async { Ok(()) })
    }

    /// Removes message `target` from `room`, giving `reason`. Returns the
    /// platform's id for the removal, if it has one. The default refuses:
    /// a platform that cannot remove messages sets the removal aside.
    fn remove<'a>(
        &'a self,
        room: &'a str,
        target: &'a str,
        reason: &'a str,
        txn_id: &'a str,
    ) -> BoxFuture<'a, Result<String, SendError>> {
        let _ = (room, target, reason, txn_id);
        let name = self.name();
        Box::pin(async move {
            Err(SendError::Permanent(format!(
                "{name} cannot remove messages"
            )))
        })
    }

    /// The bot has handled event `event_id` (one this adapter sent on
    /// `tx`) and committed the result. Adapters that keep received events
    /// until then (so an event acknowledged to the network survives a crash)
    /// forget it here. The default does nothing.
    fn handled(&self, event_id: &str) {
        let _ = event_id;
    }

    /// The playbooks were reloaded; `ids` are the ones now in use (for
    /// adapters that offer them as choices). The default does nothing.
    fn playbooks_changed(&self, ids: Vec<String>) {
        let _ = ids;
    }

    /// Receives events until `shutdown` (or until the network is gone for
    /// good, which is an error), sending each to the bot on `tx`. Events
    /// from before the bot's first start are not delivered. The default
    /// receives nothing (a send-only sink) and waits for shutdown.
    fn run(
        self: Arc<Self>,
        tx: mpsc::Sender<Incoming>,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, Result<()>> {
        drop(tx);
        Box::pin(async move {
            shutdown.cancelled().await;
            Ok(())
        })
    }
}

/// Connects to the platform the config enables — or, with none enabled,
/// the terminal — and adjusts `config` to it (room aliases resolved to ids,
/// the terminal user given every role).
pub async fn connect(config: &mut Config, store: &Store) -> Result<Arc<dyn Platform>> {
    let enabled: Vec<&str> = [
        ("matrix", config.matrix.is_some()),
        ("slack", config.slack.is_some()),
        ("discord", config.discord.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect();
    if enabled.len() > 1 {
        anyhow::bail!(
            "more than one chat platform is enabled ({}); one caseroom process serves one platform: run one per platform, each with its own data_dir",
            enabled.join(", ")
        );
    }
    #[cfg(feature = "matrix")]
    if let Some(mx) = config.matrix.clone() {
        use anyhow::Context as _;
        let (platform, rooms) = matrix::MatrixPlatform::connect(&mx, &config.rooms, store.clone())
            .await
            .context("connecting to Matrix")?;
        config.rooms = rooms;
        return Ok(platform);
    }
    if let Some(sl) = config.slack.clone() {
        #[cfg(feature = "slack")]
        {
            use anyhow::Context as _;
            let platform = slack::SlackPlatform::connect(&sl, config, store)
                .await
                .context("connecting to Slack")?;
            return Ok(platform);
        }
        #[cfg(not(feature = "slack"))]
        {
            let _ = sl;
            anyhow::bail!("this caseroom was built without the `slack` feature");
        }
    }
    if let Some(dc) = config.discord.clone() {
        #[cfg(feature = "discord")]
        {
            use anyhow::Context as _;
            let platform = discord::DiscordPlatform::connect(&dc, config, store)
                .await
                .context("connecting to Discord")?;
            return Ok(platform);
        }
        #[cfg(not(feature = "discord"))]
        {
            let _ = dc;
            anyhow::bail!("this caseroom was built without the `discord` feature");
        }
    }
    Ok(console::ConsolePlatform::start(config, store))
}
