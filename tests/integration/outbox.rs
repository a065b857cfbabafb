//! The outbox: per-room order, rate limits that hold up only their own
//! room, retries, and no duplicates after a crash.

use std::sync::Arc;
use std::time::{Duration, Instant};

use caseroom::message::Outgoing;
use caseroom::outbox::Outbox;
use caseroom::platform::fake::FakePlatform;
use caseroom::platform::{Platform, SendError};
use caseroom::store::Store;
use jiff::Timestamp;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

fn queue(store: &Store, msgs: Vec<Outgoing>) {
    store
        .commit(None, "test", Timestamp::now(), vec![], msgs, None)
        .unwrap();
}

async fn drain(store: &Store) {
    for _ in 0..500 {
        if store.pending_outbox().unwrap().is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("outbox did not drain");
}

fn start(store: &Store, fake: Arc<FakePlatform>) -> (CancellationToken, TaskTracker) {
    let outbox = Outbox::new();
    let token = CancellationToken::new();
    let tracker = TaskTracker::new();
    outbox.spawn(store.clone(), fake, token.clone(), &tracker);
    outbox.wake();
    (token, tracker)
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_hold_up_only_their_room_and_keep_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let fake = Arc::new(FakePlatform::new());
    fake.rate_limit_next("busy", 2, Duration::from_millis(400));
    fake.fail_next("busy", 1, SendError::Transient("connection reset".into()));
    let mut msgs: Vec<Outgoing> = (0..5)
        .map(|i| Outgoing::new("busy", format!("busy {i}")))
        .collect();
    msgs.push(Outgoing::new("alerts", "page on-call"));
    queue(&store, msgs);
    let started = Instant::now();
    let (token, tracker) = start(&store, fake.clone());
    // The alert in another room is not held up by the busy room's 429s.
    loop {
        if fake.sent().iter().any(|m| m.room == "alerts") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_millis(300),
            "alert held up by another room's rate limit"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drain(&store).await;
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "Retry-After was not honoured"
    );
    let busy: Vec<String> = fake
        .sent()
        .into_iter()
        .filter(|m| m.room == "busy")
        .map(|m| m.text)
        .collect();
    assert_eq!(
        busy,
        (0..5).map(|i| format!("busy {i}")).collect::<Vec<_>>(),
        "nothing lost, order kept"
    );
    let refused = fake
        .attempts()
        .iter()
        .filter(|(_, _, refused)| *refused)
        .count();
    assert_eq!(refused, 3);
    token.cancel();
    tracker.close();
    tracker.wait().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_sent_before_a_crash_is_not_posted_twice() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakePlatform::new());
    {
        let store = Store::open(dir.path()).unwrap();
        queue(
            &store,
            vec![
                Outgoing::new("team", "root of C-1").record_as("root:C-1"),
                Outgoing::new("team", "second"),
            ],
        );
        // The sender delivered the first message, then the process died
        // before recording it: the platform has it, the outbox still does too.
        let (seq, msg) = store.pending_outbox().unwrap().remove(0);
        fake.send(&msg, None, &store.txn_id(seq)).await.unwrap();
    }
    // Restart: pending messages are delivered, the first one is retried
    // with the same transaction id and the server deduplicates it.
    let store = Store::open(dir.path()).unwrap();
    let (token, tracker) = start(&store, fake.clone());
    drain(&store).await;
    let texts: Vec<String> = fake.sent().into_iter().map(|m| m.text).collect();
    assert_eq!(texts, ["root of C-1", "second"]);
    assert_eq!(
        fake.attempts().len(),
        3,
        "the first message was retried once"
    );
    assert_eq!(store.posted("root:C-1").unwrap().as_deref(), Some("$fake1"));
    token.cancel();
    tracker.close();
    tracker.wait().await;
}

/// After an outage the backlog is read from the store as each room's turn
/// comes (not held in memory): every message of three rooms arrives once,
/// in its room's order.
#[tokio::test(flavor = "multi_thread")]
async fn a_backlog_left_by_a_previous_run_is_delivered_in_order_once() {
    let dir = tempfile::tempdir().unwrap();
    let rooms = ["team", "alerts", "intake"];
    {
        let store = Store::open(dir.path()).unwrap();
        for chunk in 0..30 {
            let msgs = (0..100)
                .map(|i| {
                    let n = chunk * 100 + i;
                    Outgoing::new(rooms[n % 3], format!("{} {n}", rooms[n % 3]))
                })
                .collect();
            queue(&store, msgs);
        }
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.pending_outbox().unwrap().len(), 3000);
    let fake = Arc::new(FakePlatform::new());
    let (token, tracker) = start(&store, fake.clone());
    for _ in 0..100 {
        if store.pending_outbox().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sent = fake.sent();
    for room in rooms {
        let got: Vec<String> = sent
            .iter()
            .filter(|m| m.room == room)
            .map(|m| m.text.clone())
            .collect();
        let want: Vec<String> = (0..3000)
            .filter(|n| rooms[n % 3] == room)
            .map(|n| format!("{room} {n}"))
            .collect();
        assert_eq!(got, want, "{room}: each message once, in order");
    }
    token.cancel();
    tracker.close();
    tracker.wait().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn undeliverable_messages_are_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let fake = Arc::new(FakePlatform::new());
    fake.fail_next(
        "gone",
        1,
        SendError::Permanent("M_FORBIDDEN: not in room".into()),
    );
    queue(
        &store,
        vec![
            Outgoing::new("gone", "lost cause"),
            Outgoing::new("gone", "next one"),
        ],
    );
    let (token, tracker) = start(&store, fake.clone());
    drain(&store).await;
    let texts: Vec<String> = fake.sent().into_iter().map(|m| m.text).collect();
    assert_eq!(texts, ["next one"], "the room's queue moved on");
    token.cancel();
    tracker.close();
    tracker.wait().await;
}
