//! The whole bot on a real Synapse: an agent escalates a Chinese payment
//! failure, works the case in its thread, a lead checks the queue, and the
//! bot restarts mid-way without losing state or answering twice.

use std::time::{Duration, Instant};

use caseroom::config::Config;
use matrix_sdk::Client;
use matrix_sdk::ruma::api::client::message::get_message_events;
use matrix_sdk::ruma::{OwnedEventId, OwnedRoomId, UInt};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::matrix_adapter::{Synapse, create_room, send_text, synapse, unique};
use super::util::test_config;

const CARD: &str = "6222 0212 3456 7890 128";

/// The bot process under test: `app::run` on its own task.
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

/// A room event as JSON.
#[derive(Debug, Clone)]
struct Ev(Value);

impl Ev {
    fn id(&self) -> &str {
        self.0["event_id"].as_str().unwrap_or_default()
    }
    fn sender(&self) -> &str {
        self.0["sender"].as_str().unwrap_or_default()
    }
    fn body(&self) -> &str {
        self.0["content"]["body"].as_str().unwrap_or_default()
    }
    fn ts(&self) -> i64 {
        self.0["origin_server_ts"].as_i64().unwrap_or_default()
    }
    fn thread_root(&self) -> Option<&str> {
        let rel = &self.0["content"]["m.relates_to"];
        (rel["rel_type"] == "m.thread").then(|| rel["event_id"].as_str().unwrap_or_default())
    }
}

/// The latest messages in a room, oldest first.
async fn messages(client: &Client, room: &OwnedRoomId) -> Vec<Ev> {
    let mut request = get_message_events::v3::Request::backward(room.clone());
    request.limit = UInt::from(500u32);
    let response = client.send(request).await.expect("room messages");
    let mut out: Vec<Ev> = response
        .chunk
        .iter()
        .filter_map(|raw| serde_json::from_str::<Value>(raw.json().get()).ok())
        .filter(|v| v["type"] == "m.room.message")
        .map(Ev)
        .collect();
    out.reverse();
    out
}

/// Waits (up to 30 s) for a message from `bot` after `after` that matches.
async fn wait_for(
    client: &Client,
    room: &OwnedRoomId,
    bot: &str,
    after: i64,
    pred: impl Fn(&Ev) -> bool,
) -> Ev {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(ev) = messages(client, room)
            .await
            .into_iter()
            .find(|e| e.sender() == bot && e.ts() >= after && pred(e))
        {
            return ev;
        }
        assert!(
            Instant::now() < deadline,
            "no matching bot message in {room}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn send(
    client: &Client,
    room: &OwnedRoomId,
    text: &str,
    thread: Option<&str>,
) -> (OwnedEventId, i64) {
    let id = send_text(client, room, text, thread).await;
    let ts = messages(client, room)
        .await
        .into_iter()
        .find(|e| e.id() == id.as_str())
        .map(|e| e.ts())
        .unwrap_or_default();
    (id, ts)
}

fn config(
    syn: &Synapse,
    dir: &std::path::Path,
    bot: &str,
    agent: &str,
    lead: &str,
    team: &OwnedRoomId,
    intake: &OwnedRoomId,
) -> Config {
    let mut cfg = test_config(dir);
    cfg.matrix = Some(syn.bot_config(bot, "botpass"));
    cfg.rooms.team = team.to_string();
    cfg.rooms.intake = vec![intake.to_string()];
    cfg.rooms.oncall = team.to_string();
    cfg.roles.agent = [agent.to_owned()].into();
    cfg.roles.lead = [lead.to_owned()].into();
    cfg.roles.oncall = [agent.to_owned()].into();
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalate_work_and_restart_on_synapse() {
    let syn = synapse();
    let bot = syn.register(&unique("bot"), "botpass");
    let agent_id = syn.register(&unique("agent"), "agentpass");
    let lead_id = syn.register(&unique("lead"), "leadpass");
    let agent = syn.login(&agent_id, "agentpass").await;
    let lead = syn.login(&lead_id, "leadpass").await;
    let team = create_room(&agent, &[&bot, &lead_id], None).await;
    let intake = create_room(&agent, &[&bot], None).await;
    lead.join_room_by_id(&team).await.expect("lead joins");
    agent.sync_once(Default::default()).await.unwrap();
    // Moderator rights, so the bot can remove pasted card numbers.
    let bot_uid: matrix_sdk::ruma::OwnedUserId = bot.parse().unwrap();
    for room in [&team, &intake] {
        let r = agent.get_room(room).expect("agent knows the room");
        r.update_power_levels(vec![(&bot_uid, matrix_sdk::ruma::Int::new(50).unwrap())])
            .await
            .expect("give the bot power level 50");
    }
    lead.sync_once(Default::default()).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&syn, dir.path(), &bot, &agent_id, &lead_id, &team, &intake);
    let run = BotRun::start(&cfg);

    // The bot joins and syncs: until then messages are not seen (the bot
    // only handles messages sent after it started), so probe with `!help`
    // — a message with a card number sent too early would stay unhandled.
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (_, ts) = send(&agent, &intake, "!help", None).await;
        let seen = tokio::time::timeout(
            Duration::from_secs(8),
            wait_for(&agent, &intake, &bot, ts, |e| e.body().contains("escalate")),
        )
        .await;
        if seen.is_ok() {
            break;
        }
    }
    // Then the agent escalates a Chinese payment failure that contains a
    // card number.
    let (_, t0) = send(
        &agent,
        &intake,
        &format!("!escalate 客户反映用卡付款一直失败，提示支付失败，卡号 {CARD}，金额 ¥258.00"),
        None,
    )
    .await;
    wait_for(&agent, &intake, &bot, t0, |e| e.body().contains("Opened")).await;
    let root = wait_for(&agent, &team, &bot, t0, |e| {
        e.thread_root().is_none() && e.body().contains("C-1")
    })
    .await;
    assert!(root.body().contains("payment-failed"), "{}", root.body());
    let suggestion = wait_for(&agent, &team, &bot, t0, |e| {
        e.thread_root() == Some(root.id())
    })
    .await;
    assert!(
        suggestion.body().contains("支付失败") && suggestion.body().contains("Checklist"),
        "{}",
        suggestion.body()
    );
    let formatted = suggestion.0["content"]["formatted_body"]
        .as_str()
        .unwrap_or_default();
    assert!(
        formatted.contains("<strong>"),
        "formatted HTML body: {formatted}"
    );
    let thread = Some(root.id().to_owned());
    let t = thread.as_deref();

    // Work the case in the thread.
    let mut latencies = Vec::new();
    for (cmd, expect) in [
        ("!claim", "claimed **C-1**"),
        ("!note 客户已提供订单截图", "Note added"),
        ("!wait", "waiting on the customer"),
    ] {
        let (_, ts) = send(&agent, &team, cmd, t).await;
        let reply = wait_for(&agent, &team, &bot, ts, |e| {
            e.thread_root() == t && e.body().contains(expect)
        })
        .await;
        latencies.push(reply.ts() - ts);
    }

    // Restart the bot mid-way.
    run.stop().await;
    let (_, ts_down) = send(&agent, &team, "!resume", t).await;
    let run = BotRun::start(&cfg);
    // The command sent while it was down is answered once, after start.
    wait_for(&agent, &team, &bot, ts_down, |e| {
        e.thread_root() == t && e.body().contains("back with")
    })
    .await;

    let (_, ts) = send(&lead, &team, "!queue", None).await;
    let queue = wait_for(&lead, &team, &bot, ts, |e| e.body().contains("Queue")).await;
    assert!(queue.body().contains("1 open"), "{}", queue.body());
    assert!(
        queue
            .body()
            .lines()
            .any(|l| l.starts_with("assigned") && l.trim_end().ends_with(" 1")),
        "{}",
        queue.body()
    );
    assert!(
        queue.body().contains(&format!("{agent_id}: 1 open")),
        "{}",
        queue.body()
    );

    // 100 commands: time from the agent's send to the bot's reply, as
    // Synapse stamped them.
    for i in 0..100 {
        let (_, ts) = send(&agent, &team, &format!("!tag t{i}"), t).await;
        let reply = wait_for(&agent, &team, &bot, ts, |e| {
            e.thread_root() == t && e.body().contains(&format!("#t{i} "))
        })
        .await;
        latencies.push(reply.ts() - ts);
    }
    let (_, ts) = send(&agent, &team, "!resolve", t).await;
    wait_for(&agent, &team, &bot, ts, |e| e.body().contains("resolved")).await;
    run.stop().await;

    let mut sorted = latencies.clone();
    sorted.sort();
    eprintln!(
        "matrix command latency over {} commands: median {} ms, p95 {} ms, max {} ms",
        sorted.len(),
        sorted[sorted.len() / 2],
        sorted[sorted.len() * 95 / 100],
        sorted[sorted.len() - 1]
    );

    // Nothing answered twice, and no card number anywhere in the rooms.
    let all: Vec<Ev> = [
        messages(&agent, &team).await,
        messages(&agent, &intake).await,
    ]
    .concat();
    for needle in [
        "claimed **C-1**",
        "is back with",
        "Note added",
        "is waiting on the customer",
    ] {
        let n = all
            .iter()
            .filter(|e| e.sender() == bot && e.body().contains(needle))
            .count();
        assert!(n <= 1, "`{needle}` answered {n} times");
    }
    assert_eq!(
        all.iter()
            .filter(|e| e.sender() == bot && e.body().contains("is back with"))
            .count(),
        1
    );
    let roots = all
        .iter()
        .filter(|e| {
            e.sender() == bot && e.thread_root().is_none() && e.body().starts_with("🎫 **C-1**")
        })
        .count();
    assert_eq!(roots, 1, "one root message for the case");
    // The bot removed the agent's pasted message, and nothing it posts
    // carries the card number: it appears nowhere in the rooms.
    for e in &all {
        let html = e.0["content"]["formatted_body"]
            .as_str()
            .unwrap_or_default();
        assert!(!html.contains(CARD), "card number in the room: {html}");
        assert!(
            !e.body().contains(CARD) && !e.body().contains("6222021234567890128"),
            "card number in the room: {}",
            e.body()
        );
    }
    assert!(
        all.iter()
            .any(|e| e.sender() == bot && e.body().starts_with("🔒 A message here contained"))
    );
    let store = caseroom::store::Store::open(dir.path()).unwrap();
    let case = store.case(caseroom::case::CaseId(1)).unwrap().unwrap();
    assert_eq!(case.status, caseroom::case::Status::Resolved);
    assert_eq!(
        case.tags
            .iter()
            .filter(|t| t.len() > 1
                && t.starts_with('t')
                && t[1..].chars().all(|c| c.is_ascii_digit()))
            .count(),
        100
    );
}
