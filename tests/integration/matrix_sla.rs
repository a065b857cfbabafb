//! The SLA scenario end to end on Synapse, with targets of seconds: warning
//! in the thread mentioning the assignee, breach alert in the on-call room
//! mentioning the rotation's member, escalation to step 2 when nobody acks,
//! `ack` stops it, resolving closes it.

use std::path::Path;
use std::time::{Duration, Instant};

use caseroom::config::Config;
use matrix_sdk::Client;
use matrix_sdk::ruma::api::client::membership::joined_members;
use matrix_sdk::ruma::api::client::message::get_message_events;
use matrix_sdk::ruma::{OwnedRoomId, UInt};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::matrix_adapter::{create_room, send_text, synapse, unique};
use super::util::test_config;

pub(super) const SLA: &str = r#"
[sla.calendars.default]
timezone = "Asia/Shanghai"

[sla.policies.p1]
first_response = "8s"
resolution = "1h"
warnings = ["50%"]
escalation = "page"

[sla.policies.p2]
first_response = "8s"
resolution = "1h"
warnings = ["50%"]
escalation = "page"

[oncall.rotations.primary]
timezone = "Asia/Shanghai"
members = ["AGENT"]
start = "2026-01-05T09:00"
shift = "1w"

[oncall.escalations.page]
repeat = 1
remind_every = "0s"

[[oncall.escalations.page.steps]]
delay = "0s"
target = "rotation:primary"

[[oncall.escalations.page.steps]]
delay = "4s"
target = "user:LEAD"
"#;

pub(super) async fn messages(client: &Client, room: &OwnedRoomId) -> Vec<Value> {
    let mut request = get_message_events::v3::Request::backward(room.clone());
    request.limit = UInt::from(200u32);
    let response = client.send(request).await.expect("room messages");
    let mut out: Vec<Value> = response
        .chunk
        .iter()
        .filter_map(|raw| serde_json::from_str::<Value>(raw.json().get()).ok())
        .filter(|v| v["type"] == "m.room.message")
        .collect();
    out.reverse();
    out
}

pub(super) fn body(v: &Value) -> &str {
    v["content"]["body"].as_str().unwrap_or_default()
}

fn mentions(v: &Value, user: &str) -> bool {
    v["content"]["m.mentions"]["user_ids"]
        .as_array()
        .is_some_and(|a| a.iter().any(|u| u == user))
}

pub(super) async fn wait_for(
    client: &Client,
    room: &OwnedRoomId,
    bot: &str,
    secs: u64,
    pred: impl Fn(&Value) -> bool,
) -> (Value, Instant) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = messages(client, room)
            .await
            .into_iter()
            .find(|v| v["sender"] == bot && pred(v))
        {
            return (v, Instant::now());
        }
        assert!(
            Instant::now() < deadline,
            "no matching bot message in {room} within {secs}s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn send(client: &Client, room: &OwnedRoomId, text: &str, thread: Option<&str>) {
    send_text(client, room, text, thread).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warning_breach_escalation_ack_and_close_on_synapse() {
    let syn = synapse();
    let bot = syn.register(&unique("slabot"), "botpass");
    let agent_id = syn.register(&unique("slaagent"), "agentpass");
    let lead_id = syn.register(&unique("slalead"), "leadpass");
    let agent = syn.login(&agent_id, "agentpass").await;
    let team = create_room(&agent, &[&bot, &lead_id], None).await;
    let oncall = create_room(&agent, &[&bot, &lead_id], None).await;
    agent.sync_once(Default::default()).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mut cfg: Config = test_config(dir.path());
    let sla = Config::parse(
        Path::new("sla.toml"),
        &SLA.replace("AGENT", &agent_id).replace("LEAD", &lead_id),
        &|_| None,
    )
    .unwrap();
    cfg.sla = sla.sla;
    cfg.oncall = sla.oncall;
    cfg.matrix = Some(syn.bot_config(&bot, "botpass"));
    cfg.rooms.team = team.to_string();
    cfg.rooms.intake = vec![team.to_string()];
    cfg.rooms.oncall = oncall.to_string();
    cfg.roles.agent = [agent_id.clone()].into();
    cfg.roles.oncall = [agent_id.clone()].into();
    cfg.roles.lead = [lead_id.clone()].into();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(caseroom::app::run(cfg, shutdown.clone()));

    // Once the bot has joined and synced, escalate once and claim.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let members = agent
            .send(joined_members::v3::Request::new(team.clone()))
            .await
            .unwrap();
        if members.joined.keys().any(|u| u.as_str() == bot) {
            break;
        }
        assert!(Instant::now() < deadline, "the bot never joined");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    send(&agent, &team, "!escalate 付款失败，交易被拒绝", None).await;
    let (root, _) = wait_for(&agent, &team, &bot, 30, |v| {
        body(v).starts_with("🎫 **C-1**")
    })
    .await;
    let root = root["event_id"].as_str().unwrap().to_owned();
    let opened = Instant::now();
    send(&agent, &team, "!claim", Some(&root)).await;

    // 50% warning in the thread, mentioning the assignee.
    let in_thread = |v: &Value| v["content"]["m.relates_to"]["event_id"] == root.as_str();
    let (warning, _) = wait_for(&agent, &team, &bot, 20, |v| {
        in_thread(v) && body(v).starts_with("⏰")
    })
    .await;
    assert!(
        mentions(&warning, &agent_id),
        "warning mentions the assignee: {warning}"
    );

    // Breach: an alert in the on-call room mentioning the rotation's member.
    let (alert, breached) = wait_for(&agent, &oncall, &bot, 20, |v| {
        body(v).starts_with("🚨 **A-")
    })
    .await;
    assert!(
        mentions(&alert, &agent_id),
        "alert pages the on-call member: {alert}"
    );
    let alert_id = body(&alert)
        .trim_start_matches("🚨 **")
        .split("**")
        .next()
        .unwrap()
        .to_owned();
    assert!(
        breached.duration_since(opened) >= Duration::from_secs(6),
        "breach came too early"
    );

    // Nobody acks: step 2 pages the lead after its delay.
    let (page, paged) = wait_for(&agent, &oncall, &bot, 20, |v| {
        body(v).starts_with("📟") && mentions(v, &lead_id)
    })
    .await;
    assert!(body(&page).contains(&alert_id));
    assert!(
        paged.duration_since(breached) >= Duration::from_secs(2),
        "step 2 came before its delay"
    );

    // `ack` stops it; resolving the case closes it.
    send(&agent, &oncall, &format!("!ack {alert_id}"), None).await;
    wait_for(&agent, &oncall, &bot, 20, |v| {
        body(v).contains("acknowledged by")
    })
    .await;
    send(&agent, &team, "!resolve", Some(&root)).await;
    wait_for(&agent, &oncall, &bot, 20, |v| {
        body(v).starts_with(&format!("✅ **{alert_id}** closed"))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;

    // Exactly once each.
    let all = messages(&agent, &oncall).await;
    let count = |prefix: &str| {
        all.iter()
            .filter(|v| v["sender"] == bot && body(v).starts_with(prefix))
            .count()
    };
    assert_eq!(count("🚨 **A-"), 1, "one alert per miss");
    assert_eq!(count("📟"), 1, "one page for step 2, none after ack");
    let warnings = messages(&agent, &team)
        .await
        .into_iter()
        .filter(|v| v["sender"] == bot && body(v).starts_with("⏰"))
        .count();
    assert_eq!(warnings, 1, "one warning");
    shutdown.cancel();
    run.await.unwrap().unwrap();
}
