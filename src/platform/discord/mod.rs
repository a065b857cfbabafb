//! The Discord adapter: the only module that imports serenity.
//!
//! | file          | what it does                                              |
//! |---------------|-----------------------------------------------------------|
//! | `mod.rs`      | [`DiscordPlatform`]: connect, send / edit / remove, threads |
//! | `gateway.rs`  | serenity's client and event handler (acks, queueing)       |
//! | `events.rs`   | serenity models (messages, reactions, interactions) → [`Incoming`] |
//! | `render.rs`   | [`Outgoing`] → message bodies (embeds, buttons, mentions), commands |
//! | `rest.rs`     | the outbox's REST calls, reading 429s' `Retry-After`       |
//!
//! **Cases**: a card is a message (an embed with buttons) in the team
//! channel; the case's thread is started from it, so the thread's id is the
//! card's id and the core's `(room, thread root)` maps to Discord with no
//! extra state. A message for a thread whose root has no thread yet starts
//! one first.
//!
//! **Receiving** ([`Platform::run`]): serenity's gateway client (one
//! shard) queues events; one translator task turns them into [`Incoming`],
//! working out whether a channel is a thread (and its parent) and fetching
//! a 🎫-reacted message's text. Interactions are deferred at once (3 s
//! limit) and the core's answer edits the deferred response
//! ([`Incoming::reply_handle`]); lead commands and refusals of button
//! presses are ephemeral.
//!
//! **Sending**: every REST call reads Discord's answer itself: a 429 maps
//! to [`SendError::RateLimited`] with its `Retry-After` for that channel, or
//! for every channel when it is the global limit. Posts carry a nonce
//! derived from the outbox's transaction id with `enforce_nonce`, so a
//! retried post is not posted twice. A pasted card number is deleted when
//! the bot has Manage Messages; otherwise the leads are asked to.

mod events;
mod gateway;
pub mod render;
mod rest;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use reqwest::Method;
use serenity::all::{
    ApplicationId, ChannelId, ClientBuilder, CreateAllowedMentions, CreateMessage, CreateThread,
    GuildId, HttpBuilder, Interaction, Message, MessageId,
};
use serenity::http::Http;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::{Config, DISCORD_API, DiscordConfig};
use crate::message::{Incoming, IncomingKind, Outgoing, same_reaction};
use crate::platform::{BoxFuture, Platform, SendError};
use crate::store::Store;

use crate::platform::journal::Journal;
use events::{Answer, Me, Place};
use gateway::{Inbound, Queued};
use rest::{Rest, RestError, code};

pub use gateway::intents;

/// Limit for the calls made while connecting.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Events queued by the gateway handler, waiting for translation.
const INBOUND_QUEUE: usize = 1024;
/// A case thread stays open a week without activity (Discord's maximum).
const THREAD_ARCHIVE_MINUTES: u16 = 10080;
/// The store key under which the registered command set's hash is kept.
const COMMANDS_STATE: &str = "discord:commands";

/// caseroom in a Discord server. Shared as `Arc<DiscordPlatform>` by the
/// gateway ([`Platform::run`]) and the outbox.
pub struct DiscordPlatform {
    config: DiscordConfig,
    /// The outbox's REST client.
    rest: Rest,
    /// The bot's own user id (from `GET /users/@me`): its events are
    /// ignored.
    bot_user: u64,
    /// People the renderer writes as mentions (everyone in a role).
    known_users: BTreeSet<String>,
    /// Leads, asked to delete a message the bot cannot.
    leads: Vec<String>,
    /// The configured channels (never threads).
    rooms: BTreeSet<String>,
    /// The reaction the core escalates on (🎫).
    escalate_key: String,
    /// The typed-command prefix slash commands are rewritten to.
    prefix: String,
    /// Playbook ids for `/use` autocomplete, replaced when the playbooks
    /// are reloaded ([`Platform::playbooks_changed`]).
    playbooks: std::sync::RwLock<Vec<String>>,
    /// Known threads: thread id → parent channel id. A `std::sync::Mutex`:
    /// never held across an await.
    threads: Mutex<HashMap<String, String>>,
    /// Channels known not to be threads.
    channels: Mutex<HashSet<String>>,
    /// Gateway events kept from receipt until the bot has handled them
    /// (messages, reactions, commands and clicks; see [`Journal`]): the
    /// gateway does not send them again after a crash, and an interaction
    /// is acknowledged before the bot works on it.
    journal: Journal,
    /// Interaction tokens whose deferred response has been edited: later
    /// answers are follow-ups.
    answered: Mutex<HashSet<String>>,
    /// Until when the global rate limit holds: every send waits.
    global_until: Mutex<Option<Instant>>,
    /// Gateway milestones (`ready`, `resumed`), for tests and logs.
    gateway_log: Mutex<Vec<&'static str>>,
}

impl std::fmt::Debug for DiscordPlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscordPlatform")
            .field("bot_user", &self.bot_user)
            .field("api_base_url", &self.config.api_base_url)
            .finish_non_exhaustive()
    }
}

/// serenity's HTTP client for `dc`. Against discord.com its ratelimiter
/// is on; against another base URL (a loopback fake) the ratelimiter is
/// off, because serenity applies the base URL only then.
pub fn http(dc: &DiscordConfig) -> Http {
    let mut b =
        HttpBuilder::new(dc.token.expose()).default_allowed_mentions(CreateAllowedMentions::new());
    if dc.application_id > 0 {
        b = b.application_id(ApplicationId::new(dc.application_id));
    }
    if dc.api_base_url != DISCORD_API {
        b = b.proxy(dc.api_base_url.clone()).ratelimiter_disabled(true);
    }
    b.build()
}

impl DiscordPlatform {
    /// Checks the token (`GET /users/@me`, which also gives the bot's
    /// id) and registers the application commands if the set changed
    /// since the last registration.
    pub async fn connect(
        dc: &DiscordConfig,
        config: &Config,
        store: &Store,
    ) -> anyhow::Result<Arc<DiscordPlatform>> {
        let http = http(dc);
        let me = tokio::time::timeout(CONNECT_TIMEOUT, http.get_current_user())
            .await
            .context("GET /users/@me timed out")?
            .map_err(|e| anyhow::anyhow!("GET /users/@me failed (is the bot token right?): {e}"))?;
        info!(bot_user = %me.id, name = %me.name, "connected to Discord");
        let playbooks: Vec<String> = crate::playbook::load_dir(&config.suggest.playbooks_dir)
            .map(|set| set.ids().map(str::to_owned).collect())
            .unwrap_or_default();
        let commands = render::commands();
        let hash = render::commands_hash(&commands);
        let stored = store.get_state(COMMANDS_STATE)?;
        if stored.as_deref() != Some(hash.as_bytes()) {
            tokio::time::timeout(
                CONNECT_TIMEOUT,
                GuildId::new(dc.guild_id).set_commands(&http, commands),
            )
            .await
            .context("registering commands timed out")?
            .context("registering the application commands")?;
            store.put_state(COMMANDS_STATE, hash.as_bytes())?;
            info!("application commands registered");
        } else {
            debug!("application commands unchanged");
        }
        let roles = &config.roles;
        let known_users = roles
            .agent
            .iter()
            .chain(&roles.lead)
            .chain(&roles.oncall)
            .chain(&roles.admin)
            .filter(|u| render::snowflake(u).is_some())
            .cloned()
            .collect();
        let rooms = std::iter::once(&config.rooms.team)
            .chain(&config.rooms.intake)
            .chain(std::iter::once(&config.rooms.oncall))
            .cloned()
            .collect();
        Ok(Arc::new(DiscordPlatform {
            config: dc.clone(),
            rest: Rest::new(&dc.api_base_url, dc.token.expose())?,
            bot_user: me.id.get(),
            known_users,
            leads: roles.lead.iter().cloned().collect(),
            rooms,
            escalate_key: config.escalate_reaction.clone(),
            prefix: config.command_prefix.clone(),
            playbooks: std::sync::RwLock::new(playbooks),
            journal: Journal::new(Some(store.clone()), "discord:", "Discord event"),
            threads: Mutex::new(HashMap::new()),
            channels: Mutex::new(HashSet::new()),
            answered: Mutex::new(HashSet::new()),
            global_until: Mutex::new(None),
            gateway_log: Mutex::new(Vec::new()),
        }))
    }

    /// The bot's own user id.
    pub fn bot_user(&self) -> u64 {
        self.bot_user
    }

    /// Gateway milestones seen so far (`ready`, `resumed`).
    pub fn gateway_log(&self) -> Vec<&'static str> {
        lock(&self.gateway_log).clone()
    }

    fn gateway_event(&self, what: &'static str) {
        lock(&self.gateway_log).push(what);
    }

    fn learn_thread(&self, thread: &str, parent: &str) {
        lock(&self.threads).insert(thread.to_owned(), parent.to_owned());
    }

    /// Answers a deferred command with "Done" if the core has not answered
    /// it within [`gateway::ANSWER_FALLBACK`] (its result went elsewhere,
    /// e.g. the "Opened C-3" line in the intake thread).
    fn watch_answer(self: &Arc<Self>, token: String) {
        // Weak: a stopped adapter (and the store its journal holds) is not
        // kept alive for the wait.
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(gateway::ANSWER_FALLBACK).await;
            let Some(me) = weak.upgrade() else { return };
            if !lock(&me.answered).insert(token.clone()) {
                return;
            }
            let body =
                serde_json::json!({"content": "✅ Done.", "allowed_mentions": {"parse": []}});
            let path = format!(
                "/webhooks/{}/{token}/messages/@original",
                me.config.application_id
            );
            if let Err(e) = me.rest.call(Method::PATCH, &path, Some(&body), None).await {
                debug!("fallback answer failed: {:?}", e.send);
            }
        });
    }

    /// A failed call, remembering a global rate limit.
    fn failed(&self, e: RestError) -> SendError {
        if let (true, SendError::RateLimited(wait)) = (e.global, &e.send) {
            warn!(?wait, "Discord's global rate limit: every channel waits");
            *lock(&self.global_until) = Some(Instant::now() + *wait);
        }
        e.send
    }

    /// Waits out nothing, but refuses while the global limit holds.
    fn check_global(&self) -> Result<(), SendError> {
        let mut g = lock(&self.global_until);
        match *g {
            Some(until) if until > Instant::now() => {
                Err(SendError::RateLimited(until - Instant::now()))
            }
            Some(_) => {
                *g = None;
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Posts `msg` (every chunk); returns the first message's id.
    async fn post(
        &self,
        msg: &Outgoing,
        thread_root: Option<&str>,
        txn_id: &str,
    ) -> Result<String, SendError> {
        self.check_global()?;
        if let Some((answer, token)) = msg.reply_handle.as_deref().and_then(Answer::parse) {
            let for_presser = answer != Answer::Click || msg.private_to.is_some();
            if for_presser {
                match self.answer(answer, token, msg).await {
                    Ok(id) => return Ok(id),
                    Err(e)
                        if matches!(e.code, code::UNKNOWN_WEBHOOK | code::UNKNOWN_INTERACTION)
                            && answer == Answer::Public =>
                    {
                        // The token expired (15 min): post in the channel.
                        info!("interaction token expired; posting the answer in the channel");
                    }
                    Err(e) => return Err(self.failed(e)),
                }
            }
        }
        let channel = match thread_root {
            Some(root) => self.thread_for(&msg.room, root, msg).await?,
            None => msg.room.clone(),
        };
        let mut first: Option<String> = None;
        for body in render::create(msg, &self.known_users, txn_id) {
            let m: Message = self
                .rest
                .call_as(
                    Method::POST,
                    &format!("/channels/{channel}/messages"),
                    Some(&body),
                )
                .await
                .map_err(|e| self.failed(e))?;
            first.get_or_insert(m.id.get().to_string());
        }
        let id = first.unwrap_or_default();
        debug!(channel, id, what = %msg.what, "posted");
        Ok(id)
    }

    /// Answers an interaction: the first answer edits the deferred
    /// response, later ones are follow-ups; ephemeral for private commands
    /// and refusals of presses.
    async fn answer(
        &self,
        answer: Answer,
        token: &str,
        msg: &Outgoing,
    ) -> Result<String, RestError> {
        let app = self.config.application_id;
        let ephemeral = answer != Answer::Public || msg.private_to.is_some();
        let first = answer != Answer::Click && lock(&self.answered).insert(token.to_owned());
        let body = render::interaction_answer(msg, &self.known_users, ephemeral);
        let m: Message = if first {
            let r = self
                .rest
                .call_as(
                    Method::PATCH,
                    &format!("/webhooks/{app}/{token}/messages/@original"),
                    Some(&body),
                )
                .await;
            if r.is_err() {
                lock(&self.answered).remove(token);
            }
            r?
        } else {
            self.rest
                .call_as(
                    Method::POST,
                    &format!("/webhooks/{app}/{token}"),
                    Some(&body),
                )
                .await?
        };
        Ok(format!("interaction:{}", m.id))
    }

    /// The channel to post in for thread `root` of `room`: the thread
    /// started from message `root`, started now if it does not exist yet.
    async fn thread_for(
        &self,
        room: &str,
        root: &str,
        msg: &Outgoing,
    ) -> Result<String, SendError> {
        if lock(&self.threads).contains_key(root) {
            return Ok(root.to_owned());
        }
        let name = match msg.case {
            Some(case) => format!("{case}"),
            None => "caseroom".to_owned(),
        };
        let body = serde_json::to_value(
            CreateThread::new(name).auto_archive_duration(THREAD_ARCHIVE_MINUTES.into()),
        )
        .unwrap_or_default();
        match self
            .rest
            .call(
                Method::POST,
                &format!("/channels/{room}/messages/{root}/threads"),
                Some(&body),
                None,
            )
            .await
        {
            Ok(_) => {
                debug!(room, root, "thread started");
            }
            Err(e) if e.code == code::THREAD_EXISTS => {}
            Err(e) if matches!(e.send, SendError::Permanent(_)) => {
                // Not a message we can thread (gone, or itself in a thread):
                // post in the channel instead of losing the message.
                warn!(room, root, "cannot start a thread here: {:?}", e.send);
                return Ok(room.to_owned());
            }
            Err(e) => return Err(self.failed(e)),
        }
        self.learn_thread(root, room);
        Ok(root.to_owned())
    }

    /// Deletes a message that held a card number or password; without
    /// Manage Messages, asks the leads (replying to it) to delete it.
    async fn remove_message(
        &self,
        room: &str,
        target: &str,
        reason: &str,
    ) -> Result<String, SendError> {
        self.check_global()?;
        let (channel, id) = events::parse_message_target(target);
        let channel = channel.unwrap_or(room);
        match self
            .rest
            .call(
                Method::DELETE,
                &format!("/channels/{channel}/messages/{id}"),
                None,
                Some(reason),
            )
            .await
        {
            Ok(_) => {
                info!(channel, id, "message with sensitive data deleted");
                return Ok(format!("deleted:{id}"));
            }
            Err(e) if e.code == code::MISSING_PERMISSIONS => {
                warn!(channel, id, "no Manage Messages permission to delete it");
            }
            Err(e) => return Err(self.failed(e)),
        }
        let leads: Vec<String> = self.leads.iter().map(|l| render::mention(l)).collect();
        let text = format!(
            "⚠️ {} the message above {reason}. I cannot delete it (I lack the Manage Messages permission): please delete it.",
            if leads.is_empty() {
                "Admins,".to_owned()
            } else {
                leads.join(" ")
            },
        );
        let (Some(c), Some(m)) = (render::snowflake(channel), render::snowflake(id)) else {
            return Err(SendError::Permanent(format!("bad message id {target}")));
        };
        let body = CreateMessage::new()
            .content(text)
            .reference_message((ChannelId::new(c), MessageId::new(m)))
            .allowed_mentions(render::allowed_mentions(&self.leads));
        let body = serde_json::to_value(&body).unwrap_or_default();
        let asked: Message = self
            .rest
            .call_as(
                Method::POST,
                &format!("/channels/{channel}/messages"),
                Some(&body),
            )
            .await
            .map_err(|e| self.failed(e))?;
        info!(
            channel,
            id, "asked a lead to delete a message with sensitive data"
        );
        Ok(format!("asked:{}", asked.id))
    }

    /// Where `channel` is: a configured room, or a thread and its parent
    /// (asked of Discord once per channel). `hint` is the parent an
    /// interaction already told.
    async fn place(&self, channel: u64, hint: Option<u64>) -> Place {
        let c = channel.to_string();
        if self.rooms.contains(&c) || lock(&self.channels).contains(&c) {
            return Place {
                room: c,
                thread: None,
            };
        }
        if let Some(parent) = hint {
            self.learn_thread(&c, &parent.to_string());
        }
        if let Some(parent) = lock(&self.threads).get(&c).cloned() {
            return Place {
                room: parent,
                thread: Some(c),
            };
        }
        match self
            .rest
            .call(Method::GET, &format!("/channels/{c}"), None, None)
            .await
        {
            Ok(v) => {
                let kind = v["type"].as_u64().unwrap_or(0);
                let parent = v["parent_id"].as_str().map(str::to_owned);
                if let (10..=12, Some(parent)) = (kind, parent) {
                    self.learn_thread(&c, &parent);
                    return Place {
                        room: parent,
                        thread: Some(c),
                    };
                }
                lock(&self.channels).insert(c.clone());
            }
            Err(e) => warn!(channel = %c, "cannot look the channel up: {:?}", e.send),
        }
        Place {
            room: c,
            thread: None,
        }
    }

    /// The text and author of a message (for a 🎫 reaction).
    async fn fetch_message(&self, channel: u64, id: u64) -> Option<(String, String)> {
        match self
            .rest
            .call_as::<Message>(
                Method::GET,
                &format!("/channels/{channel}/messages/{id}"),
                None,
            )
            .await
        {
            Ok(m) => Some((
                events::plain_text(&m.content),
                m.author.id.get().to_string(),
            )),
            Err(e) => {
                warn!(
                    channel,
                    id, "cannot fetch the reacted-to message: {:?}", e.send
                );
                None
            }
        }
    }

    /// One queued gateway event as [`Incoming`], or why it is ignored.
    async fn translate(&self, ev: Inbound) -> Result<Incoming, &'static str> {
        let me = Me {
            user: self.bot_user,
            escalate_key: &self.escalate_key,
            prefix: &self.prefix,
        };
        match ev {
            Inbound::Message(m) => {
                if m.author.id.get() == self.bot_user {
                    return Err("own message");
                }
                let place = self.place(m.channel_id.get(), None).await;
                events::message(&m, place, &me)
            }
            Inbound::Reaction(r) => {
                let place = self.place(r.channel_id.get(), None).await;
                let mut incoming = events::reaction(&r, place, &me)?;
                if let IncomingKind::Reaction {
                    key,
                    target_text,
                    target_sender,
                    ..
                } = &mut incoming.kind
                    && same_reaction(key, &self.escalate_key)
                    && let Some((text, author)) = self
                        .fetch_message(r.channel_id.get(), r.message_id.get())
                        .await
                {
                    *target_text = Some(text);
                    *target_sender = Some(author);
                }
                Ok(incoming)
            }
            Inbound::Interaction(i) => match *i {
                Interaction::Command(c) => {
                    let hint = c
                        .channel
                        .as_ref()
                        .filter(|ch| {
                            ch.thread_metadata.is_some() || matches!(u8::from(ch.kind), 10..=12)
                        })
                        .and_then(|ch| ch.parent_id)
                        .map(|p| p.get());
                    let place = self.place(c.channel_id.get(), hint).await;
                    events::command(&c, place, &me).map(|(i, _)| i)
                }
                Interaction::Component(c) => {
                    let place = self.place(c.channel_id.get(), None).await;
                    Ok(events::click(&c, place))
                }
                _ => Err("interaction type not handled"),
            },
        }
    }

    /// Translates queued events and hands them to the bot, in order, until
    /// shutdown or until the bot is gone: the events `kept` by an earlier
    /// run first, then the gateway's.
    async fn translate_loop(
        &self,
        kept: Vec<Queued>,
        mut inbound: mpsc::Receiver<Queued>,
        tx: mpsc::Sender<Incoming>,
        stop: CancellationToken,
    ) {
        let mut kept = kept.into_iter();
        loop {
            let next = match kept.next() {
                Some(ev) => Some(ev),
                None => tokio::select! {
                    () = stop.cancelled() => return,
                    e = inbound.recv() => e,
                },
            };
            let Some((key, ev)) = next else { return };
            match self.translate(ev).await {
                Ok(incoming) => {
                    debug!(room = %incoming.room, event = %incoming.event_id, "Discord event");
                    self.journal.translated(key, &incoming.event_id);
                    if tx.send(incoming).await.is_err() {
                        return;
                    }
                }
                Err(why) => {
                    debug!(why, "Discord event ignored");
                    if let Some(key) = key {
                        self.journal.forget(&key);
                    }
                }
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Platform for DiscordPlatform {
    fn name(&self) -> &'static str {
        "discord"
    }

    fn playbooks_changed(&self, ids: Vec<String>) {
        *self.playbooks.write().unwrap_or_else(|e| e.into_inner()) = ids;
    }

    fn handled(&self, event_id: &str) {
        self.journal.handled(event_id);
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
                // An interaction answer: not a channel message to edit.
                return Ok(());
            }
            self.check_global()?;
            let body = render::edit(msg, &self.known_users);
            self.rest
                .call(
                    Method::PATCH,
                    &format!("/channels/{}/messages/{target}", msg.room),
                    Some(&body),
                    None,
                )
                .await
                .map_err(|e| self.failed(e))?;
            debug!(channel = %msg.room, target, "edited");
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
        Box::pin(self.remove_message(room, target, reason))
    }

    fn run(
        self: Arc<Self>,
        tx: mpsc::Sender<Incoming>,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, anyhow::Result<()>> {
        Box::pin(async move {
            let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_QUEUE);
            let handler = gateway::Handler {
                platform: self.clone(),
                inbound: inbound_tx,
            };
            // Runs GET /gateway for the WebSocket URL.
            let mut client = ClientBuilder::new_with_http(http(&self.config), intents())
                .event_handler(handler)
                .await
                .context("building the Discord gateway client")?;
            let shards = client.shard_manager.clone();
            let stop = shutdown.child_token();
            let gateway = {
                let stop = stop.clone();
                tokio::spawn(async move {
                    let r = client.start().await;
                    stop.cancel();
                    r
                })
            };
            // Until shutdown, the gateway's end, or the bot going away.
            let kept = self
                .journal
                .kept(Inbound::from_stored)
                .into_iter()
                .map(|(key, ev)| (Some(key), ev))
                .collect();
            self.translate_loop(kept, inbound_rx, tx, stop.clone())
                .await;
            stop.cancel();
            shards.shutdown_all().await;
            match gateway.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) if shutdown.is_cancelled() => {
                    debug!("gateway stopped: {e}");
                    Ok(())
                }
                Ok(Err(e)) => {
                    let hint = match &e {
                        serenity::Error::Gateway(
                            serenity::gateway::GatewayError::DisallowedGatewayIntents,
                        ) => " (turn on Message Content Intent under Bot in the Developer Portal)",
                        serenity::Error::Gateway(
                            serenity::gateway::GatewayError::InvalidAuthentication,
                        ) => " (is the bot token right?)",
                        _ => "",
                    };
                    Err(anyhow::anyhow!("the Discord gateway stopped: {e}{hint}"))
                }
                Err(e) => Err(anyhow::anyhow!("the Discord gateway panicked: {e}")),
            }
        })
    }
}
