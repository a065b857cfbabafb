//! Live cards and reactions as actions on a real Synapse: ✋ on a case's
//! card claims it and the card's latest `m.replace` edit shows the new
//! assignee and status; 👍 on an SLA alert acknowledges it; ✅ on the card
//! resolves the case; a restart in between answers nothing twice.

use std::path::Path;
use std::time::{Duration, Instant};

use caseroom::config::Config;
use matrix_sdk::Client;
use matrix_sdk::ruma::api::client::membership::joined_members;
use matrix_sdk::ruma::events::reaction::ReactionEventContent;
use matrix_sdk::ruma::events::relation::Annotation;
use matrix_sdk::ruma::{OwnedEventId, OwnedRoomId};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::matrix_adapter::{create_room, send_text, synapse, unique};
use super::matrix_sla::{SLA, body, messages, wait_for};
use super::util::test_config;

async fn react(client: &Client, room: &OwnedRoomId, target: &str, key: &str) {
    let target: OwnedEventId = target.parse().unwrap();
    client
        .get_room(room)
        .expect("the sender knows the room")
        .send(ReactionEventContent::new(Annotation::new(
            target,
            key.to_owned(),
        )))
        .await
        .expect("send a reaction");
}

/// The text the card `root` shows now: its latest edit's new content, or
/// the original.
async fn card_now(client: &Client, room: &OwnedRoomId, bot: &str, root: &str) -> String {
    let all = messages(client, room).await;
    let edit = all.iter().rev().find(|v| {
        v["sender"] == bot
            && v["content"]["m.relates_to"]["rel_type"] == "m.replace"
            && v["content"]["m.relates_to"]["event_id"] == root
    });
    match edit {
        Some(v) => v["content"]["m.new_content"]["body"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        None => all
            .iter()
            .find(|v| v["event_id"] == root)
            .map(|v| body(v).to_owned())
            .unwrap_or_default(),
    }
}

async fn card_shows(client: &Client, room: &OwnedRoomId, bot: &str, root: &str, wanted: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = card_now(client, room, bot, root).await;
        if wanted.iter().all(|w| text.contains(w)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the card never showed {wanted:?}: {text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn start(cfg: &Config) -> (CancellationToken, JoinHandle<anyhow::Result<()>>) {
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(caseroom::app::run(cfg.clone(), shutdown.clone()));
    (shutdown, run)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reactions_claim_ack_and_resolve_and_the_card_follows_on_synapse() {
    let syn = synapse();
    let bot = syn.register(&unique("cardbot"), "botpass");
    let agent_id = syn.register(&unique("cardagent"), "agentpass");
    let lead_id = syn.register(&unique("cardlead"), "leadpass");
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
    let (shutdown, run) = start(&cfg);

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
    send_text(&agent, &team, "!escalate 付款失败，交易被拒绝", None).await;
    let (root, _) = wait_for(&agent, &team, &bot, 30, |v| {
        body(v).starts_with("🎫 **C-1**")
    })
    .await;
    assert!(
        body(&root).contains("React ✋ to claim") && body(&root).contains("✅ to resolve"),
        "the card says how to act on it: {}",
        body(&root)
    );
    let root = root["event_id"].as_str().unwrap().to_owned();

    // ✋ claims; the card's latest edit shows who has it.
    react(&agent, &team, &root, "✋").await;
    card_shows(&agent, &team, &bot, &root, &["assigned", &agent_id]).await;
    wait_for(&agent, &team, &bot, 20, |v| {
        body(v).contains("claimed **C-1**")
    })
    .await;

    // Restart; the reaction already handled is not handled again.
    shutdown.cancel();
    run.await.unwrap().unwrap();
    let (shutdown, run) = start(&cfg);

    // Breach of the 8 s first response: the alert carries the 👍 hint.
    let (alert, _) = wait_for(&agent, &oncall, &bot, 30, |v| {
        body(v).starts_with("🚨 **A-")
    })
    .await;
    assert!(body(&alert).contains("React 👍 to ack"), "{}", body(&alert));
    let alert_id = body(&alert)
        .trim_start_matches("🚨 **")
        .split("**")
        .next()
        .unwrap()
        .to_owned();
    react(&agent, &oncall, alert["event_id"].as_str().unwrap(), "👍").await;
    wait_for(&agent, &oncall, &bot, 20, |v| {
        body(v).starts_with(&format!("✅ **{alert_id}** acknowledged by"))
    })
    .await;
    card_shows(
        &agent,
        &team,
        &bot,
        &root,
        &["breached", &alert_id, "acknowledged"],
    )
    .await;

    // ✅ resolves; the card follows.
    react(&agent, &team, &root, "✅").await;
    card_shows(&agent, &team, &bot, &root, &["resolved"]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Exactly once each, across the restart.
    let count = |all: &[Value], what: &str| {
        all.iter()
            .filter(|v| v["sender"] == bot && body(v).contains(what))
            .count()
    };
    let team_msgs = messages(&agent, &team).await;
    assert_eq!(count(&team_msgs, "claimed **C-1**"), 1);
    assert_eq!(count(&team_msgs, "**C-1** resolved"), 1, "{team_msgs:#?}");
    let roots = team_msgs
        .iter()
        .filter(|v| v["sender"] == bot && body(v).starts_with("🎫 **C-1**"))
        .count();
    assert_eq!(roots, 1, "one card, edited in place");
    let oncall_msgs = messages(&agent, &oncall).await;
    assert_eq!(count(&oncall_msgs, "acknowledged by"), 1);
    shutdown.cancel();
    run.await.unwrap().unwrap();
}
