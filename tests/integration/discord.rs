//! The Discord adapter end to end against the loopback fake Discord
//! ([`super::fake_discord`]): the real [`DiscordPlatform`] (serenity's
//! gateway client, REST deliveries), the bot core, its outbox and SLA
//! timers — only Discord itself is faked. Every address is 127.0.0.1.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use caseroom::bot::Bot;
use caseroom::case::{CaseId, EventKind, Status};
use caseroom::config::{Config, DiscordConfig, Secret};
use caseroom::message::Outgoing;
use caseroom::outbox::Outbox;
use caseroom::platform::discord::DiscordPlatform;
use caseroom::platform::{Platform, SendError};
use caseroom::sla::Clock;
use caseroom::store::Store;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::fake_discord::{APP_ID, FakeDiscord, SUPPORT_MEMBER, SUPPORT_ROLE, TOKEN};
use super::util::*;

pub const TEAM_C: &str = "1100";
pub const INTAKE_C: &str = "1200";
pub const ONCALL_C: &str = "1300";
pub const ANA: &str = "501";
pub const BO: &str = "502";
pub const LEADER: &str = "503";
pub const CAROL: &str = "504";
pub const DAVE: &str = "505";
pub const MALLORY: &str = "666";
pub const CUSTOMER: &str = "700";

const DECLINED: &str = "My card payment failed, the card was declined but I was charged 25 USD";

/// The shipped config with Discord channel ids as rooms and user ids in
/// the roles.
fn discord_config(dir: &Path, extra_toml: Option<&str>) -> Config {
    let mut cfg = test_config(dir);
    if let Some(toml) = extra_toml {
        let more = Config::parse(Path::new("sla.toml"), toml, &|_| None).expect("test SLA config");
        cfg.sla = more.sla;
        cfg.oncall = more.oncall;
    }
    cfg.rooms.team = TEAM_C.into();
    cfg.rooms.intake = vec![INTAKE_C.into()];
    cfg.rooms.oncall = ONCALL_C.into();
    // Agents: two people, and whoever holds the guild's Support role.
    cfg.roles.agent = [ANA, BO, &format!("role:{SUPPORT_ROLE}")]
        .map(String::from)
        .into();
    cfg.roles.lead = [LEADER].map(String::from).into();
    cfg.roles.oncall = [CAROL].map(String::from).into();
    cfg.roles.admin = Default::default();
    cfg
}

fn adapter_config(fake: &FakeDiscord) -> DiscordConfig {
    DiscordConfig {
        token: Secret::new("TEST_DISCORD_TOKEN", TOKEN),
        application_id: APP_ID.parse().unwrap(),
        guild_id: super::fake_discord::GUILD_ID.parse().unwrap(),
        api_base_url: fake.base_url(),
    }
}

/// The bot on Discord: the real adapter, core, outbox and SLA timers.
pub struct DiscordBot {
    pub bot: Bot,
    pub platform: Arc<DiscordPlatform>,
    pub store: Store,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl DiscordBot {
    pub async fn start(dir: &Path, fake: &FakeDiscord) -> DiscordBot {
        DiscordBot::start_with(dir, fake, discord_config(dir, None), Clock::system()).await
    }

    pub async fn start_with(
        dir: &Path,
        fake: &FakeDiscord,
        cfg: Config,
        clock: Clock,
    ) -> DiscordBot {
        DiscordBot::start_inner(dir, fake, cfg, clock, true).await
    }

    /// `handle: false` drops what the adapter hands over unhandled, as a
    /// process that dies before handling it would.
    async fn start_inner(
        dir: &Path,
        fake: &FakeDiscord,
        cfg: Config,
        clock: Clock,
        handle: bool,
    ) -> DiscordBot {
        #[cfg(feature = "slack")]
        caseroom::platform::slack::install_crypto_provider();
        let store = Store::open(dir)
            .expect("open the store (it waits for the lock of an instance just stopped)");
        let platform = DiscordPlatform::connect(&adapter_config(fake), &cfg, &store)
            .await
            .expect("connect to the fake Discord");
        let outbox = Outbox::new();
        let bot = Bot::with_clock(
            cfg,
            store.clone(),
            Arc::new(std::sync::RwLock::new(engine())),
            outbox.clone(),
            "discord",
            clock,
        );
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        outbox.spawn(store.clone(), platform.clone(), shutdown.clone(), &tracker);
        bot.sla().spawn(shutdown.clone(), &tracker);
        outbox.wake();
        let (tx, mut rx) = mpsc::channel(1024);
        tracker.spawn(platform.clone().run(tx, shutdown.clone()));
        let b = bot.clone();
        let p = platform.clone();
        let token = shutdown.clone();
        // The same loop as `app::run_with`.
        tracker.spawn(async move {
            loop {
                let msg = tokio::select! {
                    _ = token.cancelled() => return,
                    m = rx.recv() => m,
                };
                let Some(msg) = msg else { return };
                if !handle {
                    continue;
                }
                let b = b.clone();
                let event_id = msg.event_id.clone();
                tokio::task::spawn_blocking(move || b.handle(&msg))
                    .await
                    .unwrap()
                    .expect("handle");
                p.handled(&event_id);
            }
        });
        let bot = DiscordBot {
            bot,
            platform,
            store,
            shutdown,
            tracker,
        };
        let p = bot.platform.clone();
        fake.wait_for("the gateway READY", move |_| {
            p.gateway_log().contains(&"ready")
        })
        .await;
        bot
    }

    /// Waits until the outbox is empty and the bot has handled what came in.
    pub async fn settle(&self) {
        for _ in 0..600 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if self.store.pending_outbox().unwrap().is_empty() {
                tokio::time::sleep(Duration::from_millis(50)).await;
                if self.store.pending_outbox().unwrap().is_empty() {
                    return;
                }
            }
        }
        panic!("outbox did not drain: {:?}", self.store.pending_outbox());
    }

    pub fn root(&self, id: &str) -> String {
        let case: CaseId = id.parse().unwrap();
        self.store
            .posted(&caseroom::message::root_key(case))
            .unwrap()
            .expect("root delivered")
    }

    pub fn case(&self, n: u64) -> caseroom::case::Case {
        self.store.case(CaseId(n)).unwrap().unwrap()
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// Cards (channel posts with an embed) in the team channel.
fn cards(fake: &FakeDiscord) -> Vec<super::fake_discord::Call> {
    fake.posts_in(TEAM_C)
        .into_iter()
        .filter(|c| c.body["embeds"].as_array().is_some_and(|e| !e.is_empty()))
        .collect()
}

/// Case 1's events other than deliveries (which only log what was posted).
fn state_events(bot: &DiscordBot) -> usize {
    bot.store
        .events(CaseId(1))
        .unwrap()
        .iter()
        .filter(|e| !matches!(e.kind, EventKind::Posted { .. }))
        .count()
}

/// Escalate by 🎫 reaction and by the "Escalate to case" context menu:
/// a card (embed + Claim / Resolve buttons) in the team channel, a thread
/// started from it holding the suggestion; the same message escalated
/// again opens nothing new; `!escalate` text too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reaction_and_context_menu_escalate_to_a_card_and_thread() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDiscord::start().await;
    let bot = DiscordBot::start(dir.path(), &fake).await;

    let msg = fake.say(INTAKE_C, CUSTOMER, DECLINED);
    fake.react(ANA, INTAKE_C, &msg, "🎫");
    fake.wait_for("the card", |f| !cards(f).is_empty()).await;
    bot.settle().await;
    let card = cards(&fake)[0].clone();
    let card_id = card.id.clone().unwrap();
    assert_eq!(bot.root("C-1"), card_id);
    assert!(card.text().contains("C-1"), "{}", card.text());
    let buttons = card.buttons();
    assert!(buttons.contains(&"claim:C-1".to_owned()), "{buttons:?}");
    assert!(buttons.contains(&"resolve:C-1".to_owned()), "{buttons:?}");
    assert_eq!(
        card.body["allowed_mentions"]["parse"],
        serde_json::json!([])
    );
    assert!(card.body["nonce"].is_string() && card.body["enforce_nonce"] == true);
    // The thread is started from the card, and the suggestion goes there.
    assert_eq!(fake.thread_parent(&card_id).as_deref(), Some(TEAM_C));
    fake.wait_for("the suggestion in the thread", |f| {
        !f.posts_in(&card_id).is_empty()
    })
    .await;
    // The reacted-to message was fetched; its intake thread got the ack.
    assert!(
        !fake
            .calls_to("GET", &format!("/channels/{INTAKE_C}/messages/{msg}"))
            .is_empty()
    );
    assert!(
        fake.posts_in(&msg)
            .iter()
            .any(|c| c.content().contains("C-1")),
        "ack in the intake message's thread"
    );

    // The same reaction again (and from another agent): still one case.
    fake.react(ANA, INTAKE_C, &msg, "🎫");
    fake.react(BO, INTAKE_C, &msg, "🎫");
    bot.settle().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(bot.store.case_count(), 1);
    // A reaction from someone who is not an agent does nothing.
    let other = fake.say(INTAKE_C, CUSTOMER, "I cannot log in, my account is locked");
    fake.react(MALLORY, INTAKE_C, &other, "🎫");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(bot.store.case_count(), 1);

    // The context menu on that message opens C-2, and is deferred at once.
    let (iid, token) = fake.context_menu(BO, INTAKE_C, &other);
    fake.wait_for("C-2", |_| bot.store.case_count() == 2).await;
    let defer = fake.callbacks(&iid);
    assert_eq!(defer.len(), 1);
    assert_eq!(defer[0].body["type"], 5);
    assert_eq!(
        defer[0].body["data"]["flags"], 64,
        "answered only to the caller"
    );
    bot.settle().await;
    assert_eq!(cards(&fake).len(), 2);
    // Again on the same message: the caller is told which case it is.
    let (_, token2) = fake.context_menu(BO, INTAKE_C, &other);
    fake.wait_for("the answer", |f| !f.answers(&token2).is_empty())
        .await;
    assert!(fake.answers(&token2)[0].content().contains("C-2"));
    assert_eq!(bot.store.case_count(), 2);
    // The first one's deferred answer does not stay "thinking".
    fake.wait_for("the first answer", |f| !f.answers(&token).is_empty())
        .await;

    // `!escalate` typed in the intake channel.
    fake.say(
        INTAKE_C,
        ANA,
        "!escalate customer says the refund never arrived",
    );
    fake.wait_for("C-3", |_| bot.store.case_count() == 3).await;
    bot.settle().await;
    assert_eq!(cards(&fake).len(), 3);
    bot.stop().await;
}

/// Claim button → the press is acknowledged (type 6), the card is edited
/// to show the assignee and a line goes in the thread; `/queue` is
/// deferred ephemerally and answered by editing the deferred response;
/// `/note` and `/resolve` in the case thread work on that case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_button_queue_and_resolve_in_the_thread() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDiscord::start().await;
    let bot = DiscordBot::start(dir.path(), &fake).await;
    let msg = fake.say(INTAKE_C, CUSTOMER, DECLINED);
    fake.react(ANA, INTAKE_C, &msg, "🎫");
    fake.wait_for("the card", |f| !cards(f).is_empty()).await;
    bot.settle().await;
    let card = bot.root("C-1");
    let thread_before = fake.posts_in(&card).len();

    let (iid, _) = fake.click(ANA, &card, "claim:C-1");
    fake.wait_for("the card edit", |f| !f.edits_of(&card).is_empty())
        .await;
    bot.settle().await;
    assert_eq!(fake.callbacks(&iid)[0].body["type"], 6);
    let edit = fake.edits_of(&card).last().cloned().unwrap();
    assert_eq!(edit.channel(), TEAM_C);
    assert!(
        edit.text().contains(&format!("<@{ANA}>")),
        "assignee shown: {}",
        edit.text()
    );
    assert!(edit.body.get("nonce").is_none());
    assert_eq!(bot.case(1).assignee.as_deref(), Some(ANA));
    let lines = fake.posts_in(&card)[thread_before..].to_vec();
    assert_eq!(lines.len(), 1, "one thread line for the claim: {lines:#?}");
    assert!(
        lines[0].content().contains("claimed"),
        "{}",
        lines[0].content()
    );

    // /queue from a lead: deferred ephemerally, the answer edits it.
    let started = std::time::Instant::now();
    let (qid, qtok) = fake.slash(LEADER, TEAM_C, "queue", &[]);
    fake.wait_for("the defer", |f| !f.callbacks(&qid).is_empty())
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "deferred within 3 s"
    );
    assert_eq!(fake.callbacks(&qid)[0].body["data"]["flags"], 64);
    fake.wait_for("the queue answer", |f| !f.answers(&qtok).is_empty())
        .await;
    let answer = fake.answers(&qtok)[0].clone();
    assert_eq!(answer.method, "PATCH");
    assert!(answer.path.ends_with("/messages/@original"));
    assert!(answer.content().contains("Queue"), "{}", answer.content());
    assert!(
        fake.posts_in(TEAM_C)
            .iter()
            .all(|c| !c.content().contains("Queue"))
    );

    // /note and /resolve typed in the case thread.
    let (_, ntok) = fake.slash(ANA, &card, "note", &[("text", "customer called the bank")]);
    fake.wait_for("the note answer", |f| !f.answers(&ntok).is_empty())
        .await;
    // `/use` suggests playbooks as the agent types.
    let fake_ref = &fake;
    let choices = |typed: &str| {
        let fake = fake_ref;
        let aid = fake.autocomplete(ANA, &card, typed);
        async move {
            fake.wait_for("the choices", |f| !f.callbacks(&aid).is_empty())
                .await;
            let body = fake.callbacks(&aid)[0].body.clone();
            assert_eq!(body["type"], 8, "{body}");
            body["data"]["choices"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|c| c["value"].as_str().map(str::to_owned))
                .collect::<Vec<String>>()
        }
    };
    let names = choices("ref").await;
    assert!(names.iter().any(|n| n == "refund"), "{names:?}");
    assert!(names.iter().all(|n| n.contains("ref")), "{names:?}");
    // After a playbook reload the choices are the reloaded playbooks.
    bot.platform.playbooks_changed(vec![
        "refund".into(),
        "refund-express".into(),
        "complaint".into(),
    ]);
    assert_eq!(choices("ref").await, ["refund", "refund-express"]);
    let (rid, rtok) = fake.slash(ANA, &card, "resolve", &[]);
    fake.wait_for("resolved", |_| bot.case(1).status == Status::Resolved)
        .await;
    assert!(
        fake.callbacks(&rid)[0].body["data"]["flags"].is_null(),
        "a public answer in the thread"
    );
    fake.wait_for("the resolve answer", |f| !f.answers(&rtok).is_empty())
        .await;
    let notes = bot
        .store
        .events(CaseId(1))
        .unwrap()
        .into_iter()
        .filter(|e| format!("{:?}", e.kind).contains("customer called the bank"))
        .count();
    assert_eq!(notes, 1);
    // A typed `!reopen` in the thread goes to the same case.
    fake.say(&card, ANA, "!reopen");
    fake.wait_for("reopened", |_| bot.case(1).status != Status::Resolved)
        .await;
    bot.stop().await;
}

/// Bad input: an unknown command, a command missing its option, a
/// non-agent pressing Claim — each refused only to the caller, nothing
/// changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_privately_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDiscord::start().await;
    let bot = DiscordBot::start(dir.path(), &fake).await;
    let msg = fake.say(INTAKE_C, CUSTOMER, DECLINED);
    fake.react(ANA, INTAKE_C, &msg, "🎫");
    fake.wait_for("the card", |f| !cards(f).is_empty()).await;
    bot.settle().await;
    let card = bot.root("C-1");
    let events_before = state_events(&bot);
    let posts_before = fake.calls_to("POST", "/channels/").len();

    let (uid, utok) = fake.slash(LEADER, TEAM_C, "frobnicate", &[]);
    fake.wait_for("the unknown-command answer", |f| {
        !f.answers(&utok).is_empty()
    })
    .await;
    assert_eq!(fake.callbacks(&uid)[0].body["data"]["flags"], 64);
    let help = fake.answers(&utok)[0].content().to_owned();
    assert!(help.contains("help"), "{help}");

    let (cid, ctok) = fake.slash(LEADER, TEAM_C, "case", &[]);
    fake.wait_for("the usage answer", |f| !f.answers(&ctok).is_empty())
        .await;
    assert_eq!(fake.callbacks(&cid)[0].body["data"]["flags"], 64);
    let usage = fake.answers(&ctok)[0].content().to_owned();
    assert!(usage.to_lowercase().contains("case"), "{usage}");

    let (_, ntok) = fake.slash(ANA, &card, "note", &[]);
    fake.wait_for("the note usage", |f| !f.answers(&ntok).is_empty())
        .await;

    let (kid, ktok) = fake.click(MALLORY, &card, "claim:C-1");
    fake.wait_for("the refusal", |f| !f.answers(&ktok).is_empty())
        .await;
    assert_eq!(fake.callbacks(&kid)[0].body["type"], 6);
    let refusal = fake.answers(&ktok)[0].clone();
    assert_eq!(refusal.method, "POST", "a follow-up to the press");
    assert_eq!(refusal.body["flags"], 64, "ephemeral");
    assert!(refusal.content().contains("agent"), "{}", refusal.content());

    // A forged or stale button id.
    let (_, ftok) = fake.click(ANA, &card, "drop:C-1");
    fake.wait_for("the stale-button answer", |f| !f.answers(&ftok).is_empty())
        .await;
    assert_eq!(fake.answers(&ftok)[0].body["flags"], 64);

    bot.settle().await;
    assert_eq!(bot.case(1).assignee, None);
    assert_eq!(state_events(&bot), events_before, "the case did not change");
    assert!(fake.edits_of(&card).is_empty(), "the card is unchanged");
    let posts = fake.calls_to("POST", "/channels/");
    assert_eq!(
        posts.len(),
        posts_before,
        "nothing posted in channels: {:#?}",
        &posts[posts_before.min(posts.len())..]
    );

    // Someone who is an agent only through the Support role may claim.
    fake.click(SUPPORT_MEMBER, &card, "claim:C-1");
    fake.wait_for("the claim by role", |_| {
        bot.case(1).assignee.as_deref() == Some(SUPPORT_MEMBER)
    })
    .await;
    bot.stop().await;
}

fn sla_at(min: i64) -> jiff::Timestamp {
    let start: jiff::Timestamp = "2026-03-02T01:00:00Z".parse().unwrap();
    start + jiff::SignedDuration::from_secs(min * 60)
}

/// SLA breach → an alert with Ack / Snooze buttons in the on-call channel
/// that pages exactly Carol, on time although the team channel is answering
/// 429 → Carol presses Ack → the escalation stops; the team thread's
/// messages follow once the 429s end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sla_alert_goes_out_during_a_429_and_ack_stops_the_escalation() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDiscord::start().await;
    let clock = Clock::manual(sla_at(0));
    let mut cfg = discord_config(dir.path(), Some(&paging_sla_toml(CAROL, DAVE)));
    cfg.roles.oncall = [CAROL, DAVE].map(String::from).into();
    let bot = DiscordBot::start_with(dir.path(), &fake, cfg, clock.clone()).await;

    fake.say(
        INTAKE_C,
        ANA,
        "!escalate card payment failed, declined, order 202311050001 @everyone",
    );
    fake.wait_for("the case", |_| bot.store.case_count() == 1)
        .await;
    bot.settle().await;
    let root = bot.root("C-1");
    fake.say(&root, ANA, "!priority p1");
    fake.wait_for("P1", |_| {
        bot.case(1).priority == caseroom::case::Priority::P1
    })
    .await;
    bot.settle().await;

    // The team channel and its threads are now rate limited for a while.
    fake.rate_limit(&root, 10_000, 30.0, false);
    fake.rate_limit(TEAM_C, 10_000, 30.0, false);
    let breach_at = std::time::Instant::now();
    clock.set(sla_at(10));
    bot.bot.sla().idle().await;
    fake.wait_for("the alert", |f| {
        f.posts_in(ONCALL_C)
            .iter()
            .any(|c| c.content().contains("🚨"))
    })
    .await;
    let alert = fake
        .posts_in(ONCALL_C)
        .into_iter()
        .find(|c| c.content().contains("🚨"))
        .unwrap();
    assert!(
        alert.at.duration_since(breach_at) < Duration::from_secs(3),
        "not held by the 429s"
    );
    assert!(
        alert.content().contains(&format!("<@{CAROL}>")),
        "{}",
        alert.content()
    );
    assert_eq!(
        alert.body["allowed_mentions"]["users"],
        serde_json::json!([CAROL])
    );
    assert_eq!(
        alert.body["allowed_mentions"]["parse"],
        serde_json::json!([])
    );
    assert!(
        alert.buttons().contains(&"ack:A-1".to_owned()),
        "{:?}",
        alert.buttons()
    );
    assert!(
        alert.buttons().iter().any(|b| b.starts_with("snooze:A-1")),
        "{:?}",
        alert.buttons()
    );
    fake.wait_for("a 429 in the case thread", |f| {
        f.calls()
            .iter()
            .any(|c| c.status == 429 && c.channel() == root)
    })
    .await;

    // Carol presses Ack.
    let alert_id = alert.id.clone().unwrap();
    fake.click(CAROL, &alert_id, "ack:A-1");
    fake.wait_for("the ack line", |f| {
        f.posts_in(ONCALL_C)
            .iter()
            .any(|c| c.content().contains("acknowledged"))
    })
    .await;
    clock.set(sla_at(20));
    bot.bot.sla().idle().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        fake.posts_in(ONCALL_C)
            .iter()
            .all(|c| !c.content().contains(&format!("<@{DAVE}>"))),
        "no page to Dave after the ack: {:#?}",
        fake.posts_in(ONCALL_C)
    );
    // No post anywhere pinged everyone.
    assert!(
        fake.calls()
            .iter()
            .all(|c| c.body["allowed_mentions"]["parse"] != serde_json::json!(["everyone"]))
    );
    bot.stop().await;
}

/// The gateway connection dropped mid-run: serenity resumes the session
/// (no new IDENTIFY), the fake replays what was sent while it was gone
/// plus the last event again, and each is handled once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_drop_resumes_and_no_event_is_handled_twice() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDiscord::start().await;
    let bot = DiscordBot::start(dir.path(), &fake).await;
    let msg = fake.say(INTAKE_C, CUSTOMER, DECLINED);
    fake.react(ANA, INTAKE_C, &msg, "🎫");
    fake.wait_for("the card", |f| !cards(f).is_empty()).await;
    bot.settle().await;
    let card = bot.root("C-1");
    // Heartbeats are answered (interval 1 s in the fake).
    fake.wait_for("a heartbeat", |f| f.heartbeats() >= 1).await;

    fake.say(&card, ANA, "!note first note");
    fake.wait_for("the note", |_| {
        bot.store
            .events(CaseId(1))
            .unwrap()
            .iter()
            .any(|e| format!("{:?}", e.kind).contains("first note"))
    })
    .await;
    fake.drop_gateway();
    // Sent while the bot is away: replayed on RESUME.
    fake.say(&card, ANA, "!claim");
    fake.wait_for("a resume", |f| !f.resumes().is_empty()).await;
    fake.wait_for("the claim", |_| {
        bot.case(1).assignee.as_deref() == Some(ANA)
    })
    .await;
    let p = bot.platform.clone();
    fake.wait_for("RESUMED seen", move |_| {
        p.gateway_log().contains(&"resumed")
    })
    .await;
    bot.settle().await;
    assert_eq!(fake.identifies(), 1, "resumed, not identified again");
    assert!(fake.connections() >= 2);
    let events = bot.store.events(CaseId(1)).unwrap();
    let claims = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Assigned { .. }))
        .count();
    let notes = events
        .iter()
        .filter(|e| format!("{:?}", e.kind).contains("first note"))
        .count();
    assert_eq!((claims, notes), (1, 1), "each event handled once");
    bot.stop().await;
}

/// Messages still pending when the bot stops (Discord answering 429) are
/// delivered once after the restart; a retried post with the same
/// transaction id returns the message already posted (nonce).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_messages_are_delivered_once_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDiscord::start().await;
    fake.rate_limit(TEAM_C, 10_000, 0.2, false);
    let bot = DiscordBot::start(dir.path(), &fake).await;
    fake.say(
        INTAKE_C,
        ANA,
        "!escalate I was charged twice for one top-up",
    );
    fake.wait_for("a 429 on the card", |f| {
        f.calls()
            .iter()
            .any(|c| c.status == 429 && c.channel() == TEAM_C)
    })
    .await;
    assert!(!bot.store.pending_outbox().unwrap().is_empty());
    bot.stop().await;

    fake.rate_limit(TEAM_C, 0, 0.0, false);
    let bot = DiscordBot::start(dir.path(), &fake).await;
    bot.settle().await;
    assert_eq!(cards(&fake).len(), 1, "one card");
    let card = bot.root("C-1");
    assert_eq!(cards(&fake)[0].id.as_deref(), Some(card.as_str()));
    let texts: Vec<String> = fake
        .posts_in(&card)
        .iter()
        .map(|c| c.content().to_owned())
        .collect();
    let mut dedup = texts.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), texts.len(), "nothing posted twice: {texts:#?}");
    // Commands were registered once: the second start found the same set.
    assert_eq!(fake.calls_to("PUT", "/applications/").len(), 1);

    // The same transaction sent again (a retry after a timeout): Discord
    // matches the nonce and returns the first message.
    let a = bot
        .platform
        .send(&Outgoing::new(TEAM_C, "retry me"), None, "txn-1")
        .await
        .unwrap();
    let b = bot
        .platform
        .send(&Outgoing::new(TEAM_C, "retry me"), None, "txn-1")
        .await
        .unwrap();
    assert_eq!(a, b);
    bot.stop().await;
}

/// Events the gateway delivered (and interactions already acknowledged)
/// that the bot had not handled when the process died are handled at the
/// next start, once — the gateway does not send them again. A 🎫 reaction,
/// the "Escalate to case" command and a typed `!escalate` each open their
/// case after the restart; then nothing stays kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_received_before_a_crash_are_handled_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDiscord::start().await;
    let cfg = discord_config(dir.path(), None);
    let bot = DiscordBot::start_inner(dir.path(), &fake, cfg, Clock::system(), false).await;
    let kept = |store: &Store| store.inbox("discord:").unwrap().len();
    let first = fake.say(INTAKE_C, CUSTOMER, DECLINED);
    let second = fake.say(INTAKE_C, CUSTOMER, "I cannot log in, my account is locked");
    fake.react(ANA, INTAKE_C, &first, "🎫");
    let (iid, _) = fake.context_menu(BO, INTAKE_C, &second);
    fake.say(
        INTAKE_C,
        ANA,
        "!escalate I was charged twice for one top-up",
    );
    fake.wait_for("the command acknowledged", |f| {
        !f.callbacks(&iid).is_empty()
    })
    .await;
    // All five stay kept: the customer messages too (the bot decides what
    // a message means, and it never got them).
    fake.wait_for("five events kept", |_| kept(&bot.store) == 5)
        .await;
    assert!(cards(&fake).is_empty());
    assert!(bot.store.case(CaseId(1)).unwrap().is_none());
    bot.stop().await;

    let bot = DiscordBot::start(dir.path(), &fake).await;
    fake.wait_for("three cards", |f| cards(f).len() == 3).await;
    bot.settle().await;
    let mut bodies: Vec<String> = (1..=3).map(|n| bot.case(n).body).collect();
    bodies.sort();
    assert!(bodies[0].contains("I cannot log in"), "{bodies:?}");
    assert!(bodies[1].contains("I was charged twice"), "{bodies:?}");
    assert!(bodies[2].contains("My card payment failed"), "{bodies:?}");
    fake.wait_for("nothing kept", |_| kept(&bot.store) == 0)
        .await;
    bot.stop().await;

    // Nothing is handed over again.
    let bot = DiscordBot::start(dir.path(), &fake).await;
    bot.settle().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(cards(&fake).len(), 3);
    assert!(bot.store.case(CaseId(4)).unwrap().is_none());
    bot.stop().await;
}

/// REST deliveries: a 429 maps to a wait of its Retry-After on that
/// channel only, the global limit to a wait everywhere; a long text is
/// split at paragraphs; a pasted card number is deleted, or without
/// Manage Messages a lead is asked; nothing carries the number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_deliveries_and_error_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDiscord::start().await;
    let bot = DiscordBot::start(dir.path(), &fake).await;
    let p = bot.platform.clone();
    assert_eq!(p.bot_user(), 900);

    fake.rate_limit(TEAM_C, 1, 2.5, false);
    let e = p
        .send(&Outgoing::new(TEAM_C, "x"), None, "r1")
        .await
        .unwrap_err();
    assert_eq!(e, SendError::RateLimited(Duration::from_millis(2500)));
    // Another channel is not held back.
    p.send(&Outgoing::new(ONCALL_C, "page"), None, "r2")
        .await
        .unwrap();
    // The global limit holds every channel.
    fake.rate_limit(INTAKE_C, 1, 1.0, true);
    let e = p
        .send(&Outgoing::new(INTAKE_C, "x"), None, "r3")
        .await
        .unwrap_err();
    assert!(matches!(e, SendError::RateLimited(_)));
    let calls = fake.calls().len();
    let e = p
        .send(&Outgoing::new(ONCALL_C, "y"), None, "r4")
        .await
        .unwrap_err();
    assert!(
        matches!(e, SendError::RateLimited(d) if d <= Duration::from_secs(1)),
        "{e:?}"
    );
    assert_eq!(
        fake.calls().len(),
        calls,
        "not even tried during the global limit"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    p.send(&Outgoing::new(ONCALL_C, "y"), None, "r4")
        .await
        .unwrap();

    // The gateway echoes the bot's own posts; they are not commands (else
    // the bot would answer itself: a refusal, as it is not an agent).
    let intake_before = fake.posts_in(INTAKE_C).len();
    p.send(
        &Outgoing::new(INTAKE_C, "!escalate echo of my own post"),
        None,
        "r4b",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    bot.settle().await;
    assert_eq!(
        fake.posts_in(INTAKE_C).len(),
        intake_before + 1,
        "no answer to its own post"
    );
    assert_eq!(bot.store.case_count(), 0);

    // A long suggestion is split at paragraph boundaries, in order.
    let long = (0..6)
        .map(|i| format!("Paragraph {i}: {}", "words ".repeat(120)))
        .collect::<Vec<_>>()
        .join("\n\n");
    p.send(&Outgoing::new(TEAM_C, long), None, "r5")
        .await
        .unwrap();
    let parts: Vec<String> = fake
        .posts_in(TEAM_C)
        .iter()
        .map(|c| c.content().to_owned())
        .collect();
    assert!(parts.len() >= 2, "{parts:?}");
    for part in &parts {
        assert!(part.chars().count() <= 2000);
    }
    assert!(
        parts[1].contains("Paragraph"),
        "cut at a paragraph: {}",
        &parts[1][..40]
    );

    // A pasted card number, with Manage Messages: deleted.
    let pasted = fake.say(INTAKE_C, CUSTOMER, "my card 4111 1111 1111 1111");
    fake.wait_for("the delete", |f| {
        !f.calls_to("DELETE", &format!("/channels/{INTAKE_C}/messages/{pasted}"))
            .is_empty()
    })
    .await;
    // Without it: a lead is asked, in a reply to the message.
    fake.deny_delete(true);
    let pasted2 = fake.say(INTAKE_C, CUSTOMER, "card 5500 0000 0000 0004 cvv 123");
    fake.wait_for("the request to delete it", |f| {
        f.posts_in(INTAKE_C)
            .iter()
            .any(|c| c.content().contains(&format!("<@{LEADER}>")))
    })
    .await;
    bot.settle().await;
    let ask = fake
        .posts_in(INTAKE_C)
        .into_iter()
        .find(|c| c.content().contains(&format!("<@{LEADER}>")))
        .unwrap();
    assert_eq!(
        ask.body["message_reference"]["message_id"],
        pasted2.as_str()
    );
    assert_eq!(
        ask.body["allowed_mentions"]["users"],
        serde_json::json!([LEADER])
    );
    assert!(
        fake.calls()
            .iter()
            .all(|c| !c.body.to_string().contains("4111 1111")
                && !c.body.to_string().contains("5500 0000")),
        "the number never goes back to Discord"
    );
    bot.stop().await;
}

/// MESSAGE_CONTENT not enabled for the app: Discord closes the gateway
/// with 4014 and the adapter stops with an error that says what to turn on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disallowed_intent_stops_the_adapter_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDiscord::start().await;
    fake.refuse_intents(true);
    let cfg = discord_config(dir.path(), None);
    let store = Store::open(dir.path())
        .expect("open the store (it waits for the lock of an instance just stopped)");
    let platform = DiscordPlatform::connect(&adapter_config(&fake), &cfg, &store)
        .await
        .unwrap();
    let (tx, _rx) = mpsc::channel(16);
    let run = platform.run(tx, CancellationToken::new());
    let err = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("the adapter stops")
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("Message Content Intent"),
        "{err:#}"
    );
    assert_eq!(fake.identifies(), 1);
}

/// Figures for the report, not a pass/fail check: run with
/// `cargo test --release --test integration discord::figures -- --ignored --nocapture`.
/// Event in (a MESSAGE_CREATE on the fake gateway) → card posted on the
/// fake, p50/p99, one at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, run by hand"]
async fn figures() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDiscord::start().await;
    let bot = DiscordBot::start(dir.path(), &fake).await;
    let n = 200;
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        let before = cards(&fake).len();
        let t0 = std::time::Instant::now();
        fake.say(
            INTAKE_C,
            ANA,
            &format!("!escalate card declined for order {i}"),
        );
        fake.wait_for("the card", |f| cards(f).len() > before).await;
        let card = cards(&fake).remove(before);
        lat.push(card.at.duration_since(t0));
    }
    lat.sort();
    println!(
        "discord: event in -> card posted: n={n} p50={:?} p99={:?} max={:?}",
        lat[n / 2],
        lat[n * 99 / 100],
        lat[n - 1]
    );
    bot.settle().await;
    bot.stop().await;
}
