//! Closing the loop with the helpdesk: a real HTTP receiver on 127.0.0.1
//! checks every event's signature; replies from the thread go out through
//! it and are confirmed only once it accepted them.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use caseroom::case::{CaseId, Status};
use caseroom::config::{Config, OutboundConfig, Secret};
use caseroom::platform::fake::FakePlatform;
use serde_json::Value;

use super::util::*;

pub const SECRET: &str = "outbound-test-secret";

/// A helpdesk stand-in: verifies signatures, answers from a script (then
/// 200), and records what it accepted.
#[derive(Clone, Default)]
pub struct Receiver {
    inner: Arc<Mutex<ReceiverState>>,
}

#[derive(Default)]
struct ReceiverState {
    /// Answers for the next requests: a status and an optional Retry-After.
    script: VecDeque<(u16, Option<u64>)>,
    /// Accepted events (with their Idempotency-Key), in arrival order.
    accepted: Vec<(Value, String)>,
    /// Every request: (event id, status answered).
    requests: Vec<(String, u16)>,
    bad_signatures: usize,
}

impl Receiver {
    /// Starts on a free loopback port; returns its events URL.
    pub async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        self.serve(listener)
    }

    /// Serves on `addr` (to bring a "down" helpdesk up later).
    pub async fn start_at(&self, addr: SocketAddr) -> String {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        self.serve(listener)
    }

    fn serve(&self, listener: tokio::net::TcpListener) -> String {
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .route("/events", axum::routing::post(receive))
            .with_state(self.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        format!("http://{addr}/events")
    }

    pub fn script(&self, answers: &[(u16, Option<u64>)]) {
        self.inner
            .lock()
            .unwrap()
            .script
            .extend(answers.iter().copied());
    }

    pub fn accepted(&self) -> Vec<Value> {
        self.inner
            .lock()
            .unwrap()
            .accepted
            .iter()
            .map(|(v, _)| v.clone())
            .collect()
    }

    pub fn types(&self) -> Vec<String> {
        self.accepted()
            .iter()
            .map(|v| v["type"].as_str().unwrap().to_owned())
            .collect()
    }

    pub fn requests(&self) -> Vec<(String, u16)> {
        self.inner.lock().unwrap().requests.clone()
    }

    /// Waits until `n` events were accepted.
    pub async fn wait_for(&self, n: usize) -> Vec<Value> {
        for _ in 0..600 {
            if self.accepted().len() >= n {
                return self.accepted();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the receiver got {:?}, wanted {n} events", self.types());
    }
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> Response {
    let sig = headers
        .get("x-caseroom-signature")
        .and_then(|v| v.to_str().ok());
    let secrets = [Secret::new("T", SECRET)];
    let now = jiff::Timestamp::now().as_second();
    let mut st = r.inner.lock().unwrap();
    if caseroom::http::signature::verify(sig, &body, &secrets, now).is_err() {
        st.bad_signatures += 1;
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let v: Value = serde_json::from_slice(&body).unwrap();
    let id = v["id"].as_str().unwrap_or_default().to_owned();
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let (status, retry_after) = st.script.pop_front().unwrap_or((200, None));
    st.requests.push((id, status));
    if status == 200 {
        st.accepted.push((v, key));
        return StatusCode::OK.into_response();
    }
    let mut resp = StatusCode::from_u16(status).unwrap().into_response();
    if let Some(s) = retry_after {
        resp.headers_mut()
            .insert("retry-after", s.to_string().parse().unwrap());
    }
    resp
}

/// The test config with `[outbound]` pointing at `url`.
pub fn with_outbound(url: &str, max_attempts: u32) -> impl FnOnce(&mut Config) {
    let url = url.to_owned();
    move |cfg: &mut Config| {
        cfg.outbound = OutboundConfig {
            enabled: true,
            url,
            secrets: vec![Secret::new("CASEROOM_OUTBOUND_SECRET", SECRET)],
            max_attempts,
            timeout: Duration::from_secs(2),
            ..OutboundConfig::default()
        };
    }
}

const TICKET: &str = "I was charged twice for order 1042, please refund the second payment";

async fn open(h: &Harness) -> String {
    h.say(INTAKE, ALICE, &format!("!escalate {TICKET}"), None);
    h.settle().await;
    h.root("C-1")
}

/// Waits until the bot said something in the thread matching `pred`.
async fn thread_says(h: &Harness, root: &str, pred: impl Fn(&str) -> bool) -> String {
    for _ in 0..500 {
        if let Some(m) = h
            .sent()
            .into_iter()
            .find(|m| m.thread_root.as_deref() == Some(root) && pred(&m.text))
        {
            return m.text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("nothing like that in the thread: {:#?}", h.sent());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_case_life_reaches_the_helpdesk_signed_in_order_with_stable_ids() {
    let receiver = Receiver::default();
    let url = receiver.start().await;
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start_with(
        dir.path(),
        Arc::new(FakePlatform::new()),
        with_outbound(&url, 5),
    );
    let root = open(&h).await;
    h.say(TEAM, ALICE, "!claim", Some(&root));
    h.say(TEAM, ALICE, "!note called the bank", Some(&root));
    h.say(
        TEAM,
        ALICE,
        "!reply We refunded the second charge. Card 4111 1111 1111 1111 was not used.",
        Some(&root),
    );
    // A plain thread message stays internal.
    h.say(TEAM, ALICE, "the customer sounds upset", Some(&root));
    h.say(TEAM, ALICE, "!wait", Some(&root));
    h.say(TEAM, ALICE, "!resolve", Some(&root));
    let got = receiver.wait_for(6).await;
    assert_eq!(
        receiver.types(),
        [
            "case.opened",
            "case.assigned",
            "case.note",
            "case.reply",
            "case.waiting",
            "case.resolved"
        ]
    );
    let ids: std::collections::HashSet<&str> =
        got.iter().map(|v| v["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 6, "ids are unique");
    for (v, key) in receiver.inner.lock().unwrap().accepted.iter() {
        assert_eq!(
            v["id"].as_str().unwrap(),
            key,
            "Idempotency-Key is the event id"
        );
        assert_eq!(v["case"]["id"], "C-1");
        assert!(v["at"].is_string());
    }
    let reply = &got[3];
    assert_eq!(reply["data"]["actor"], ALICE);
    let text = reply["data"]["text"].as_str().unwrap();
    assert!(text.contains("We refunded the second charge"), "{text}");
    assert!(
        !text.contains("4111 1111 1111 1111"),
        "the card number left in clear: {text}"
    );
    assert_eq!(got[1]["data"]["assignee"], ALICE);
    assert_eq!(got[5]["case"]["status"], "resolved");
    // Accepted replies are confirmed in the thread; nothing else was sent.
    let confirmed = thread_says(&h, &root, |t| t.starts_with("📤")).await;
    assert!(confirmed.contains("We refunded"), "{confirmed}");
    assert_eq!(receiver.inner.lock().unwrap().bad_signatures, 0);
    let case = h.store.case(CaseId(1)).unwrap().unwrap();
    assert!(case.first_response_at.is_some());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_and_429_are_retried_and_each_event_is_accepted_once() {
    let receiver = Receiver::default();
    receiver.script(&[(500, None), (503, None), (429, Some(1))]);
    let url = receiver.start().await;
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start_with(
        dir.path(),
        Arc::new(FakePlatform::new()),
        with_outbound(&url, 10),
    );
    let root = open(&h).await;
    h.say(TEAM, ALICE, "!claim", Some(&root));
    let got = receiver.wait_for(2).await;
    assert_eq!(receiver.types(), ["case.opened", "case.assigned"]);
    let requests = receiver.requests();
    let first = got[0]["id"].as_str().unwrap();
    assert_eq!(
        requests.iter().filter(|(id, _)| id == first).count(),
        4,
        "opened: 500, 503, 429, then 200: {requests:?}"
    );
    // Nothing is delivered again once accepted.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.accepted().len(), 2);
    assert!(h.store.outbound_from(0).unwrap().is_empty());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reply_with_the_helpdesk_down_is_pending_then_sent() {
    // Reserve a port, and keep the helpdesk down at first.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let url = format!("http://{addr}/events");
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start_with(
        dir.path(),
        Arc::new(FakePlatform::new()),
        with_outbound(&url, 50),
    );
    let root = open(&h).await;
    h.say(
        TEAM,
        ALICE,
        "!reply Your refund is on its way.",
        Some(&root),
    );
    let pending = thread_says(&h, &root, |t| t.starts_with("⏳")).await;
    assert!(pending.contains("not accepted the reply yet"), "{pending}");
    assert!(!h.sent().iter().any(|m| m.text.starts_with("📤")));
    let receiver = Receiver::default();
    receiver.start_at(addr).await;
    let got = receiver.wait_for(2).await;
    assert_eq!(receiver.types(), ["case.opened", "case.reply"]);
    assert_eq!(got[1]["data"]["text"], "Your refund is on its way.");
    thread_says(&h, &root, |t| t.starts_with("📤")).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_undeliverable_event_is_set_aside_and_can_be_retried() {
    let receiver = Receiver::default();
    receiver.script(&[(500, None), (500, None)]);
    let url = receiver.start().await;
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start_with(
        dir.path(),
        Arc::new(FakePlatform::new()),
        with_outbound(&url, 2),
    );
    let root = open(&h).await;
    h.say(TEAM, ALICE, "!reply We are on it.", Some(&root));
    // opened fails twice and is set aside; the case's later reply still goes.
    let notice = thread_says(&h, &root, |t| t.starts_with("📤")).await;
    assert!(notice.contains("We are on it."));
    let failed = h.store.outbound_failed().unwrap();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].1.event.kind, "case.opened");
    assert_eq!(failed[0].1.attempts, 2);
    assert!(failed[0].1.last_error.as_deref().unwrap().contains("500"));
    assert_eq!(receiver.types(), ["case.reply"]);
    let fake = h.fake.clone();
    h.stop().await;

    // The operator's command, with the bot stopped.
    let out = caseroom_ok(dir.path(), &["outbound", "list"]);
    assert!(
        out.contains("set_aside") && out.contains("case.opened"),
        "{out}"
    );
    assert!(out.contains("0 pending, 1 set aside"), "{out}");
    let id = failed[0].1.event.id.clone();
    let out = caseroom_ok(dir.path(), &["outbound", "retry", &id]);
    assert!(out.contains("1 event(s) queued again"), "{out}");
    let bad = caseroom(dir.path(), &["outbound", "retry", "evt_nope"]);
    assert!(!bad.status.success());
    let json = caseroom_ok(dir.path(), &["outbound", "list", "--json"]);
    let row: Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(row["state"], "pending");
    // Scripts read cases as JSON, one object per line.
    let cases = caseroom_ok(dir.path(), &["case", "list", "--json"]);
    let case: Value = serde_json::from_str(cases.lines().next().unwrap()).unwrap();
    assert_eq!(case["id"], "C-1");
    let shown = caseroom_ok(dir.path(), &["case", "show", "C-1", "--json"]);
    assert_eq!(shown.lines().count(), 1);
    let shown: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["case"]["id"], "C-1");
    assert!(shown["events"].as_array().is_some_and(|e| e.len() >= 3));

    // After the restart it is delivered, with the same id.
    let h = Harness::start_with(dir.path(), fake, with_outbound(&url, 2));
    let got = receiver.wait_for(2).await;
    assert_eq!(got[1]["id"].as_str().unwrap(), id);
    assert!(h.store.outbound_failed().unwrap().is_empty());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn replies_are_refused_clearly_and_send_nothing() {
    let receiver = Receiver::default();
    let url = receiver.start().await;
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start_with(
        dir.path(),
        Arc::new(FakePlatform::new()),
        with_outbound(&url, 5),
    );
    h.say(INTAKE, ALICE, "!escalate hello, just saying hi", None);
    h.settle().await;
    let root = h.root("C-1");
    let says = |text: &str, who: &str| {
        h.say(TEAM, who, text, Some(&root));
    };
    says("!reply", ALICE);
    h.settle().await;
    assert!(
        h.last().text.contains("Write the reply after the command"),
        "{}",
        h.last().text
    );
    says("!reply hi there", STRANGER);
    h.settle().await;
    assert!(h.last().text.contains("agent role"), "{}", h.last().text);
    let case = h.store.case(CaseId(1)).unwrap().unwrap();
    if case.suggested_playbook.is_none() {
        says("!send", ALICE);
        h.settle().await;
        assert!(h.last().text.contains("no draft"), "{}", h.last().text);
    }
    says("!resolve", ALICE);
    h.store
        .commit(
            Some(CaseId(1)),
            "test",
            jiff::Timestamp::now(),
            vec![(caseroom::case::EventKind::Closed, None)],
            vec![],
            None,
        )
        .unwrap();
    says("!reply too late", ALICE);
    h.settle().await;
    assert!(h.last().text.contains("is closed"), "{}", h.last().text);
    assert_eq!(
        h.store.case(CaseId(1)).unwrap().unwrap().status,
        Status::Closed
    );
    receiver.wait_for(3).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !receiver.types().iter().any(|t| t == "case.reply"),
        "{:?}",
        receiver.types()
    );
    h.stop().await;

    // Without a helpdesk, replies are refused and say why.
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path());
    let root = open(&h).await;
    h.say(TEAM, ALICE, "!reply hello", Some(&root));
    h.settle().await;
    assert!(
        h.last().text.contains("No helpdesk is connected"),
        "{}",
        h.last().text
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn send_delivers_the_draft_and_the_card_offers_it() {
    let receiver = Receiver::default();
    let url = receiver.start().await;
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start_with(
        dir.path(),
        Arc::new(FakePlatform::new()),
        with_outbound(&url, 5),
    );
    let root = open(&h).await;
    h.say(TEAM, ALICE, "!use refund", Some(&root));
    h.settle().await;
    let draft = h.last().text;
    // The card now offers Send draft.
    for _ in 0..200 {
        if h.fake
            .edits_of(&root)
            .last()
            .is_some_and(|e| e.actions.iter().any(|a| a.kind.id() == "send:C-1"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        h.fake
            .edits_of(&root)
            .last()
            .is_some_and(|e| e.actions.iter().any(|a| a.kind.id() == "send:C-1")),
        "no Send draft button"
    );
    h.deliver(&caseroom::message::Incoming {
        room: TEAM.into(),
        sender: ALICE.into(),
        groups: Vec::new(),
        event_id: "$click-send".into(),
        kind: caseroom::message::IncomingKind::Action {
            id: "send:C-1".into(),
            message: None,
        },
        reply_handle: None,
    });
    let got = receiver.wait_for(2).await;
    assert_eq!(got[1]["type"], "case.reply");
    let sent = got[1]["data"]["text"].as_str().unwrap();
    let first_line = sent.lines().next().unwrap();
    assert!(
        draft.contains(first_line),
        "sent {sent:?}, drafted {draft:?}"
    );
    h.stop().await;
}

/// The shipped config for the running binary: webhook on `port`, metrics on
/// `mport`, helpdesk events to `url`, data in `dir`.
fn binary_config(dir: &std::path::Path, port: u16, mport: u16, url: &str) -> std::path::PathBuf {
    let cfg = webhook_config(dir, port, mport)
        .replace(
            "# Send case events to the helpdesk.\nenabled = false",
            "# Send case events to the helpdesk.\nenabled = true",
        )
        .replace(
            "url = \"https://helpdesk.example.com/caseroom/events\"",
            &format!("url = \"{url}\""),
        );
    let path = dir.join("caseroom.toml");
    std::fs::write(&path, cfg).unwrap();
    path
}

fn start_binary(config: &std::path::Path) -> std::process::Child {
    std::process::Command::new(bin())
        .current_dir(root())
        .args(["--config", config.to_str().unwrap(), "run"])
        .env("CASEROOM_WEBHOOK_SECRET", WEBHOOK_SECRET)
        .env("CASEROOM_OUTBOUND_SECRET", SECRET)
        .env("RUST_LOG", "warn")
        // Terminal mode reads stdin: keep it open, as a person at a terminal.
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("start caseroom")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_pending_at_a_sigkill_are_delivered_after_the_restart() {
    // The helpdesk is down while tickets come in.
    let helpdesk: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let url = format!("http://{helpdesk}/events");
    let dir = tempfile::tempdir().unwrap();
    let (port, mport) = (free_port(), free_port());
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let config = binary_config(dir.path(), port, mport, &url);
    let mut bot = start_binary(&config);
    wait_healthy(addr).await;
    let mut acked = Vec::new();
    for i in 0..20 {
        let ext = format!("ZD-{i}");
        if let Some((201, _)) = post_ticket(addr, &ext).await {
            acked.push(ext);
        }
    }
    assert_eq!(acked.len(), 20);
    bot.kill().unwrap();
    bot.wait().unwrap();

    // Up again, with the helpdesk back: every acknowledged ticket's event
    // arrives, signed, once.
    let receiver = Receiver::default();
    receiver.start_at(helpdesk).await;
    let mut bot = start_binary(&config);
    let got = receiver.wait_for(20).await;
    let mut seen: Vec<&str> = got
        .iter()
        .map(|v| v["case"]["external_id"].as_str().unwrap())
        .collect();
    seen.sort();
    let mut want: Vec<&str> = acked.iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(seen, want);
    assert!(got.iter().all(|v| v["type"] == "case.opened"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        receiver.accepted().len(),
        20,
        "an event was delivered twice"
    );
    bot.kill().unwrap();
    bot.wait().unwrap();
}

/// With the bot running (it holds the data dir), `outbound retry` asks it
/// through the metrics listener, and the event set aside goes out again
/// with its id; `outbound list` says why it cannot read the data dir.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_asks_the_running_bot() {
    let receiver = Receiver::default();
    receiver.script(&[(500, None), (500, None)]);
    let url = receiver.start().await;
    let dir = tempfile::tempdir().unwrap();
    let (port, mport) = (free_port(), free_port());
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let config = binary_config(dir.path(), port, mport, &url);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("max_attempts = 12", "max_attempts = 2");
    std::fs::write(&config, text).unwrap();
    let mut bot = start_binary(&config);
    wait_healthy(addr).await;
    assert!(matches!(post_ticket(addr, "ZD-77").await, Some((201, _))));
    // Two 500s: the opened event is set aside.
    for _ in 0..200 {
        if receiver.requests().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(receiver.requests().len(), 2, "{:?}", receiver.requests());
    let set_aside_id = receiver.requests()[0].0.clone();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let cli = |args: &[&str]| {
        std::process::Command::new(bin())
            .current_dir(root())
            .arg("--config")
            .arg(&config)
            .args(args)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    };
    let list = cli(&["outbound", "list"]);
    assert!(!list.status.success());
    let why = String::from_utf8_lossy(&list.stderr);
    assert!(why.contains("is the bot running?"), "{why}");

    let retry = cli(&["outbound", "retry", "--all"]);
    let said = String::from_utf8_lossy(&retry.stdout);
    assert!(
        retry.status.success() && said.contains("1 event(s) queued again (by the running bot)"),
        "{said}\n{}",
        String::from_utf8_lossy(&retry.stderr)
    );
    let got = receiver.wait_for(1).await;
    assert_eq!(got[0]["id"].as_str().unwrap(), set_aside_id);
    assert_eq!(got[0]["type"], "case.opened");
    bot.kill().unwrap();
    bot.wait().unwrap();
}
