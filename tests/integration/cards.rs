//! Live case cards and one-click actions on the fake platform: the card is
//! edited in place on every change (coalesced), actions run as their typed
//! commands with the same role checks, and a replayed click changes nothing.

use std::time::Duration;

use caseroom::case::{CaseId, Status};
use caseroom::message::{ActionKind, Incoming, IncomingKind};

use super::util::*;

const TICKET: &str = "I was charged twice for order 1042, please refund the second payment";

/// Opens C-1 from the intake room and waits for its card.
async fn open(h: &Harness) -> String {
    h.say(INTAKE, ALICE, &format!("!escalate {TICKET}"), None);
    h.settle().await;
    h.root("C-1")
}

/// `sender` clicks the action `id` (as an adapter reports a button click).
fn click(h: &Harness, sender: &str, id: &str, event: &str) {
    h.deliver(&Incoming {
        room: TEAM.into(),
        sender: sender.into(),
        groups: Vec::new(),
        event_id: event.into(),
        kind: IncomingKind::Action {
            id: id.into(),
            message: None,
        },
        reply_handle: None,
    });
}

/// `sender` reacts with `key` on message `target` in `room`.
fn react(h: &Harness, room: &str, sender: &str, key: &str, target: &str, event: &str) {
    h.deliver(&Incoming {
        room: room.into(),
        sender: sender.into(),
        groups: Vec::new(),
        event_id: event.into(),
        kind: IncomingKind::Reaction {
            key: key.into(),
            target: target.into(),
            target_text: None,
            target_sender: None,
        },
        reply_handle: None,
    });
}

/// Waits until the card `root` reads with every one of `wanted`.
async fn card_shows(h: &Harness, root: &str, wanted: &[&str]) -> String {
    for _ in 0..300 {
        h.settle().await;
        let text = h.fake.current_text(root).unwrap_or_default();
        if wanted.iter().all(|w| text.contains(w)) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "card never showed {wanted:?}: {}",
        h.fake.current_text(root).unwrap_or_default()
    );
}

fn status(h: &Harness) -> Status {
    h.store.case(CaseId(1)).unwrap().unwrap().status
}

#[tokio::test(flavor = "multi_thread")]
async fn the_card_is_edited_in_place_after_claim_priority_and_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path());
    let root = open(&h).await;
    let card = h.sent().into_iter().find(|m| m.id == root).unwrap();
    assert!(card.text.contains("**C-1**"), "{}", card.text);
    assert!(card.text.contains("unassigned"), "{}", card.text);
    assert!(
        card.text.contains("first response") && card.text.contains("resolution"),
        "the card shows the SLA due times: {}",
        card.text
    );
    let ids: Vec<String> = card.actions.iter().map(|a| a.kind.id()).collect();
    assert!(ids.contains(&"claim:C-1".to_owned()), "{ids:?}");
    assert!(ids.contains(&"resolve:C-1".to_owned()), "{ids:?}");
    assert!(ids.iter().any(|i| i.starts_with("use:C-1:")), "{ids:?}");

    h.say(TEAM, ALICE, "!claim", Some(&root));
    let text = card_shows(&h, &root, &["assigned", ALICE]).await;
    assert!(!text.contains("unassigned"), "{text}");
    let last = h.fake.edits_of(&root).last().cloned().unwrap();
    assert!(
        !last
            .actions
            .iter()
            .any(|a| matches!(a.kind, ActionKind::Claim { .. })),
        "no Claim button on a claimed case: {:?}",
        last.actions
    );

    h.say(TEAM, ALICE, "!priority p1", Some(&root));
    card_shows(&h, &root, &["P1"]).await;

    h.say(TEAM, ALICE, "!resolve", Some(&root));
    let text = card_shows(&h, &root, &["resolved"]).await;
    assert!(
        !text.contains("SLA:"),
        "no SLA clock on a resolved card: {text}"
    );
    let last = h.fake.edits_of(&root).last().cloned().unwrap();
    assert!(last.actions.is_empty(), "{:?}", last.actions);
    // Edits are edits: nothing new was posted in the team room's main timeline.
    let roots = h
        .sent()
        .into_iter()
        .filter(|m| m.room == TEAM && m.thread_root.is_none())
        .count();
    assert_eq!(roots, 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_changes_makes_few_edits_with_the_final_state() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path());
    let root = open(&h).await;
    let before = h.fake.edits_of(&root).len();
    for i in 0..20 {
        h.say(TEAM, ALICE, &format!("!tag burst{i:02}"), Some(&root));
    }
    let text = card_shows(&h, &root, &["burst00", "burst19"]).await;
    // Let any straggler go out before counting.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    h.settle().await;
    let edits = h.fake.edits_of(&root).len() - before;
    assert!(
        (1..=3).contains(&edits),
        "20 changes within a second made {edits} edits"
    );
    let last = h.fake.edits_of(&root).last().cloned().unwrap();
    for i in 0..20 {
        assert!(last.text.contains(&format!("burst{i:02}")), "{text}");
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn clicks_run_as_commands_with_the_same_role_checks() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path());
    let root = open(&h).await;

    // A stranger's click is refused, privately, with the reason; nothing changes.
    click(&h, STRANGER, "claim:C-1", "$click-stranger");
    h.settle().await;
    let refusal = h.last();
    assert_eq!(refusal.private_to.as_deref(), Some(STRANGER));
    assert!(refusal.text.contains("agent role"), "{}", refusal.text);
    assert_eq!(status(&h), Status::Triaged);

    // A forged or stale id is answered, and changes nothing.
    click(&h, ALICE, "claim:C-999", "$click-gone");
    click(&h, ALICE, "frobnicate:C-1", "$click-junk");
    h.settle().await;
    let replies: Vec<_> = h
        .sent()
        .into_iter()
        .filter(|m| m.private_to.as_deref() == Some(ALICE))
        .collect();
    assert_eq!(replies.len(), 2, "{replies:?}");
    assert!(
        replies[0].text.contains("no case C-999"),
        "{}",
        replies[0].text
    );
    assert!(
        replies[1].text.contains("not one of mine"),
        "{}",
        replies[1].text
    );

    // Alice's click claims it; the line saying so goes in the case thread.
    click(&h, ALICE, "claim:C-1", "$click-alice");
    h.settle().await;
    assert_eq!(status(&h), Status::Assigned);
    let line = h.last();
    assert_eq!(line.thread_root.as_deref(), Some(root.as_str()));
    assert!(
        line.text.contains(ALICE) && line.text.contains("claimed"),
        "{}",
        line.text
    );
    card_shows(&h, &root, &[ALICE]).await;

    // A stale Claim button (the card no longer shows it) gets today's answer.
    click(&h, ALICE, "claim:C-1", "$click-again");
    h.settle().await;
    assert!(h.last().text.contains("already yours"), "{}", h.last().text);

    // Use-playbook drafts the reply in the thread.
    click(&h, ALICE, "use:C-1:refund", "$click-use");
    h.settle().await;
    let draft = h.last();
    assert_eq!(draft.thread_root.as_deref(), Some(root.as_str()));
    assert!(
        draft.text.to_lowercase().contains("refund"),
        "{}",
        draft.text
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reactions_on_the_card_claim_and_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path());
    let root = open(&h).await;
    // Other reactions, and reactions on other messages, do nothing.
    react(&h, TEAM, ALICE, "🎉", &root, "$r-party");
    react(&h, TEAM, ALICE, "✋", "$not-a-card", "$r-elsewhere");
    h.settle().await;
    assert_eq!(status(&h), Status::Triaged);
    // Clients add variation selectors and skin tones.
    react(&h, TEAM, BOB, "✋\u{1F3FD}", &root, "$r-claim");
    h.settle().await;
    let case = h.store.case(CaseId(1)).unwrap().unwrap();
    assert_eq!(case.assignee.as_deref(), Some(BOB));
    react(&h, TEAM, BOB, "✅\u{FE0F}", &root, "$r-resolve");
    h.settle().await;
    assert_eq!(status(&h), Status::Resolved);
    card_shows(&h, &root, &["resolved"]).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replayed_click_after_a_restart_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path());
    let root = open(&h).await;
    click(&h, ALICE, "claim:C-1", "$click-1");
    h.say(TEAM, ALICE, "!unassign", Some(&root));
    h.settle().await;
    let events = h.store.case(CaseId(1)).unwrap().unwrap().events;
    let sent = h.sent().len();
    let fake = h.fake.clone();
    h.stop().await;

    // The platform redelivers the click after the restart.
    let h = Harness::start_on(dir.path(), fake);
    click(&h, ALICE, "claim:C-1", "$click-1");
    react(&h, TEAM, ALICE, "✋", &root, "$click-1");
    h.settle().await;
    let case = h.store.case(CaseId(1)).unwrap().unwrap();
    assert_eq!(case.events, events, "the replayed click was applied again");
    assert_eq!(case.assignee, None);
    assert_eq!(
        h.sent().len(),
        sent,
        "the replayed click was answered again"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn case_in_a_thread_shows_that_case() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path());
    let root = open(&h).await;
    h.say(TEAM, ALICE, "!case", Some(&root));
    h.settle().await;
    let reply = h.last();
    assert_eq!(reply.thread_root.as_deref(), Some(root.as_str()));
    assert!(
        reply.text.contains("**C-1**") && reply.text.contains("History"),
        "{}",
        reply.text
    );
    // Outside a thread it needs an id, and a lead.
    h.say(TEAM, ALICE, "!case", None);
    h.settle().await;
    assert!(h.last().text.contains("Which case?"), "{}", h.last().text);
    h.say(TEAM, ALICE, "!case C-1", None);
    h.settle().await;
    assert!(h.last().text.contains("lead role"), "{}", h.last().text);
    h.stop().await;
}
