//! The ticket webhook: through the router (no socket) and over a real
//! socket. Every bad request gets a JSON error and stores nothing.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use caseroom::config::Secret;
use caseroom::http::{AppState, router, signature::sign};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::util::*;

const SECRET: &str = "whsec-test-1";

fn state(h: &Harness, per_minute: u32) -> AppState {
    let mut cfg = test_config(std::path::Path::new("unused")).http;
    cfg.enabled = true;
    cfg.secrets = vec![Secret::new("OLD", "whsec-old"), Secret::new("CUR", SECRET)];
    cfg.rate_limit_per_minute = per_minute;
    AppState::new(h.bot.clone(), cfg, Arc::new(AtomicBool::new(true)))
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn ticket(ext: &str) -> String {
    serde_json::json!({
        "external_id": ext,
        "subject": "Payment failed",
        "body": "My card payment keeps failing with error 51, card 5500 0000 0000 0004",
        "customer": {"id": "cus_1", "name": "Li Lei", "email": "li@example.com", "language": "en"},
        "channel": "email",
        "created_at": "2026-11-26T10:00:00Z",
        "metadata": {"plan": "gold"}
    })
    .to_string()
}

fn post(body: &str, sig: Option<String>, content_type: &str) -> Request<Body> {
    let mut b = Request::post("/v1/tickets").header("content-type", content_type);
    if let Some(s) = sig {
        b = b.header("x-caseroom-signature", s);
    }
    b.body(Body::from(body.to_owned())).unwrap()
}

fn signed(body: &str) -> Request<Body> {
    post(
        body,
        Some(sign(SECRET, now(), body.as_bytes())),
        "application/json",
    )
}

async fn call(app: &axum::Router, req: Request<Body>) -> (StatusCode, serde_json::Value) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("non-JSON body: {}", String::from_utf8_lossy(&bytes)));
    (status, json)
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_json_errors_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path());
    let app = router(state(&h, 100_000));
    let body = ticket("ZD-1");
    let cases: Vec<(Request<Body>, StatusCode, &str)> = vec![
        (
            post(
                &body,
                Some(sign("wrong-secret", now(), body.as_bytes())),
                "application/json",
            ),
            StatusCode::UNAUTHORIZED,
            "does not match",
        ),
        (
            post(
                &body,
                Some(sign(SECRET, now() - 301, body.as_bytes())),
                "application/json",
            ),
            StatusCode::UNAUTHORIZED,
            "more than 5 minutes",
        ),
        (
            post(
                &body,
                Some(sign(SECRET, now() + 400, body.as_bytes())),
                "application/json",
            ),
            StatusCode::UNAUTHORIZED,
            "more than 5 minutes",
        ),
        (
            post(&body, None, "application/json"),
            StatusCode::UNAUTHORIZED,
            "missing X-Caseroom-Signature",
        ),
        (
            post(&body, Some("v1=abc".into()), "application/json"),
            StatusCode::UNAUTHORIZED,
            "malformed",
        ),
        (
            signed("{\"external_id\": \"x\", \"body\": "),
            StatusCode::BAD_REQUEST,
            "malformed JSON",
        ),
        (
            signed("{\"external_id\": \"x\"}"),
            StatusCode::BAD_REQUEST,
            "missing field `body`",
        ),
        (
            signed("{\"external_id\": 7, \"body\": \"x\"}"),
            StatusCode::BAD_REQUEST,
            "invalid type",
        ),
        (
            signed(&format!(
                "{{\"external_id\": \"{}\", \"body\": \"x\"}}",
                "a".repeat(129)
            )),
            StatusCode::UNPROCESSABLE_ENTITY,
            "longer than 128",
        ),
        (
            signed("{\"external_id\": \"x\", \"body\": \"  \"}"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "body must not be empty",
        ),
        (
            signed("{\"external_id\": \"x\", \"body\": \"b\", \"priority\": \"p7\"}"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown priority",
        ),
        (
            signed("{\"external_id\": \"x\", \"body\": \"b\", \"channel\": \"fax\"}"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown channel",
        ),
        (
            signed("{\"external_id\": \"x\", \"body\": \"b\", \"created_at\": \"yesterday\"}"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "RFC 3339",
        ),
        (
            post(
                &body,
                Some(sign(SECRET, now(), body.as_bytes())),
                "text/plain",
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "application/json",
        ),
        (
            signed(&format!(
                "{{\"external_id\": \"big\", \"body\": \"{}\"}}",
                "x".repeat(70_000)
            )),
            StatusCode::PAYLOAD_TOO_LARGE,
            "larger than 65536",
        ),
    ];
    for (req, want, msg) in cases {
        let (status, json) = call(&app, req).await;
        assert_eq!(status, want, "{json}");
        let err = json["error"].as_str().unwrap_or_default();
        assert!(err.contains(msg), "{want}: `{err}` should mention `{msg}`");
    }
    assert_eq!(h.store.case_count(), 0, "an error stored something");
    h.settle().await;
    assert!(h.sent().is_empty(), "an error posted something");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_ticket_opens_one_case_and_one_thread() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path());
    let app = router(state(&h, 100_000));
    let body = ticket("ZD-42");
    let req = signed(&body);
    let (status, json) = call(&app, req).await;
    assert_eq!(status, StatusCode::CREATED, "{json}");
    assert_eq!(json["case_id"], "C-1");
    // 201 means durable: the case is in the store now.
    let case = h
        .store
        .case_by_external("ZD-42")
        .unwrap()
        .expect("stored before 201");
    assert_eq!(case.customer.name.as_deref(), Some("Li Lei"));
    assert_eq!(case.customer.language, caseroom::lang::Lang::En);
    assert_eq!(case.channel, caseroom::case::Channel::Email);
    assert!(
        !case.body.contains("5500 0000 0000 0004"),
        "card stored in clear"
    );

    // The same request replayed (a helpdesk retry), and the same ticket
    // signed again: 200 with the same case, nothing new.
    let sig = sign(SECRET, now(), body.as_bytes());
    for _ in 0..2 {
        let (status, json) = call(
            &app,
            post(&body, Some(sig.clone()), "application/json; charset=utf-8"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{json}");
        assert_eq!(json["case_id"], "C-1");
    }
    h.settle().await;
    let roots: Vec<_> = h
        .sent()
        .into_iter()
        .filter(|m| m.room == TEAM && m.thread_root.is_none())
        .collect();
    assert_eq!(roots.len(), 1, "one root message per ticket");
    assert!(
        roots[0].text.contains("payment-failed") && roots[0].text.contains("Li Lei"),
        "{}",
        roots[0].text
    );
    assert!(
        h.sent()
            .iter()
            .all(|m| !m.text.contains("5500 0000 0000 0004"))
    );
    assert_eq!(h.store.case_count(), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limit_draining_and_health() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path());
    let st = state(&h, 3);
    let app = router(st.clone());
    let mut statuses = Vec::new();
    for i in 0..5 {
        statuses.push(call(&app, signed(&ticket(&format!("RL-{i}")))).await.0);
    }
    assert_eq!(&statuses[..3], &[StatusCode::CREATED; 3]);
    assert_eq!(statuses[3], StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(h.store.case_count(), 3);

    let (s, j) = call(&app, Request::get("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!((s, j["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (s, _) = call(&app, Request::get("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::OK);
    st.drain();
    let app = router(state(&h, 100).clone());
    let _ = app;
    let drained = router(st);
    let (s, j) = call(&drained, signed(&ticket("late"))).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{j}");
    let (s, _) = call(
        &drained,
        Request::get("/readyz").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert!(h.store.case_by_external("late").unwrap().is_none());
    h.stop().await;
}

/// Over a real socket, with the metrics listener beside it.
#[tokio::test(flavor = "multi_thread")]
async fn webhook_and_metrics_over_a_socket() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mlistener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let maddr = mlistener.local_addr().unwrap();
    let token = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(caseroom::http::serve(
        listener,
        state(&h, 1000),
        token.clone(),
    ));
    let metrics = tokio::spawn(caseroom::http::metrics::serve(
        mlistener,
        h.store.clone(),
        token.clone(),
    ));

    let body = ticket("SOCK-1");
    let sig = sign(SECRET, now(), body.as_bytes());
    let (status, resp) = raw_post(addr, &body, &sig).await;
    assert_eq!(status, 201, "{resp}");
    assert!(resp.contains("\"case_id\":\"C-1\""), "{resp}");
    let (status, resp) = raw_post(addr, &body, "t=1,v1=00").await;
    assert_eq!(status, 401, "{resp}");
    h.settle().await;

    let text = raw_get(maddr, "/metrics").await;
    assert!(
        text.contains("caseroom_tickets_received_total{outcome=\"created\"}"),
        "{text}"
    );
    assert!(
        text.contains("caseroom_tickets_received_total{outcome=\"bad_signature\"}"),
        "{text}"
    );
    assert!(
        text.contains("caseroom_cases{status=\"triaged\"} 1"),
        "{text}"
    );
    assert!(text.contains("caseroom_outbox_depth 0"), "{text}");
    assert!(
        text.contains("caseroom_suggestion_latency_seconds_bucket"),
        "{text}"
    );
    assert!(
        text.contains("caseroom_delivery_latency_seconds_count"),
        "{text}"
    );
    token.cancel();
    server.await.unwrap().unwrap();
    metrics.await.unwrap().unwrap();
    h.stop().await;
}

async fn raw_post(addr: std::net::SocketAddr, body: &str, sig: &str) -> (u16, String) {
    let req = format!(
        "POST /v1/tickets HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nX-Caseroom-Signature: {sig}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    raw(addr, &req).await
}

async fn raw_get(addr: std::net::SocketAddr, path: &str) -> String {
    raw(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )
    .await
    .1
}

async fn raw(addr: std::net::SocketAddr, req: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, out)
}

fn signed_to(path: &str, body: &str) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/json")
        .header("x-caseroom-signature", sign(SECRET, now(), body.as_bytes()))
        .body(Body::from(body.to_owned()))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn customer_replies_resume_waiting_cases_and_reach_the_thread() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path());
    let app = router(state(&h, 100_000));
    let (status, _) = call(&app, signed(&ticket("ZD-7"))).await;
    assert_eq!(status, StatusCode::CREATED);
    h.settle().await;
    let root = h.root("C-1");
    h.say(TEAM, ALICE, "!claim", Some(&root));
    h.say(TEAM, ALICE, "!wait", Some(&root));
    h.settle().await;

    let reply = r#"{"body": "Here is the screenshot, my CVV is 123"}"#;
    let (status, json) = call(&app, signed_to("/v1/tickets/ZD-7/messages", reply)).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(
        json["status"], "assigned",
        "a waiting case resumes when the customer replies"
    );
    h.settle().await;
    let posted = h.last();
    assert_eq!(posted.thread_root.as_deref(), Some(root.as_str()));
    assert!(
        posted.text.contains("the customer wrote") && !posted.text.contains("123"),
        "{}",
        posted.text
    );
    assert_eq!(posted.mentions, vec![ALICE.to_owned()]);
    let kinds: Vec<&str> = h
        .store
        .events(caseroom::case::CaseId(1))
        .unwrap()
        .iter()
        .map(|e| e.kind.name())
        .collect();
    assert!(
        kinds.ends_with(&["customer_message", "resumed"]),
        "{kinds:?}"
    );
    // The message in the thread is recorded with the case.
    let posted = h.store.deliveries(caseroom::case::CaseId(1)).unwrap();
    assert_eq!(
        posted.last().map(|d| d.what.as_str()),
        Some("customer"),
        "{posted:#?}"
    );

    for (path, body, want) in [
        ("/v1/tickets/NOPE/messages", reply, StatusCode::NOT_FOUND),
        (
            "/v1/tickets/ZD-7/messages",
            r#"{"body": "  "}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/v1/tickets/ZD-7/messages",
            r#"{"text": "x"}"#,
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (status, json) = call(&app, signed_to(path, body)).await;
        assert_eq!(status, want, "{path} {body}: {json}");
    }
    let unsigned = Request::post("/v1/tickets/ZD-7/messages")
        .header("content-type", "application/json")
        .body(Body::from(reply))
        .unwrap();
    assert_eq!(call(&app, unsigned).await.0, StatusCode::UNAUTHORIZED);
    h.stop().await;
}
