//! The bot core driven through a fake platform: escalation to thread,
//! every command, refusals by role, bad arguments, restarts.

use caseroom::case::{CaseId, EventKind, Status};
use caseroom::message::{Incoming, IncomingKind};

use super::util::*;

const CARD: &str = "4111 1111 1111 1111";

fn zh_ticket() -> String {
    format!("客户说付款一直失败，提示交易被拒绝，卡号 {CARD}，订单号 202311050001，金额 ¥1,299.00")
}

#[tokio::test(flavor = "multi_thread")]
async fn escalation_opens_one_case_with_root_and_suggestion_thread() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path());
    let ev = h.say(INTAKE, ALICE, &format!("!escalate {}", zh_ticket()), None);
    h.settle().await;

    let sent = h.sent();
    let root = sent
        .iter()
        .find(|m| m.room == TEAM && m.thread_root.is_none())
        .expect("root message");
    assert!(
        root.text.contains("C-1") && root.text.contains("payment-failed"),
        "{}",
        root.text
    );
    assert!(
        root.text.contains("P2"),
        "playbook default priority: {}",
        root.text
    );
    let thread = sent
        .iter()
        .find(|m| m.thread_root.as_deref() == Some(&root.id))
        .expect("thread reply");
    assert!(
        thread.text.contains("Checklist")
            && thread.text.contains("Draft reply")
            && thread.text.contains("(zh)"),
        "{}",
        thread.text
    );
    assert!(
        thread.text.contains("1111"),
        "card last-4 extracted: {}",
        thread.text
    );
    let ack = sent
        .iter()
        .find(|m| m.room == INTAKE && m.text.contains("Opened"))
        .expect("ack in intake");
    assert!(ack.text.contains("Opened **C-1**"));
    for m in &sent {
        assert!(
            !m.text.contains(CARD) && !m.text.contains("4111111111111111"),
            "card number leaked: {}",
            m.text
        );
    }
    // The agent's pasted message itself is removed from the intake room.
    let removal = sent
        .iter()
        .find(|m| m.redacts.is_some())
        .expect("the pasted card number is removed");
    assert_eq!(removal.room, INTAKE);
    assert_eq!(removal.redacts.as_deref(), Some(ev.as_str()));
    assert!(
        sent.iter()
            .any(|m| m.room == INTAKE && m.text.starts_with("🔒 A message here contained"))
    );
    let case = h.store.case(CaseId(1)).unwrap().unwrap();
    assert_eq!(case.status, Status::Triaged);
    assert_eq!(case.suggested_playbook.as_deref(), Some("payment-failed"));
    assert!(!case.body.contains(CARD), "card number stored in clear");

    // The same event again (e.g. re-delivered after a reconnect) does nothing.
    h.deliver(&Incoming {
        room: INTAKE.into(),
        sender: ALICE.into(),
        groups: Vec::new(),
        event_id: ev,
        kind: IncomingKind::Message {
            text: format!("!escalate {}", zh_ticket()),
            thread_root: None,
        },
        reply_handle: None,
    });
    h.settle().await;
    assert_eq!(h.sent().len(), sent.len());
    assert_eq!(h.store.case_count(), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reaction_escalates_a_message_once() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path());
    let react = |event: &str| Incoming {
        room: INTAKE.into(),
        sender: BOB.into(),
        groups: Vec::new(),
        event_id: event.into(),
        kind: IncomingKind::Reaction {
            key: "🎫".into(),
            target: "$customer-msg".into(),
            target_text: Some("I was charged twice for my order, I want a refund please".into()),
            target_sender: Some("@customer:test".into()),
        },
        reply_handle: None,
    };
    h.deliver(&react("$r1"));
    h.deliver(&react("$r2"));
    // A different reaction, or one outside intake, opens nothing.
    h.deliver(&Incoming {
        kind: IncomingKind::Reaction {
            key: "👍".into(),
            target: "$x".into(),
            target_text: Some("refund".into()),
            target_sender: None,
        },
        ..react("$r3")
    });
    h.deliver(&Incoming {
        room: TEAM.into(),
        ..react("$r4")
    });
    // A stranger's reaction is ignored.
    h.deliver(&Incoming {
        sender: STRANGER.into(),
        groups: Vec::new(),
        event_id: "$r5".into(),
        kind: IncomingKind::Reaction {
            key: "🎫".into(),
            target: "$other".into(),
            target_text: Some("refund".into()),
            target_sender: None,
        },
        room: INTAKE.into(),
        reply_handle: None,
    });
    h.settle().await;
    assert_eq!(h.store.case_count(), 1);
    let case = h.store.case(CaseId(1)).unwrap().unwrap();
    assert_eq!(case.suggested_playbook.as_deref(), Some("refund"));
    assert_eq!(case.customer.language, caseroom::lang::Lang::En);
    let replies: Vec<_> = h.sent().into_iter().filter(|m| m.room == INTAKE).collect();
    assert_eq!(replies.len(), 2, "{replies:?}");
    assert!(
        replies[1].text.contains("already **C-1**"),
        "{}",
        replies[1].text
    );
    // Replies to a reaction go in the reacted message's thread.
    assert_eq!(replies[0].thread_root.as_deref(), Some("$customer-msg"));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_work_a_case_from_its_thread() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path());
    h.say(INTAKE, ALICE, &format!("!escalate {}", zh_ticket()), None);
    h.settle().await;
    let root = h.root("C-1");
    let t = Some(root.as_str());
    let step = |who: &str, text: &str| {
        h.say(TEAM, who, text, t);
    };

    step(ALICE, "!claim");
    h.settle().await;
    assert!(
        h.last().text.contains("claimed **C-1**"),
        "{}",
        h.last().text
    );
    assert_eq!(
        h.last().thread_root.as_deref(),
        t,
        "replies stay in the thread"
    );

    step(ALICE, "!resume");
    h.settle().await;
    assert!(
        h.last().text.contains("cannot resume C-1: it is assigned"),
        "{}",
        h.last().text
    );

    step(ALICE, &format!("!note customer sent card {CARD} again"));
    step(ALICE, "!wait");
    step(ALICE, "!resume");
    step(ALICE, "!priority p1");
    step(ALICE, "!tag vip");
    step(ALICE, "I called the customer, card was blocked by the bank");
    step(ALICE, "!use refund");
    h.settle().await;
    let draft = h.last().text;
    assert!(
        draft.contains("draft reply") && draft.contains("(zh)"),
        "{draft}"
    );

    step(ALICE, "!assign @bob:test");
    h.settle().await;
    assert!(h.last().text.contains("now with @bob:test"));
    step(BOB, "!assign @mallory:test");
    h.settle().await;
    assert!(h.last().text.contains("not an agent"), "{}", h.last().text);

    step(BOB, "!resolve payment-failed");
    h.settle().await;
    assert!(h.last().text.contains("resolved with *payment-failed*"));
    step(BOB, "!reopen");
    step(BOB, "!unassign");
    h.settle().await;
    assert!(
        h.last()
            .text
            .contains("cannot unassign C-1: it is reopened"),
        "{}",
        h.last().text
    );
    step(BOB, "!claim");
    step(BOB, "!resolve");
    h.settle().await;

    let case = h.store.case(CaseId(1)).unwrap().unwrap();
    assert_eq!(case.status, Status::Resolved);
    assert_eq!(case.priority, caseroom::case::Priority::P1);
    assert!(case.tags.contains("vip"));
    assert_eq!(case.chosen_playbook.as_deref(), Some("payment-failed"));
    assert!(
        case.first_response_at.is_some(),
        "plain thread message is the first response"
    );
    let kinds: Vec<&'static str> = h
        .store
        .events(CaseId(1))
        .unwrap()
        .iter()
        .map(|e| e.kind.name())
        .filter(|k| *k != "posted")
        .collect();
    assert_eq!(
        kinds,
        [
            "opened",
            "triaged",
            "assigned",
            "note",
            "waiting_on_customer",
            "resumed",
            "priority_changed",
            "tagged",
            "agent_message",
            "reply_drafted",
            "assigned",
            "resolved",
            "reopened",
            "assigned",
            "resolved"
        ]
    );
    // The note was redacted before it was stored or echoed.
    let events = h.store.events(CaseId(1)).unwrap();
    assert!(
        events
            .iter()
            .all(|e| !serde_json::to_string(e).unwrap().contains(CARD))
    );
    // Resolving taught the classifier: the case text is in the history.
    assert!(
        h.store
            .history()
            .unwrap()
            .iter()
            .any(|i| i.label == "payment-failed")
    );
    // Everything the bot posted about the case is recorded with it, in the
    // order it went out, without a line in the case history.
    let posted = h.store.deliveries(CaseId(1)).unwrap();
    assert!(posted.len() >= 10, "deliveries: {posted:#?}");
    assert_eq!(posted[0].what, "root", "{posted:#?}");
    assert!(
        posted.iter().all(|d| d.room == TEAM || d.room == INTAKE),
        "{posted:#?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e.kind, EventKind::Posted { .. })),
        "deliveries leave the case history alone"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn roles_are_checked_and_refusals_explained() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path());
    h.say(INTAKE, STRANGER, "!escalate my payment failed", None);
    h.settle().await;
    assert!(
        h.last().text.contains("`escalate` is for the agent role"),
        "{}",
        h.last().text
    );
    assert_eq!(h.store.case_count(), 0);

    h.say(INTAKE, ALICE, "!escalate my payment failed twice", None);
    h.settle().await;
    let root = h.root("C-1");
    h.say(TEAM, STRANGER, "!claim", Some(&root));
    h.settle().await;
    assert!(h.last().text.contains("`claim` is for the agent role"));
    h.say(TEAM, ALICE, "!queue", None);
    h.settle().await;
    assert!(h.last().text.contains("`queue` is for the lead role"));
    h.say(TEAM, LEAD, "!claim", Some(&root));
    h.settle().await;
    assert!(h.last().text.contains("`claim` is for the agent role"));
    // Wrong place, unknown commands and bad arguments get usage replies.
    h.say(TEAM, ALICE, "!claim", None);
    h.settle().await;
    assert!(
        h.last().text.contains("works in a case thread"),
        "{}",
        h.last().text
    );
    h.say(TEAM, ALICE, "!escalate hello", None);
    h.settle().await;
    assert!(h.last().text.contains("works in an intake room"));
    h.say(TEAM, ALICE, "!launch rockets", Some(&root));
    h.settle().await;
    assert_eq!(
        h.last().text,
        "Unknown command `!launch`. `!help` lists the commands."
    );
    h.say(TEAM, ALICE, "!priority urgent", Some(&root));
    h.settle().await;
    assert!(h.last().text.contains("Usage: `!priority p1..p4`"));
    h.say(TEAM, ALICE, "!use teleport", Some(&root));
    h.settle().await;
    assert!(
        h.last().text.starts_with("No playbook `teleport`. Known:"),
        "{}",
        h.last().text
    );
    h.say(TEAM, ALICE, "!help", None);
    h.settle().await;
    assert!(h.last().text.contains("`!resolve [playbook]`"));
    // Strangers' plain messages in a thread are not case activity.
    h.say(TEAM, STRANGER, "hello?", Some(&root));
    let case = h.store.case(CaseId(1)).unwrap().unwrap();
    assert_eq!(case.status, Status::Triaged);
    assert!(case.first_response_at.is_none());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn leads_see_queue_case_and_stats() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path());
    h.say(
        INTAKE,
        ALICE,
        "!escalate 我的账户被锁了，密码输错了好几次",
        None,
    );
    h.say(
        INTAKE,
        ALICE,
        "!escalate I want a refund for order 12345, it never arrived",
        None,
    );
    h.say(
        INTAKE,
        ALICE,
        "!escalate 转账显示处理中，对方还没收到",
        None,
    );
    h.settle().await;
    let (r1, r2) = (h.root("C-1"), h.root("C-2"));
    h.say(TEAM, ALICE, "!claim", Some(&r1));
    h.say(TEAM, BOB, "!claim", Some(&r2));
    h.say(TEAM, BOB, "!wait", Some(&r2));
    h.say(TEAM, LEAD, "!queue", None);
    h.settle().await;
    let q = h.last().text;
    assert!(q.contains("3 open"), "{q}");
    assert!(
        q.lines()
            .any(|l| l.starts_with("assigned") && l.trim_end().ends_with('1')),
        "{q}"
    );
    assert!(
        q.lines()
            .any(|l| l.starts_with("waiting_on_customer") && l.trim_end().ends_with('1')),
        "{q}"
    );
    assert!(
        q.lines()
            .any(|l| l.starts_with("triaged") && l.trim_end().ends_with('1')),
        "{q}"
    );
    assert!(q.contains("- C-3"), "oldest unassigned: {q}");
    assert!(
        q.contains("@alice:test: 1 open (0 waiting") && q.contains("@bob:test: 1 open (1 waiting"),
        "{q}"
    );

    h.say(TEAM, ALICE, "!resolve", Some(&r1));
    h.say(TEAM, LEAD, "!stats", None);
    h.settle().await;
    let s = h.last().text;
    assert!(s.contains("3 cases") && s.contains("resolved 1"), "{s}");
    assert!(s.contains("Suggestion acceptance: 100% (1/1"), "{s}");

    h.say(TEAM, LEAD, "!case C-2", None);
    h.settle().await;
    let c = h.last().text;
    assert!(
        c.contains("**C-2** [waiting_on_customer]") && c.contains("@bob:test"),
        "{c}"
    );
    h.say(TEAM, LEAD, "!case C-99", None);
    h.settle().await;
    assert_eq!(h.last().text, "No case C-99.");
    h.say(TEAM, LEAD, "!reassign C-3 @alice:test", None);
    h.settle().await;
    assert_eq!(
        h.store
            .case(CaseId(3))
            .unwrap()
            .unwrap()
            .assignee
            .as_deref(),
        Some(ALICE)
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_continues_and_never_answers_twice() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path());
    h.say(
        INTAKE,
        ALICE,
        "!escalate payment failed at checkout, error 500",
        None,
    );
    h.settle().await;
    let root = h.root("C-1");
    let claim = h.say(TEAM, ALICE, "!claim", Some(&root));
    h.settle().await;
    let before = h.sent().len();
    let fake = h.fake.clone();
    h.stop().await;

    let h = Harness::start_on(dir.path(), fake);
    // The platform re-delivers the old command (e.g. sync from an old token).
    h.deliver(&Incoming {
        room: TEAM.into(),
        sender: ALICE.into(),
        groups: Vec::new(),
        event_id: claim,
        kind: IncomingKind::Message {
            text: "!claim".into(),
            thread_root: Some(root.clone()),
        },
        reply_handle: None,
    });
    h.settle().await;
    assert_eq!(h.sent().len(), before, "old command answered again");
    h.say(TEAM, ALICE, "!wait", Some(&root));
    h.settle().await;
    assert_eq!(
        h.store.case(CaseId(1)).unwrap().unwrap().status,
        Status::WaitingOnCustomer
    );
    assert_eq!(h.last().thread_root.as_deref(), Some(root.as_str()));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restored_backup_keeps_its_threads() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path());
    h.say(
        INTAKE,
        ALICE,
        "!escalate refund not received for order 9981",
        None,
    );
    h.settle().await;
    let root = h.root("C-1");
    h.stop().await;
    // sled may hold the directory lock a moment after the last handle.
    let mut export = String::new();
    for _ in 0..50 {
        let out = super::util::caseroom(dir.path(), &["export"]);
        if out.status.success() {
            export = String::from_utf8(out.stdout).unwrap();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(export.contains("\"record\":\"link\""), "{export}");
    let file = dir.path().join("backup.jsonl");
    std::fs::write(&file, export).unwrap();
    let restored = tempfile::tempdir().unwrap();
    super::util::caseroom_ok(restored.path(), &["import", file.to_str().unwrap()]);
    let h = Harness::start(restored.path());
    // A command in the old thread still reaches the case after the restore.
    h.say(TEAM, ALICE, "!claim", Some(&root));
    h.settle().await;
    assert!(
        h.last().text.contains("claimed **C-1**"),
        "{}",
        h.last().text
    );
    assert_eq!(h.last().thread_root.as_deref(), Some(root.as_str()));
    h.stop().await;
}
