//! The bot in end-to-end encrypted rooms on a real Synapse.
//!
//! The people here are matrix-sdk clients with E2EE and their own SQLite
//! store in a temp dir, cross-signed like Element users, syncing in the
//! background and recording every message they can decrypt. The bot shares
//! room keys only with cross-signed devices (Element's "exclude insecure
//! devices"), and the people check that the bot's device is cross-signed by
//! its account.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use caseroom::config::Rooms;
use caseroom::config::{Config, Secret};
use caseroom::platform::matrix::{MatrixPlatform, STORE_DIR};
use caseroom::store::Store;
use matrix_sdk::config::SyncSettings;
use matrix_sdk::deserialized_responses::EncryptionInfo;
use matrix_sdk::ruma::api::client::message::get_message_events;
use matrix_sdk::ruma::api::client::uiaa;
use matrix_sdk::ruma::events::reaction::ReactionEventContent;
use matrix_sdk::ruma::events::relation::{Annotation, Thread};
use matrix_sdk::ruma::events::room::message::{
    OriginalSyncRoomMessageEvent, Relation, RoomMessageEventContent,
};
use matrix_sdk::ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, UInt};
use matrix_sdk::{Client, Room};
use serde_json::Value;
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::matrix_adapter::{Synapse, create_room, synapse, unique};
use super::util::test_config;

const CARD: &str = "6222 0212 3456 7890 128";

/// A message a person's client decrypted (or received in clear).
#[derive(Debug, Clone)]
struct Seen {
    room: OwnedRoomId,
    id: String,
    sender: String,
    body: String,
    thread: Option<String>,
    /// The event an edit (`m.replace`) replaces, and its new text.
    edit: Option<(String, String)>,
    ts: i64,
    encrypted: bool,
}

/// A person using an encrypting, cross-signed client.
struct Person {
    id: String,
    client: Client,
    seen: Arc<Mutex<Vec<Seen>>>,
    sync: JoinHandle<()>,
    _dir: TempDir,
}

impl Drop for Person {
    fn drop(&mut self) {
        self.sync.abort();
    }
}

/// Creates the cross-signing identity of a freshly logged-in client.
async fn cross_sign(client: &Client, user: &str, password: &str) {
    // Upload the device keys first, so the identity can sign the device.
    client
        .sync_once(SyncSettings::new().timeout(Duration::ZERO))
        .await
        .unwrap();
    if let Err(e) = client.encryption().bootstrap_cross_signing(None).await {
        let uiaa_info = e.as_uiaa_response().expect("only UIA may be asked for");
        let mut auth = uiaa::Password::new(
            uiaa::UserIdentifier::Matrix(uiaa::MatrixUserIdentifier::new(user.to_owned())),
            password.to_owned(),
        );
        auth.session = uiaa_info.session.clone();
        client
            .encryption()
            .bootstrap_cross_signing(Some(uiaa::AuthData::Password(auth)))
            .await
            .expect("cross-signing with the password");
    }
}

impl Person {
    async fn new(syn: &Synapse, prefix: &str) -> Person {
        let id = syn.register(&unique(prefix), "pw");
        let dir = tempfile::tempdir().unwrap();
        let client = Client::builder()
            .homeserver_url(&syn.url)
            .sqlite_store(dir.path(), Some("person-store"))
            .build()
            .await
            .unwrap();
        client
            .matrix_auth()
            .login_username(&id, "pw")
            .initial_device_display_name("person")
            .send()
            .await
            .unwrap();
        cross_sign(&client, &id, "pw").await;
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        client.add_event_handler({
            let seen = seen.clone();
            move |ev: OriginalSyncRoomMessageEvent, room: Room, info: Option<EncryptionInfo>| {
                let seen = seen.clone();
                async move {
                    let thread = match &ev.content.relates_to {
                        Some(Relation::Thread(t)) => Some(t.event_id.to_string()),
                        _ => None,
                    };
                    let edit = match &ev.content.relates_to {
                        Some(Relation::Replacement(r)) => Some((
                            r.event_id.to_string(),
                            r.new_content.msgtype.body().to_owned(),
                        )),
                        _ => None,
                    };
                    seen.lock().unwrap().push(Seen {
                        room: room.room_id().to_owned(),
                        id: ev.event_id.to_string(),
                        sender: ev.sender.to_string(),
                        body: ev.content.body().to_owned(),
                        thread,
                        edit,
                        ts: u64::from(ev.origin_server_ts.0) as i64,
                        encrypted: info.is_some(),
                    });
                }
            }
        });
        let sync = tokio::spawn({
            let client = client.clone();
            async move {
                let _ = client
                    .sync(SyncSettings::new().timeout(Duration::from_secs(1)))
                    .await;
            }
        });
        Person {
            id,
            client,
            seen,
            sync,
            _dir: dir,
        }
    }

    /// An encrypted room with `invite` invited.
    async fn encrypted_room(&self, invite: &[&str]) -> OwnedRoomId {
        let room_id = create_room(&self.client, invite, None).await;
        let room = self.client.get_room(&room_id).unwrap();
        room.enable_encryption().await.expect("enable encryption");
        // The room's state reaches this client by its background sync;
        // until its power levels have, they cannot be changed from here.
        let deadline = Instant::now() + Duration::from_secs(20);
        while room.power_levels().await.is_err() {
            assert!(Instant::now() < deadline, "the room's state never synced");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        room_id
    }

    /// Sends `text` (encrypted in an encrypted room); returns its id and
    /// server timestamp.
    async fn say(&self, room: &OwnedRoomId, text: &str, thread: Option<&str>) -> (String, i64) {
        let mut content = RoomMessageEventContent::text_plain(text);
        if let Some(root) = thread {
            let root: OwnedEventId = root.parse().unwrap();
            content.relates_to = Some(Relation::Thread(Thread::plain(root.clone(), root)));
        }
        let r = self
            .client
            .get_room(room)
            .expect("the person knows the room");
        let id = r.send(content).await.expect("send").response.event_id;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = self.seen().into_iter().find(|s| s.id == id.as_str()) {
                return (s.id, s.ts);
            }
            assert!(Instant::now() < deadline, "own message never synced");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits (up to `secs`) for a message from `bot` in `room` at or after
    /// `after` that matches.
    async fn wait_for(
        &self,
        room: &OwnedRoomId,
        bot: &str,
        after: i64,
        secs: u64,
        pred: impl Fn(&Seen) -> bool,
    ) -> Option<Seen> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(s) = self
                .seen()
                .into_iter()
                .find(|s| &s.room == room && s.sender == bot && s.ts >= after && pred(s))
            {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether every device of `user` is cross-signed by its owner, and how
    /// many devices it has.
    async fn devices_of(&self, user: &str) -> (usize, bool) {
        let user: OwnedUserId = user.parse().unwrap();
        let encryption = self.client.encryption();
        encryption
            .request_user_identity(&user)
            .await
            .expect("query the identity")
            .expect("the user has a cross-signing identity");
        let devices = encryption.get_user_devices(&user).await.unwrap();
        let all: Vec<_> = devices.devices().collect();
        let signed = all.iter().all(|d| d.is_cross_signed_by_owner());
        (all.len(), signed)
    }

    /// The raw events of `room` as the server holds them.
    async fn raw_events(&self, room: &OwnedRoomId) -> Vec<Value> {
        let mut request = get_message_events::v3::Request::backward(room.clone());
        request.limit = UInt::from(1000u32);
        let response = self.client.send(request).await.expect("room messages");
        response
            .chunk
            .iter()
            .filter_map(|raw| serde_json::from_str::<Value>(raw.json().get()).ok())
            .collect()
    }
}

struct BotRun {
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl BotRun {
    fn start(config: &Config) -> BotRun {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(caseroom::app::run(config.clone(), shutdown.clone()));
        BotRun { shutdown, task }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().expect("bot stopped cleanly");
    }
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn device_in(data: &Path) -> String {
    let status: Value = serde_json::from_slice(
        &std::fs::read(data.join(STORE_DIR).join("e2ee-status.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(status["cross_signed"], true, "{status}");
    assert_eq!(status["backup"], true, "{status}");
    status["device_id"].as_str().unwrap().to_owned()
}

/// The whole bot in encrypted rooms: an agent escalates a message with a
/// card number, the case gets an encrypted root and thread, the agent
/// claims and resolves it there, the card number appears nowhere, the
/// bot's device is cross-signed, and a restart keeps the device and handles
/// a message sent while the bot was down exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalate_claim_resolve_and_restart_in_encrypted_rooms() {
    let syn = synapse();
    let bot = syn.register(&unique("e2eebot"), "botpass");
    let agent = Person::new(&syn, "e2eeagent").await;
    let team = agent.encrypted_room(&[&bot]).await;
    let intake = agent.encrypted_room(&[&bot]).await;
    // Moderator rights, so the bot can remove the pasted card number.
    let bot_uid: OwnedUserId = bot.parse().unwrap();
    for room in [&team, &intake] {
        let r = agent.client.get_room(room).unwrap();
        r.update_power_levels(vec![(&bot_uid, matrix_sdk::ruma::Int::new(50).unwrap())])
            .await
            .expect("power level 50 for the bot");
    }

    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    cfg.matrix = Some(syn.bot_config(&bot, "botpass"));
    cfg.rooms.team = team.to_string();
    cfg.rooms.intake = vec![intake.to_string()];
    cfg.rooms.oncall = team.to_string();
    cfg.roles.agent = [agent.id.clone()].into();
    cfg.roles.lead = [agent.id.clone()].into();
    cfg.roles.oncall = [agent.id.clone()].into();
    let run = BotRun::start(&cfg);

    // Until the bot has joined and synced, messages are not its to see:
    // probe with `!help`.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        assert!(Instant::now() < deadline, "the bot never answered `!help`");
        assert!(!run.task.is_finished(), "the bot stopped");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (_, ts) = agent.say(&intake, "!help", None).await;
        if agent
            .wait_for(&intake, &bot, ts, 8, |s| s.body.contains("escalate"))
            .await
            .is_some()
        {
            break;
        }
    }
    let device = device_in(dir.path());
    let (devices, signed) = agent.devices_of(&bot).await;
    assert_eq!(devices, 1, "one device for the bot");
    assert!(signed, "the bot's device is cross-signed by its account");

    // Escalate a message with a card number.
    let (_, t0) = agent
        .say(
            &intake,
            &format!("!escalate 客户反映用卡付款一直失败，提示支付失败，卡号 {CARD}，金额 ¥258.00"),
            None,
        )
        .await;
    agent
        .wait_for(&intake, &bot, t0, 30, |s| s.body.contains("Opened"))
        .await
        .expect("the escalation is acknowledged");
    let root = agent
        .wait_for(&team, &bot, t0, 30, |s| {
            s.thread.is_none() && s.body.contains("C-1")
        })
        .await
        .expect("the case's root message");
    assert!(root.encrypted, "the root is encrypted");
    let suggestion = agent
        .wait_for(&team, &bot, t0, 30, |s| {
            s.thread.as_deref() == Some(&root.id)
        })
        .await
        .expect("a suggestion in the thread");
    assert!(suggestion.encrypted && suggestion.body.contains("支付失败"));
    let t = Some(root.id.as_str());

    // Claim and work the case in the thread; time each command from the
    // agent's send to the bot's reply (both stamped by Synapse): decrypt,
    // handle, encrypt and send.
    let (_, ts) = agent.say(&team, "!claim", t).await;
    agent
        .wait_for(&team, &bot, ts, 30, |s| {
            s.thread.as_deref() == t && s.body.contains("claimed")
        })
        .await
        .expect("claim answered");
    let mut latencies = Vec::new();
    for i in 0..30 {
        let (_, ts) = agent.say(&team, &format!("!note n{i}"), t).await;
        let reply = agent
            .wait_for(&team, &bot, ts, 30, |s| {
                s.thread.as_deref() == t && s.body.contains("Note added") && s.ts >= ts
            })
            .await
            .expect("note answered");
        assert!(reply.encrypted);
        latencies.push(reply.ts - ts);
    }
    latencies.sort();
    eprintln!(
        "encrypted command -> encrypted reply over {} commands: p50 {} ms, p99 {} ms, max {} ms",
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().unwrap()
    );

    // Restart: a message sent while the bot is down is handled once after.
    run.stop().await;
    let (_, ts_down) = agent.say(&team, "!note while down", t).await;
    let run = BotRun::start(&cfg);
    agent
        .wait_for(&team, &bot, ts_down, 60, |s| {
            s.thread.as_deref() == t && s.body.contains("Note added")
        })
        .await
        .expect("the message sent while down is answered after the restart");
    assert_eq!(device_in(dir.path()), device, "same device after restart");
    // ✅ on the card resolves the case: an encrypted reaction on an
    // encrypted message; the card (an encrypted `m.replace`) follows.
    let ts = agent.seen().last().map_or(0, |s| s.ts);
    agent
        .client
        .get_room(&team)
        .unwrap()
        .send(ReactionEventContent::new(Annotation::new(
            root.id.parse().unwrap(),
            "✅".to_owned(),
        )))
        .await
        .expect("react");
    agent
        .wait_for(&team, &bot, ts, 30, |s| s.body.contains("resolved"))
        .await
        .expect("the reaction resolves the case after the restart");
    let card = agent
        .wait_for(&team, &bot, ts, 30, |s| {
            s.edit
                .as_ref()
                .is_some_and(|(target, text)| target == &root.id && text.contains("resolved"))
        })
        .await
        .expect("the card is edited to resolved");
    assert!(card.encrypted, "the card edit is encrypted");
    // No second answer to the message sent while down.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let answers = agent
        .seen()
        .into_iter()
        .filter(|s| {
            s.sender == bot
                && s.ts >= ts_down
                && s.thread.as_deref() == t
                && s.body.contains("Note added")
        })
        .count();
    assert_eq!(answers, 1, "the message sent while down is handled once");
    run.stop().await;
    let (devices, signed) = agent.devices_of(&bot).await;
    assert_eq!(devices, 1, "no new device after the restart");
    assert!(signed);

    // The card number is nowhere: not in any decrypted message of the bot
    // (the agent's message was removed), and not in anything the server
    // holds, where every message of the bot is encrypted.
    let digits = CARD.replace(' ', "");
    for s in agent.seen() {
        if s.sender == bot {
            assert!(s.encrypted, "bot message in clear: {}", s.body);
            assert!(
                !s.body.contains(CARD) && !s.body.contains(&digits),
                "card number in a bot message: {}",
                s.body
            );
        }
    }
    assert!(
        agent
            .seen()
            .iter()
            .any(|s| s.sender == bot && s.body.starts_with("🔒 A message here contained")),
        "the bot removed the pasted card number"
    );
    for room in [&team, &intake] {
        for ev in agent.raw_events(room).await {
            let json = ev.to_string();
            assert!(
                !json.contains(CARD) && !json.contains(&digits),
                "card number on the server: {json}"
            );
            if ev["sender"] == bot.as_str() && ev["type"] == "m.room.message" {
                panic!("the bot sent a message in clear in an encrypted room: {json}");
            }
        }
    }
    let store = Store::open(dir.path()).unwrap();
    let case = store.case(caseroom::case::CaseId(1)).unwrap().unwrap();
    assert_eq!(case.status, caseroom::case::Status::Resolved);
}

/// Bad input at start: a wrong store passphrase, a lost store without the
/// recovery key, and a new data dir for an account that already has an
/// identity are clear errors that change nothing; with the recovery key a
/// lost store comes back as a new device, cross-signed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passphrase_lost_store_and_recovery_key() {
    let syn = synapse();
    let bot = syn.register(&unique("e2eerec"), "botpass");
    let person = Person::new(&syn, "e2eeperson").await;
    let room = person.encrypted_room(&[&bot]).await;
    let rooms = Rooms {
        team: room.to_string(),
        intake: vec![room.to_string()],
        oncall: room.to_string(),
    };
    let data = tempfile::tempdir().unwrap();
    let config = syn.bot_config(&bot, "botpass");

    // First start: identity, backup, and the recovery key, once.
    let (platform, _) = MatrixPlatform::connect(&config, &rooms, Store::open(data.path()).unwrap())
        .await
        .unwrap();
    let key = platform
        .take_recovery_key()
        .expect("a recovery key on the first start");
    assert!(platform.take_recovery_key().is_none(), "handed out once");
    let first = platform.device_id().unwrap();
    drop(platform);
    let (_, signed) = person.devices_of(&bot).await;
    assert!(signed);

    // Wrong passphrase: a clear error, and the store is kept: the same
    // files, and (below) the right passphrase opens it as the same device.
    // Not byte-identical: SQLite folds its write-ahead log into the
    // database file when the refused connection closes.
    let store_dir = data.path().join(STORE_DIR);
    let snapshot = |dir: &Path| -> Vec<String> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "sqlite3"))
            .map(|p| p.display().to_string())
            .collect();
        files.sort();
        files
    };
    let before = snapshot(&store_dir);
    assert!(!before.is_empty());
    let mut wrong = config.clone();
    wrong.e2ee.as_mut().unwrap().store_passphrase =
        Secret::new("TEST_MATRIX_STORE_PASSPHRASE", "not-the-passphrase");
    let err = MatrixPlatform::connect(&wrong, &rooms, Store::open(data.path()).unwrap())
        .await
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("cannot open the Matrix crypto store") && msg.contains("passphrase"),
        "{msg}"
    );
    assert_eq!(
        snapshot(&store_dir),
        before,
        "the wrong passphrase replaced the store"
    );
    // `caseroom check` fails on that passphrase, and passes with the right
    // one (device cross-signed, backup on).
    let check = |m: caseroom::config::MatrixConfig| {
        let dir = data.path().to_owned();
        tokio::task::spawn_blocking(move || {
            caseroom::platform::matrix::e2ee_report(&dir, &m.homeserver, m.e2ee.as_ref())
        })
    };
    let bad = check(wrong.clone()).await.unwrap();
    assert!(
        bad.problems.iter().any(|p| p.contains("passphrase")),
        "{:?}",
        bad.lines
    );
    let good = check(config.clone()).await.unwrap();
    assert!(good.problems.is_empty(), "{:?}", good.lines);
    assert!(
        good.lines
            .iter()
            .any(|l| l.contains("cross-signed by its account")),
        "{:?}",
        good.lines
    );

    // The same store and passphrase: the same device.
    let (platform, _) = MatrixPlatform::connect(&config, &rooms, Store::open(data.path()).unwrap())
        .await
        .unwrap();
    assert_eq!(platform.device_id().unwrap(), first);
    assert!(
        platform.take_recovery_key().is_none(),
        "no new key on a restart"
    );
    drop(platform);

    // The store is lost and no recovery key is configured: refused.
    std::fs::remove_dir_all(&store_dir).unwrap();
    let err = MatrixPlatform::connect(&config, &rooms, Store::open(data.path()).unwrap())
        .await
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("crypto store") && msg.contains("missing") && msg.contains("recovery_key_env"),
        "{msg}"
    );
    assert!(!store_dir.join("matrix-sdk-crypto.sqlite3").exists());

    // A brand-new data dir for the account, without the key: refused, and
    // the half-made device is logged out again.
    let other = tempfile::tempdir().unwrap();
    let err = MatrixPlatform::connect(&config, &rooms, Store::open(other.path()).unwrap())
        .await
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("already has a cross-signing identity") && msg.contains("recovery_key_env"),
        "{msg}"
    );
    let (devices, _) = person.devices_of(&bot).await;
    assert_eq!(devices, 1, "no untrusted device left behind");

    // With the recovery key: a new device, cross-signed by the account.
    let mut recovering = config.clone();
    recovering.e2ee.as_mut().unwrap().recovery_key =
        Some(Secret::new("TEST_MATRIX_RECOVERY_KEY", key));
    let (platform, _) =
        MatrixPlatform::connect(&recovering, &rooms, Store::open(data.path()).unwrap())
            .await
            .unwrap();
    let second = platform.device_id().unwrap();
    assert_ne!(second, first, "a new device");
    assert!(
        platform.take_recovery_key().is_none(),
        "the identity was recovered, not replaced"
    );
    let bot_uid: OwnedUserId = bot.parse().unwrap();
    let device = person
        .client
        .encryption()
        .get_device(&bot_uid, second.as_str().into())
        .await
        .unwrap();
    let device = match device {
        Some(d) => d,
        None => {
            person.devices_of(&bot).await;
            person
                .client
                .encryption()
                .get_device(&bot_uid, second.as_str().into())
                .await
                .unwrap()
                .expect("the new device is known")
        }
    };
    assert!(
        device.is_cross_signed_by_owner(),
        "the recovered device is cross-signed"
    );
    drop(platform);
}
