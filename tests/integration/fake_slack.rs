//! A loopback fake of the parts of Slack caseroom talks to, speaking the
//! recorded wire shapes (see the research notes' "Wire facts").
//!
//! - Web API under `/api/`: `auth.test`, `chat.postMessage`, `chat.update`,
//!   `chat.postEphemeral`, `chat.delete`, `conversations.history`,
//!   `conversations.replies`, `apps.connections.open`; JSON answers with
//!   `Content-Type: application/json`; a channel can be made to answer 429
//!   with `Retry-After`.
//! - `response_url`s under `/resp/<n>`, recorded.
//! - Socket Mode: a WebSocket listener that says `hello`, sends envelopes,
//!   records acks, redelivers unacknowledged envelopes on the next
//!   connection (with `retry_attempt`), and can drop the connection.
//! - Signed Events API requests to the bot ([`FakeSlack::post_signed`]).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;

pub const BOT_USER: &str = "UBOT";
pub const SIGNING_SECRET: &str = "test-signing-secret";

/// One Web API call the bot made.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    /// The request: the JSON body, or the query for GET methods.
    pub body: Value,
    /// `ts` of the message posted, updated or deleted.
    pub ts: Option<String>,
    /// Whether it was answered with 429.
    pub limited: bool,
    pub at: std::time::Instant,
}

impl Call {
    pub fn channel(&self) -> &str {
        self.body["channel"].as_str().unwrap_or_default()
    }
    pub fn text(&self) -> &str {
        self.body["text"].as_str().unwrap_or_default()
    }
    pub fn thread_ts(&self) -> Option<&str> {
        self.body["thread_ts"].as_str()
    }
    /// `action_id`s of the buttons in its blocks.
    pub fn buttons(&self) -> Vec<String> {
        let mut out = Vec::new();
        for b in self.body["blocks"].as_array().into_iter().flatten() {
            for e in b["elements"].as_array().into_iter().flatten() {
                if let Some(id) = e["action_id"].as_str() {
                    out.push(id.to_owned());
                }
            }
        }
        out
    }
}

#[derive(Default)]
struct Inner {
    calls: Vec<Call>,
    next_ts: u64,
    /// Messages people wrote, for conversations.history/replies: (channel, ts) → (user, text).
    messages: BTreeMap<(String, String), (String, String)>,
    /// Bot posts by ts.
    bot_posts: HashMap<String, String>,
    /// Bot posts as conversations.history/replies show them: (channel, ts)
    /// → the message, with its `metadata`.
    bot_messages: BTreeMap<(String, String), Value>,
    /// Per channel: how many more chat.postMessage calls post the message
    /// and then fail with a 503, as if the answer was lost.
    lose_answers: HashMap<String, u32>,
    /// Channels whose chat.postMessage calls post the message and then
    /// never answer.
    hang_answers: std::collections::HashSet<String>,
    /// Per channel: how many more chat.postMessage calls get 429.
    limited: HashMap<String, u32>,
    responses: Vec<(String, Value)>,
    opens: u32,
    /// Socket Mode envelopes not yet acknowledged: id → (frame, attempts).
    unacked: BTreeMap<String, (Value, u32)>,
    acks: Vec<String>,
    /// How often each envelope was written to a socket.
    deliveries: HashMap<String, u32>,
    next_envelope: u64,
}

#[derive(Clone, Debug)]
enum Cmd {
    Send(String),
    /// Send this envelope, then drop the connection before its ack can count.
    SendAndDrop(String),
    Drop,
    /// Keep the connection open but stop reading and answering (no pongs).
    Freeze,
}

/// The fake. Cheap to clone.
#[derive(Clone)]
pub struct FakeSlack {
    inner: Arc<Mutex<Inner>>,
    pub addr: SocketAddr,
    pub ws_addr: SocketAddr,
    cmds: broadcast::Sender<Cmd>,
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Full<Bytes>,
    >,
}

impl std::fmt::Debug for FakeSlack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeSlack")
            .field("addr", &self.addr)
            .finish()
    }
}

impl FakeSlack {
    pub async fn start() -> FakeSlack {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ws = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (cmds, _) = broadcast::channel(64);
        let fake = FakeSlack {
            inner: Arc::new(Mutex::new(Inner {
                next_ts: 1,
                ..Inner::default()
            })),
            addr: listener.local_addr().unwrap(),
            ws_addr: ws.local_addr().unwrap(),
            cmds,
            client: hyper_util::client::legacy::Client::builder(
                hyper_util::rt::TokioExecutor::new(),
            )
            .build_http(),
        };
        let app = Router::new()
            .route("/api/{method}", any(api))
            .route("/resp/{id}", post(response_url))
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
    pub fn api_url(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    /// A `response_url` the fake records.
    pub fn response_url(&self, n: u32) -> String {
        format!("http://{}/resp/{n}", self.addr)
    }

    pub fn calls(&self) -> Vec<Call> {
        self.inner.lock().unwrap().calls.clone()
    }

    /// Successful calls of `method`.
    pub fn calls_of(&self, method: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == method && !c.limited)
            .collect()
    }

    /// Posts (chat.postMessage) to `channel`.
    pub fn posts_in(&self, channel: &str) -> Vec<Call> {
        self.calls_of("chat.postMessage")
            .into_iter()
            .filter(|c| c.channel() == channel)
            .collect()
    }

    pub fn responses(&self) -> Vec<(String, Value)> {
        self.inner.lock().unwrap().responses.clone()
    }

    /// The next `chat.postMessage` calls to `channel` (`n` of them) get 429.
    pub fn rate_limit(&self, channel: &str, n: u32) {
        self.inner
            .lock()
            .unwrap()
            .limited
            .insert(channel.to_owned(), n);
    }

    /// The next `n` chat.postMessage calls to `channel` post the message
    /// but answer 503, as when Slack's answer is lost.
    pub fn lose_answers(&self, channel: &str, n: u32) {
        self.inner
            .lock()
            .unwrap()
            .lose_answers
            .insert(channel.to_owned(), n);
    }

    /// chat.postMessage calls to `channel` post the message but never
    /// answer (until [`FakeSlack::answer_again`]).
    pub fn hang_answers(&self, channel: &str) {
        self.inner
            .lock()
            .unwrap()
            .hang_answers
            .insert(channel.to_owned());
    }

    pub fn answer_again(&self, channel: &str) {
        self.inner.lock().unwrap().hang_answers.remove(channel);
    }

    pub fn opens(&self) -> u32 {
        self.inner.lock().unwrap().opens
    }

    /// How often envelope `id` was written to a socket.
    pub fn deliveries(&self, id: &str) -> u32 {
        self.inner
            .lock()
            .unwrap()
            .deliveries
            .get(id)
            .copied()
            .unwrap_or(0)
    }

    pub fn acks(&self) -> Vec<String> {
        self.inner.lock().unwrap().acks.clone()
    }

    /// Someone writes `text` in `channel`: remembered for
    /// conversations.history; returns its ts.
    pub fn human_message(&self, channel: &str, user: &str, text: &str) -> String {
        let mut g = self.inner.lock().unwrap();
        let ts = format!("1700000000.{:06}", g.next_ts);
        g.next_ts += 1;
        g.messages
            .insert((channel.into(), ts.clone()), (user.into(), text.into()));
        ts
    }

    /// Waits until `cond` holds (polling), or panics with `what`.
    pub async fn wait_for(&self, what: &str, cond: impl Fn(&FakeSlack) -> bool) {
        for _ in 0..1000 {
            if cond(self) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}; calls: {:#?}", self.calls());
    }

    // ---- Events API --------------------------------------------------

    /// POSTs `body` to the bot's `path`, signed with `secret` at `ts`;
    /// returns the status and body.
    #[allow(clippy::too_many_arguments)]
    pub async fn post_signed(
        &self,
        bot: SocketAddr,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
        secret: &str,
        ts: i64,
        extra: &[(&str, &str)],
    ) -> (StatusCode, String) {
        let sig = caseroom::platform::slack::sign(secret, ts, &body);
        let mut req = axum::http::Request::post(format!("http://{bot}{path}"))
            .header("content-type", content_type)
            .header("x-slack-request-timestamp", ts.to_string())
            .header("x-slack-signature", sig);
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        let req = req
            .body(http_body_util::Full::new(Bytes::from(body)))
            .unwrap();
        let resp = self.client.request(req).await.expect("bot answers");
        let status = resp.status();
        use http_body_util::BodyExt;
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    // ---- Socket Mode -------------------------------------------------

    /// Queues an envelope (`events_api`, `interactive`, `slash_commands`)
    /// for the bot; returns its envelope id.
    pub fn envelope(&self, kind: &str, payload: Value) -> String {
        self.envelope_inner(kind, payload, false)
    }

    /// Like [`FakeSlack::envelope`], then drops the connection at once.
    pub fn envelope_then_drop(&self, kind: &str, payload: Value) -> String {
        self.envelope_inner(kind, payload, true)
    }

    fn envelope_inner(&self, kind: &str, payload: Value, drop: bool) -> String {
        let (id, frame) = {
            let mut g = self.inner.lock().unwrap();
            g.next_envelope += 1;
            let id = format!("env-{}", g.next_envelope);
            let frame = json!({
                "envelope_id": id, "type": kind, "payload": payload,
                "accepts_response_payload": kind != "events_api",
                "retry_attempt": 0, "retry_reason": ""
            });
            g.unacked.insert(id.clone(), (frame.clone(), 0));
            (id, frame.to_string())
        };
        let _ = self.cmds.send(if drop {
            Cmd::SendAndDrop(frame)
        } else {
            Cmd::Send(frame)
        });
        id
    }

    /// The live connection goes silent: open, but nothing is read or
    /// answered, not even pings.
    pub fn freeze_socket(&self) {
        let _ = self.cmds.send(Cmd::Freeze);
    }

    /// Drops the live connection without a close frame.
    pub fn drop_socket(&self) {
        let _ = self.cmds.send(Cmd::Drop);
    }

    fn delivered(&self, frame: &str) {
        let v: Value = serde_json::from_str(frame).unwrap_or_default();
        if let Some(id) = v["envelope_id"].as_str() {
            *self
                .inner
                .lock()
                .unwrap()
                .deliveries
                .entry(id.to_owned())
                .or_default() += 1;
        }
    }

    async fn socket(self, stream: tokio::net::TcpStream) {
        let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
            return;
        };
        let (mut sink, mut source) = ws.split();
        let mut cmds = self.cmds.subscribe();
        let hello = json!({"type":"hello","num_connections":1,
            "connection_info":{"app_id":"A1"},
            "debug_info":{"host":"applink-fake","approximate_connection_time":18060}});
        if sink
            .send(Message::Text(hello.to_string().into()))
            .await
            .is_err()
        {
            return;
        }
        // Like Slack: whatever was not acknowledged comes again.
        let again: Vec<String> = {
            let mut g = self.inner.lock().unwrap();
            g.unacked
                .values_mut()
                .map(|(frame, attempts)| {
                    *attempts += 1;
                    frame["retry_attempt"] = json!(*attempts);
                    frame["retry_reason"] = json!("timeout");
                    frame.to_string()
                })
                .collect()
        };
        for frame in again {
            self.delivered(&frame);
            if sink.send(Message::Text(frame.into())).await.is_err() {
                return;
            }
        }
        loop {
            tokio::select! {
                cmd = cmds.recv() => match cmd {
                    Ok(Cmd::Send(frame)) => {
                        self.delivered(&frame);
                        if sink.send(Message::Text(frame.into())).await.is_err() {
                            return;
                        }
                    }
                    Ok(Cmd::SendAndDrop(frame)) => {
                        self.delivered(&frame);
                        let _ = sink.send(Message::Text(frame.into())).await;
                        return; // dropping both halves closes the TCP stream
                    }
                    Ok(Cmd::Freeze) => {
                        // Hold both halves, read nothing, until the client gives up.
                        let _hold = (sink, source);
                        tokio::time::sleep(Duration::from_secs(600)).await;
                        return;
                    }
                    Ok(Cmd::Drop) | Err(_) => return,
                },
                frame = source.next() => match frame {
                    Some(Ok(Message::Text(t))) => {
                        let v: Value = serde_json::from_str(t.as_str()).unwrap_or_default();
                        if let Some(id) = v["envelope_id"].as_str() {
                            let mut g = self.inner.lock().unwrap();
                            g.unacked.remove(id);
                            g.acks.push(id.to_owned());
                        }
                    }
                    Some(Ok(_)) => {}
                    _ => return,
                },
            }
        }
    }
}

fn ok(v: Value) -> Response {
    let mut v = v;
    v["ok"] = json!(true);
    (StatusCode::OK, axum::Json(v)).into_response()
}

fn err(code: &str) -> Response {
    (
        StatusCode::OK,
        axum::Json(json!({"ok": false, "error": code})),
    )
        .into_response()
}

async fn api(
    State(fake): State<FakeSlack>,
    Path(method): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let req: Value = if body.is_empty() {
        let q: HashMap<String, String> =
            serde_urlencoded::from_str(query.as_deref().unwrap_or_default()).unwrap_or_default();
        serde_json::to_value(q).unwrap()
    } else {
        serde_json::from_slice(&body).unwrap_or_else(|_| {
            let q: HashMap<String, String> =
                serde_urlencoded::from_bytes(&body).unwrap_or_default();
            serde_json::to_value(q).unwrap()
        })
    };
    let mut g = fake.inner.lock().unwrap();
    let mut call = Call {
        method: method.clone(),
        body: req.clone(),
        ts: None,
        limited: false,
        at: std::time::Instant::now(),
    };
    let channel = req["channel"].as_str().unwrap_or_default().to_owned();
    let resp = match method.as_str() {
        "auth.test" => {
            if !auth.starts_with("Bearer xoxb-") {
                err("invalid_auth")
            } else {
                ok(
                    json!({"url":"https://acme.slack.com/","team":"Acme","user":"caseroom",
                          "team_id":"T1","user_id":BOT_USER,"bot_id":"B1"}),
                )
            }
        }
        "apps.connections.open" => {
            if !auth.starts_with("Bearer xapp-") {
                err("invalid_auth")
            } else {
                g.opens += 1;
                ok(json!({"url": format!("ws://{}/link?ticket={}", fake.ws_addr, g.opens)}))
            }
        }
        "chat.postMessage" => {
            let left = g.limited.get(&channel).copied().unwrap_or(0);
            if left > 0 {
                g.limited.insert(channel.clone(), left - 1);
                call.limited = true;
                g.calls.push(call);
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    [("retry-after", "1"), ("content-type", "application/json")],
                    r#"{"ok":false,"error":"ratelimited"}"#,
                )
                    .into_response();
            }
            let ts = format!("1800000000.{:06}", g.next_ts);
            g.next_ts += 1;
            g.bot_posts.insert(ts.clone(), channel.clone());
            call.ts = Some(ts.clone());
            let text = req["text"].clone();
            let mut stored = json!({"type":"message","ts": ts,"bot_id":"B1","user": BOT_USER,
                                    "text": text, "metadata": req["metadata"]});
            if let Some(t) = req["thread_ts"].as_str() {
                stored["thread_ts"] = json!(t);
            }
            g.bot_messages.insert((channel.clone(), ts.clone()), stored);
            let lose = g.lose_answers.get(&channel).copied().unwrap_or(0);
            if lose > 0 {
                g.lose_answers.insert(channel.clone(), lose - 1);
                g.calls.push(call);
                return (StatusCode::SERVICE_UNAVAILABLE, "upstream timeout").into_response();
            }
            if g.hang_answers.contains(&channel) {
                // Headers now, the body never (within the bot's timeout).
                g.calls.push(call);
                let never = futures_util::stream::once(async {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    Ok::<_, std::convert::Infallible>(Bytes::from_static(b"{\"ok\":false}"))
                });
                return (
                    [("content-type", "application/json")],
                    axum::body::Body::from_stream(never),
                )
                    .into_response();
            }
            ok(json!({"channel": channel, "ts": ts,
                      "message": {"type":"message","ts": ts,"bot_id":"B1","text": text}}))
        }
        "chat.update" => {
            let ts = req["ts"].as_str().unwrap_or_default().to_owned();
            if !g.bot_posts.contains_key(&ts) {
                err("message_not_found")
            } else {
                call.ts = Some(ts.clone());
                ok(json!({"channel": channel, "ts": ts, "text": req["text"],
                          "message": {"text": req["text"], "bot_id": "B1"}}))
            }
        }
        "chat.postEphemeral" => {
            let ts = format!("1800000000.{:06}", g.next_ts);
            g.next_ts += 1;
            ok(json!({"message_ts": ts}))
        }
        "chat.delete" => {
            let ts = req["ts"].as_str().unwrap_or_default().to_owned();
            call.ts = Some(ts.clone());
            let human = g.messages.contains_key(&(channel.clone(), ts.clone()));
            if g.bot_posts.remove(&ts).is_some() {
                g.bot_messages.remove(&(channel.clone(), ts.clone()));
                ok(json!({"channel": channel, "ts": ts}))
            } else if human && auth.starts_with("Bearer xoxp-") {
                // A user token of an admin may delete people's messages.
                g.messages.remove(&(channel.clone(), ts.clone()));
                ok(json!({"channel": channel, "ts": ts}))
            } else {
                err("cant_delete_message")
            }
        }
        "conversations.history" | "conversations.replies" => {
            let with_metadata = req["include_all_metadata"].as_str() == Some("true")
                || req["include_all_metadata"] == json!(true);
            // People's messages (top level) and the bot's posts, oldest first.
            let mut all: Vec<Value> = g
                .messages
                .iter()
                .filter(|((c, _), _)| *c == channel)
                .map(|((_, ts), (user, text))| json!({"type":"message","user":user,"text":text,"ts":ts}))
                .chain(
                    g.bot_messages
                        .iter()
                        .filter(|((c, _), _)| *c == channel)
                        .map(|(_, m)| m.clone()),
                )
                .collect();
            all.sort_by(|a, b| a["ts"].as_str().cmp(&b["ts"].as_str()));
            for m in &mut all {
                if !with_metadata || m["metadata"].is_null() {
                    m.as_object_mut().unwrap().remove("metadata");
                }
            }
            let limit = req["limit"]
                .as_str()
                .and_then(|l| l.parse().ok())
                .or(req["limit"].as_u64().map(|l| l as usize))
                .unwrap_or(100);
            let messages: Vec<Value> = if method == "conversations.history" {
                // Top-level messages, newest first, up to `latest`.
                let latest = req["latest"].as_str().map(str::to_owned);
                let inclusive =
                    req["inclusive"].as_str() == Some("true") || req["inclusive"] == json!(true);
                all.into_iter()
                    .rev()
                    .filter(|m| m["thread_ts"].is_null() || m["thread_ts"] == m["ts"])
                    .filter(|m| match &latest {
                        None => true,
                        Some(l) => {
                            let ts = m["ts"].as_str().unwrap_or_default();
                            ts < l.as_str() || (inclusive && ts == l)
                        }
                    })
                    .take(limit)
                    .collect()
            } else {
                // The thread: its root, then the replies, oldest first (a
                // reply's own ts gives just that message).
                let ts = req["ts"].as_str().unwrap_or_default().to_owned();
                all.into_iter()
                    .filter(|m| m["ts"] == json!(ts) || m["thread_ts"] == json!(ts))
                    .take(limit)
                    .collect()
            };
            ok(json!({"messages": messages, "has_more": false}))
        }
        _ => err("unknown_method"),
    };
    g.calls.push(call);
    resp
}

async fn response_url(
    State(fake): State<FakeSlack>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let v: Value = serde_json::from_slice(&body).unwrap_or_default();
    fake.inner.lock().unwrap().responses.push((id, v));
    (StatusCode::OK, "ok").into_response()
}
