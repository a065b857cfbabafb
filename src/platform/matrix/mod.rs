//! The Matrix adapter: the only module (with its `e2ee` child) that imports
//! matrix-sdk.
//!
//! What must survive a restart is kept in our [`Store`]:
//!
//! | key                  | value                                          |
//! |----------------------|------------------------------------------------|
//! | `matrix:session`     | the login (user id, device id, access token)   |
//! | `matrix:sync_token`  | where the last handled `/sync` response ended  |
//! | `matrix:undecrypted` | encrypted events still waiting for their key   |
//! | inbox `matrix:<id>`  | an event handed to the bot and not yet handled |
//!
//! With encryption on (the default, `matrix.encryption`), matrix-sdk also
//! keeps its crypto and room state in SQLite under `<data_dir>/matrix/`,
//! encrypted with the store passphrase; [`e2ee`] owns that store and the
//! bot's cross-signed identity. Session and store go together: one is never
//! used without the other.
//!
//! **Login** ([`MatrixPlatform::connect`]): the saved session is reused, so a
//! restart does not create a new device (and transaction ids stay scoped to
//! the same device, which keeps retried sends idempotent); else the
//! configured access token; else a password login with the display name
//! [`DEVICE_NAME`]. With encryption the device is then made cross-signed
//! (see [`e2ee`]). Then the configured rooms are resolved (aliases to ids)
//! and joined. On the very first start one `/sync` fixes "now": the backlog
//! it returns is skipped, and its token is saved. Shutdown never logs out.
//!
//! **Receiving** ([`MatrixPlatform::run`]): a long-polling `/sync` loop that
//! resumes from the saved token, turns every new text message and reaction
//! in a joined room into an [`Incoming`], and saves the token only after all
//! of a response's events were handed over (at-least-once; the core
//! deduplicates by event id). Each event handed over is also kept in the
//! store (redacted, flushed before the token is saved) until the bot
//! reports it handled ([`Platform::handled`]); events still kept at start
//! are handed over first, so a crash between the saved token and the
//! bot's commit loses nothing. The SDK decrypts events during the sync and
//! commits the room keys to its store before we save the token, so a crash
//! replays the response and finds the keys. An event whose key has not
//! arrived (a UTD) is parked under `matrix:undecrypted` and delivered after
//! the sync that brings its key. When a response is `limited` (more
//! happened than one response carries, e.g. after downtime) the gap is
//! fetched with `/messages` and decrypted, so nothing is silently dropped.
//! Events from before the bot joined a room are not delivered. When the
//! homeserver goes away the loop retries with exponential backoff capped at
//! [`BACKOFF_MAX`].
//!
//! **Sending** ([`Platform::send`]): Markdown becomes a plain body plus
//! HTML, thread messages carry an `m.thread` relation (with the reply
//! fallback for clients without threads), mentions go into `m.mentions` and
//! into the text as pills. The outbox's `txn_id` is the Matrix transaction
//! id, so a retried send returns the first event instead of posting twice.
//! Sends are not retried inside the SDK: failures go straight back to the
//! outbox as a [`SendError`], which owns retrying. With encryption, sends go
//! through the SDK's `Room` (which encrypts in encrypted rooms); without, through the
//! raw client-server API, because an in-memory state store forgets rooms
//! that were quiet since the saved sync token.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use matrix_sdk::authentication::matrix::MatrixSession;
use matrix_sdk::config::{RequestConfig, SyncSettings, SyncToken};
use matrix_sdk::deserialized_responses::TimelineEvent;
use matrix_sdk::ruma::api::client::filter::{FilterDefinition, RoomEventFilter};
use matrix_sdk::ruma::api::client::message::{get_message_events, send_message_event};
use matrix_sdk::ruma::api::client::room::get_room_event;
use matrix_sdk::ruma::api::client::sync::sync_events::v3::Filter;
use matrix_sdk::ruma::api::error::{ErrorKind, RetryAfter};
use matrix_sdk::ruma::events::relation::Thread;
use matrix_sdk::ruma::events::room::member::MembershipState;
use matrix_sdk::ruma::events::room::message::sanitize::remove_plain_reply_fallback;
use matrix_sdk::ruma::events::room::message::{
    FormattedBody, MessageType, Relation, ReplacementMetadata, RoomMessageEventContent,
};
use matrix_sdk::ruma::events::{
    AnyStrippedStateEvent, AnySyncMessageLikeEvent, AnySyncStateEvent, AnySyncTimelineEvent,
    Mentions, SyncMessageLikeEvent, SyncStateEvent,
};
use matrix_sdk::ruma::serde::Raw;
use matrix_sdk::ruma::{
    EventId, OwnedRoomId, OwnedServerName, OwnedTransactionId, OwnedUserId, RoomAliasId, RoomId,
    RoomOrAliasId, UInt, UserId,
};
use matrix_sdk::sync::SyncResponse;
use matrix_sdk::{Client, HttpError, SessionMeta, SessionTokens};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::config::{E2eeConfig, MatrixConfig, Rooms};
use crate::message::{Incoming, IncomingKind, Outgoing};
use crate::platform::journal::{Journal, read_json};
use crate::platform::{BoxFuture, Platform, SendError};
use crate::store::Store;

mod e2ee;
pub use e2ee::{E2eeCheck, E2eeStatus, STORE_DIR, report as e2ee_report, store_dir};

/// The device display name of a password login, so the bot's device is
/// recognisable in the account's device list.
pub const DEVICE_NAME: &str = "caseroom";
/// Store key of the saved login.
pub const SESSION_KEY: &str = "matrix:session";
/// Store key of the saved sync token.
pub const SYNC_TOKEN_KEY: &str = "matrix:sync_token";
/// Store key of the encrypted events waiting for their room key.
pub const UTD_KEY: &str = "matrix:undecrypted";
/// Inbox keys of events handed to the bot and not yet handled start with
/// this (see [`Store::inbox_put`]).
const INBOX_PREFIX: &str = "matrix:";
/// How long an undecryptable event is retried before it is given up.
const UTD_KEEP: Duration = Duration::from_secs(24 * 3600);
/// Most undecryptable events kept; beyond that the oldest are given up.
const UTD_MAX: usize = 1000;

/// How long the homeserver may hold a `/sync` open when nothing happens.
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// Limit for ordinary requests (login, join, send, fetch). A long-polling
/// `/sync` gets this plus [`SYNC_TIMEOUT`].
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A send that takes longer is reported as transient; the outbox retries
/// it with the same transaction id, so nothing is posted twice.
const SEND_TIMEOUT: Duration = Duration::from_secs(20);
/// The whole of an encrypted send: claiming one-time keys, sharing the
/// room key, then the send itself.
const ENCRYPTED_SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// Fetching a reaction's target is best effort and must not stall the sync.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// First reconnect delay; doubled after every failed `/sync`.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Longest reconnect delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Events per room in one `/sync` response; beyond that the response is
/// `limited` and the rest is fetched with `/messages`.
const TIMELINE_LIMIT: u32 = 50;
/// Most events fetched to fill one room's gap after a long downtime; older
/// ones are dropped with a warning.
const GAP_MAX_EVENTS: usize = 2000;
/// The only timeline events the bot looks at. Our own joins are needed to
/// tell history from new events in a room joined since the last sync.
/// In encrypted rooms messages and reactions arrive as `m.room.encrypted`
/// (decrypted by the SDK), and `m.room.encryption` tells the SDK a room
/// became encrypted.
const TIMELINE_TYPES: [&str; 5] = [
    "m.room.message",
    "m.reaction",
    "m.room.member",
    "m.room.encrypted",
    "m.room.encryption",
];
/// How long to wait after a `429` / `M_LIMIT_EXCEEDED` that names no delay.
const DEFAULT_RATE_LIMIT_WAIT: Duration = Duration::from_secs(1);

/// The Matrix side of the bot: a logged-in client plus what it needs to
/// decide which invites to accept. Shared as `Arc<MatrixPlatform>` between
/// the sync loop ([`MatrixPlatform::run`]) and the outbox ([`Platform::send`]).
pub struct MatrixPlatform {
    /// matrix-sdk's client; a cheap handle, safe to use from several tasks.
    client: Client,
    /// Where the session and the sync token are persisted.
    store: Store,
    /// The bot's own user id: its events are never delivered.
    user_id: OwnedUserId,
    /// The configured rooms, resolved to ids: invites to them are accepted.
    rooms: BTreeSet<OwnedRoomId>,
    /// Users whose invites are accepted for any room.
    invite_from: BTreeSet<String>,
    /// The server-side id of our `/sync` filter (see [`sync_filter`]),
    /// uploaded once per start, which keeps the sync URL short.
    filter_id: String,
    /// The crypto store directory when encryption is on. Sends then go
    /// through the SDK's `Room`, which encrypts in encrypted rooms.
    crypto_dir: Option<PathBuf>,
    /// The recovery key created by this start (the account's first), until
    /// [`MatrixPlatform::take_recovery_key`] hands it out.
    recovery_key: Mutex<Option<String>>,
    /// Encrypted events whose room key has not arrived yet, retried after
    /// every sync and persisted under [`UTD_KEY`]. A `std::sync::Mutex`:
    /// held only to take or put the list, never across an `.await`.
    undecrypted: Mutex<Vec<Undecrypted>>,
    /// Events handed to the bot and not yet handled.
    journal: Journal,
    /// Events were kept since the sync token was last saved: the token
    /// waits for them to be on disk.
    kept_unflushed: std::sync::atomic::AtomicBool,
}

/// An encrypted event the bot could not decrypt yet.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Undecrypted {
    room_id: OwnedRoomId,
    event: Raw<AnySyncTimelineEvent>,
    /// When the bot first saw it (Unix seconds); given up after [`UTD_KEEP`].
    seen: u64,
}

impl std::fmt::Debug for MatrixPlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MatrixPlatform")
            .field("user_id", &self.user_id)
            .field("device_id", &self.client.device_id())
            .field("rooms", &self.rooms)
            .finish_non_exhaustive()
    }
}

impl MatrixPlatform {
    /// Logs in (restoring the saved session from the store if present, so a
    /// restart creates no new device; else with the access token; else with
    /// the password), resolves and joins the configured rooms, and on the
    /// very first start syncs once to skip the backlog. Returns the platform
    /// and `rooms` with every alias replaced by its room id.
    ///
    /// A configured room the bot cannot join (it is private and the bot has
    /// not been invited yet) is only a warning: the invite is accepted when
    /// it arrives. An alias that does not resolve is an error.
    pub async fn connect(
        config: &MatrixConfig,
        rooms: &Rooms,
        store: Store,
    ) -> anyhow::Result<(Arc<MatrixPlatform>, Rooms)> {
        let user_id = UserId::parse(config.user_id.as_str())
            .with_context(|| format!("matrix.user_id {:?} is not a user id", config.user_id))?;
        let crypto_dir = config.e2ee.as_ref().map(|_| e2ee::store_dir(store.dir()));
        let crypto = config
            .e2ee
            .as_ref()
            .zip(crypto_dir.as_deref())
            .map(|(config, dir)| Crypto { dir, config });
        let (client, fresh) = login(config, &user_id, &store, crypto).await?;
        let mut recovery_key = None;
        if let Some(c) = crypto {
            match e2ee::ensure_identity(&client, config, c.config).await {
                Ok(key) => recovery_key = key,
                Err(e) => {
                    if fresh {
                        e2ee::discard_new_device(client, c.dir).await;
                        store.put_state(SESSION_KEY, b"")?;
                    }
                    return Err(e);
                }
            }
            if let Some(key) = &recovery_key {
                e2ee::announce(key, c.config);
            }
            e2ee::write_status(&client, c.dir).await;
        }
        info!(
            user = %user_id,
            device = ?client.device_id(),
            homeserver = %config.homeserver,
            "logged in to Matrix"
        );

        let team = resolve_room(&client, "rooms.team", &rooms.team).await?;
        let mut intake = Vec::with_capacity(rooms.intake.len());
        for room in &rooms.intake {
            intake.push(resolve_room(&client, "rooms.intake", room).await?);
        }
        let oncall = resolve_room(&client, "rooms.oncall", &rooms.oncall).await?;

        let mut ids = BTreeSet::new();
        for (room_id, via) in std::iter::once(&team)
            .chain(&intake)
            .chain(std::iter::once(&oncall))
        {
            if ids.insert(room_id.clone()) {
                join(&client, room_id, via).await;
            }
        }

        let resolved = Rooms {
            team: team.0.to_string(),
            intake: intake.iter().map(|(id, _)| id.to_string()).collect(),
            oncall: oncall.0.to_string(),
        };
        let filter_id = client
            .get_or_upload_filter("caseroom", sync_filter())
            .await
            .context("uploading the Matrix sync filter")?;
        let platform = MatrixPlatform {
            client,
            journal: Journal::new(Some(store.clone()), INBOX_PREFIX, "Matrix event"),
            store,
            user_id,
            rooms: ids,
            invite_from: config.invite_from.iter().cloned().collect(),
            filter_id,
            crypto_dir,
            recovery_key: Mutex::new(recovery_key),
            undecrypted: Mutex::new(Vec::new()),
            kept_unflushed: std::sync::atomic::AtomicBool::new(false),
        };
        *platform.undecrypted.lock().unwrap() = platform.load_undecrypted();

        if platform.sync_token()?.is_none() {
            // First start: one sync tells us where "now" is. Its timelines
            // are history and are skipped; invites in it are still answered.
            let response = platform
                .client
                .sync_once(platform.sync_settings(SyncToken::NoToken))
                .await
                .context("first Matrix sync")?;
            platform.answer_invites(&response).await;
            platform.save_sync_token(&response.next_batch)?;
            info!("first start: skipped the backlog");
        }
        Ok((Arc::new(platform), resolved))
    }

    /// The bot's user id.
    pub fn user_id(&self) -> &str {
        self.user_id.as_str()
    }

    /// The recovery key this start created (only on the account's first
    /// start; it was printed once), handed out once.
    pub fn take_recovery_key(&self) -> Option<String> {
        self.recovery_key.lock().unwrap().take()
    }

    /// The bot's device id (stable across restarts with the same store).
    pub fn device_id(&self) -> Option<String> {
        self.client.device_id().map(|d| d.to_string())
    }

    /// Syncs until `shutdown` is cancelled (or `tx` is closed), sending every
    /// new message and reaction in a joined room as an [`Incoming`] on `tx`,
    /// in order. Resumes from the saved sync token, so events handled before
    /// a restart are not delivered again; saves the token after each
    /// response. When the homeserver is unreachable it retries with
    /// exponential backoff up to [`BACKOFF_MAX`].
    ///
    /// Fails only when it cannot go on: the access token was revoked, or the
    /// store cannot be written.
    pub async fn sync_loop(
        self: Arc<Self>,
        tx: mpsc::Sender<Incoming>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let mut since = self
            .sync_token()?
            .context("no sync token: connect() saves one")?;
        let mut backoff = Backoff::new();
        for incoming in self.kept() {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                r = tx.send(incoming) => if r.is_err() { return Ok(()) },
            }
        }
        info!("Matrix sync started");
        loop {
            let response = tokio::select! {
                () = shutdown.cancelled() => break,
                r = self.client.sync_once(self.sync_settings(SyncToken::Specific(since.clone()))) => r,
            };
            let response = match response {
                Ok(response) => response,
                Err(e) => {
                    if matches!(e.client_api_error_kind(), Some(ErrorKind::UnknownToken(_))) {
                        bail!("the homeserver rejected the bot's access token: {e}");
                    }
                    let delay = backoff.next();
                    warn!(error = %chain(&e), retry_in = ?delay, "Matrix sync failed");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(delay) => continue,
                    }
                }
            };
            if backoff.reset() {
                info!("Matrix sync recovered");
            }
            let handled = tokio::select! {
                () = shutdown.cancelled() => break,
                r = self.handle(&response, &since, &tx) => r,
            };
            if handled.is_err() {
                info!("the receiver of Matrix events is gone; stopping the sync");
                break;
            }
            // What was handed over is on disk before the token moves past it.
            if self
                .kept_unflushed
                .swap(false, std::sync::atomic::Ordering::AcqRel)
            {
                self.store.barrier().wait_async().await?;
            }
            self.save_sync_token(&response.next_batch)?;
            since = response.next_batch;
        }
        info!("Matrix sync stopped");
        Ok(())
    }

    /// Answers invites, then delivers the new events of every joined room.
    /// Fails only when `tx` is closed.
    async fn handle(
        &self,
        response: &SyncResponse,
        since: &str,
        tx: &mpsc::Sender<Incoming>,
    ) -> Result<(), mpsc::error::SendError<Incoming>> {
        self.answer_invites(response).await;
        // Keys that arrived in this response (to-device messages are
        // handled before the timelines) may open events parked earlier.
        let mut parked_changed = self.retry_undecrypted(tx).await?;
        for (room_id, update) in &response.rooms.joined {
            let timeline = &update.timeline;
            debug!(room = %room_id, events = timeline.events.len(), limited = timeline.limited, "sync: room update");
            let mut events: Vec<Raw<AnySyncTimelineEvent>> = Vec::new();
            let joined_here = timeline
                .events
                .iter()
                .any(|e| is_own_join(e.raw(), &self.user_id));
            if timeline.limited
                && !joined_here
                && let Some(prev_batch) = &timeline.prev_batch
            {
                events = self.fetch_gap(room_id, prev_batch, since).await;
            }
            events.extend(timeline.events.iter().map(TimelineEvent::raw).cloned());
            // In a room joined since the last sync, everything up to our own
            // join is history.
            let start = events
                .iter()
                .rposition(|raw| is_own_join(raw, &self.user_id))
                .map_or(0, |i| i + 1);
            for raw in &events[start..] {
                if is_encrypted(raw) {
                    // The SDK could not decrypt it: its key is late.
                    parked_changed |= self.park(room_id, raw);
                    continue;
                }
                if let Some(incoming) = self.incoming(room_id, raw).await {
                    debug!(room = %incoming.room, event = %incoming.event_id, "Matrix event");
                    self.hand_over(incoming, tx).await?;
                }
            }
        }
        if parked_changed {
            self.save_undecrypted();
        }
        Ok(())
    }

    /// Keeps an event that could not be decrypted for [`retry_undecrypted`].
    /// Returns whether it was added (the bot's own events are not).
    ///
    /// [`retry_undecrypted`]: MatrixPlatform::retry_undecrypted
    fn park(&self, room_id: &RoomId, raw: &Raw<AnySyncTimelineEvent>) -> bool {
        let sender = raw.get_field::<String>("sender").ok().flatten();
        if sender.as_deref() == Some(self.user_id.as_str()) {
            return false;
        }
        let event_id = raw.get_field::<String>("event_id").ok().flatten();
        info!(room = %room_id, event = ?event_id, "cannot decrypt an event yet; it is handled when its key arrives");
        let mut list = self.undecrypted.lock().unwrap();
        list.push(Undecrypted {
            room_id: room_id.to_owned(),
            event: raw.clone(),
            seen: unix_now(),
        });
        if list.len() > UTD_MAX {
            let dropped = list.len() - UTD_MAX;
            list.drain(..dropped);
            warn!(dropped, "too many undecryptable events; gave up the oldest");
        }
        true
    }

    /// Tries the parked encrypted events again and delivers those that now
    /// decrypt. Events waiting longer than [`UTD_KEEP`] are given up.
    /// Returns whether the list changed. Fails only when `tx` is closed (the
    /// persisted list is then untouched, so nothing is lost).
    async fn retry_undecrypted(
        &self,
        tx: &mpsc::Sender<Incoming>,
    ) -> Result<bool, mpsc::error::SendError<Incoming>> {
        let pending = self.undecrypted.lock().unwrap().clone();
        if pending.is_empty() {
            return Ok(false);
        }
        let now = unix_now();
        let mut still = Vec::new();
        for parked in pending.iter() {
            let raw = self.decrypt(&parked.room_id, parked.event.clone()).await;
            if is_encrypted(&raw) {
                if now.saturating_sub(parked.seen) < UTD_KEEP.as_secs() {
                    still.push(parked.clone());
                } else {
                    warn!(room = %parked.room_id, "giving up an event whose room key never arrived");
                }
                continue;
            }
            info!(room = %parked.room_id, "decrypted an event whose key arrived late");
            if let Some(incoming) = self.incoming(&parked.room_id, &raw).await {
                self.hand_over(incoming, tx).await?;
            }
        }
        let changed = still.len() != pending.len();
        *self.undecrypted.lock().unwrap() = still;
        Ok(changed)
    }

    /// Keeps `incoming` in the store until the bot has handled it, then
    /// hands it over. A store that cannot keep it is logged; the event still
    /// goes to the bot.
    async fn hand_over(
        &self,
        incoming: Incoming,
        tx: &mpsc::Sender<Incoming>,
    ) -> Result<(), mpsc::error::SendError<Incoming>> {
        match self.journal.keep(&incoming) {
            Ok(kept) => {
                self.journal
                    .translated(kept.map(|(key, _)| key), &incoming.event_id);
                self.kept_unflushed
                    .store(true, std::sync::atomic::Ordering::Release);
            }
            Err(e) => {
                error!(event = %incoming.event_id, "cannot keep a Matrix event until it is handled: {e}")
            }
        }
        tx.send(incoming).await
    }

    /// Events handed to the bot before a restart and not handled, oldest
    /// first. Earlier versions kept an event under its id with the time it
    /// arrived (`[micros, event]`): those are older than any kept since and
    /// come first, in arrival order.
    fn kept(&self) -> Vec<Incoming> {
        let mut kept = self.journal.kept(read_kept);
        kept.sort_by_key(|(_, (arrived, _))| *arrived);
        kept.into_iter()
            .map(|(key, (_, incoming))| {
                self.journal.translated(Some(key), &incoming.event_id);
                incoming
            })
            .collect()
    }

    /// The decrypted form of an encrypted event, or `raw` itself (when it
    /// is not encrypted or its key is still missing).
    async fn decrypt(
        &self,
        room_id: &RoomId,
        raw: Raw<AnySyncTimelineEvent>,
    ) -> Raw<AnySyncTimelineEvent> {
        if self.crypto_dir.is_none() || !is_encrypted(&raw) {
            return raw;
        }
        let Some(room) = self.client.get_room(room_id) else {
            return raw;
        };
        match room.decrypt_event(raw.cast_ref_unchecked(), None).await {
            Ok(event) => event.raw().clone(),
            Err(e) => {
                debug!(room = %room_id, error = %chain(&e), "cannot decrypt an event");
                raw
            }
        }
    }

    fn load_undecrypted(&self) -> Vec<Undecrypted> {
        match self.store.get_state(UTD_KEY) {
            Ok(Some(bytes)) if !bytes.is_empty() => serde_json::from_slice(&bytes)
                .inspect_err(
                    |e| warn!(error = %e, "ignoring an unreadable list of undecrypted events"),
                )
                .unwrap_or_default(),
            Ok(_) => Vec::new(),
            Err(e) => {
                warn!(error = %chain(&e), "cannot read the list of undecrypted events");
                Vec::new()
            }
        }
    }

    /// Persists the parked events before the sync token moves past them.
    fn save_undecrypted(&self) {
        let list = self.undecrypted.lock().unwrap().clone();
        let bytes = serde_json::to_vec(&list).unwrap_or_default();
        if let Err(e) = self.store.put_state(UTD_KEY, &bytes) {
            warn!(error = %chain(&e), "cannot save the list of undecrypted events");
        }
    }

    /// Turns a timeline event into an [`Incoming`], or `None` for anything
    /// the bot does not act on (its own events, edits, notices, media,
    /// membership, redacted or malformed events).
    async fn incoming(
        &self,
        room_id: &RoomId,
        raw: &Raw<AnySyncTimelineEvent>,
    ) -> Option<Incoming> {
        let event = match raw.deserialize() {
            Ok(event) => event,
            Err(e) => {
                debug!(room = %room_id, error = %chain(&e), "skipping an event that does not parse");
                return None;
            }
        };
        if event.sender() == self.user_id {
            return None;
        }
        let AnySyncTimelineEvent::MessageLike(event) = event else {
            return None;
        };
        let kind = match &event {
            AnySyncMessageLikeEvent::RoomMessage(SyncMessageLikeEvent::Original(ev)) => {
                let (text, thread_root) = message_text(&ev.content)?;
                IncomingKind::Message { text, thread_root }
            }
            AnySyncMessageLikeEvent::Reaction(SyncMessageLikeEvent::Original(ev)) => {
                let target = &ev.content.relates_to.event_id;
                let (target_text, target_sender) = self.fetch_target(room_id, target).await;
                IncomingKind::Reaction {
                    key: ev.content.relates_to.key.clone(),
                    target: target.to_string(),
                    target_text,
                    target_sender,
                }
            }
            _ => return None,
        };
        Some(Incoming {
            room: room_id.to_string(),
            sender: event.sender().to_string(),
            groups: Vec::new(),
            event_id: event.event_id().to_string(),
            kind,
            reply_handle: None,
        })
    }

    /// The text and sender of the event a reaction points at; best effort.
    async fn fetch_target(
        &self,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> (Option<String>, Option<String>) {
        let request = get_room_event::v3::Request::new(room_id.to_owned(), event_id.to_owned());
        let config = RequestConfig::new().disable_retry().timeout(FETCH_TIMEOUT);
        let event = match self.client.send(request).with_request_config(config).await {
            Ok(response) => response.event,
            Err(e) => {
                debug!(room = %room_id, event = %event_id, error = %chain(&e), "cannot fetch a reaction's target");
                return (None, None);
            }
        };
        let event = self.decrypt(room_id, event.cast_unchecked()).await;
        match event.deserialize() {
            Ok(AnySyncTimelineEvent::MessageLike(AnySyncMessageLikeEvent::RoomMessage(
                SyncMessageLikeEvent::Original(ev),
            ))) => {
                let relates = ev.content.relates_to.is_some();
                let body = ev.content.body();
                let text = if relates {
                    remove_plain_reply_fallback(body)
                } else {
                    body
                };
                (Some(text.to_owned()), Some(ev.sender.to_string()))
            }
            Ok(other) => (None, Some(other.sender().to_string())),
            Err(_) => (None, None),
        }
    }

    /// The events between the saved sync token and the start of a limited
    /// timeline, oldest first.
    async fn fetch_gap(
        &self,
        room_id: &RoomId,
        prev_batch: &str,
        since: &str,
    ) -> Vec<Raw<AnySyncTimelineEvent>> {
        let mut events = Vec::new();
        let mut from = prev_batch.to_owned();
        let mut filter = RoomEventFilter::default();
        filter.types = Some(TIMELINE_TYPES.map(String::from).to_vec());
        loop {
            let mut request = get_message_events::v3::Request::backward(room_id.to_owned());
            request.from = Some(from);
            request.to = Some(since.to_owned());
            request.limit = UInt::from(100u32);
            request.filter = filter.clone();
            let response = match self.client.send(request).await {
                Ok(response) => response,
                Err(e) => {
                    warn!(room = %room_id, error = %chain(&e), "cannot fetch missed events; some are skipped");
                    break;
                }
            };
            let done = response.chunk.is_empty() || response.end.is_none();
            events.extend(response.chunk.into_iter().map(Raw::cast_unchecked));
            if events.len() >= GAP_MAX_EVENTS {
                warn!(room = %room_id, kept = events.len(), "too many missed events; older ones are skipped");
                break;
            }
            match response.end {
                Some(end) if !done => from = end,
                _ => break,
            }
        }
        events.reverse();
        for raw in &mut events {
            if is_encrypted(raw) {
                *raw = self.decrypt(room_id, raw.clone()).await;
            }
        }
        if !events.is_empty() {
            info!(room = %room_id, events = events.len(), "fetched events missed while away");
        }
        events
    }

    /// Joins rooms the bot was invited to when the room is configured or
    /// the inviter is trusted (`matrix.invite_from`); ignores other invites.
    async fn answer_invites(&self, response: &SyncResponse) {
        for (room_id, invite) in &response.rooms.invited {
            let inviter =
                invite
                    .invite_state
                    .events
                    .iter()
                    .find_map(|raw| match raw.deserialize() {
                        Ok(AnyStrippedStateEvent::RoomMember(ev))
                            if ev.state_key == self.user_id =>
                        {
                            Some(ev.sender)
                        }
                        _ => None,
                    });
            let inviter_name = inviter.as_ref().map_or("unknown", |u| u.as_str());
            let configured = self.rooms.contains(room_id);
            let trusted = inviter
                .as_ref()
                .is_some_and(|u| self.invite_from.contains(u.as_str()));
            if !configured && !trusted {
                info!(room = %room_id, inviter = inviter_name, "ignoring an invite to an unconfigured room from an untrusted user");
                continue;
            }
            match self.client.join_room_by_id(room_id).await {
                Ok(_) => info!(room = %room_id, inviter = inviter_name, "accepted an invite"),
                Err(e) => warn!(room = %room_id, error = %chain(&e), "cannot accept an invite"),
            }
        }
    }

    /// `/sync` settings: long polling with our filter, from `token`.
    fn sync_settings(&self, token: SyncToken) -> SyncSettings {
        SyncSettings::new()
            .timeout(SYNC_TIMEOUT)
            .filter(Filter::FilterId(self.filter_id.clone()))
            .token(token)
    }

    fn sync_token(&self) -> anyhow::Result<Option<String>> {
        let token = self.store.get_state(SYNC_TOKEN_KEY)?;
        Ok(token
            .and_then(|t| String::from_utf8(t).ok())
            .filter(|t| !t.is_empty()))
    }

    fn save_sync_token(&self, token: &str) -> anyhow::Result<()> {
        self.store
            .put_state(SYNC_TOKEN_KEY, token.as_bytes())
            .context("saving the Matrix sync token")
    }

    /// Sends one message; see [`Platform::send`].
    async fn deliver(
        &self,
        msg: &Outgoing,
        thread_root: Option<&str>,
        txn_id: &str,
    ) -> Result<String, SendError> {
        let room_id = RoomId::parse(msg.room.as_str()).map_err(|e| {
            SendError::Permanent(format!("{:?} is not a Matrix room id: {e}", msg.room))
        })?;
        let mentions: Vec<OwnedUserId> = msg
            .mentions
            .iter()
            .filter_map(|u| match UserId::parse(u.as_str()) {
                Ok(u) => Some(u),
                Err(e) => {
                    warn!(user = %u, error = %chain(&e), "not mentioning an invalid Matrix user id");
                    None
                }
            })
            .collect();
        let mut content = render(&with_hint(msg), &mentions);
        // Always set: an empty `m.mentions` tells clients that names in the
        // text are not meant to notify anyone.
        content.mentions = Some(Mentions::with_user_ids(mentions));
        if let Some(root) = thread_root {
            let root = EventId::parse(root).map_err(|e| {
                SendError::Permanent(format!("{root:?} is not a Matrix event id: {e}"))
            })?;
            // `plain` = `is_falling_back: true` with `m.in_reply_to` the
            // root, so clients without threads show it as a reply.
            content.relates_to = Some(Relation::Thread(Thread::plain(root.clone(), root)));
        }
        self.send_content(&room_id, &content, txn_id).await
    }

    /// Edits the bot's message `target` in place (`m.replace` with
    /// `m.new_content`); see [`Platform::edit`]. Nobody is notified again.
    async fn replace(&self, msg: &Outgoing, target: &str, txn_id: &str) -> Result<(), SendError> {
        let room_id = RoomId::parse(msg.room.as_str()).map_err(|e| {
            SendError::Permanent(format!("{:?} is not a Matrix room id: {e}", msg.room))
        })?;
        let target = EventId::parse(target).map_err(|e| {
            SendError::Permanent(format!("{target:?} is not a Matrix event id: {e}"))
        })?;
        let mut content = render(&with_hint(msg), &[]);
        content.mentions = Some(Mentions::new());
        let content = content.make_replacement(ReplacementMetadata::new(target, None));
        self.send_content(&room_id, &content, txn_id)
            .await
            .map(|_| ())
    }

    /// Sends one `m.room.message` with our transaction id (idempotent).
    async fn send_content(
        &self,
        room_id: &RoomId,
        content: &RoomMessageEventContent,
        txn_id: &str,
    ) -> Result<String, SendError> {
        let txn_id: OwnedTransactionId = txn_id.into();
        if self.crypto_dir.is_some() {
            return self.send_through_room(room_id, content, txn_id).await;
        }
        let request = send_message_event::v3::Request::new(room_id.to_owned(), txn_id, content)
            .map_err(|e| SendError::Permanent(format!("cannot encode the message: {e}")))?;
        let config = RequestConfig::new().disable_retry().timeout(SEND_TIMEOUT);
        let response = self
            .client
            .send(request)
            .with_request_config(config)
            .await
            .map_err(|e| send_error(&e))?;
        debug!(room = %room_id, event = %response.event_id, "sent a Matrix message");
        Ok(response.event_id.to_string())
    }
}

impl MatrixPlatform {
    /// Sends through the SDK's `Room`, which encrypts in an encrypted room
    /// (sharing the room key with the members' cross-signed devices first)
    /// and sends plainly in a plain one. The outbox's `txn_id` keeps a
    /// retry idempotent: the homeserver returns the first event.
    async fn send_through_room(
        &self,
        room_id: &RoomId,
        content: &RoomMessageEventContent,
        txn_id: OwnedTransactionId,
    ) -> Result<String, SendError> {
        let room = self.client.get_room(room_id).ok_or_else(|| {
            SendError::Permanent(format!("the bot is not in the Matrix room {room_id}"))
        })?;
        let config = RequestConfig::new().disable_retry().timeout(SEND_TIMEOUT);
        let send = room
            .send(content.clone())
            .with_transaction_id(txn_id)
            .with_request_config(config);
        // Key sharing comes before the send itself and may need a few
        // requests; past this the outbox retries with the same txn id.
        let result = tokio::time::timeout(ENCRYPTED_SEND_TIMEOUT, send)
            .await
            .map_err(|_| SendError::Transient("the encrypted send timed out".to_owned()))?
            .map_err(|e| sdk_send_error(&e))?;
        let event_id = result.response.event_id;
        debug!(room = %room_id, event = %event_id, encrypted = result.encryption_info.is_some(), "sent a Matrix message");
        Ok(event_id.to_string())
    }
}

/// What a failed send through the SDK means for the outbox.
fn sdk_send_error(e: &matrix_sdk::Error) -> SendError {
    match e {
        matrix_sdk::Error::Http(http) => send_error(http),
        matrix_sdk::Error::WrongRoomState(_) => SendError::Permanent(chain(e)),
        // Crypto store, key sharing: retrying with the same txn id is safe.
        _ => SendError::Transient(chain(e)),
    }
}

/// Whether an event is still `m.room.encrypted` (not decrypted).
fn is_encrypted(raw: &Raw<AnySyncTimelineEvent>) -> bool {
    raw.get_field::<String>("type").ok().flatten().as_deref() == Some("m.room.encrypted")
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The message text with a line saying which reactions act on it: Matrix
/// has no buttons, so a reaction on the bot's message is the click.
fn with_hint(msg: &Outgoing) -> String {
    let hint = crate::message::reaction_hint(&msg.actions);
    if hint.is_empty() {
        msg.text.clone()
    } else {
        format!("{}\n{hint}", msg.text)
    }
}

impl MatrixPlatform {
    /// Removes someone's message (`m.room.redaction`); needs the bot to have
    /// the room's redact power level (usually 50).
    async fn redact(
        &self,
        room_id: &RoomId,
        target: &str,
        reason: &str,
        txn_id: &str,
    ) -> Result<String, SendError> {
        let event_id = EventId::parse(target).map_err(|e| {
            SendError::Permanent(format!("{target:?} is not a Matrix event id: {e}"))
        })?;
        let mut request = matrix_sdk::ruma::api::client::redact::redact_event::v3::Request::new(
            room_id.to_owned(),
            event_id,
            txn_id.into(),
        );
        request.reason = Some(reason.to_owned());
        let config = RequestConfig::new().disable_retry().timeout(SEND_TIMEOUT);
        let response = self
            .client
            .send(request)
            .with_request_config(config)
            .await
            .map_err(|e| send_error(&e))?;
        debug!(room = %room_id, redacted = target, "redacted a Matrix message");
        Ok(response.event_id.to_string())
    }
}

impl Platform for MatrixPlatform {
    fn name(&self) -> &'static str {
        "matrix"
    }

    fn send<'a>(
        &'a self,
        msg: &'a Outgoing,
        thread_root: Option<&'a str>,
        txn_id: &'a str,
    ) -> BoxFuture<'a, Result<String, SendError>> {
        Box::pin(self.deliver(msg, thread_root, txn_id))
    }

    fn edit<'a>(
        &'a self,
        msg: &'a Outgoing,
        target: &'a str,
        txn_id: &'a str,
    ) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(self.replace(msg, target, txn_id))
    }

    fn remove<'a>(
        &'a self,
        room: &'a str,
        target: &'a str,
        reason: &'a str,
        txn_id: &'a str,
    ) -> BoxFuture<'a, Result<String, SendError>> {
        Box::pin(async move {
            let room_id = RoomId::parse(room).map_err(|e| {
                SendError::Permanent(format!("{room:?} is not a Matrix room id: {e}"))
            })?;
            self.redact(&room_id, target, reason, txn_id).await
        })
    }

    fn run(
        self: Arc<Self>,
        tx: mpsc::Sender<Incoming>,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, anyhow::Result<()>> {
        Box::pin(self.sync_loop(tx, shutdown))
    }

    fn handled(&self, event_id: &str) {
        self.journal.handled(event_id);
    }
}

/// A kept event and when it arrived: `i64::MAX` for one kept as it is
/// (ordered by its key), the stored time for the `[micros, event]` form of
/// earlier versions.
fn read_kept(bytes: &[u8]) -> Option<(i64, Incoming)> {
    read_json::<Incoming>(bytes)
        .map(|i| (i64::MAX, i))
        .or_else(|| read_json::<(i64, Incoming)>(bytes))
}

/// Where the crypto store goes and the secrets guarding it; `None` when
/// encryption is off.
#[derive(Clone, Copy)]
struct Crypto<'a> {
    dir: &'a Path,
    config: &'a E2eeConfig,
}

/// A client for the configured homeserver with no server discovery: the
/// homeserver URL is used as given. Requests other than sends (which set
/// their own policy) get a timeout and a few quick retries. With
/// encryption, the client opens the encrypted SQLite store in `crypto.dir`.
async fn build_client(config: &MatrixConfig, crypto: Option<Crypto<'_>>) -> anyhow::Result<Client> {
    let requests = RequestConfig::new()
        .timeout(REQUEST_TIMEOUT)
        .retry_limit(3)
        .max_retry_time(Duration::from_secs(5));
    let mut builder = Client::builder()
        .homeserver_url(&config.homeserver)
        .respect_login_well_known(false)
        .request_config(requests)
        .user_agent(concat!("caseroom/", env!("CARGO_PKG_VERSION")));
    if let Some(c) = crypto {
        builder = e2ee::configure(builder, c.dir, c.config);
        return builder
            .build()
            .await
            .map_err(|e| anyhow::anyhow!(e2ee::open_error(c.dir, c.config, chain(&e))));
    }
    builder
        .build()
        .await
        .with_context(|| format!("building a Matrix client for {}", config.homeserver))
}

/// Logs in, preferring the saved session, and saves whatever session is
/// used. Returns the client and whether its device was created by this
/// start (then it is undone if its identity cannot be set up). See
/// [`MatrixPlatform::connect`].
///
/// With encryption the saved session and the crypto store go together: a
/// session without its store is refused (or, with a recovery key, replaced
/// by a new device that recovers the identity), and a store without a
/// session is refused rather than overwritten.
async fn login(
    config: &MatrixConfig,
    user_id: &UserId,
    store: &Store,
    crypto: Option<Crypto<'_>>,
) -> anyhow::Result<(Client, bool)> {
    let mut saved = load_session(store, user_id)?;
    let mut new_device_needed = false;
    if let Some(c) = crypto {
        match (&saved, e2ee::store_present(c.dir)) {
            (Some(session), false) => {
                if c.config.recovery_key.is_none() {
                    bail!(e2ee::missing_store_error(
                        c.dir,
                        session.meta.device_id.as_str()
                    ));
                }
                if config.password.is_none() {
                    bail!(
                        "the Matrix crypto store {} is missing; recovering needs a new device, which needs matrix.password_env",
                        c.dir.display()
                    );
                }
                warn!(
                    old_device = %session.meta.device_id,
                    "the Matrix crypto store is missing; logging in a new device and recovering the identity with the recovery key"
                );
                store.put_state(SESSION_KEY, b"")?;
                saved = None;
                new_device_needed = true;
            }
            (None, true) => bail!(
                "the Matrix crypto store {} exists but the data dir holds no session for it: restore the data dir it came with, or move the store away (and set matrix.recovery_key_env) to start with a new device",
                c.dir.display()
            ),
            _ => {}
        }
    }

    if let Some(token) = config.access_token.as_ref().filter(|_| !new_device_needed) {
        let fresh = saved.is_none();
        let session = match saved {
            Some(s) if s.tokens.access_token == token.expose() => s,
            _ => {
                // A new token: ask the server which device it belongs to.
                let probe = build_client(config, None).await?;
                let placeholder = MatrixSession {
                    meta: SessionMeta {
                        user_id: user_id.to_owned(),
                        device_id: "UNKNOWN".into(),
                    },
                    tokens: SessionTokens {
                        access_token: token.expose().to_owned(),
                        refresh_token: None,
                    },
                };
                probe.restore_session(placeholder.clone()).await?;
                let whoami = probe
                    .whoami()
                    .await
                    .with_context(|| format!("checking the access token from ${}", token.var))?;
                let device_id = whoami.device_id.with_context(|| {
                    format!("the access token from ${} has no device", token.var)
                })?;
                MatrixSession {
                    meta: SessionMeta {
                        user_id: whoami.user_id,
                        device_id,
                    },
                    tokens: placeholder.tokens,
                }
            }
        };
        let client = restore(config, crypto, user_id, session.clone()).await?;
        save_session(store, &session)?;
        return Ok((client, fresh));
    }

    if let Some(session) = saved {
        match restore(config, crypto, user_id, session).await {
            Ok(client) => return Ok((client, false)),
            Err(e) if is_unknown_token(&e) && crypto.is_none() => {
                warn!("the saved Matrix session was rejected; logging in again");
            }
            Err(e) if is_unknown_token(&e) => {
                return Err(e.context(
                    "the homeserver rejected the saved Matrix session (the device was logged out?); its crypto store cannot serve a new device: move the data dir's matrix/ away and set matrix.recovery_key_env to recover with a new device",
                ));
            }
            Err(e) => return Err(e.context("restoring the saved Matrix session")),
        }
    }

    let Some(password) = &config.password else {
        bail!("matrix: no saved session, and neither an access token nor a password is configured");
    };
    let client = build_client(config, crypto).await?;
    let logged_in = client
        .matrix_auth()
        .login_username(user_id, password.expose())
        .initial_device_display_name(DEVICE_NAME)
        .send()
        .await
        .with_context(|| format!("password login as {user_id}"));
    if let Err(e) = logged_in {
        if let Some(c) = crypto {
            // The store was created by this attempt and holds no account.
            drop(client);
            let _ = std::fs::remove_dir_all(c.dir);
        }
        return Err(e);
    }
    let session = client
        .matrix_auth()
        .session()
        .context("no session after the login")?;
    save_session(store, &session)?;
    info!(device = %session.meta.device_id, "logged in with the password; new device saved");
    Ok((client, true))
}

/// A client using `session`, checked with `/whoami`.
async fn restore(
    config: &MatrixConfig,
    crypto: Option<Crypto<'_>>,
    user_id: &UserId,
    session: MatrixSession,
) -> anyhow::Result<Client> {
    let client = build_client(config, crypto).await?;
    client.restore_session(session).await?;
    let whoami = client.whoami().await?;
    if whoami.user_id != user_id {
        bail!(
            "the Matrix access token belongs to {}, not to matrix.user_id {user_id}",
            whoami.user_id
        );
    }
    Ok(client)
}

fn is_unknown_token(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        let kind = if let Some(e) = cause.downcast_ref::<HttpError>() {
            e.client_api_error_kind()
        } else if let Some(e) = cause.downcast_ref::<matrix_sdk::Error>() {
            e.client_api_error_kind()
        } else {
            None
        };
        matches!(kind, Some(ErrorKind::UnknownToken(_)))
    })
}

/// The saved session, if it is for `user_id`. A session for another user
/// (the config changed accounts) is dropped together with its sync token.
fn load_session(store: &Store, user_id: &UserId) -> anyhow::Result<Option<MatrixSession>> {
    let Some(bytes) = store.get_state(SESSION_KEY)? else {
        return Ok(None);
    };
    if bytes.is_empty() {
        return Ok(None);
    }
    let session: MatrixSession = match serde_json::from_slice(&bytes) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %chain(&e), "ignoring an unreadable saved Matrix session");
            return Ok(None);
        }
    };
    if session.meta.user_id != user_id {
        warn!(saved = %session.meta.user_id, configured = %user_id, "the saved Matrix session is for another user; starting afresh");
        store.put_state(SESSION_KEY, b"")?;
        store.put_state(SYNC_TOKEN_KEY, b"")?;
        return Ok(None);
    }
    Ok(Some(session))
}

fn save_session(store: &Store, session: &MatrixSession) -> anyhow::Result<()> {
    let bytes = serde_json::to_vec(session)?;
    store
        .put_state(SESSION_KEY, &bytes)
        .context("saving the Matrix session")
}

/// A configured room as a room id (resolving an alias) plus the servers to
/// join it through.
async fn resolve_room(
    client: &Client,
    key: &str,
    room: &str,
) -> anyhow::Result<(OwnedRoomId, Vec<OwnedServerName>)> {
    if room.starts_with('!') {
        let id = RoomId::parse(room).with_context(|| format!("{key} = {room:?}"))?;
        return Ok((id, Vec::new()));
    }
    if room.starts_with('#') {
        let alias = RoomAliasId::parse(room).with_context(|| format!("{key} = {room:?}"))?;
        let response = client
            .resolve_room_alias(&alias)
            .await
            .with_context(|| format!("resolving the Matrix room alias {key} = {room:?}"))?;
        return Ok((response.room_id, response.servers));
    }
    bail!("{key} = {room:?} is neither a Matrix room id (!id:server) nor an alias (#name:server)")
}

/// Joins a room (a no-op when already joined); failure is only a warning.
async fn join(client: &Client, room_id: &RoomId, via: &[OwnedServerName]) {
    let target: &RoomOrAliasId = room_id.into();
    match client.join_room_by_id_or_alias(target, via).await {
        Ok(_) => debug!(room = %room_id, "joined"),
        Err(e) => warn!(
            room = %room_id,
            error = %chain(&e),
            "cannot join a configured room; an invite to it will be accepted"
        ),
    }
}

/// What `/sync` returns: only the event types the bot reads, at most
/// [`TIMELINE_LIMIT`] per room, no presence or typing notifications.
fn sync_filter() -> FilterDefinition {
    let mut filter = FilterDefinition::with_lazy_loading();
    filter.room.timeline.limit = Some(UInt::from(TIMELINE_LIMIT));
    filter.room.timeline.types = Some(TIMELINE_TYPES.map(String::from).to_vec());
    filter.room.ephemeral.not_types = vec!["*".to_owned()];
    filter.presence.not_types = vec!["*".to_owned()];
    filter
}

/// An error with its causes, e.g. "error sending request: client error
/// (Connect): tcp connect error: Connection refused", for logs.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// The text of a human's message (`m.text` or `m.emote`) without a reply
/// fallback, and its thread root. `None` for edits, notices and media.
fn message_text(content: &RoomMessageEventContent) -> Option<(String, Option<String>)> {
    let body = match &content.msgtype {
        MessageType::Text(t) => &t.body,
        MessageType::Emote(e) => &e.body,
        _ => return None,
    };
    let (body, thread_root) = match &content.relates_to {
        None => (body.as_str(), None),
        Some(Relation::Replacement(_)) => return None,
        Some(Relation::Thread(thread)) => (
            remove_plain_reply_fallback(body),
            Some(thread.event_id.to_string()),
        ),
        Some(_) => (remove_plain_reply_fallback(body), None),
    };
    Some((body.to_owned(), thread_root))
}

/// Whether `raw` is the bot's own join (not a profile change while joined).
fn is_own_join(raw: &Raw<AnySyncTimelineEvent>, user_id: &UserId) -> bool {
    let Ok(AnySyncTimelineEvent::State(AnySyncStateEvent::RoomMember(SyncStateEvent::Original(
        ev,
    )))) = raw.deserialize()
    else {
        return false;
    };
    ev.state_key == user_id
        && ev.content.membership == MembershipState::Join
        && ev.unsigned.prev_content.map(|c| c.membership) != Some(MembershipState::Join)
}

/// Markdown as a plain body plus HTML, with every mentioned user shown as
/// a pill (prepended when the text does not name them).
fn render(markdown: &str, mentions: &[OwnedUserId]) -> RoomMessageEventContent {
    let html = FormattedBody::markdown(markdown).map(|f| f.body);
    if mentions.is_empty() {
        return match html {
            Some(html) => RoomMessageEventContent::text_html(markdown, html),
            None => RoomMessageEventContent::text_plain(markdown),
        };
    }
    let mut html = html.unwrap_or_else(|| escape_html(markdown).replace('\n', "<br>\n"));
    let mut body_prefix = Vec::new();
    let mut html_prefix = Vec::new();
    for user in mentions {
        let pill = format!("<a href=\"https://matrix.to/#/{user}\">{user}</a>");
        if !markdown.contains(user.as_str()) {
            body_prefix.push(user.to_string());
            html_prefix.push(pill);
        } else if !html.contains(&format!("matrix.to/#/{user}")) {
            html = html.replace(user.as_str(), &pill);
        }
    }
    let (body, html) = if body_prefix.is_empty() {
        (markdown.to_owned(), html)
    } else {
        (
            format!("{}: {markdown}", body_prefix.join(" ")),
            format!("{}: {html}", html_prefix.join(" ")),
        )
    };
    RoomMessageEventContent::text_html(body, html)
}

fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// What a failed send means for the outbox.
fn send_error(e: &HttpError) -> SendError {
    if let HttpError::Cached(inner) = e {
        return send_error(inner);
    }
    if let Some(api) = e.as_client_api_error() {
        if let Some(ErrorKind::LimitExceeded(data)) = api.error_kind() {
            let wait = match &data.retry_after {
                Some(RetryAfter::Delay(d)) => *d,
                Some(RetryAfter::DateTime(t)) => t
                    .duration_since(SystemTime::now())
                    .unwrap_or(Duration::ZERO),
                None => DEFAULT_RATE_LIMIT_WAIT,
            };
            return SendError::RateLimited(wait);
        }
        let status = api.status_code;
        return if status.as_u16() == 429 {
            SendError::RateLimited(DEFAULT_RATE_LIMIT_WAIT)
        } else if status.is_server_error() || status.as_u16() == 408 {
            SendError::Transient(format!("homeserver error {status}: {e}"))
        } else if status.as_u16() == 401 {
            // Not the message's fault: it can go out once the bot logs in
            // again, so keep it.
            SendError::Transient(format!("access token rejected: {e}"))
        } else {
            SendError::Permanent(format!("{status}: {e}"))
        };
    }
    match e {
        HttpError::IntoHttp(_) => SendError::Permanent(e.to_string()),
        // Network errors, timeouts, unreadable responses: the same txn id
        // makes a retry safe.
        _ => SendError::Transient(e.to_string()),
    }
}

/// Reconnect delays: 1 s, 2 s, 4 s ... capped at [`BACKOFF_MAX`].
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff { next: BACKOFF_MIN }
    }

    /// The delay before the next attempt.
    fn next(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        delay
    }

    /// Back to the shortest delay; true if there had been failures.
    fn reset(&mut self) -> bool {
        std::mem::replace(&mut self.next, BACKOFF_MIN) != BACKOFF_MIN
    }
}

#[cfg(test)]
mod tests {
    use matrix_sdk::ruma::events::relation::{InReplyTo, Reply};

    use super::*;

    #[test]
    fn kept_events_of_both_forms_are_read_older_form_first() {
        let event = |id: &str| Incoming {
            room: "!r:test".into(),
            sender: "@a:test".into(),
            groups: Vec::new(),
            event_id: id.into(),
            kind: IncomingKind::Message {
                text: "hi".into(),
                thread_root: None,
            },
            reply_handle: None,
        };
        let now = serde_json::to_vec(&event("$new")).unwrap();
        let old = serde_json::to_vec(&(17i64, event("$old"))).unwrap();
        let mut read: Vec<_> = [now, old].iter().map(|b| read_kept(b).unwrap()).collect();
        read.sort_by_key(|(arrived, _)| *arrived);
        let ids: Vec<_> = read.iter().map(|(_, i)| i.event_id.as_str()).collect();
        assert_eq!(ids, ["$old", "$new"]);
        assert!(read_kept(b"[1,2]").is_none());
    }

    fn user(s: &str) -> OwnedUserId {
        UserId::parse(s).unwrap()
    }

    fn json(content: &RoomMessageEventContent) -> serde_json::Value {
        serde_json::to_value(content).unwrap()
    }

    #[test]
    fn plain_text_has_no_html() {
        let v = json(&render("hello", &[]));
        assert_eq!(v["body"], "hello");
        assert!(v.get("formatted_body").is_none());
    }

    #[test]
    fn markdown_becomes_html() {
        let v = json(&render("**P1** case", &[]));
        assert_eq!(v["body"], "**P1** case");
        assert_eq!(v["format"], "org.matrix.custom.html");
        assert!(
            v["formatted_body"]
                .as_str()
                .unwrap()
                .contains("<strong>P1</strong>")
        );
    }

    #[test]
    fn mention_not_in_text_is_prepended_as_a_pill() {
        let v = json(&render("please check A & B", &[user("@alice:localhost")]));
        assert_eq!(v["body"], "@alice:localhost: please check A & B");
        assert_eq!(
            v["formatted_body"],
            "<a href=\"https://matrix.to/#/@alice:localhost\">@alice:localhost</a>: please check A &amp; B"
        );
    }

    #[test]
    fn mention_in_text_becomes_a_pill_in_place() {
        let v = json(&render(
            "over to @bob:localhost now",
            &[user("@bob:localhost")],
        ));
        assert_eq!(v["body"], "over to @bob:localhost now");
        assert_eq!(
            v["formatted_body"],
            "over to <a href=\"https://matrix.to/#/@bob:localhost\">@bob:localhost</a> now"
        );
    }

    #[test]
    fn reply_fallback_is_stripped_and_edits_are_ignored() {
        let mut content = RoomMessageEventContent::text_plain("> <@a:localhost> old\n\n!claim");
        content.relates_to = Some(Relation::Reply(Reply::new(InReplyTo::new(
            EventId::parse("$x:localhost").unwrap(),
        ))));
        assert_eq!(message_text(&content), Some(("!claim".to_owned(), None)));

        let notice = RoomMessageEventContent::notice_plain("bot says");
        assert_eq!(message_text(&notice), None);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let mut b = Backoff::new();
        let delays: Vec<_> = (0..7).map(|_| b.next().as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
        assert!(b.reset());
        assert!(!b.reset());
    }

    /// A Matrix error response as the SDK reports it.
    fn api_error(status: u16, kind: ErrorKind) -> HttpError {
        use matrix_sdk::ruma::api::client::uiaa::UiaaResponse;
        use matrix_sdk::ruma::api::error::{
            Error, ErrorBody, FromHttpResponseError, StandardErrorBody,
        };
        use matrix_sdk::ruma::exports::http::StatusCode;
        let body = ErrorBody::Standard(StandardErrorBody::new(kind, "test".to_owned()));
        let error = Error::new(StatusCode::from_u16(status).unwrap(), body);
        HttpError::Api(Box::new(FromHttpResponseError::Server(
            UiaaResponse::MatrixError(error),
        )))
    }

    #[test]
    fn send_errors_map_to_what_the_outbox_does() {
        use matrix_sdk::ruma::api::error::LimitExceededErrorData;
        let mut limit = LimitExceededErrorData::new();
        limit.retry_after = Some(RetryAfter::Delay(Duration::from_millis(2500)));
        assert_eq!(
            send_error(&api_error(429, ErrorKind::LimitExceeded(limit))),
            SendError::RateLimited(Duration::from_millis(2500))
        );
        assert_eq!(
            send_error(&api_error(
                429,
                ErrorKind::LimitExceeded(LimitExceededErrorData::new())
            )),
            SendError::RateLimited(DEFAULT_RATE_LIMIT_WAIT)
        );
        assert!(matches!(
            send_error(&api_error(502, ErrorKind::Unknown)),
            SendError::Transient(_)
        ));
        assert!(matches!(
            send_error(&api_error(403, ErrorKind::Forbidden)),
            SendError::Permanent(_)
        ));
        assert!(matches!(
            send_error(&api_error(404, ErrorKind::NotFound)),
            SendError::Permanent(_)
        ));
    }
}
