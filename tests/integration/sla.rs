//! SLA on the fake platform with a manual clock: warnings in the case
//! thread, breaches paging the on-call rotation, escalation, `ack`,
//! `snooze`, reminders, closing on resolve — exactly once each, across
//! restarts too — and the lead and on-call commands.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use caseroom::bot::Bot;
use caseroom::case::{CaseId, EventKind};
use caseroom::config::Config;
use caseroom::message::{Incoming, IncomingKind};
use caseroom::outbox::Outbox;
use caseroom::platform::fake::{FakePlatform, Sent};
use caseroom::sla::Clock;
use caseroom::store::Store;
use jiff::{SignedDuration, Timestamp};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::util::*;

const CAROL: &str = "@carol:test";
const DAVE: &str = "@dave:test";
const ERIN: &str = "@erin:test";

/// Monday 2026-03-02 09:00 in Shanghai.
fn start() -> Timestamp {
    "2026-03-02T01:00:00Z".parse().unwrap()
}

/// `min` minutes (and `sec` seconds) after the start.
fn at(min: i64, sec: i64) -> Timestamp {
    start() + SignedDuration::from_secs(min * 60 + sec)
}

/// SLA and on-call sections for the tests: P1 first response in 10
/// minutes (wall time), warning at 80%; breaches page the primary rotation
/// (Carol today, Dave tomorrow), then Erin 5 minutes later; two rounds.
const SLA_TOML: &str = r#"
[sla.calendars.default]
timezone = "Asia/Shanghai"
hours = { mon = "09:00-18:00", tue = "09:00-18:00", wed = "09:00-18:00", thu = "09:00-18:00", fri = "09:00-18:00" }

[sla.policies.p1]
business_time = false
first_response = "10m"
resolution = "4h"
warnings = ["80%"]
escalation = "page"

[sla.policies.p3]
business_time = true
first_response = "1h"
warnings = ["15m"]

[oncall.rotations.primary]
timezone = "Asia/Shanghai"
members = ["@carol:test", "@dave:test"]
start = "2026-03-02T09:00"
shift = "1d"

[oncall.escalations.page]
repeat = 2
repeat_after = "10m"
remind_every = "30m"

[[oncall.escalations.page.steps]]
target = "rotation:primary"

[[oncall.escalations.page.steps]]
delay = "5m"
target = "user:@erin:test"
"#;

fn config(dir: &Path) -> Config {
    let mut cfg = test_config(dir);
    let sla = Config::parse(Path::new("sla.toml"), SLA_TOML, &|_| None).expect("test SLA config");
    cfg.sla = sla.sla;
    cfg.oncall = sla.oncall;
    cfg.roles.oncall = [CAROL, DAVE, ERIN].map(String::from).into();
    cfg
}

static EVENT_SEQ: AtomicU64 = AtomicU64::new(0);

/// The bot core with its outbox and SLA scheduler running on a manual clock.
struct SlaHarness {
    bot: Bot,
    fake: Arc<FakePlatform>,
    store: Store,
    clock: Clock,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl SlaHarness {
    async fn start(dir: &Path, fake: Arc<FakePlatform>, clock: Clock) -> SlaHarness {
        let store = Store::open(dir)
            .expect("open the store (it waits for the lock of an instance just stopped)");
        let outbox = Outbox::new();
        let bot = Bot::with_clock(
            config(dir),
            store.clone(),
            Arc::new(RwLock::new(engine())),
            outbox.clone(),
            "fake",
            clock.clone(),
        );
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        outbox.spawn(store.clone(), fake.clone(), shutdown.clone(), &tracker);
        bot.sla().spawn(shutdown.clone(), &tracker);
        outbox.wake();
        let h = SlaHarness {
            bot,
            fake,
            store,
            clock,
            shutdown,
            tracker,
        };
        h.bot.sla().idle().await;
        h.settle().await;
        h
    }

    /// A harness on a new fake platform with the clock at [`start`].
    async fn fresh(dir: &Path) -> SlaHarness {
        SlaHarness::start(dir, Arc::new(FakePlatform::new()), Clock::manual(start())).await
    }

    fn say(&self, room: &str, sender: &str, text: &str, thread: Option<&str>) {
        let n = EVENT_SEQ.fetch_add(1, Ordering::Relaxed);
        self.bot
            .handle(&Incoming {
                room: room.into(),
                sender: sender.into(),
                groups: Vec::new(),
                event_id: format!("$sla{}-{n}", std::process::id()),
                kind: IncomingKind::Message {
                    text: text.into(),
                    thread_root: thread.map(str::to_owned),
                },
                reply_handle: None,
            })
            .expect("handle");
    }

    /// Waits until SLA timers due now have fired and the outbox is empty.
    async fn settle(&self) {
        self.bot.sla().idle().await;
        for _ in 0..500 {
            if self.store.pending_outbox().unwrap().is_empty() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("outbox did not drain");
    }

    /// Moves the clock to `t` and lets everything due by then happen.
    async fn at(&self, t: Timestamp) {
        self.clock.set(t);
        self.settle().await;
    }

    fn sent(&self) -> Vec<Sent> {
        self.fake.sent()
    }

    /// The text of the last message in `room` (rooms are delivered
    /// independently, so the overall last one may be elsewhere).
    fn last_in(&self, room: &str) -> String {
        self.sent()
            .into_iter()
            .rev()
            .find(|m| m.room == room)
            .map(|m| m.text)
            .expect("a message in the room")
    }

    fn root(&self, id: &str) -> String {
        let case: CaseId = id.parse().unwrap();
        self.store
            .posted(&caseroom::message::root_key(case))
            .unwrap()
            .expect("root delivered")
    }

    /// The `sla` events of a case: (target, what).
    fn sla_events(&self, id: u64) -> Vec<(String, String)> {
        self.store
            .events(CaseId(id))
            .unwrap()
            .into_iter()
            .filter_map(|e| match e.kind {
                EventKind::Sla { target, what } => Some((target, what)),
                _ => None,
            })
            .collect()
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// How many sent messages contain `needle`.
fn count(sent: &[Sent], needle: &str) -> usize {
    sent.iter().filter(|m| m.text.contains(needle)).count()
}

/// Opens a P1 case claimed by Alice at the start; returns its root id.
async fn p1_case(h: &SlaHarness) -> String {
    h.say(
        INTAKE,
        ALICE,
        "!escalate 付款一直失败，提示交易被拒绝，订单号 202311050001",
        None,
    );
    h.settle().await;
    let root = h.root("C-1");
    h.say(TEAM, ALICE, "!claim", Some(&root));
    h.say(TEAM, ALICE, "!priority p1", Some(&root));
    h.settle().await;
    root
}

/// Bob escalates a refund for `order`, opening case `id`, and makes it P3;
/// returns its root id.
async fn p3_case(h: &SlaHarness, order: &str, id: &str) -> String {
    h.say(
        INTAKE,
        BOB,
        &format!("!escalate I want a refund for order {order}, it never arrived"),
        None,
    );
    h.settle().await;
    let root = h.root(id);
    h.say(TEAM, BOB, "!priority p3", Some(&root));
    h.settle().await;
    root
}

fn warnings(sent: &[Sent]) -> Vec<&Sent> {
    sent.iter().filter(|m| m.text.starts_with("⏰")).collect()
}

fn alerts(sent: &[Sent]) -> Vec<&Sent> {
    sent.iter()
        .filter(|m| m.room == ONCALL && m.text.starts_with("🚨"))
        .collect()
}

fn pages(sent: &[Sent]) -> Vec<&Sent> {
    sent.iter()
        .filter(|m| m.room == ONCALL && m.text.starts_with("📟"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn p1_warning_breach_escalation_ack_reminder_and_close() {
    let dir = tempfile::tempdir().unwrap();
    let h = SlaHarness::fresh(dir.path()).await;
    let root = p1_case(&h).await;

    // Nothing before 80% of the 10-minute first-response target.
    h.at(at(7, 59)).await;
    assert!(warnings(&h.sent()).is_empty());

    // 80%: a warning in the case thread, mentioning the assignee.
    h.at(at(8, 0)).await;
    let sent = h.sent();
    let w = warnings(&sent);
    assert_eq!(w.len(), 1, "{sent:#?}");
    assert_eq!(w[0].thread_root.as_deref(), Some(root.as_str()));
    assert_eq!(w[0].mentions, vec![ALICE.to_owned()]);
    assert!(
        w[0].text
            .contains("**C-1** · *first response* is at 80%: 2m left, due 03-02 09:10 CST"),
        "{}",
        w[0].text
    );
    assert!(alerts(&sent).is_empty());

    // Breach: history, a note in the thread, an alert in the on-call room
    // mentioning whoever the rotation has on call (Carol on Monday).
    h.at(at(9, 59)).await;
    assert!(alerts(&h.sent()).is_empty());
    h.at(at(10, 0)).await;
    let sent = h.sent();
    let a = alerts(&sent);
    assert_eq!(a.len(), 1, "{sent:#?}");
    assert_eq!(a[0].mentions, vec![CAROL.to_owned()]);
    assert!(
        a[0].text
            .contains("**A-1** · **C-1** (P1) missed *first response*")
            && a[0]
                .text
                .contains("Paging @carol:test (on call for primary) (step 1/2)"),
        "{}",
        a[0].text
    );
    let note = sent
        .iter()
        .find(|m| m.text.starts_with("🚨 **C-1** missed"))
        .expect("breach note in the thread");
    assert_eq!(note.thread_root.as_deref(), Some(root.as_str()));
    assert_eq!(
        h.sla_events(1),
        vec![
            ("first_response".into(), "warning 80%".into()),
            ("first_response".into(), "breached".into()),
            ("first_response".into(), "alert A-1 opened".into()),
            (
                "first_response".into(),
                "alert A-1 paged step 1 round 1".into()
            ),
        ]
    );

    // Nobody acks: step 2 pages Erin 5 minutes later.
    h.at(at(14, 59)).await;
    assert!(pages(&h.sent()).is_empty());
    h.at(at(15, 0)).await;
    let sent = h.sent();
    let p = pages(&sent);
    assert_eq!(p.len(), 1, "{sent:#?}");
    assert_eq!(p[0].mentions, vec![ERIN.to_owned()]);
    assert!(p[0].text.contains("(step 2/2)"), "{}", p[0].text);

    // Only on-call staff may ack; Carol does, which stops the escalation
    // (round 2 would have paged Carol again at minute 25).
    h.clock.set(at(16, 0));
    h.say(ONCALL, ALICE, "!ack A-1", None);
    h.settle().await;
    assert!(h.last_in(ONCALL).contains("is for the oncall role"));
    h.say(ONCALL, CAROL, "!ack A-1", None);
    h.settle().await;
    let ack = h.last_in(ONCALL);
    assert!(
        ack.starts_with("✅ **A-1** acknowledged by @carol:test"),
        "{ack}"
    );
    assert!(h.last_in(TEAM).contains("@carol:test acknowledged **A-1**"));
    h.say(ONCALL, DAVE, "!ack A-1", None);
    h.settle().await;
    assert!(
        h.last_in(ONCALL)
            .contains("already acknowledged by @carol:test")
    );
    h.at(at(40, 0)).await;
    assert_eq!(pages(&h.sent()).len(), 1, "no more pages after the ack");

    // Acknowledged but still breached: a reminder every 30 minutes.
    h.at(at(46, 0)).await;
    let sent = h.sent();
    let reminders: Vec<&Sent> = sent.iter().filter(|m| m.text.starts_with("🔁")).collect();
    assert_eq!(reminders.len(), 1);
    assert_eq!(reminders[0].mentions, vec![CAROL.to_owned()]);
    assert!(
        reminders[0].text.contains("36m over"),
        "{}",
        reminders[0].text
    );

    // Resolving the case closes the alert, once.
    h.clock.set(at(50, 0));
    h.say(TEAM, ALICE, "!resolve", Some(&root));
    h.settle().await;
    let sent = h.sent();
    assert_eq!(
        count(&sent, "✅ **A-1** closed: C-1 was resolved."),
        1,
        "{sent:#?}"
    );
    let before = sent.len();
    h.at(at(600, 0)).await;
    assert_eq!(h.sent().len(), before, "{:#?}", &h.sent()[before..]);
    assert_eq!(
        h.sla_events(1).last().unwrap(),
        &("first_response".into(), "alert A-1 closed".into())
    );
    // Every kind of message went out exactly once.
    let sent = h.sent();
    assert_eq!(warnings(&sent).len(), 1);
    assert_eq!(alerts(&sent).len(), 1);
    assert_eq!(pages(&sent).len(), 1);
    h.say(ONCALL, CAROL, "!ack A-1", None);
    h.settle().await;
    assert!(h.last_in(ONCALL).contains("No open alert A-1"));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_across_restarts_between_warning_and_breach() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakePlatform::new());
    let clock = Clock::manual(start());
    let h = SlaHarness::start(dir.path(), fake.clone(), clock.clone()).await;
    let root = p1_case(&h).await;
    h.at(at(8, 0)).await;
    assert_eq!(warnings(&h.sent()).len(), 1);

    // Restart at minute 9: the warning is not sent again, and the breach
    // fires on its timer at minute 10.
    h.clock.set(at(9, 0));
    h.stop().await;
    let h = SlaHarness::start(dir.path(), fake.clone(), clock.clone()).await;
    assert_eq!(warnings(&h.sent()).len(), 1);
    assert!(alerts(&h.sent()).is_empty());
    h.at(at(10, 0)).await;
    let sent = h.sent();
    assert_eq!(alerts(&sent).len(), 1);
    assert_eq!(alerts(&sent)[0].mentions, vec![CAROL.to_owned()]);

    // Restart after the breach: nothing is repeated; step 2 still comes
    // 5 minutes after step 1. The case with its open alert is armed from
    // its persisted plan, not replayed.
    h.stop().await;
    let h = SlaHarness::start(dir.path(), fake.clone(), clock.clone()).await;
    assert_eq!(h.bot.sla().replayed_at_start(), Some(0));
    assert_eq!(h.sent().len(), sent.len());
    h.at(at(15, 0)).await;
    assert_eq!(pages(&h.sent()).len(), 1);
    assert_eq!(pages(&h.sent())[0].mentions, vec![ERIN.to_owned()]);

    // Restart again: `ack` still finds the alert, and it stops the paging.
    h.stop().await;
    let h = SlaHarness::start(dir.path(), fake.clone(), clock.clone()).await;
    h.say(ONCALL, CAROL, "!ack A-1", None);
    h.settle().await;
    assert!(h.last_in(ONCALL).contains("acknowledged by @carol:test"));
    h.at(at(30, 0)).await;
    assert_eq!(pages(&h.sent()).len(), 1);
    h.say(TEAM, ALICE, "!resolve", Some(&root));
    h.settle().await;
    let sent = h.sent();
    assert_eq!(count(&sent, "✅ **A-1** closed"), 1);
    assert_eq!(warnings(&sent).len(), 1);
    assert_eq!(alerts(&sent).len(), 1);
    h.stop().await;
}

/// Regression for issue 15: timers come from the persisted plans at
/// start, not from replaying every history. A deadline missed while down
/// still fires exactly once, also when the plan is stale or unreadable.
#[tokio::test(flavor = "multi_thread")]
async fn a_persisted_plan_fires_a_missed_deadline_once() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakePlatform::new());
    let clock = Clock::manual(start());
    let h = SlaHarness::start(dir.path(), fake.clone(), clock.clone()).await;
    p1_case(&h).await;
    h.at(at(2, 0)).await;
    let plans: Vec<_> = h.store.sla_plans().map(|p| p.unwrap().0).collect();
    assert_eq!(plans, vec![CaseId(1)]);
    h.stop().await;
    // The next start arms the case from its plan.
    let h = SlaHarness::start(dir.path(), fake.clone(), clock.clone()).await;
    h.stop().await;

    // Down from minute 2 to 13: past the warning and the breach.
    clock.set(at(13, 0));
    let h = SlaHarness::start(dir.path(), fake.clone(), clock.clone()).await;
    h.at(at(13, 0)).await;
    let sent = h.sent();
    assert_eq!(alerts(&sent).len(), 1, "{sent:#?}");
    assert!(warnings(&sent).is_empty(), "{sent:#?}");
    h.stop().await;

    // A plan that does not match the history (a crash lost the newer one)
    // or does not parse is not trusted: nothing fires twice.
    for stale in [&b"\0\0\0\x03\0\0"[..], b"garbage"] {
        let store = Store::open(dir.path()).unwrap();
        store.put_sla_plan(CaseId(1), Some(stale)).unwrap();
        store.flush().unwrap();
        drop(store);
        let h = SlaHarness::start(dir.path(), fake.clone(), clock.clone()).await;
        h.at(at(14, 0)).await;
        assert_eq!(alerts(&h.sent()).len(), 1);
        assert!(warnings(&h.sent()).is_empty());
        h.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deadline_passed_while_down_fires_once_right_after_start() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakePlatform::new());
    let clock = Clock::manual(start());
    let h = SlaHarness::start(dir.path(), fake.clone(), clock.clone()).await;
    let root = p1_case(&h).await;
    h.at(at(8, 0)).await;
    h.stop().await;

    // Down from minute 8 to 13: the breach fires once at start (not the
    // warning again), and the escalation counts from that page.
    clock.set(at(13, 0));
    let h = SlaHarness::start(dir.path(), fake.clone(), clock.clone()).await;
    let sent = h.sent();
    assert_eq!(warnings(&sent).len(), 1);
    assert_eq!(alerts(&sent).len(), 1, "{sent:#?}");
    assert!(
        alerts(&sent)[0]
            .text
            .contains("due 03-02 09:10 CST, 3m over"),
        "{}",
        alerts(&sent)[0].text
    );
    let breach_at = h
        .store
        .events(CaseId(1))
        .unwrap()
        .into_iter()
        .find(|e| matches!(&e.kind, EventKind::Sla { what, .. } if what == "breached"))
        .unwrap();
    assert_eq!(breach_at.at, at(13, 0));
    assert_eq!(
        breach_at.reason.as_deref(),
        Some("due 2026-03-02T01:10:00Z")
    );
    h.at(at(17, 59)).await;
    assert!(pages(&h.sent()).is_empty());
    h.at(at(18, 0)).await;
    assert_eq!(pages(&h.sent()).len(), 1);

    // Down for an hour without an ack: one page, for the step the alert
    // should be at now (round 2, step 2), not one per missed step.
    h.stop().await;
    clock.set(at(80, 0));
    let h = SlaHarness::start(dir.path(), fake.clone(), clock.clone()).await;
    let p = pages(&h.sent()).into_iter().cloned().collect::<Vec<_>>();
    assert_eq!(p.len(), 2, "{p:#?}");
    assert!(p[1].text.contains("(step 2/2, round 2)"), "{}", p[1].text);
    h.say(TEAM, ALICE, "!resolve", Some(&root));
    h.settle().await;
    assert_eq!(count(&h.sent(), "✅ **A-1** closed"), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_alert_whose_case_was_resolved_while_down_closes_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakePlatform::new());
    let clock = Clock::manual(start());
    let h = SlaHarness::start(dir.path(), fake.clone(), clock.clone()).await;
    p1_case(&h).await;
    h.at(at(10, 0)).await;
    assert_eq!(alerts(&h.sent()).len(), 1);
    h.stop().await;

    // Resolved from the command line while the bot is down.
    {
        let store = Store::open(dir.path())
            .expect("open the store (it waits for the lock of an instance just stopped)");
        store
            .append(
                CaseId(1),
                "cli",
                EventKind::Resolved { playbook: None },
                None,
                at(12, 0),
            )
            .unwrap();
    }
    clock.set(at(13, 0));
    let h = SlaHarness::start(dir.path(), fake.clone(), clock.clone()).await;
    assert_eq!(count(&h.sent(), "✅ **A-1** closed: C-1 was resolved."), 1);
    assert!(pages(&h.sent()).is_empty(), "a closed alert pages nobody");

    // Alert numbers continue after a clean restart.
    h.say(
        INTAKE,
        ALICE,
        "!escalate 转账显示处理中，对方还没收到",
        None,
    );
    h.settle().await;
    let root = h.root("C-2");
    h.say(TEAM, ALICE, "!priority p1", Some(&root));
    h.at(at(23, 0)).await;
    let a = alerts(&h.sent()).into_iter().cloned().collect::<Vec<_>>();
    assert_eq!(a.len(), 2);
    assert!(
        a[1].text.starts_with("🚨 **A-2** · **C-2**"),
        "{}",
        a[1].text
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn snooze_delays_the_escalation() {
    let dir = tempfile::tempdir().unwrap();
    let h = SlaHarness::fresh(dir.path()).await;
    p1_case(&h).await;
    h.at(at(10, 0)).await;
    assert_eq!(alerts(&h.sent()).len(), 1);
    h.clock.set(at(11, 0));
    h.say(ONCALL, DAVE, "!snooze A-1 20m", None);
    h.settle().await;
    let reply = h.last_in(ONCALL);
    assert!(
        reply.contains("snoozed until 03-02 09:31 CST (20m)"),
        "{reply}"
    );
    h.at(at(30, 59)).await;
    assert!(pages(&h.sent()).is_empty(), "no page while snoozed");
    h.at(at(31, 0)).await;
    assert_eq!(pages(&h.sent()).len(), 1);
    h.say(ONCALL, DAVE, "!snooze A-9 5m", None);
    h.settle().await;
    assert!(h.last_in(ONCALL).contains("No open alert A-9"));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn waiting_on_the_customer_pauses_the_clock() {
    let dir = tempfile::tempdir().unwrap();
    let h = SlaHarness::fresh(dir.path()).await;
    let root = p1_case(&h).await;
    h.clock.set(at(5, 0));
    h.say(TEAM, ALICE, "!wait", Some(&root));
    h.settle().await;
    // Paused with 5 minutes left: nothing fires however long we wait.
    h.at(at(120, 0)).await;
    assert!(warnings(&h.sent()).is_empty() && alerts(&h.sent()).is_empty());
    h.clock.set(at(120, 0));
    h.say(TEAM, ALICE, "!resume", Some(&root));
    h.settle().await;
    // 80% (8 minutes) is 3 minutes after resuming, the breach 5.
    h.at(at(122, 59)).await;
    assert!(warnings(&h.sent()).is_empty());
    h.at(at(123, 0)).await;
    assert_eq!(warnings(&h.sent()).len(), 1);
    assert!(warnings(&h.sent())[0].text.contains("due 03-02 11:05 CST"));
    // A reply in the thread is the first response: no breach.
    h.say(TEAM, ALICE, "Hello, we are looking into it.", Some(&root));
    h.at(at(200, 0)).await;
    assert!(alerts(&h.sent()).is_empty());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lead_and_oncall_commands() {
    let dir = tempfile::tempdir().unwrap();
    let h = SlaHarness::fresh(dir.path()).await;
    let root = p1_case(&h).await;
    // A P3 case on business time (1h first response, warn 15m before).
    let r2 = p3_case(&h, "12345", "C-2").await;

    h.at(at(9, 0)).await;
    h.say(TEAM, LEAD, "!sla", None);
    h.settle().await;
    let s = h.last_in(TEAM);
    assert!(s.contains("0 breached · 1 at risk"), "{s}");
    assert!(
        s.contains("- C-1 P1 *first response* · 1m left (due 03-02 09:10 CST) · @alice:test"),
        "{s}"
    );

    h.at(at(12, 0)).await;
    h.say(TEAM, LEAD, "!sla breached", None);
    h.settle().await;
    let s = h.last_in(TEAM);
    assert!(
        s.contains("- C-1 P1 *first response* · 2m over (due 03-02 09:10 CST) · @alice:test · A-1 (not acknowledged)"),
        "{s}"
    );
    assert!(!s.contains("At risk"), "{s}");

    h.say(TEAM, LEAD, "!queue", None);
    h.settle().await;
    let q = h.last_in(TEAM);
    assert!(q.contains("at-risk"), "{q}");
    assert!(
        q.lines()
            .any(|l| l.starts_with("assigned") && l.split_whitespace().nth(5) == Some("1")),
        "{q}"
    );
    assert!(q.contains("at-risk: 1 breached, 0 at risk"), "{q}");

    // The P3 case counts business time: at risk 15 minutes before its hour.
    h.at(at(45, 0)).await;
    h.say(TEAM, LEAD, "!sla at-risk", None);
    h.settle().await;
    let s = h.last_in(TEAM);
    assert!(
        s.contains("- C-2 P3 *first response* · 15m left (due 03-02 10:00 CST)"),
        "{s}"
    );
    assert_eq!(
        warnings(&h.sent())
            .iter()
            .filter(|w| w.text.contains("C-2"))
            .count(),
        1
    );

    h.say(ONCALL, CAROL, "!oncall", None);
    h.settle().await;
    let o = h.last_in(ONCALL);
    assert!(
        o.contains("- **primary**: @carol:test now · next @dave:test from 03-03 09:00 CST"),
        "{o}"
    );
    assert!(
        o.contains("**A-1** C-1 first response (not acknowledged)"),
        "{o}"
    );
    h.say(TEAM, ALICE, "!oncall", None);
    h.settle().await;
    assert!(h.last_in(TEAM).contains("is for the lead role"));

    // The first response came late: stats count it as missed.
    h.say(TEAM, ALICE, "On it.", Some(&root));
    h.say(TEAM, BOB, "Checking the refund.", Some(&r2));
    h.say(TEAM, LEAD, "!stats", None);
    h.settle().await;
    let st = h.last_in(TEAM);
    assert!(
        st.contains("- first response: P1 0% (0/1) · P3 100% (1/1)"),
        "{st}"
    );
    h.say(TEAM, LEAD, "!help", None);
    h.settle().await;
    let help = h.last_in(TEAM);
    for cmd in [
        "!sla [at-risk|breached]",
        "!oncall",
        "!ack <alert>",
        "!snooze <alert> <duration>",
    ] {
        assert!(help.contains(cmd), "{cmd} missing in {help}");
    }
    h.stop().await;
}

/// Thirty overdue cases: `sla breached` lists the 25 most overdue in due
/// order, with their priority and assignee from the open-case index, and
/// counts the other five.
#[tokio::test(flavor = "multi_thread")]
async fn a_long_sla_report_lists_the_most_overdue_and_counts_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let h = SlaHarness::fresh(dir.path()).await;
    for i in 0..30 {
        h.at(at(i, 0)).await;
        let root = p3_case(&h, &format!("1234{i}"), &format!("C-{}", i + 1)).await;
        if i == 0 {
            h.say(TEAM, BOB, "!claim", Some(&root));
        }
        h.settle().await;
    }
    // P3: first response within an hour of business time.
    h.at(at(120, 0)).await;
    h.say(TEAM, LEAD, "!sla breached", None);
    h.settle().await;
    let s = h.last_in(TEAM);
    assert!(s.contains("30 breached · 0 at risk"), "{s}");
    let listed: Vec<&str> = s.lines().filter(|l| l.starts_with("- C-")).collect();
    assert_eq!(listed.len(), 25, "{s}");
    assert!(
        listed[0].starts_with("- C-1 P3 *first response* · 1h 0m over") && listed[0].contains(BOB),
        "{s}"
    );
    assert!(listed[1].starts_with("- C-2 P3") && listed[1].contains("nobody (unassigned)"));
    assert!(listed[24].starts_with("- C-25 P3"), "{s}");
    assert!(s.contains("… and 5 more"), "{s}");
    h.stop().await;
}

#[test]
fn oncall_config_errors_name_file_key_and_line() {
    let src = SLA_TOML.replace(
        "target = \"rotation:primary\"",
        "target = \"rotation:secondary\"",
    );
    let err = Config::parse(Path::new("sla.toml"), &src, &|_| None)
        .unwrap_err()
        .to_string();
    let line = src
        .lines()
        .position(|l| l.contains("rotation:secondary"))
        .unwrap()
        + 1;
    assert_eq!(
        err,
        format!(
            "sla.toml:{line}: oncall.escalations.page.steps.target: no rotation named `secondary` in [oncall.rotations]"
        )
    );
    let src = SLA_TOML.replace("escalation = \"page\"", "escalation = \"pager\"");
    let err = Config::parse(Path::new("sla.toml"), &src, &|_| None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("sla.policies.p1.escalation: no escalation policy named `pager`"),
        "{err}"
    );
    let src = SLA_TOML.replace("shift = \"1d\"", "shift = \"daily\"");
    let err = Config::parse(Path::new("sla.toml"), &src, &|_| None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("oncall.rotations.primary.shift: `daily` is not a duration"),
        "{err}"
    );
    let src = SLA_TOML.replace("start = \"2026-03-02T09:00\"", "start = \"monday 9am\"");
    let err = Config::parse(Path::new("sla.toml"), &src, &|_| None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("oncall.rotations.primary.start: `monday 9am` is not a local date and time"),
        "{err}"
    );
}
