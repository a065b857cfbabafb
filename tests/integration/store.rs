//! The store: durability across SIGKILL, indexes, export/import.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use caseroom::case::{Case, CaseId, Channel, Customer, EventKind, NewCase, Priority, Status};
use caseroom::store::{CaseFilter, Store, Tally};
use jiff::Timestamp;

use super::util::{bin, caseroom, caseroom_ok};

fn new_case(ext: &str) -> NewCase {
    NewCase {
        external_id: ext.into(),
        subject: format!("subject {ext}"),
        body: "转账一直显示处理中".into(),
        customer: Customer {
            id: None,
            name: Some("王芳".into()),
            email: None,
            language: caseroom::lang::Lang::Zh,
        },
        channel: Channel::Email,
        priority: Priority::P2,
        tags: vec!["vip".into()],
    }
}

/// A child appends events from 4 threads and prints each acknowledged one;
/// we SIGKILL it mid-stream, reopen the store and find every acknowledged
/// event, every case equal to the replay of its own history, and the
/// totals `stats` shows and the open cases `queue` lists equal to a count
/// of the cases themselves (killed after at least one checkpoint, so both
/// the checkpoint and the journal after it are read).
#[test]
fn acknowledged_events_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin())
        .arg("--data-dir")
        .arg(dir.path())
        .args(["append-loop", "--writers", "4", "--cases", "100000"])
        .current_dir(super::util::root())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut acked: Vec<(CaseId, u32)> = Vec::new();
    let started = std::time::Instant::now();
    for line in stdout.lines() {
        let line = line.unwrap();
        let (id, seq) = line.split_once(' ').unwrap();
        acked.push((id.parse().unwrap(), seq.parse().unwrap()));
        if acked.len() >= 600 && started.elapsed() > std::time::Duration::from_millis(1500) {
            // Kill while writers are mid-stream; lines printed so far were
            // acknowledged as durable before they were printed.
            child.kill().unwrap();
            break;
        }
    }
    child.wait().unwrap();
    assert!(acked.len() >= 600, "child stopped early");

    let store = Store::open(dir.path()).unwrap();
    let mut by_case: BTreeMap<CaseId, u32> = BTreeMap::new();
    for (id, seq) in &acked {
        let e = by_case.entry(*id).or_default();
        *e = (*e).max(*seq);
    }
    for (id, max_seq) in &by_case {
        let events = store.events(*id).unwrap();
        assert!(
            events.len() as u32 > *max_seq,
            "{id}: acknowledged #{max_seq} lost ({} events on disk)",
            events.len()
        );
    }
    // No torn case: every stored case matches its history exactly.
    let cases = store.cases(&CaseFilter::default()).unwrap();
    assert!(cases.len() >= by_case.len());
    for case in &cases {
        let events = store.events(case.id).unwrap();
        assert_eq!(
            case.events as usize,
            events.len(),
            "{} projection/history mismatch",
            case.id
        );
        assert_eq!(&Case::replay(case.id, &events).unwrap(), case);
    }
    assert_eq!(
        store.tally(),
        Tally::of_cases(&cases),
        "stats totals drifted"
    );
    let open: Vec<_> = cases
        .iter()
        .filter(|c| c.status.is_open())
        .map(|c| (c.id, c.status, c.assignee.clone(), c.created_at))
        .collect();
    let mut indexed: Vec<_> = store
        .open_cases()
        .into_iter()
        .map(|o| {
            (
                o.id,
                o.status,
                o.assignee.as_deref().map(str::to_owned),
                o.created_at,
            )
        })
        .collect();
    indexed.sort_by_key(|o| o.0);
    assert_eq!(indexed.len(), open.len());
    // Times in the index are kept to the millisecond.
    for (a, b) in indexed.iter().zip(&open) {
        assert_eq!((a.0, a.1, &a.2), (b.0, b.1, &b.2));
        assert_eq!(a.3.as_millisecond(), b.3.as_millisecond());
    }
    // The store keeps working after the crash: new ids do not collide.
    let opened = store
        .open_case(new_case("after-crash"), "test", Timestamp::now())
        .unwrap();
    assert!(opened.created);
    assert!(!by_case.contains_key(&opened.case.id));
}

#[test]
fn intake_is_idempotent_and_indexes_follow_the_case() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let a = store
        .open_case(new_case("T-1"), "webhook", Timestamp::now())
        .unwrap();
    let again = store
        .open_case(new_case("T-1"), "webhook", Timestamp::now())
        .unwrap();
    assert!(a.created && !again.created);
    assert_eq!(a.case.id, again.case.id);
    assert_eq!(
        store.events(a.case.id).unwrap().len(),
        1,
        "duplicate intake wrote nothing"
    );
    let b = store
        .open_case(new_case("T-2"), "webhook", Timestamp::now())
        .unwrap();
    assert_eq!(b.case.id, CaseId(a.case.id.0 + 1));

    let now = Timestamp::now();
    store
        .append(
            a.case.id,
            "alice",
            EventKind::Assigned {
                assignee: "alice".into(),
            },
            None,
            now,
        )
        .unwrap();
    let by_alice = store
        .cases(&CaseFilter {
            assignee: Some("alice".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        by_alice.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![a.case.id]
    );
    store
        .append(
            a.case.id,
            "alice",
            EventKind::Assigned {
                assignee: "bob".into(),
            },
            Some("shift change".into()),
            now,
        )
        .unwrap();
    assert!(
        store
            .cases(&CaseFilter {
                assignee: Some("alice".into()),
                ..Default::default()
            })
            .unwrap()
            .is_empty()
    );
    let assigned = store
        .cases(&CaseFilter {
            status: Some(Status::Assigned),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(assigned.len(), 1);
    let new = store
        .cases(&CaseFilter {
            status: Some(Status::New),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        new.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![b.case.id]
    );

    // An illegal transition is refused and writes nothing.
    let err = store
        .append(b.case.id, "x", EventKind::Resumed, None, now)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot resume {}: it is new; only cases waiting on the customer resume",
            b.case.id
        )
    );
    assert_eq!(store.events(b.case.id).unwrap().len(), 1);

    // Due index: earliest first, cleared on request.
    let t1 = Timestamp::from_second(1_800_000_000).unwrap();
    let t2 = Timestamp::from_second(1_700_000_000).unwrap();
    store.set_due(a.case.id, None, Some(t1)).unwrap();
    store.set_due(b.case.id, None, Some(t2)).unwrap();
    assert_eq!(
        store.due_before(t1).unwrap(),
        vec![(t2, b.case.id), (t1, a.case.id)]
    );
    assert_eq!(store.due_before(t2).unwrap(), vec![(t2, b.case.id)]);
    store.set_due(b.case.id, Some(t2), None).unwrap();
    assert_eq!(store.due_before(t1).unwrap(), vec![(t1, a.case.id)]);
}

#[test]
fn export_then_import_gives_identical_case_show() {
    let src = tempfile::tempdir().unwrap();
    let s = src.path();
    caseroom_ok(
        s,
        &[
            "case",
            "open",
            "--external-id",
            "ZD-1",
            "--body",
            "退款还没到账",
            "--customer",
            "李雷",
            "--priority",
            "p2",
        ],
    );
    caseroom_ok(
        s,
        &[
            "case",
            "open",
            "--external-id",
            "ZD-2",
            "--body",
            "I can't log in",
            "--lang",
            "en",
            "--channel",
            "email",
        ],
    );
    caseroom_ok(
        s,
        &[
            "case", "event", "C-1", "assign", "alice", "--reason", "on shift",
        ],
    );
    caseroom_ok(
        s,
        &[
            "case", "event", "C-1", "note", "asked", "for", "the", "order", "id",
        ],
    );
    caseroom_ok(s, &["case", "event", "C-1", "wait"]);
    caseroom_ok(s, &["case", "event", "C-1", "resume"]);
    caseroom_ok(s, &["case", "event", "C-1", "resolve", "refund"]);
    caseroom_ok(s, &["case", "event", "C-2", "tag", "login"]);
    let export = caseroom_ok(s, &["export"]);
    assert_eq!(
        export.lines().count(),
        2 + 8,
        "2 cases, 8 events:\n{export}"
    );

    let dst = tempfile::tempdir().unwrap();
    let file = dst.path().join("export.jsonl");
    std::fs::write(&file, &export).unwrap();
    let restored = dst.path().join("data");
    caseroom_ok(&restored, &["import", file.to_str().unwrap()]);
    for id in ["C-1", "C-2"] {
        assert_eq!(
            caseroom_ok(s, &["case", "show", id]),
            caseroom_ok(&restored, &["case", "show", id])
        );
    }
    assert_eq!(
        caseroom_ok(s, &["case", "list"]),
        caseroom_ok(&restored, &["case", "list"])
    );
    // Ids continue after the imported ones.
    let out = caseroom_ok(
        &restored,
        &["case", "open", "--external-id", "ZD-3", "--body", "x"],
    );
    assert_eq!(out.trim(), "opened C-3");

    // A non-empty data dir is refused unless forced.
    let again = caseroom(&restored, &["import", file.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));

    // A damaged export is refused and imports nothing.
    let damaged = export.replacen("\"status\":\"resolved\"", "\"status\":\"closed\"", 1);
    std::fs::write(&file, damaged).unwrap();
    let empty = dst.path().join("empty");
    let out = caseroom(&empty, &["import", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not match its own history"));
    assert_eq!(caseroom_ok(&empty, &["case", "list"]).trim(), "no cases");
}

#[test]
fn case_show_reports_unknown_ids_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let out = caseroom(dir.path(), &["case", "show", "C-99"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no case C-99"));
    caseroom_ok(
        dir.path(),
        &["case", "open", "--external-id", "A", "--body", "x"],
    );
    let out = caseroom(dir.path(), &["case", "event", "C-1", "reopen"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reopen C-1: it is new"));
    let listed: BTreeSet<String> = caseroom_ok(dir.path(), &["case", "list", "--status", "new"])
        .lines()
        .map(|l| l[..8].trim().to_owned())
        .collect();
    assert_eq!(listed, BTreeSet::from(["C-1".to_owned()]));
}
