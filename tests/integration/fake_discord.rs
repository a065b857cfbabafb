//! A loopback fake of the parts of Discord caseroom talks to, speaking the
//! wire shapes serenity 0.12.5 reads (see the research notes' "Wire facts";
//! [`payloads_parse_as_serenity_models`] checks every shape it emits).
//!
//! - REST under `/api/v10`: `GET /gateway` and `/gateway/bot` (handing out
//!   the loopback gateway URL), `GET /users/@me`, guild command
//!   registration, messages (post with nonce deduplication, edit, delete,
//!   fetch), threads started from a message, `GET /channels/{id}`,
//!   interaction callbacks, the deferred response's edit and follow-ups.
//!   A channel can be made to answer 429 with `Retry-After` (optionally the
//!   global limit); deleting people's messages can be refused with 50013.
//! - The gateway: a WebSocket that says HELLO, takes IDENTIFY (→ READY) or
//!   RESUME (→ the events since the given sequence, then RESUMED), answers
//!   heartbeats, sends dispatches (MESSAGE_CREATE, MESSAGE_REACTION_ADD,
//!   INTERACTION_CREATE, THREAD_CREATE) and can drop the connection. Like
//!   Discord, it echoes the bot's own posts as MESSAGE_CREATE.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message as WsMessage;

pub const BOT_ID: &str = "900";
pub const APP_ID: &str = "900";
pub const GUILD_ID: &str = "100";
pub const TOKEN: &str = "test-discord-token";
/// A guild role ("Support"), and a member who holds it and nothing else.
pub const SUPPORT_ROLE: &str = "777";
pub const SUPPORT_MEMBER: &str = "507";

/// One REST call the bot made.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    /// The path after `/api/v10`.
    pub path: String,
    pub body: Value,
    pub status: u16,
    /// The id of the message posted, edited or deleted, if any.
    pub id: Option<String>,
    pub at: Instant,
}

impl Call {
    pub fn content(&self) -> &str {
        self.body["content"].as_str().unwrap_or_default()
    }
    /// The channel of a `/channels/{c}/...` call.
    pub fn channel(&self) -> &str {
        self.path
            .strip_prefix("/channels/")
            .and_then(|r| r.split('/').next())
            .unwrap_or_default()
    }
    /// `custom_id`s of the buttons.
    pub fn buttons(&self) -> Vec<String> {
        let mut out = Vec::new();
        for row in self.body["components"].as_array().into_iter().flatten() {
            for b in row["components"].as_array().into_iter().flatten() {
                if let Some(id) = b["custom_id"].as_str() {
                    out.push(id.to_owned());
                }
            }
        }
        out
    }
    /// The embed title and description (a card), or the content.
    pub fn text(&self) -> String {
        match self.body["embeds"].as_array().and_then(|e| e.first()) {
            Some(e) => format!(
                "{}\n{}",
                e["title"].as_str().unwrap_or_default(),
                e["description"].as_str().unwrap_or_default()
            ),
            None => self.content().to_owned(),
        }
    }
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    calls: Vec<Call>,
    /// Every message (people's and the bot's) by id.
    messages: HashMap<String, Value>,
    /// Bot posts by nonce.
    nonces: HashMap<String, String>,
    /// Thread id → parent channel id.
    threads: HashMap<String, String>,
    /// Per channel: (posts still answered 429, Retry-After seconds, global).
    limited: HashMap<String, (u32, f64, bool)>,
    /// Whether the bot lacks Manage Messages.
    deny_delete: bool,
    /// Whether IDENTIFY is refused with close code 4014 (a privileged
    /// intent not enabled in the portal).
    refuse_intents: bool,
    // The gateway.
    session: u64,
    seq: u64,
    /// This session's dispatches: (seq, frame).
    log: Vec<(u64, String)>,
    identifies: u32,
    /// The sequence each RESUME asked for.
    resumes: Vec<u64>,
    heartbeats: u32,
    connections: u32,
    heartbeat_ms: u64,
}

#[derive(Clone, Debug)]
enum Cmd {
    Send(u64, String),
    Drop,
}

/// The fake. Cheap to clone.
#[derive(Clone)]
pub struct FakeDiscord {
    inner: Arc<Mutex<Inner>>,
    pub addr: SocketAddr,
    pub ws_addr: SocketAddr,
    cmds: broadcast::Sender<Cmd>,
}

impl std::fmt::Debug for FakeDiscord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeDiscord")
            .field("addr", &self.addr)
            .finish()
    }
}

/// A timestamp serenity reads.
const TS: &str = "2026-11-25T10:00:00.000000+00:00";

pub fn user(id: &str, bot: bool) -> Value {
    json!({"id": id, "username": format!("user{id}"), "discriminator": "0", "avatar": null,
           "global_name": null, "bot": bot})
}

/// A Message as Discord sends it.
pub fn message_json(id: &str, channel: &str, author: &str, bot: bool, content: &str) -> Value {
    json!({
        "id": id, "channel_id": channel, "guild_id": GUILD_ID,
        "author": user(author, bot), "content": content, "timestamp": TS,
        "edited_timestamp": null, "tts": false, "mention_everyone": false,
        "mentions": [], "mention_roles": [], "attachments": [], "embeds": [],
        "components": [], "pinned": false, "type": 0
    })
}

pub fn member(user_id: &str) -> Value {
    let roles: Vec<&str> = if user_id == SUPPORT_MEMBER {
        vec![SUPPORT_ROLE]
    } else {
        vec![]
    };
    json!({"user": user(user_id, false), "roles": roles, "deaf": false, "mute": false,
           "flags": 0, "joined_at": TS, "permissions": "0"})
}

/// The shared part of every interaction.
fn interaction_base(id: &str, token: &str, kind: u8, user_id: &str, channel: &Value) -> Value {
    json!({
        "id": id, "application_id": APP_ID, "type": kind, "token": token, "version": 1,
        "guild_id": GUILD_ID, "channel_id": channel["id"], "channel": channel,
        "member": member(user_id), "app_permissions": "395137248320",
        "locale": "en-US", "guild_locale": "en-US", "entitlements": [],
        "authorizing_integration_owners": {"0": GUILD_ID}, "context": 0,
        "attachment_size_limit": 26214400
    })
}

impl FakeDiscord {
    pub async fn start() -> FakeDiscord {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ws = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (cmds, _) = broadcast::channel(1024);
        let fake = FakeDiscord {
            inner: Arc::new(Mutex::new(Inner {
                next_id: 10_000,
                heartbeat_ms: 1000,
                ..Inner::default()
            })),
            addr: listener.local_addr().unwrap(),
            ws_addr: ws.local_addr().unwrap(),
            cmds,
        };
        let app = Router::new()
            .route("/api/v10/{*path}", any(rest))
            .with_state(fake.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        let f = fake.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = ws.accept().await else {
                    return;
                };
                let f = f.clone();
                tokio::spawn(async move { f.socket(stream).await });
            }
        });
        fake
    }

    /// The `api_base_url` for the bot.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn id(&self) -> String {
        let mut i = self.inner.lock().unwrap();
        i.next_id += 1;
        i.next_id.to_string()
    }

    pub fn calls(&self) -> Vec<Call> {
        self.inner.lock().unwrap().calls.clone()
    }

    /// Successful calls with this method whose path starts with `prefix`.
    pub fn calls_to(&self, method: &str, prefix: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == method && c.path.starts_with(prefix) && c.status < 300)
            .collect()
    }

    /// Messages the bot posted in `channel` (a channel or thread id).
    pub fn posts_in(&self, channel: &str) -> Vec<Call> {
        self.calls_to("POST", &format!("/channels/{channel}/messages"))
            .into_iter()
            .filter(|c| c.path == format!("/channels/{channel}/messages"))
            .collect()
    }

    /// Edits of message `id`.
    pub fn edits_of(&self, id: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == "PATCH" && c.path.ends_with(&format!("/messages/{id}")))
            .collect()
    }

    /// Interaction callbacks (the defers), by interaction id.
    pub fn callbacks(&self, interaction: &str) -> Vec<Call> {
        self.calls_to("POST", &format!("/interactions/{interaction}/"))
    }

    /// Edits of the deferred response and follow-ups for `token`.
    pub fn answers(&self, token: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| {
                c.path.starts_with(&format!("/webhooks/{APP_ID}/{token}")) && c.status < 300
            })
            .collect()
    }

    pub fn thread_parent(&self, thread: &str) -> Option<String> {
        self.inner.lock().unwrap().threads.get(thread).cloned()
    }

    /// The next `n` posts to `channel` get 429 with `Retry-After: secs`.
    pub fn rate_limit(&self, channel: &str, n: u32, secs: f64, global: bool) {
        self.inner
            .lock()
            .unwrap()
            .limited
            .insert(channel.to_owned(), (n, secs, global));
    }

    /// Whether deleting people's messages is refused (no Manage Messages).
    pub fn deny_delete(&self, deny: bool) {
        self.inner.lock().unwrap().deny_delete = deny;
    }

    /// Refuse IDENTIFY with 4014, as Discord does when MESSAGE_CONTENT is
    /// not enabled for the app.
    pub fn refuse_intents(&self, refuse: bool) {
        self.inner.lock().unwrap().refuse_intents = refuse;
    }

    pub fn identifies(&self) -> u32 {
        self.inner.lock().unwrap().identifies
    }
    pub fn resumes(&self) -> Vec<u64> {
        self.inner.lock().unwrap().resumes.clone()
    }
    pub fn heartbeats(&self) -> u32 {
        self.inner.lock().unwrap().heartbeats
    }
    pub fn connections(&self) -> u32 {
        self.inner.lock().unwrap().connections
    }

    /// Polls `check` until it holds (10 s at most).
    pub async fn wait_for(&self, what: &str, check: impl Fn(&FakeDiscord) -> bool) {
        for _ in 0..1000 {
            if check(self) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}; calls: {:#?}", self.calls());
    }

    // -----------------------------------------------------------------
    // The gateway.

    /// Sends a dispatch (logged for replay on RESUME); returns its seq.
    pub fn dispatch(&self, t: &str, d: Value) -> u64 {
        let mut i = self.inner.lock().unwrap();
        i.seq += 1;
        let seq = i.seq;
        let frame = json!({"op": 0, "s": seq, "t": t, "d": d}).to_string();
        i.log.push((seq, frame.clone()));
        let _ = self.cmds.send(Cmd::Send(seq, frame));
        seq
    }

    /// Drops the gateway connection without a close frame.
    pub fn drop_gateway(&self) {
        let _ = self.cmds.send(Cmd::Drop);
    }

    /// Someone writes `content` in `channel` (a channel or a thread).
    pub fn say(&self, channel: &str, author: &str, content: &str) -> String {
        let id = self.id();
        let m = message_json(&id, channel, author, false, content);
        self.inner
            .lock()
            .unwrap()
            .messages
            .insert(id.clone(), m.clone());
        self.dispatch("MESSAGE_CREATE", m);
        id
    }

    /// `user` reacts with `emoji` on message `message` in `channel`.
    pub fn react(&self, user_id: &str, channel: &str, message: &str, emoji: &str) {
        let author = self
            .inner
            .lock()
            .unwrap()
            .messages
            .get(message)
            .map(|m| m["author"]["id"].clone());
        let mut d = json!({"user_id": user_id, "channel_id": channel, "message_id": message,
            "guild_id": GUILD_ID, "member": member(user_id), "emoji": {"id": null, "name": emoji},
            "burst": false, "type": 0});
        if let Some(a) = author {
            d["message_author_id"] = a;
        }
        self.dispatch("MESSAGE_REACTION_ADD", d);
    }

    /// The partial channel an interaction carries.
    fn partial_channel(&self, channel: &str) -> Value {
        match self.thread_parent(channel) {
            Some(parent) => json!({"id": channel, "type": 11, "name": "case", "parent_id": parent,
                "thread_metadata": {"archived": false, "auto_archive_duration": 10080, "locked": false,
                                    "archive_timestamp": TS}}),
            None => json!({"id": channel, "type": 0, "name": "support"}),
        }
    }

    /// `user` runs `/name` with `options` in `channel`; returns the
    /// interaction (id, token).
    pub fn slash(
        &self,
        user_id: &str,
        channel: &str,
        name: &str,
        options: &[(&str, &str)],
    ) -> (String, String) {
        let id = self.id();
        let token = format!("itok-{id}");
        let mut d = interaction_base(&id, &token, 2, user_id, &self.partial_channel(channel));
        let opts: Vec<Value> = options
            .iter()
            .map(|(n, v)| json!({"name": n, "type": 3, "value": v}))
            .collect();
        d["data"] = json!({"id": "1500", "name": name, "type": 1, "options": opts});
        self.dispatch("INTERACTION_CREATE", d);
        (id, token)
    }

    /// `user` is typing `typed` into `/use playbook:`; returns the
    /// interaction id (the choices come back in its callback).
    pub fn autocomplete(&self, user_id: &str, channel: &str, typed: &str) -> String {
        let id = self.id();
        let token = format!("itok-{id}");
        let mut d = interaction_base(&id, &token, 4, user_id, &self.partial_channel(channel));
        d["data"] = json!({"id": "1502", "name": "use", "type": 1,
            "options": [{"name": "playbook", "type": 3, "value": typed, "focused": true}]});
        self.dispatch("INTERACTION_CREATE", d);
        id
    }

    /// `user` runs the message command "Escalate to case" on `message`.
    pub fn context_menu(&self, user_id: &str, channel: &str, message: &str) -> (String, String) {
        let id = self.id();
        let token = format!("itok-{id}");
        let target = self
            .inner
            .lock()
            .unwrap()
            .messages
            .get(message)
            .cloned()
            .unwrap();
        let mut d = interaction_base(&id, &token, 2, user_id, &self.partial_channel(channel));
        d["data"] = json!({"id": "1501", "name": "Escalate to case", "type": 3, "target_id": message,
                           "resolved": {"messages": {message: target}}});
        self.dispatch("INTERACTION_CREATE", d);
        (id, token)
    }

    /// `user` presses the button `custom_id` on the bot's message `message`.
    pub fn click(&self, user_id: &str, message: &str, custom_id: &str) -> (String, String) {
        let id = self.id();
        let token = format!("itok-{id}");
        let msg = self
            .inner
            .lock()
            .unwrap()
            .messages
            .get(message)
            .cloned()
            .unwrap();
        let channel = msg["channel_id"].as_str().unwrap().to_owned();
        let mut d = interaction_base(&id, &token, 3, user_id, &self.partial_channel(&channel));
        d["data"] = json!({"custom_id": custom_id, "component_type": 2});
        d["message"] = msg;
        self.dispatch("INTERACTION_CREATE", d);
        (id, token)
    }

    fn ready(&self, i: &mut Inner) -> String {
        i.session += 1;
        i.seq = 1;
        i.log.clear();
        json!({"op": 0, "s": 1, "t": "READY", "d": ready_json(i.session, self.ws_addr)}).to_string()
    }

    async fn socket(&self, stream: tokio::net::TcpStream) {
        let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
            return;
        };
        let (mut tx, mut rx) = ws.split();
        let mut cmds = self.cmds.subscribe();
        let hello = {
            let mut i = self.inner.lock().unwrap();
            i.connections += 1;
            json!({"op": 10, "d": {"heartbeat_interval": i.heartbeat_ms}, "s": null, "t": null})
        };
        if tx.send(WsMessage::text(hello.to_string())).await.is_err() {
            return;
        }
        // Dispatches up to this seq were sent by READY / the replay.
        let mut sent_upto: Option<u64> = None;
        loop {
            tokio::select! {
                frame = rx.next() => {
                    let Some(Ok(frame)) = frame else { return };
                    let WsMessage::Text(text) = frame else {
                        if matches!(frame, WsMessage::Close(_)) { return; }
                        continue;
                    };
                    let v: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
                    let mut out = Vec::new();
                    let mut refuse = false;
                    {
                        let mut i = self.inner.lock().unwrap();
                        match v["op"].as_u64() {
                            Some(1) => {
                                i.heartbeats += 1;
                                out.push(json!({"op": 11}).to_string());
                            }
                            Some(2) => {
                                assert_eq!(v["d"]["token"], format!("Bot {TOKEN}"));
                                i.identifies += 1;
                                if i.refuse_intents {
                                    refuse = true;
                                }
                                if !refuse {
                                    out.push(self.ready(&mut i));
                                    sent_upto = Some(i.seq);
                                }
                            }
                            Some(6) => {
                                let from = v["d"]["seq"].as_u64().unwrap_or(0);
                                i.resumes.push(from);
                                // Discord replays what was missed; this fake also
                                // replays the last event the client saw, as an
                                // at-least-once network might.
                                for (s, f) in &i.log {
                                    if *s >= from {
                                        out.push(f.clone());
                                    }
                                }
                                i.seq += 1;
                                let seq = i.seq;
                                let resumed = json!({"op": 0, "s": seq, "t": "RESUMED", "d": {}});
                                i.log.push((seq, resumed.to_string()));
                                out.push(resumed.to_string());
                                sent_upto = Some(i.seq);
                            }
                            _ => {}
                        }
                    }
                    if refuse {
                        let close = tokio_tungstenite::tungstenite::protocol::CloseFrame {
                            code: 4014.into(),
                            reason: "Disallowed intent(s).".into(),
                        };
                        let _ = tx.send(WsMessage::Close(Some(close))).await;
                        return;
                    }
                    for f in out {
                        if tx.send(WsMessage::text(f)).await.is_err() {
                            return;
                        }
                    }
                }
                cmd = cmds.recv() => {
                    match cmd {
                        Ok(Cmd::Send(seq, frame)) => {
                            if sent_upto.is_some_and(|u| seq > u)
                                && tx.send(WsMessage::text(frame)).await.is_err()
                            {
                                return;
                            }
                        }
                        Ok(Cmd::Drop) => return,
                        Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(_) => return,
                    }
                }
            }
        }
    }

    /// Posts a message as the bot would (the fake's own echo path).
    fn bot_post(&self, channel: &str, body: &Value) -> Value {
        let id = self.id();
        let mut m = message_json(
            &id,
            channel,
            BOT_ID,
            true,
            body["content"].as_str().unwrap_or(""),
        );
        if let Some(e) = body.get("embeds") {
            m["embeds"] = e.clone();
        }
        if let Some(c) = body.get("components") {
            m["components"] = c.clone();
        }
        if let Some(n) = body.get("nonce") {
            m["nonce"] = n.clone();
        }
        self.inner.lock().unwrap().messages.insert(id, m.clone());
        m
    }
}

pub fn ready_json(session: u64, ws: SocketAddr) -> Value {
    json!({
        "v": 10,
        "user": {"id": BOT_ID, "username": "caseroom", "discriminator": "0", "avatar": null,
                 "global_name": null, "bot": true, "verified": true, "mfa_enabled": false, "flags": 0},
        "guilds": [{"id": GUILD_ID, "unavailable": true}],
        "session_id": format!("sess-{session}"),
        "resume_gateway_url": format!("ws://{ws}"),
        "shard": [0, 1],
        "application": {"id": APP_ID, "flags": 0}
    })
}

pub fn thread_json(id: &str, parent: &str, name: &str) -> Value {
    json!({"id": id, "type": 11, "name": name, "guild_id": GUILD_ID, "parent_id": parent,
           "owner_id": BOT_ID, "position": 0, "permission_overwrites": [],
           "thread_metadata": {"archived": false, "auto_archive_duration": 10080, "locked": false,
                               "archive_timestamp": TS}})
}

fn error(status: StatusCode, code: i64, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"message": message, "code": code})),
    )
        .into_response()
}

async fn rest(
    State(f): State<FakeDiscord>,
    method: Method,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/{path}");
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let auth_ok = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bot {TOKEN}"));
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (resp, id) =
        if !auth_ok && !path.starts_with("/webhooks/") && !path.starts_with("/interactions/") {
            (
                error(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized"),
                None,
            )
        } else {
            route(&f, &method, &parts, &body)
        };
    let status = resp.status().as_u16();
    f.inner.lock().unwrap().calls.push(Call {
        method: method.to_string(),
        path,
        body,
        status,
        id,
        at: Instant::now(),
    });
    resp
}

fn route(
    f: &FakeDiscord,
    method: &Method,
    parts: &[&str],
    body: &Value,
) -> (Response, Option<String>) {
    let ok = |v: Value| (StatusCode::OK, axum::Json(v)).into_response();
    match (method.as_str(), parts) {
        ("GET", ["gateway"]) => (ok(json!({"url": format!("ws://{}", f.ws_addr)})), None),
        ("GET", ["gateway", "bot"]) => (
            ok(json!({"url": format!("ws://{}", f.ws_addr), "shards": 1,
                "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}})),
            None,
        ),
        ("GET", ["users", "@me"]) => (ok(user(BOT_ID, true)), None),
        ("PUT", ["applications", _app, "guilds", _g, "commands"]) => {
            let out: Vec<Value> = body
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
                .map(|(n, c)| {
                    json!({"id": (2000 + n).to_string(), "application_id": APP_ID, "guild_id": GUILD_ID,
                           "type": c["type"].as_u64().unwrap_or(1), "name": c["name"],
                           "description": c["description"].as_str().unwrap_or(""),
                           "version": "1", "default_member_permissions": null, "options": c["options"].clone()})
                })
                .collect();
            (ok(Value::Array(out)), None)
        }
        ("GET", ["channels", c]) => {
            let parent = f.thread_parent(c);
            match parent {
                Some(p) => (ok(thread_json(c, &p, "case")), None),
                None => (
                    ok(
                        json!({"id": c, "type": 0, "name": "support", "guild_id": GUILD_ID, "position": 0,
                              "permission_overwrites": []}),
                    ),
                    None,
                ),
            }
        }
        ("POST", ["channels", c, "messages"]) => {
            let mut i = f.inner.lock().unwrap();
            if let Some((n, secs, global)) = i.limited.get_mut(*c)
                && *n > 0
            {
                *n -= 1;
                let (secs, global) = (*secs, *global);
                drop(i);
                let mut r = (
                    StatusCode::TOO_MANY_REQUESTS,
                    axum::Json(json!({"message": "You are being rate limited.", "retry_after": secs, "global": global})),
                )
                    .into_response();
                let h = r.headers_mut();
                h.insert("retry-after", secs.to_string().parse().unwrap());
                h.insert(
                    "x-ratelimit-scope",
                    if global { "global" } else { "user" }.parse().unwrap(),
                );
                if global {
                    h.insert("x-ratelimit-global", "true".parse().unwrap());
                }
                return (r, None);
            }
            if let Some(nonce) = body["nonce"].as_str()
                && body["enforce_nonce"] == true
                && let Some(existing) = i.nonces.get(nonce).cloned()
            {
                let m = i.messages.get(&existing).cloned().unwrap();
                return (ok(m), Some(existing));
            }
            drop(i);
            let m = f.bot_post(c, body);
            let id = m["id"].as_str().unwrap().to_owned();
            if let Some(nonce) = body["nonce"].as_str() {
                f.inner
                    .lock()
                    .unwrap()
                    .nonces
                    .insert(nonce.to_owned(), id.clone());
            }
            f.dispatch("MESSAGE_CREATE", m.clone());
            (ok(m), Some(id))
        }
        ("GET", ["channels", _c, "messages", m]) => {
            match f.inner.lock().unwrap().messages.get(*m).cloned() {
                Some(msg) => (ok(msg), None),
                None => (error(StatusCode::NOT_FOUND, 10008, "Unknown Message"), None),
            }
        }
        ("PATCH", ["channels", _c, "messages", m]) => {
            let mut i = f.inner.lock().unwrap();
            let Some(msg) = i.messages.get_mut(*m) else {
                return (error(StatusCode::NOT_FOUND, 10008, "Unknown Message"), None);
            };
            for k in ["content", "embeds", "components"] {
                if let Some(v) = body.get(k) {
                    msg[k] = v.clone();
                }
            }
            msg["edited_timestamp"] = json!(TS);
            (ok(msg.clone()), Some((*m).to_owned()))
        }
        ("DELETE", ["channels", _c, "messages", m]) => {
            let mut i = f.inner.lock().unwrap();
            let Some(msg) = i.messages.get(*m).cloned() else {
                return (error(StatusCode::NOT_FOUND, 10008, "Unknown Message"), None);
            };
            if i.deny_delete && msg["author"]["id"] != BOT_ID {
                return (
                    error(StatusCode::FORBIDDEN, 50013, "Missing Permissions"),
                    None,
                );
            }
            i.messages.remove(*m);
            (
                StatusCode::NO_CONTENT.into_response(),
                Some((*m).to_owned()),
            )
        }
        ("POST", ["channels", c, "messages", m, "threads"]) => {
            let mut i = f.inner.lock().unwrap();
            if i.threads.contains_key(*m) {
                return (
                    error(
                        StatusCode::BAD_REQUEST,
                        160004,
                        "A thread has already been created for this message",
                    ),
                    None,
                );
            }
            if !i.messages.contains_key(*m) {
                return (error(StatusCode::NOT_FOUND, 10008, "Unknown Message"), None);
            }
            i.threads.insert((*m).to_owned(), (*c).to_owned());
            drop(i);
            let t = thread_json(m, c, body["name"].as_str().unwrap_or("thread"));
            let mut created = t.clone();
            created["newly_created"] = json!(true);
            f.dispatch("THREAD_CREATE", created);
            (
                (StatusCode::CREATED, axum::Json(t)).into_response(),
                Some((*m).to_owned()),
            )
        }
        ("POST", ["interactions", _id, _token, "callback"]) => {
            (StatusCode::NO_CONTENT.into_response(), None)
        }
        ("PATCH", ["webhooks", _app, _token, "messages", "@original"]) => {
            let id = f.id();
            (
                ok(message_json(
                    &id,
                    "1",
                    BOT_ID,
                    true,
                    body["content"].as_str().unwrap_or(""),
                )),
                Some(id),
            )
        }
        ("POST", ["webhooks", _app, _token]) => {
            let id = f.id();
            (
                ok(message_json(
                    &id,
                    "1",
                    BOT_ID,
                    true,
                    body["content"].as_str().unwrap_or(""),
                )),
                Some(id),
            )
        }
        _ => (error(StatusCode::NOT_FOUND, 0, "404: Not Found"), None),
    }
}

/// Every shape the fake emits parses as serenity's own model type, so a
/// field serenity requires is never missing (a dispatch that does not
/// parse would be dropped silently by serenity's gateway).
#[tokio::test]
async fn payloads_parse_as_serenity_models() {
    use serenity::all::{CurrentUser, GuildChannel, Interaction, Message, Reaction, Ready, User};
    let fake = FakeDiscord::start().await;
    fn parses<T: serde::de::DeserializeOwned>(what: &str, v: Value) -> T {
        serde_json::from_value::<T>(v.clone())
            .unwrap_or_else(|e| panic!("{what} does not parse as serenity's type: {e}\n{v:#}"))
    }
    let _: Ready = parses("READY", ready_json(1, fake.ws_addr));
    let _: User = parses("GET /users/@me", user(BOT_ID, true));
    let _: CurrentUser = parses("the bot user", user(BOT_ID, true));
    let _: GuildChannel = parses("THREAD_CREATE", thread_json("1300", "1100", "C-1"));
    let m: Message = parses(
        "MESSAGE_CREATE",
        message_json("1300", "1100", "500", false, "hi"),
    );
    assert_eq!(m.author.id.get(), 500);

    // A bot post echoed with the embed and buttons caseroom renders.
    let mut card = caseroom::message::Outgoing::card("1100", caseroom::case::CaseId(1), false);
    card.text = "🆕 **C-1** · P2\nbody".into();
    card.actions = vec![caseroom::message::Action::new(
        caseroom::message::ActionKind::Claim {
            case: caseroom::case::CaseId(1),
        },
        "Claim",
        caseroom::message::ActionStyle::Primary,
    )];
    let body =
        caseroom::platform::discord::render::create(&card, &Default::default(), "t").remove(0);
    let posted = fake.bot_post("1100", &body);
    let m: Message = parses("a posted card", posted.clone());
    assert_eq!(m.embeds.len(), 1);
    assert_eq!(m.components.len(), 1);

    // Every dispatch the helpers send, as the gateway would carry it.
    let mut rx = fake.cmds.subscribe();
    let said = fake.say("1100", "500", "card declined");
    fake.react("500", "1100", &said, "🎫");
    fake.inner
        .lock()
        .unwrap()
        .threads
        .insert(posted["id"].as_str().unwrap().into(), "1100".into());
    fake.slash(
        "500",
        posted["id"].as_str().unwrap(),
        "note",
        &[("text", "called")],
    );
    fake.slash("500", "1100", "queue", &[]);
    fake.context_menu("500", "1100", &said);
    fake.click("500", posted["id"].as_str().unwrap(), "claim:C-1");
    fake.autocomplete("500", posted["id"].as_str().unwrap(), "ref");
    let mut kinds = Vec::new();
    while let Ok(Cmd::Send(_, frame)) = rx.try_recv() {
        let v: Value = serde_json::from_str(&frame).unwrap();
        let t = v["t"].as_str().unwrap().to_owned();
        match t.as_str() {
            "MESSAGE_CREATE" => {
                let _: Message = parses(&t, v["d"].clone());
            }
            "MESSAGE_REACTION_ADD" => {
                let r: Reaction = parses(&t, v["d"].clone());
                assert!(r.emoji.unicode_eq("🎫"));
            }
            "INTERACTION_CREATE" => {
                let i: Interaction = parses(&t, v["d"].clone());
                assert!(
                    matches!(
                        i,
                        Interaction::Command(_)
                            | Interaction::Component(_)
                            | Interaction::Autocomplete(_)
                    ),
                    "{i:?}"
                );
            }
            other => panic!("unexpected dispatch {other}"),
        }
        kinds.push(t);
    }
    assert_eq!(kinds.len(), 7, "{kinds:?}");
}
