//! The Matrix adapter against a real Synapse.
//!
//! [`synapse()`] uses the server at `MATRIX_HOMESERVER_URL` when that is set
//! (CI starts one), else starts one with the shared `matrix-test-server`
//! script, once per test process, and leaves it running for the next run
//! (`matrix-test-server stop` ends it). Every test registers its own users
//! and creates its own rooms, with names unique per process and run, so
//! tests run in parallel and reruns against the same server never collide.
//!
//! The people in these tests are plain matrix-sdk clients; the bot is
//! [`MatrixPlatform`].

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use caseroom::config::{E2eeConfig, MatrixConfig, Rooms, Secret};
use caseroom::message::{Incoming, IncomingKind, Outgoing};
use caseroom::platform::matrix::{DEVICE_NAME, MatrixPlatform, SYNC_TOKEN_KEY};
use caseroom::platform::{Platform, SendError};
use caseroom::store::Store;
use matrix_sdk::Client;
use matrix_sdk::ruma::api::client::membership::joined_rooms;
use matrix_sdk::ruma::api::client::message::get_message_events;
use matrix_sdk::ruma::api::client::room::{create_room, get_room_event};
use matrix_sdk::ruma::events::reaction::ReactionEventContent;
use matrix_sdk::ruma::events::relation::{Annotation, Thread};
use matrix_sdk::ruma::events::room::message::{Relation, RoomMessageEventContent};
use matrix_sdk::ruma::{OwnedEventId, OwnedRoomId, UInt};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

/// A running Synapse for tests.
#[derive(Debug, Clone)]
pub struct Synapse {
    /// Its client-server API base URL, e.g. `http://127.0.0.1:8008`.
    pub url: String,
    /// The `matrix-test-server` script, for `register`.
    script: PathBuf,
}

/// The test homeserver: `MATRIX_HOMESERVER_URL` if set, else one started
/// with the `matrix-test-server` script (from `CASEROOM_MATRIX_TEST_SERVER`,
/// or `../shared/scripts/` next to the repository), once per process.
pub fn synapse() -> Synapse {
    static SYNAPSE: OnceLock<Synapse> = OnceLock::new();
    // Logs of the code under test, shown for failing tests (`RUST_LOG`).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
    SYNAPSE
        .get_or_init(|| {
            let script = std::env::var_os("CASEROOM_MATRIX_TEST_SERVER")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                        .join("../shared/scripts/matrix-test-server")
                });
            let url = match std::env::var("MATRIX_HOMESERVER_URL") {
                Ok(url) if !url.is_empty() => url,
                _ => {
                    let out = Command::new("bash")
                        .arg(&script)
                        .arg("start")
                        .output()
                        .expect("run matrix-test-server start");
                    assert!(
                        out.status.success(),
                        "matrix-test-server start failed:\n{}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                    String::from_utf8(out.stdout).unwrap().trim().to_owned()
                }
            };
            Synapse { url, script }
        })
        .clone()
}

impl Synapse {
    /// Registers a user (a no-op if it exists) and returns its user id.
    pub fn register(&self, name: &str, password: &str) -> String {
        let out = Command::new("bash")
            .arg(&self.script)
            .args(["register", name, password])
            .output()
            .expect("run matrix-test-server register");
        assert!(
            out.status.success(),
            "matrix-test-server register {name} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// A matrix-sdk client logged in as `user` (a test's human).
    pub async fn login(&self, user: &str, password: &str) -> Client {
        let client = Client::builder()
            .homeserver_url(&self.url)
            .build()
            .await
            .expect("build a matrix-sdk client");
        client
            .matrix_auth()
            .login_username(user, password)
            .initial_device_display_name("test")
            .send()
            .await
            .expect("log in");
        client
    }

    /// Config for a bot logging in as `user_id` with a password, with
    /// end-to-end encryption on (the default), so plain rooms are tested
    /// through the encrypting client too.
    pub fn bot_config(&self, user_id: &str, password: &str) -> MatrixConfig {
        MatrixConfig {
            homeserver: self.url.clone(),
            user_id: user_id.to_owned(),
            password: Some(Secret::new("TEST_MATRIX_PASSWORD", password)),
            access_token: None,
            invite_from: Vec::new(),
            e2ee: Some(E2eeConfig {
                store_passphrase: Secret::new("TEST_MATRIX_STORE_PASSPHRASE", "test-store-pw"),
                recovery_key: None,
            }),
        }
    }
}

/// A user or room name unique to this process and run: `prefix` + time +
/// pid + counter, all lowercase as Matrix localparts require.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}x{}x{n}", secs % 1_000_000, std::process::id())
}

/// The sync loop of a bot under test.
struct Running {
    rx: mpsc::Receiver<Incoming>,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    fn start(bot: &Arc<MatrixPlatform>) -> Running {
        let (tx, rx) = mpsc::channel(256);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(bot.clone().sync_loop(tx, shutdown.clone()));
        Running { rx, shutdown, task }
    }

    /// The next event, within `wait`.
    async fn next_within(&mut self, wait: Duration) -> Option<Incoming> {
        tokio::time::timeout(wait, self.rx.recv())
            .await
            .ok()
            .flatten()
    }

    async fn next(&mut self) -> Incoming {
        self.next_within(Duration::from_secs(30))
            .await
            .expect("an Incoming within 30 s")
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let result = tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("run stops within 10 s of shutdown")
            .expect("run does not panic");
        result.expect("run ends without error");
    }
}

fn text_of(incoming: &Incoming) -> (&str, Option<&str>) {
    match &incoming.kind {
        IncomingKind::Message { text, thread_root } => (text, thread_root.as_deref()),
        other => panic!("expected a message, got {other:?}"),
    }
}

/// A room created by `owner`, inviting `invite`.
pub(super) async fn create_room(
    owner: &Client,
    invite: &[&str],
    alias: Option<&str>,
) -> OwnedRoomId {
    let mut request = create_room::v3::Request::new();
    request.invite = invite.iter().map(|u| u.parse().unwrap()).collect();
    request.name = Some(unique("room"));
    request.room_alias_name = alias.map(str::to_owned);
    owner
        .create_room(request)
        .await
        .expect("create a room")
        .room_id()
        .to_owned()
}

async fn say(
    client: &Client,
    room: &OwnedRoomId,
    content: RoomMessageEventContent,
) -> OwnedEventId {
    let room = client.get_room(room).expect("the sender knows the room");
    room.send(content).await.expect("send").response.event_id
}

/// `client` writes plain `text` in `room`, in the thread of `thread` when
/// given; returns the new event's id.
pub(super) async fn send_text(
    client: &Client,
    room: &OwnedRoomId,
    text: &str,
    thread: Option<&str>,
) -> OwnedEventId {
    let mut content = RoomMessageEventContent::text_plain(text);
    if let Some(root) = thread {
        let root: OwnedEventId = root.parse().unwrap();
        content.relates_to = Some(Relation::Thread(Thread::plain(root.clone(), root)));
    }
    say(client, room, content).await
}

/// An event as `client` sees it through the server, as JSON.
async fn fetch(client: &Client, room: &OwnedRoomId, event: &str) -> Value {
    let request = get_room_event::v3::Request::new(room.clone(), event.parse().unwrap());
    let response = client.send(request).await.expect("fetch an event");
    serde_json::from_str(response.event.json().get()).unwrap()
}

/// The bodies of the latest (up to 200) messages in a room, oldest first.
async fn bodies(client: &Client, room: &OwnedRoomId) -> Vec<String> {
    let mut request = get_message_events::v3::Request::backward(room.clone());
    request.limit = UInt::from(200u32);
    let response = client.send(request).await.expect("room messages");
    let mut out: Vec<String> = response
        .chunk
        .iter()
        .filter_map(|raw| {
            let v: Value = serde_json::from_str(raw.json().get()).ok()?;
            (v["type"] == "m.room.message")
                .then(|| v["content"]["body"].as_str().unwrap().to_owned())
        })
        .collect();
    out.reverse();
    out
}

async fn joined_rooms(client: &Client) -> Vec<OwnedRoomId> {
    client
        .send(joined_rooms::v3::Request::new())
        .await
        .expect("joined rooms")
        .joined_rooms
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_threads_reactions_sends_and_restart() {
    let hs = synapse();
    let (bot_name, alice_name) = (unique("bot"), unique("alice"));
    let bot_id = hs.register(&bot_name, "botpass");
    let alice_id = hs.register(&alice_name, "alicepass");
    let alice = hs.login(&alice_id, "alicepass").await;
    let room = create_room(&alice, &[&bot_id], None).await;

    // Connect: logs in, joins the invited team room.
    let data = tempfile::tempdir().unwrap();
    let store = Store::open(data.path()).unwrap();
    let config = hs.bot_config(&bot_id, "botpass");
    let rooms = Rooms {
        team: room.to_string(),
        intake: vec![room.to_string()],
        oncall: room.to_string(),
    };
    let t = Instant::now();
    let (bot, resolved) = MatrixPlatform::connect(&config, &rooms, store.clone())
        .await
        .unwrap();
    eprintln!(
        "connect (password login, join, first sync): {:?}",
        t.elapsed()
    );
    assert_eq!(resolved, rooms);
    assert_eq!(bot.name(), "matrix");
    assert_eq!(bot.user_id(), bot_id);
    let device = bot.device_id().expect("a device id");
    assert!(store.get_state(SYNC_TOKEN_KEY).unwrap().is_some());
    let mut run = Running::start(&bot);

    // A message, a threaded rich reply (with its fallback), a reaction.
    let root = say(
        &alice,
        &room,
        RoomMessageEventContent::text_plain("hello bot"),
    )
    .await;
    let got = run.next().await;
    assert_eq!(got.room, room.as_str());
    assert_eq!(got.sender, alice_id);
    assert_eq!(got.event_id, root.as_str());
    assert_eq!(text_of(&got), ("hello bot", None));

    let mut reply =
        RoomMessageEventContent::text_plain(format!("> <{alice_id}> hello bot\n\n!claim"));
    reply.relates_to = Some(Relation::Thread(Thread::reply(root.clone(), root.clone())));
    let reply_id = say(&alice, &room, reply).await;
    let got = run.next().await;
    assert_eq!(got.event_id, reply_id.as_str());
    assert_eq!(text_of(&got), ("!claim", Some(root.as_str())));

    let mut plain_in_thread = RoomMessageEventContent::text_plain("note checked the card");
    plain_in_thread.relates_to = Some(Relation::Thread(Thread::plain(
        root.clone(),
        reply_id.clone(),
    )));
    say(&alice, &room, plain_in_thread).await;
    assert_eq!(
        text_of(&run.next().await),
        ("note checked the card", Some(root.as_str()))
    );

    let reaction = alice
        .get_room(&room)
        .unwrap()
        .send(ReactionEventContent::new(Annotation::new(
            root.clone(),
            "🎫".to_owned(),
        )))
        .await
        .unwrap()
        .response
        .event_id;
    let got = run.next().await;
    assert_eq!(got.event_id, reaction.as_str());
    assert_eq!(got.sender, alice_id);
    assert_eq!(
        got.kind,
        IncomingKind::Reaction {
            key: "🎫".to_owned(),
            target: root.to_string(),
            target_text: Some("hello bot".to_owned()),
            target_sender: Some(alice_id.clone()),
        }
    );

    // Notices and edits are not commands.
    say(
        &alice,
        &room,
        RoomMessageEventContent::notice_plain("a notice"),
    )
    .await;
    let edit = RoomMessageEventContent::text_plain("hello bot!").make_replacement(
        matrix_sdk::ruma::events::room::message::ReplacementMetadata::new(root.clone(), None),
    );
    say(&alice, &room, edit).await;

    // The bot posts a case root and a thread reply mentioning alice.
    let case_root = Outgoing::new(room.as_str(), "**Case 1** card payment failed");
    let t = Instant::now();
    let root_id = bot.send(&case_root, None, &unique("txn")).await.unwrap();
    let send_latency = t.elapsed();
    let root_json = fetch(&alice, &room, &root_id).await;
    assert_eq!(root_json["sender"], bot_id);
    assert_eq!(
        root_json["content"]["body"],
        "**Case 1** card payment failed"
    );
    assert_eq!(root_json["content"]["format"], "org.matrix.custom.html");
    assert_eq!(
        root_json["content"]["formatted_body"],
        "<strong>Case 1</strong> card payment failed"
    );
    assert!(root_json["content"].get("m.relates_to").is_none());
    assert_eq!(root_json["content"]["m.mentions"], serde_json::json!({}));

    let ask = Outgoing::new(room.as_str(), "please take this one").mention([alice_id.clone()]);
    let txn = unique("txn");
    let ask_id = bot.send(&ask, Some(&root_id), &txn).await.unwrap();
    let ask_json = fetch(&alice, &room, &ask_id).await;
    let content = &ask_json["content"];
    assert_eq!(content["m.relates_to"]["rel_type"], "m.thread");
    assert_eq!(content["m.relates_to"]["event_id"], root_id);
    assert_eq!(content["m.relates_to"]["is_falling_back"], true);
    assert_eq!(
        content["m.relates_to"]["m.in_reply_to"]["event_id"],
        root_id
    );
    assert_eq!(
        content["m.mentions"]["user_ids"],
        serde_json::json!([alice_id])
    );
    assert_eq!(content["body"], format!("{alice_id}: please take this one"));
    assert_eq!(
        content["formatted_body"],
        format!("<a href=\"https://matrix.to/#/{alice_id}\">{alice_id}</a>: please take this one")
    );

    // The same transaction id again (an outbox retry): no second event.
    let again = bot.send(&ask, Some(&root_id), &txn).await.unwrap();
    assert_eq!(again, ask_id);
    let posted = bodies(&alice, &room).await;
    let asks = posted
        .iter()
        .filter(|b| b.ends_with("please take this one"))
        .count();
    assert_eq!(asks, 1, "{posted:?}");

    // Errors: no such room is permanent.
    let nowhere = Outgoing::new("!nosuchroom:localhost", "hi");
    match bot.send(&nowhere, None, &unique("txn")).await {
        Err(SendError::Permanent(_)) => {}
        other => panic!("expected a permanent error, got {other:?}"),
    }
    match bot
        .send(&Outgoing::new("team", "hi"), None, &unique("txn"))
        .await
    {
        Err(SendError::Permanent(_)) => {}
        other => panic!("expected a permanent error, got {other:?}"),
    }

    // The bot's own messages, the notice and the edit were not delivered:
    // the next event is this marker.
    say(
        &alice,
        &room,
        RoomMessageEventContent::text_plain("marker 1"),
    )
    .await;
    assert_eq!(text_of(&run.next().await), ("marker 1", None));

    // Latency from alice's send to the bot's Incoming.
    // A pasted card number reaches the bot (which redacts and deletes it)
    // but its kept copy on disk is redacted.
    say(
        &alice,
        &room,
        RoomMessageEventContent::text_plain("my card is 4111 1111 1111 1111"),
    )
    .await;
    let got = run.next().await;
    assert_eq!(text_of(&got).0, "my card is 4111 1111 1111 1111");
    let kept: Vec<_> = store
        .inbox("matrix:")
        .unwrap()
        .into_iter()
        .filter(|(_, v)| String::from_utf8_lossy(v).contains(&got.event_id))
        .collect();
    assert_eq!(kept.len(), 1);
    assert!(String::from_utf8_lossy(&kept[0].1).contains("[card ****1111]"));

    let mut latencies = Vec::new();
    let mut last_ping = String::new();
    for i in 0..10 {
        let t = Instant::now();
        say(
            &alice,
            &room,
            RoomMessageEventContent::text_plain(format!("ping {i}")),
        )
        .await;
        let got = run.next().await;
        latencies.push(t.elapsed());
        assert_eq!(text_of(&got).0, format!("ping {i}"));
        last_ping = got.event_id;
    }
    eprintln!(
        "send->Incoming latency over 10: median {:?}, max {:?}; bot send round trip {send_latency:?}",
        median(latencies.clone()),
        latencies.iter().max().unwrap()
    );

    // Every event handed over is kept until the bot reports it handled.
    // The test stands in for the bot: all were handled but "ping 9", as if
    // the process died after the sync token moved past it and before the
    // bot committed it.
    let kept = store.inbox("matrix:").unwrap();
    assert!(kept.len() >= 10, "{} events kept", kept.len());
    for (key, bytes) in &kept {
        assert!(
            !String::from_utf8_lossy(bytes).contains("4111"),
            "kept events are redacted"
        );
        let event: caseroom::message::Incoming = serde_json::from_slice(bytes)
            .unwrap_or_else(|e| panic!("kept event {key} does not parse: {e}"));
        if event.event_id != last_ping {
            bot.handled(&event.event_id);
        }
    }
    assert_eq!(store.inbox("matrix:").unwrap().len(), 1);

    // Restart. While the bot is away alice sends more than one sync
    // response carries (the adapter fills the gap).
    run.stop().await;
    drop(bot);
    let away: Vec<String> = (0..60).map(|i| format!("while away {i}")).collect();
    for text in &away {
        say(
            &alice,
            &room,
            RoomMessageEventContent::text_plain(text.as_str()),
        )
        .await;
    }
    let t = Instant::now();
    let (bot, _) = MatrixPlatform::connect(&config, &rooms, store.clone())
        .await
        .unwrap();
    eprintln!("reconnect (restored session): {:?}", t.elapsed());
    assert_eq!(
        bot.device_id().as_deref(),
        Some(device.as_str()),
        "no new device"
    );
    let mut run = Running::start(&bot);
    say(
        &alice,
        &room,
        RoomMessageEventContent::text_plain("marker 2"),
    )
    .await;
    let mut seen = Vec::new();
    loop {
        let got = run.next().await;
        let (text, _) = text_of(&got);
        if text == "marker 2" {
            break;
        }
        seen.push(text.to_owned());
    }
    let expected: Vec<String> = std::iter::once("ping 9".to_owned())
        .chain(away.iter().cloned())
        .collect();
    assert_eq!(
        seen, expected,
        "the unhandled event first, then exactly the missed messages, in order"
    );

    // Only one device with the bot's display name exists.
    let checker = hs.login(&bot_id, "botpass").await;
    let devices = checker.devices().await.unwrap().devices;
    let bot_devices: Vec<_> = devices
        .iter()
        .filter(|d| d.display_name.as_deref() == Some(DEVICE_NAME))
        .map(|d| d.device_id.to_string())
        .collect();
    assert_eq!(bot_devices, [device]);
    run.stop().await;
}

/// A TCP forwarder to the homeserver that a test can take down and bring
/// back on the same port, to see the adapter reconnect.
struct Proxy {
    port: u16,
    upstream: String,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Proxy {
    async fn start(upstream_url: &str) -> Proxy {
        let upstream = upstream_url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let proxy = Proxy {
            port,
            upstream,
            task: Mutex::new(None),
        };
        proxy.serve(listener);
        proxy
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn serve(&self, listener: TcpListener) {
        let upstream = self.upstream.clone();
        let task = tokio::spawn(async move {
            // Dropping the set (when this task is aborted) aborts every
            // connection, like a homeserver going away.
            let mut connections = JoinSet::new();
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                let upstream = upstream.clone();
                connections.spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        *self.task.lock().unwrap() = Some(task);
    }

    fn down(&self) {
        if let Some(task) = self.task.lock().unwrap().take() {
            task.abort();
        }
    }

    async fn up(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        self.serve(listener);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aliases_invites_and_reconnect() {
    let hs = synapse();
    let (bot_name, lead_name, stranger_name) = (unique("bot"), unique("lead"), unique("stranger"));
    let bot_id = hs.register(&bot_name, "botpass");
    let lead_id = hs.register(&lead_name, "leadpass");
    let stranger_id = hs.register(&stranger_name, "strangerpass");
    let lead = hs.login(&lead_id, "leadpass").await;
    let stranger = hs.login(&stranger_id, "strangerpass").await;

    // The team room is configured by alias; the bot is invited to it.
    let alias_name = unique("team");
    let team = create_room(&lead, &[&bot_id], Some(&alias_name)).await;

    let proxy = Proxy::start(&hs.url).await;
    let data = tempfile::tempdir().unwrap();
    let store = Store::open(data.path()).unwrap();
    let mut config = hs.bot_config(&bot_id, "botpass");
    config.homeserver = proxy.url();
    config.invite_from = vec![lead_id.clone()];
    let alias = format!("#{alias_name}:localhost");
    let rooms = Rooms {
        team: alias.clone(),
        intake: vec![alias.clone()],
        oncall: alias.clone(),
    };
    let (bot, resolved) = MatrixPlatform::connect(&config, &rooms, store)
        .await
        .unwrap();
    assert_eq!(resolved.team, team.as_str());
    assert_eq!(resolved.intake, [team.to_string()]);
    assert_eq!(resolved.oncall, team.as_str());
    let mut run = Running::start(&bot);
    let checker = hs.login(&bot_id, "botpass").await;
    assert!(joined_rooms(&checker).await.contains(&team));

    // Invites: a stranger's to an unconfigured room is ignored; the
    // trusted lead's is accepted.
    // The lead's room has history from before the bot was invited.
    let strangers = create_room(&stranger, &[&bot_id], None).await;
    let leads = create_room(&lead, &[], None).await;
    say(
        &lead,
        &leads,
        RoomMessageEventContent::text_plain("old history"),
    )
    .await;
    lead.get_room(&leads)
        .unwrap()
        .invite_user_by_id(&bot_id.parse::<matrix_sdk::ruma::OwnedUserId>().unwrap())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !joined_rooms(&checker).await.contains(&leads) {
        assert!(
            Instant::now() < deadline,
            "the trusted invite was not accepted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!joined_rooms(&checker).await.contains(&strangers));

    // Messages in the newly joined room flow, without its history ("old
    // history" is visible to the bot, but is not delivered).
    say(
        &lead,
        &leads,
        RoomMessageEventContent::text_plain("in the new room"),
    )
    .await;
    let got = run.next().await;
    assert_eq!(got.room, leads.as_str());
    assert_eq!(text_of(&got), ("in the new room", None));

    // The homeserver goes away.
    proxy.down();
    let outage = Instant::now();
    match bot
        .send(
            &Outgoing::new(team.as_str(), "during outage"),
            None,
            &unique("txn"),
        )
        .await
    {
        Err(SendError::Transient(_)) => {}
        other => panic!("expected a transient error, got {other:?}"),
    }
    say(
        &lead,
        &team,
        RoomMessageEventContent::text_plain("sent during the outage"),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(run.next_within(Duration::from_millis(10)).await.is_none());

    // ... and comes back: the missed message arrives.
    proxy.up().await;
    let back = Instant::now();
    let got = run.next().await;
    assert_eq!(text_of(&got), ("sent during the outage", None));
    eprintln!(
        "outage {:?}; message delivered {:?} after the homeserver came back",
        back - outage,
        back.elapsed()
    );
    assert!(back.elapsed() < Duration::from_secs(20));
    let sent = bot
        .send(
            &Outgoing::new(team.as_str(), "after outage"),
            None,
            &unique("txn"),
        )
        .await
        .unwrap();
    assert_eq!(
        fetch(&lead, &team, &sent).await["content"]["body"],
        "after outage"
    );

    run.stop().await;
    proxy.down();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_token_login_and_revoked_session() {
    let hs = synapse();
    let (bot_name, lead_name) = (unique("bot"), unique("lead"));
    let bot_id = hs.register(&bot_name, "botpass");
    let lead_id = hs.register(&lead_name, "leadpass");
    let lead = hs.login(&lead_id, "leadpass").await;
    let room = create_room(&lead, &[&bot_id], None).await;
    let rooms = Rooms {
        team: room.to_string(),
        intake: vec![],
        oncall: room.to_string(),
    };
    let data = tempfile::tempdir().unwrap();
    let store = Store::open(data.path()).unwrap();

    // An access token minted elsewhere: the bot uses that token's device.
    let minted = hs.login(&bot_id, "botpass").await;
    let session = minted.matrix_auth().session().unwrap();
    let mut config = hs.bot_config(&bot_id, "botpass");
    // The token's device already belongs to another (encrypting) client,
    // and a revoked session cannot keep its crypto store: this is the
    // `encryption = false` path.
    config.e2ee = None;
    config.password = None;
    config.access_token = Some(Secret::new(
        "TEST_MATRIX_TOKEN",
        session.tokens.access_token.clone(),
    ));
    let (bot, _) = MatrixPlatform::connect(&config, &rooms, store.clone())
        .await
        .unwrap();
    assert_eq!(bot.device_id(), Some(session.meta.device_id.to_string()));
    let sent = bot
        .send(
            &Outgoing::new(room.as_str(), "with a token"),
            None,
            &unique("txn"),
        )
        .await
        .unwrap();
    assert_eq!(fetch(&lead, &room, &sent).await["sender"], bot_id);
    drop(bot);

    // That token is revoked. With a password configured instead, the saved
    // session is rejected and the bot logs in again (a new device).
    minted.logout().await.unwrap();
    config.access_token = None;
    config.password = Some(Secret::new("TEST_MATRIX_PASSWORD", "botpass"));
    let (bot, _) = MatrixPlatform::connect(&config, &rooms, store.clone())
        .await
        .unwrap();
    let device = bot.device_id().unwrap();
    assert_ne!(device, session.meta.device_id.as_str());
    let mut run = Running::start(&bot);
    say(
        &lead,
        &room,
        RoomMessageEventContent::text_plain("after re-login"),
    )
    .await;
    assert_eq!(text_of(&run.next().await), ("after re-login", None));
    run.stop().await;
    drop(bot);

    // And the new session is the one restored next time.
    let (bot, _) = MatrixPlatform::connect(&config, &rooms, store)
        .await
        .unwrap();
    assert_eq!(bot.device_id(), Some(device));

    // A wrong password with nothing saved is a clear error, not a panic.
    let empty = tempfile::tempdir().unwrap();
    let mut wrong = hs.bot_config(&bot_id, "wrong");
    wrong.invite_from = vec![lead_id];
    let err = MatrixPlatform::connect(&wrong, &rooms, Store::open(empty.path()).unwrap())
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("password login"), "{err:#}");
}
