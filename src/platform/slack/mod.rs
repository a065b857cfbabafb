//! The Slack adapter: the only module that imports slack-morphism.
//!
//! | file          | what it does                                              |
//! |---------------|-----------------------------------------------------------|
//! | `mod.rs`      | [`SlackPlatform`]: Web API client, send / edit / remove    |
//! | `render.rs`   | Markdown → mrkdwn, actions → Block Kit buttons             |
//! | `events.rs`   | Slack payloads (events, interactions, commands) → [`Incoming`] |
//! | `http.rs`     | the Events API transport (axum, signed requests)           |
//! | `socket.rs`   | the Socket Mode transport (WebSocket, envelope acks)       |
//!
//! **Receiving** ([`Platform::run`]): the configured transport only checks,
//! queues and acknowledges what Slack sends (an ack is due within 3 s);
//! one translator task turns the queued payloads into [`Incoming`] in
//! order, fetching a reacted-to message's text when needed. Event ids are
//! chosen so the core's "handle each id once" covers Slack's redeliveries:
//! a message is `slack:msg:<channel>:<ts>` whatever its `event_id` (Slack
//! has sent one message under two event ids), other events use Slack's
//! `event_id`, clicks their `action_ts`, commands and shortcuts their
//! `trigger_id`.
//!
//! **Sending**: every message is a fallback text plus Block Kit blocks (its
//! actions as buttons). Answers to a slash command go to its
//! `response_url` (ephemeral, as Slack does by default); messages meant for
//! one person ([`Outgoing::private_to`]) use `chat.postEphemeral`; the rest
//! `chat.postMessage`, in a thread via `thread_ts`. A card is edited with
//! `chat.update`. A person's message that held a card number is deleted
//! with `chat.delete` when a user token is configured (a bot token cannot
//! delete people's messages); otherwise the leads are asked to delete it,
//! in a thread under it. Every Web API call
//! has a timeout, and Slack's answers map to the outbox's [`SendError`]s:
//! HTTP 429 (with `Retry-After`) or `ratelimited` to a wait, network and
//! server trouble to a retry, the rest to a permanent failure.
//!
//! Slack has no idempotency key for `chat.postMessage`: every post carries
//! the outbox's transaction id in its metadata, and a post whose answer was
//! lost (or the first one to a channel after a start) is first looked for.
//!
//! Received payloads are kept in the store until handled (`inbox`), so one
//! acknowledged to Slack survives a crash.

mod events;
pub mod http;
mod inbox;
pub mod render;
mod socket;

use std::collections::{BTreeSet, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::{Config, SlackConfig, SlackMode};
use crate::message::{Incoming, Outgoing};
use crate::platform::{BoxFuture, Platform, SendError};
use crate::store::Store;

pub use events::SHORTCUT_CALLBACK_ID;
pub use http::sign;

/// The Web API client, over a connector that speaks https (and plain http
/// for a loopback fake).
type Client = SlackClient<SlackClientHyperConnector<HttpsConnector<HttpConnector>>>;

/// Limit for one Web API call; a slower call is a transient failure.
const API_TIMEOUT: Duration = Duration::from_secs(10);
/// Fetching a reacted-to message is best effort and must not stall intake.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait after a 429 that names no delay.
const DEFAULT_RATE_LIMIT_WAIT: Duration = Duration::from_secs(1);
/// Payloads acknowledged to Slack and waiting for translation.
const INBOUND_QUEUE: usize = 1024;
/// The metadata event type every post carries, with the outbox's
/// transaction id: Slack has no idempotency key, so this is how a post whose
/// answer was lost is found again instead of being posted twice.
const POST_EVENT_TYPE: &str = "caseroom_post";
/// Recent channel messages searched for such a post.
const FIND_IN_CHANNEL: u16 = 50;
/// Thread replies fetched per page (at most [`FIND_PAGES`] pages).
const FIND_IN_THREAD: u16 = 200;
const FIND_PAGES: usize = 5;

/// Something Slack sent, checked and acknowledged, not yet translated.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) enum Inbound {
    /// An Events API body (`event_callback`).
    Push(serde_json::Value),
    /// An interaction payload (`block_actions`, `message_action` ...).
    Interaction(serde_json::Value),
    /// A slash command.
    Command(events::SlashCommand),
}

/// caseroom in a Slack workspace. Shared as `Arc<SlackPlatform>` by the
/// transport ([`Platform::run`]) and the outbox.
pub struct SlackPlatform {
    /// slack-morphism's client; a cheap handle to a pooled hyper client.
    client: Arc<Client>,
    config: SlackConfig,
    /// The bot token for every Web API call.
    bot_token: SlackApiToken,
    /// A user token allowed to delete people's messages, if configured.
    user_token: Option<SlackApiToken>,
    /// Leads, asked to delete a message the bot cannot.
    leads: Vec<String>,
    /// The bot's user id (from `auth.test`): its own events are ignored.
    bot_user: String,
    /// User ids the renderer writes as mentions (everyone in a role).
    known_users: BTreeSet<String>,
    /// The reaction the core escalates on (🎫); a message shortcut is
    /// reported as this reaction.
    escalate_key: String,
    /// The Events API listener, bound at connect so a busy port fails the
    /// start; taken by [`Platform::run`]. A `std::sync::Mutex`: held only to
    /// take it.
    listener: Mutex<Option<tokio::net::TcpListener>>,
    /// Its address (the port when configured as 0).
    listen_addr: Option<SocketAddr>,
    /// Socket Mode's ping interval and silence limit. A `std::sync::Mutex`:
    /// read once per connection, never held across an await.
    watchdog: Mutex<(Duration, Duration)>,
    /// Posts whose last attempt may have reached Slack (it timed out or
    /// Slack failed with a 5xx): looked for before they are tried again.
    uncertain: Mutex<HashSet<String>>,
    /// Channels posted to (or searched) since start. The outbox sends a
    /// channel's messages one at a time, so only the first post to each
    /// after a start can be one a crash interrupted: that one is looked for
    /// first.
    seen_channels: Mutex<HashSet<String>>,
    /// Received payloads kept until the bot has handled them.
    inbox: Arc<inbox::Inbox>,
}

impl std::fmt::Debug for SlackPlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackPlatform")
            .field("mode", &self.config.mode)
            .field("bot_user", &self.bot_user)
            .field("api_base_url", &self.config.api_base_url)
            .finish_non_exhaustive()
    }
}

/// Installs rustls' ring provider as the process default, once. Both ring
/// (slack-morphism) and aws-lc-rs (matrix-sdk's reqwest) are compiled in,
/// so rustls cannot pick one itself and would panic on the first TLS
/// handshake. Call it first thing in `main`; later calls do nothing.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The Web API client for `api_base_url` (no trailing slash). TLS uses the
/// system's roots with the ring provider given explicitly; plain `http://`
/// is allowed so tests can point it at a loopback fake.
pub fn client(api_base_url: &str) -> anyhow::Result<Client> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = match hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(provider.clone())
    {
        Ok(b) => b,
        Err(e) => {
            warn!("no system CA certificates ({e}); https calls to Slack will fail");
            let tls = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .context("TLS setup")?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls)
        }
    };
    let https = builder.https_or_http().enable_http1().build();
    let connector =
        SlackClientHyperConnector::with_connector(https).with_slack_api_url(api_base_url);
    Ok(SlackClient::new(connector))
}

impl SlackPlatform {
    /// Checks the bot token (`auth.test`, which also tells the bot's own
    /// ids) and, in events mode, binds the listener.
    pub async fn connect(
        slack: &SlackConfig,
        config: &Config,
        store: &Store,
    ) -> anyhow::Result<Arc<SlackPlatform>> {
        install_crypto_provider();
        let client = Arc::new(client(&slack.api_base_url)?);
        let bot_token = SlackApiToken::new(slack.bot_token.expose().into());
        let auth = tokio::time::timeout(API_TIMEOUT, client.open_session(&bot_token).auth_test())
            .await
            .context("auth.test timed out")?
            .map_err(|e| anyhow::anyhow!("auth.test failed (is the bot token right?): {e}"))?;
        info!(
            team = %auth.team,
            bot_user = %auth.user_id.0,
            mode = ?slack.mode,
            "connected to Slack"
        );
        let (listener, listen_addr) = match slack.mode {
            SlackMode::Events => {
                let l = tokio::net::TcpListener::bind(slack.events_listen)
                    .await
                    .with_context(|| {
                        format!(
                            "binding the Slack events listener on {}",
                            slack.events_listen
                        )
                    })?;
                let addr = l.local_addr()?;
                (Some(l), Some(addr))
            }
            SlackMode::Socket => {
                if slack.app_token.is_none() {
                    bail!("socket mode needs slack.app_token_env");
                }
                (None, None)
            }
        };
        let roles = &config.roles;
        let known_users = roles
            .agent
            .iter()
            .chain(&roles.lead)
            .chain(&roles.oncall)
            .chain(&roles.admin)
            .cloned()
            .collect();
        Ok(Arc::new(SlackPlatform {
            client,
            config: slack.clone(),
            bot_token,
            user_token: slack
                .user_token
                .as_ref()
                .map(|t| SlackApiToken::new(t.expose().into())),
            leads: config.roles.lead.iter().cloned().collect(),
            bot_user: auth.user_id.0,
            known_users,
            escalate_key: config.escalate_reaction.clone(),
            listener: Mutex::new(listener),
            listen_addr,
            watchdog: Mutex::new((socket::PING_EVERY, socket::SILENCE_LIMIT)),
            uncertain: Mutex::new(HashSet::new()),
            seen_channels: Mutex::new(HashSet::new()),
            inbox: Arc::new(inbox::inbox(Some(store.clone()))),
        }))
    }

    /// Where the Events API listener is bound (events mode only).
    pub fn events_addr(&self) -> Option<SocketAddr> {
        self.listen_addr
    }

    /// Changes Socket Mode's ping interval and the silence after which a
    /// connection is replaced (tests shorten them); applies from the next
    /// connection.
    #[doc(hidden)]
    pub fn set_watchdog(&self, ping_every: Duration, silence_limit: Duration) {
        *self.watchdog.lock().unwrap_or_else(|e| e.into_inner()) = (ping_every, silence_limit);
    }

    fn watchdog(&self) -> (Duration, Duration) {
        *self.watchdog.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The bot's own user id.
    pub fn bot_user(&self) -> &str {
        &self.bot_user
    }

    fn session(
        &self,
    ) -> SlackClientSession<'_, SlackClientHyperConnector<HttpsConnector<HttpConnector>>> {
        self.client.open_session(&self.bot_token)
    }

    /// Posts `msg`; returns its `ts` (or a made-up id for ephemeral
    /// messages, which have none that can be edited).
    async fn post(
        &self,
        msg: &Outgoing,
        thread_root: Option<&str>,
        txn_id: &str,
    ) -> Result<String, SendError> {
        let content = render::content(msg, &self.known_users);
        let channel = SlackChannelId(msg.room.clone());
        if let Some(url) = msg.reply_handle.as_deref() {
            // The answer to a slash command: only its caller sees it, in
            // the words they typed it with.
            let url = url::Url::parse(url)
                .map_err(|e| SendError::Permanent(format!("bad response_url: {e}")))?;
            let answer = Outgoing {
                text: render::slash_answer(&msg.text),
                ..msg.clone()
            };
            let content = render::content(&answer, &self.known_users);
            let req = SlackApiPostWebhookMessageRequest::new(content);
            call(self.client.respond_to_event(&SlackResponseUrl(url), &req)).await?;
            return Ok(format!("response:{txn_id}"));
        }
        if let Some(user) = &msg.private_to {
            let mut req =
                SlackApiChatPostEphemeralRequest::new(channel, SlackUserId(user.clone()), content);
            if let Some(ts) = thread_root {
                req = req.with_thread_ts(SlackTs(ts.to_owned()));
            }
            call(self.session().chat_post_ephemeral(&req)).await?;
            return Ok(format!("ephemeral:{txn_id}"));
        }
        let look_first = lock(&self.uncertain).contains(txn_id)
            || !lock(&self.seen_channels).contains(&msg.room);
        if look_first {
            if let Some(ts) = self.find_post(&msg.room, thread_root, txn_id).await? {
                info!(channel = %msg.room, %ts, txn_id, "found an earlier attempt's post; not posting again");
                lock(&self.uncertain).remove(txn_id);
                return Ok(ts);
            }
            lock(&self.seen_channels).insert(msg.room.clone());
        }
        let content = content.with_metadata(SlackMessageMetadata {
            event_type: POST_EVENT_TYPE.into(),
            event_payload: Some([("txn".to_owned(), txn_id.to_owned())].into()),
        });
        let mut req = SlackApiChatPostMessageRequest::new(channel, content);
        if let Some(ts) = thread_root {
            req = req.with_thread_ts(SlackTs(ts.to_owned()));
        }
        match call(self.session().chat_post_message(&req)).await {
            Ok(resp) => {
                lock(&self.uncertain).remove(txn_id);
                debug!(channel = %msg.room, ts = %resp.ts.0, what = %msg.what, "posted");
                Ok(resp.ts.0)
            }
            Err(e) => {
                if matches!(e, SendError::Transient(_)) {
                    // Slack may have posted it before failing to answer.
                    lock(&self.uncertain).insert(txn_id.to_owned());
                }
                Err(e)
            }
        }
    }

    /// The ts of the bot's post carrying `txn_id` among the channel's recent
    /// messages (or the thread's replies). A search that cannot be made
    /// for good (no history scope) finds nothing; one that fails for now is
    /// an error, so the outbox waits rather than risk a second post.
    async fn find_post(
        &self,
        channel: &str,
        thread_root: Option<&str>,
        txn_id: &str,
    ) -> Result<Option<String>, SendError> {
        let ours = |m: &SlackHistoryMessage| {
            m.content.metadata.as_ref().is_some_and(|md| {
                md.event_type == POST_EVENT_TYPE
                    && md
                        .event_payload
                        .as_ref()
                        .and_then(|p| p.get("txn"))
                        .is_some_and(|t| t == txn_id)
            })
        };
        let give_up = |e: SendError| match e {
            SendError::Permanent(why) => {
                warn!(
                    channel,
                    "cannot search for an earlier attempt's post ({why}); posting"
                );
                Ok(None)
            }
            other => Err(other),
        };
        let session = self.session();
        let Some(root) = thread_root else {
            let req = SlackApiConversationsHistoryRequest::new()
                .with_channel(SlackChannelId(channel.to_owned()))
                .with_limit(FIND_IN_CHANNEL)
                .with_include_all_metadata(true);
            return match call(session.conversations_history(&req)).await {
                Ok(resp) => Ok(resp
                    .messages
                    .iter()
                    .find(|m| ours(m))
                    .map(|m| m.origin.ts.0.clone())),
                Err(e) => give_up(e),
            };
        };
        let limit = FIND_IN_THREAD.to_string();
        let mut cursor: Option<String> = None;
        for _ in 0..FIND_PAGES {
            let params = vec![
                ("channel", Some(channel)),
                ("ts", Some(root)),
                ("limit", Some(limit.as_str())),
                ("include_all_metadata", Some("true")),
                ("cursor", cursor.as_deref()),
            ];
            let page: SlackApiConversationsRepliesResponse = match call(
                session
                    .http_session_api
                    .http_get("conversations.replies", &params, None),
            )
            .await
            {
                Ok(p) => p,
                Err(e) => return give_up(e),
            };
            if let Some(m) = page.messages.iter().find(|m| ours(m)) {
                return Ok(Some(m.origin.ts.0.clone()));
            }
            cursor = page
                .response_metadata
                .and_then(|r| r.next_cursor)
                .map(|c| c.0)
                .filter(|c| !c.is_empty());
            if cursor.is_none() {
                break;
            }
        }
        Ok(None)
    }

    /// The text and author of message `ts` in `channel`, from
    /// `conversations.history` (a channel message) or, failing that,
    /// `conversations.replies` (a thread reply).
    async fn fetch_message(&self, channel: &str, ts: &str) -> Option<(String, Option<String>)> {
        let session = self.session();
        let pick = |messages: Vec<SlackHistoryMessage>| {
            messages.into_iter().find(|m| m.origin.ts.0 == ts).map(|m| {
                (
                    render::plain_text(m.content.text.as_deref().unwrap_or_default()),
                    m.sender.user.map(|u| u.0),
                )
            })
        };
        let req = SlackApiConversationsHistoryRequest::new()
            .with_channel(SlackChannelId(channel.to_owned()))
            .with_latest(SlackTs(ts.to_owned()))
            .with_inclusive(true)
            .with_limit(1);
        match tokio::time::timeout(FETCH_TIMEOUT, session.conversations_history(&req)).await {
            Ok(Ok(resp)) => {
                if let Some(found) = pick(resp.messages) {
                    return Some(found);
                }
            }
            Ok(Err(e)) => warn!(channel, ts, "conversations.history failed: {e}"),
            Err(_) => warn!(channel, ts, "conversations.history timed out"),
        }
        let req = SlackApiConversationsRepliesRequest::new(
            SlackChannelId(channel.to_owned()),
            SlackTs(ts.to_owned()),
        );
        match tokio::time::timeout(FETCH_TIMEOUT, session.conversations_replies(&req)).await {
            Ok(Ok(resp)) => pick(resp.messages),
            Ok(Err(e)) => {
                warn!(channel, ts, "conversations.replies failed: {e}");
                None
            }
            Err(_) => {
                warn!(channel, ts, "conversations.replies timed out");
                None
            }
        }
    }

    /// Deletes a person's message that held a card number or password:
    /// with the user token when one is configured (a bot token can delete
    /// only the bot's own posts); otherwise, or when that fails for good,
    /// asks the leads in a thread under the message. `target` is the ts, or
    /// the event id this adapter gave the message (`slack:msg:<ch>:<ts>`).
    async fn remove_message(
        &self,
        room: &str,
        target: &str,
        reason: &str,
    ) -> Result<String, SendError> {
        let ts = match target.strip_prefix("slack:msg:") {
            Some(rest) => rest.rsplit(':').next().unwrap_or(rest),
            None => target,
        };
        if let Some(token) = &self.user_token {
            let req = SlackApiChatDeleteRequest::new(
                SlackChannelId(room.to_owned()),
                SlackTs(ts.to_owned()),
            );
            match call(self.client.open_session(token).chat_delete(&req)).await {
                Ok(_) => {
                    info!(channel = room, ts, "message with sensitive data deleted");
                    return Ok(format!("deleted:{ts}"));
                }
                Err(SendError::Permanent(e)) => {
                    warn!(
                        channel = room,
                        ts, "the user token could not delete it: {e}"
                    );
                }
                Err(e) => return Err(e),
            }
        }
        let leads: Vec<String> = self.leads.iter().map(|l| render::mention(l)).collect();
        let text = format!(
            "⚠️ {} the message above {}. I cannot delete messages people post: please delete it (⋯ → Delete message).",
            if leads.is_empty() {
                "Admins,".to_owned()
            } else {
                leads.join(" ")
            },
            render::escape(reason),
        );
        let req = SlackApiChatPostMessageRequest::new(
            SlackChannelId(room.to_owned()),
            SlackMessageContent::new().with_text(text),
        )
        .with_thread_ts(SlackTs(ts.to_owned()));
        let resp = call(self.session().chat_post_message(&req)).await?;
        info!(
            channel = room,
            ts, "asked a lead to delete a message with sensitive data"
        );
        Ok(format!("asked:{}", resp.ts.0))
    }

    /// Runs the configured transport until `stop`.
    async fn transport(
        self: Arc<Self>,
        inbound: inbox::Intake,
        stop: CancellationToken,
    ) -> anyhow::Result<()> {
        match self.config.mode {
            SlackMode::Socket => socket::run(self.clone(), inbound, stop).await,
            SlackMode::Events => {
                let listener = self
                    .listener
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take()
                    .context("the events listener was already taken")?;
                let Some(secret) = self.config.signing_secret.clone() else {
                    bail!("events mode needs slack.signing_secret_env");
                };
                let state =
                    http::EventsState::new(secret, self.config.events_max_body_bytes, inbound);
                http::serve(listener, state, stop).await
            }
        }
    }

    /// Translates queued payloads into [`Incoming`] and hands them to the
    /// bot, in order, until shutdown or until the bot is gone: first the
    /// payloads an earlier run kept but did not handle, then new ones.
    async fn translate_loop(
        &self,
        mut inbound: mpsc::Receiver<inbox::Kept>,
        tx: mpsc::Sender<Incoming>,
        shutdown: CancellationToken,
    ) {
        let mut earlier = inbox::kept(&self.inbox).into_iter();
        if earlier.len() > 0 {
            info!(
                count = earlier.len(),
                "handling Slack events received before the restart"
            );
        }
        loop {
            let kept = match earlier.next() {
                Some(k) => Some(k),
                None => tokio::select! {
                    () = shutdown.cancelled() => return,
                    r = inbound.recv() => r,
                },
            };
            let Some(inbox::Kept { key, item: raw }) = kept else {
                return;
            };
            let me = events::Me {
                user: &self.bot_user,
                escalate_key: &self.escalate_key,
            };
            let incoming = match events::translate(raw, &me) {
                events::Translated::Ready(incoming) => incoming,
                events::Translated::NeedsTarget(mut incoming, channel, ts) => {
                    if let crate::message::IncomingKind::Reaction {
                        target_text,
                        target_sender,
                        ..
                    } = &mut incoming.kind
                        && let Some((text, sender)) = self.fetch_message(&channel, &ts).await
                    {
                        *target_text = Some(text);
                        *target_sender = sender;
                    }
                    incoming
                }
                events::Translated::Ignored(why) => {
                    debug!(why, "Slack payload ignored");
                    if let Some(key) = key {
                        self.inbox.forget(&key);
                    }
                    continue;
                }
            };
            debug!(room = %incoming.room, event = %incoming.event_id, "Slack event");
            self.inbox.translated(key, &incoming.event_id);
            if tx.send(incoming).await.is_err() {
                return;
            }
        }
    }
}

/// Locks a `std::sync::Mutex` held only for a lookup, never across an
/// await; a poisoned lock still holds a usable set.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs one Web API call with [`API_TIMEOUT`], mapping its failure.
async fn call<T>(fut: impl std::future::Future<Output = ClientResult<T>>) -> Result<T, SendError> {
    match tokio::time::timeout(API_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(send_error(&e)),
        Err(_) => Err(SendError::Transient(format!(
            "Slack did not answer within {API_TIMEOUT:?}"
        ))),
    }
}

/// What a failed Web API call means for the outbox.
pub fn send_error(e: &SlackClientError) -> SendError {
    match e {
        SlackClientError::RateLimitError(r) => {
            SendError::RateLimited(r.retry_after.unwrap_or(DEFAULT_RATE_LIMIT_WAIT))
        }
        SlackClientError::ApiError(api) => match api.code.as_str() {
            "ratelimited" | "rate_limited" => SendError::RateLimited(DEFAULT_RATE_LIMIT_WAIT),
            // Slack's own trouble, or a token that may be fixed without
            // losing the message.
            "internal_error"
            | "fatal_error"
            | "service_unavailable"
            | "request_timeout"
            | "invalid_auth"
            | "not_authed"
            | "token_expired" => SendError::Transient(format!("Slack error {}", api.code)),
            code => SendError::Permanent(format!("Slack refused it: {code}")),
        },
        SlackClientError::HttpError(h) => {
            let status = h.status_code.as_u16();
            if status == 429 {
                SendError::RateLimited(DEFAULT_RATE_LIMIT_WAIT)
            } else if status >= 500 || status == 408 {
                SendError::Transient(format!("Slack HTTP {status}"))
            } else {
                SendError::Permanent(format!("Slack HTTP {status}"))
            }
        }
        other => SendError::Transient(other.to_string()),
    }
}

impl Platform for SlackPlatform {
    fn name(&self) -> &'static str {
        "slack"
    }

    fn send<'a>(
        &'a self,
        msg: &'a Outgoing,
        thread_root: Option<&'a str>,
        txn_id: &'a str,
    ) -> BoxFuture<'a, Result<String, SendError>> {
        Box::pin(self.post(msg, thread_root, txn_id))
    }

    fn edit<'a>(
        &'a self,
        msg: &'a Outgoing,
        target: &'a str,
        _txn_id: &'a str,
    ) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            if target.contains(':') {
                // An ephemeral message or a response_url answer: no ts to edit.
                return Ok(());
            }
            let content = render::content(msg, &self.known_users);
            let req = SlackApiChatUpdateRequest::new(
                SlackChannelId(msg.room.clone()),
                content,
                SlackTs(target.to_owned()),
            );
            call(self.session().chat_update(&req)).await?;
            debug!(channel = %msg.room, ts = target, "updated");
            Ok(())
        })
    }

    fn remove<'a>(
        &'a self,
        room: &'a str,
        target: &'a str,
        reason: &'a str,
        _txn_id: &'a str,
    ) -> BoxFuture<'a, Result<String, SendError>> {
        Box::pin(async move { self.remove_message(room, target, reason).await })
    }

    fn handled(&self, event_id: &str) {
        self.inbox.handled(event_id);
    }

    fn run(
        self: Arc<Self>,
        tx: mpsc::Sender<Incoming>,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, anyhow::Result<()>> {
        Box::pin(async move {
            let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_QUEUE);
            let inbound_tx = inbox::Intake {
                tx: inbound_tx,
                inbox: self.inbox.clone(),
            };
            // Stops the transport and the translator together: on shutdown,
            // when the bot is gone, or when the transport fails for good.
            let stop = shutdown.child_token();
            let transport = {
                let me = self.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    let result = me.clone().transport(inbound_tx, stop.clone()).await;
                    stop.cancel();
                    result
                })
            };
            self.translate_loop(inbound_rx, tx, stop.clone()).await;
            stop.cancel();
            match transport.await {
                Ok(r) => r,
                Err(e) => Err(anyhow::anyhow!("the Slack transport panicked: {e}")),
            }
        })
    }
}
