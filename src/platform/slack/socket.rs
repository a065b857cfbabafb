//! The Socket Mode transport: the bot opens a WebSocket to Slack.
//!
//! `apps.connections.open` (with the app-level token) gives a single-use
//! `wss://` URL; Slack greets with `hello`, then sends envelopes
//! (`events_api`, `interactive`, `slash_commands`), each of which must be
//! acknowledged with `{"envelope_id": …}` or Slack sends it again. We
//! acknowledge an envelope only after its payload is queued for the bot, so
//! a payload is never acknowledged and then lost in a full queue; the core
//! drops redeliveries by event id.
//!
//! The loop reconnects — a new `apps.connections.open`, a new socket — when
//! Slack asks (`disconnect`), when the socket closes or fails, and when it
//! has gone silent: we ping every [`PING_EVERY`] and give up on a connection
//! that showed no sign of life for [`SILENCE_LIMIT`]. Failed attempts back
//! off from 1 s to [`BACKOFF_MAX`]; a refused app token stops the adapter.
//! Every step has a timeout, so a half-open connection never hangs the
//! bot.
//!
//! slack-morphism's own Socket Mode listener is not used: its callbacks are
//! plain `fn` pointers (state through a type map), it has no timeout on
//! connecting and no watchdog, and it acknowledges after the callback
//! whatever the callback did.

use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::Value;
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::inbox::{Intake, Refused};
use super::{API_TIMEOUT, Inbound, SlackPlatform};

/// How often we ping an idle connection.
pub(super) const PING_EVERY: Duration = Duration::from_secs(10);
/// A connection with no frame (not even a pong) for this long is replaced.
pub(super) const SILENCE_LIMIT: Duration = Duration::from_secs(35);
/// Limit for opening the WebSocket.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest wait between reconnect attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How long an envelope may wait for room in the translation queue before
/// it is left unacknowledged (Slack wants the ack within 3 s).
const ACCEPT_WAIT: Duration = Duration::from_secs(2);

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: String,
    envelope_id: Option<String>,
    #[serde(default)]
    payload: Value,
    reason: Option<String>,
}

/// Why one connection ended.
enum Ended {
    Shutdown,
    /// Reconnect at once (Slack asked, or the socket closed after working).
    Reconnect(String),
}

/// Runs Socket Mode until `stop`; fails only when the app token is refused
/// or the bot is gone.
pub(super) async fn run(
    platform: Arc<SlackPlatform>,
    inbound: Intake,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let Some(app_token) = platform.config.app_token.clone() else {
        bail!("socket mode needs slack.app_token_env");
    };
    let token = SlackApiToken::new(app_token.expose().into());
    let mut backoff = Duration::from_secs(1);
    loop {
        if stop.is_cancelled() {
            return Ok(());
        }
        match connection(&platform, &token, &inbound, &stop).await {
            Ok(Ended::Shutdown) => return Ok(()),
            Ok(Ended::Reconnect(why)) => {
                info!(why, "Socket Mode reconnecting");
                backoff = Duration::from_secs(1);
                continue;
            }
            Err(Failure::Fatal(e)) => return Err(e),
            Err(Failure::Retry(e)) => {
                warn!(retry_in = ?backoff, "Socket Mode connection failed: {e:#}");
            }
        }
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

enum Failure {
    Fatal(anyhow::Error),
    Retry(anyhow::Error),
}

fn retry(e: impl Into<anyhow::Error>) -> Failure {
    Failure::Retry(e.into())
}

/// One connection, from `apps.connections.open` to its end.
async fn connection(
    platform: &SlackPlatform,
    token: &SlackApiToken,
    inbound: &Intake,
    stop: &CancellationToken,
) -> Result<Ended, Failure> {
    let session = platform.client.open_session(token);
    let opened = tokio::time::timeout(
        API_TIMEOUT,
        session.apps_connections_open(&SlackApiAppsConnectionOpenRequest::new()),
    )
    .await
    .map_err(|_| retry(anyhow::anyhow!("apps.connections.open timed out")))?;
    let url = match opened {
        Ok(r) => r.url.0,
        Err(SlackClientError::ApiError(e))
            if matches!(
                e.code.as_str(),
                "invalid_auth" | "not_authed" | "not_allowed_token_type" | "token_revoked"
            ) =>
        {
            return Err(Failure::Fatal(anyhow::anyhow!(
                "Slack refused the app-level token ({}); it must be an xapp- token with connections:write",
                e.code
            )));
        }
        Err(e) => return Err(retry(anyhow::anyhow!("apps.connections.open: {e}"))),
    };
    let (ws, _) = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio_tungstenite::connect_async(url.as_str()),
    )
    .await
    .map_err(|_| retry(anyhow::anyhow!("WebSocket connect timed out")))?
    .map_err(retry)?;
    debug!("Socket Mode connected");
    let (mut sink, mut stream) = ws.split();
    let mut last_seen = Instant::now();
    // A connection that ends before Slack's hello counts as a failed
    // attempt (backoff), so a socket that keeps closing at once is not
    // reopened in a tight loop.
    let mut greeted = false;
    let ended = |greeted: bool, why: String| {
        if greeted {
            Ok(Ended::Reconnect(why))
        } else {
            Err(retry(anyhow::anyhow!("closed before hello: {why}")))
        }
    };
    let (ping_every, silence_limit) = platform.watchdog();
    let mut ping = tokio::time::interval(ping_every);
    ping.tick().await;
    loop {
        let frame = tokio::select! {
            () = stop.cancelled() => {
                let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(Message::Close(None))).await;
                return Ok(Ended::Shutdown);
            }
            _ = ping.tick() => {
                if last_seen.elapsed() > silence_limit {
                    return Ok(Ended::Reconnect("the connection went silent".into()));
                }
                send(&mut sink, Message::Ping(Vec::new().into())).await?;
                continue;
            }
            f = stream.next() => f,
        };
        let frame = match frame {
            None => return ended(greeted, "the socket closed".into()),
            Some(Err(e)) => return ended(greeted, format!("socket error: {e}")),
            Some(Ok(f)) => f,
        };
        last_seen = Instant::now();
        let text = match frame {
            Message::Text(t) => t,
            Message::Close(_) => return ended(greeted, "Slack closed the socket".into()),
            _ => continue,
        };
        let envelope: Envelope = match serde_json::from_str(text.as_str()) {
            Ok(e) => e,
            Err(e) => {
                warn!("unreadable Socket Mode frame: {e}");
                continue;
            }
        };
        let item = match envelope.kind.as_str() {
            "hello" => {
                greeted = true;
                info!("Socket Mode connected (hello)");
                continue;
            }
            "disconnect" => {
                let why = envelope.reason.unwrap_or_else(|| "disconnect".into());
                return Ok(Ended::Reconnect(format!("Slack asked: {why}")));
            }
            "events_api" => Some(Inbound::Push(envelope.payload)),
            "interactive" => Some(Inbound::Interaction(envelope.payload)),
            "slash_commands" => match serde_json::from_value(envelope.payload) {
                Ok(c) => Some(Inbound::Command(c)),
                Err(e) => {
                    warn!("unreadable slash command: {e}");
                    None
                }
            },
            other => {
                debug!(kind = other, "Socket Mode frame ignored");
                None
            }
        };
        if let Some(item) = item {
            match inbound.accept(item, ACCEPT_WAIT).await {
                Ok(()) => {}
                Err(Refused::Closed) => {
                    return Err(Failure::Fatal(anyhow::anyhow!("the bot stopped")));
                }
                Err(why) => {
                    // Not acknowledged: Slack sends it again.
                    warn!(?why, "Slack event not accepted; leaving it unacknowledged");
                    continue;
                }
            }
        }
        if let Some(id) = envelope.envelope_id {
            let ack = serde_json::json!({ "envelope_id": id }).to_string();
            send(&mut sink, Message::Text(ack.into())).await?;
        }
    }
}

async fn send<S>(sink: &mut S, msg: Message) -> Result<(), Failure>
where
    S: futures_util::Sink<Message> + Unpin,
    S::Error: std::error::Error + Send + Sync + 'static,
{
    match tokio::time::timeout(Duration::from_secs(5), sink.send(msg)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(retry(e)),
        Err(_) => Err(retry(anyhow::anyhow!("sending on the socket timed out"))),
    }
}
