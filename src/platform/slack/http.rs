//! The Events API transport: Slack POSTs signed requests to us.
//!
//! Three routes, `/slack/events`, `/slack/interactions` and
//! `/slack/commands`. Each request is handled in this order, so nothing
//! unverified is ever parsed:
//!
//! 1. the body is read up to the configured limit (larger: **413**);
//! 2. the signature is checked: `X-Slack-Signature` = `v0=` + hex
//!    HMAC-SHA256(signing secret, `v0:{timestamp}:{body}`), compared in
//!    constant time, with `X-Slack-Request-Timestamp` within 5 minutes of
//!    our clock (otherwise **401**);
//! 3. the body is parsed (otherwise **400**), kept in the store (flushed)
//!    and queued for translation, and acknowledged with an empty 200 — the
//!    work happens after the ack, so Slack's 3-second limit is met however
//!    slow the bot is, and a crash after the ack loses nothing.
//!
//! A request carrying `X-Slack-Retry-Num` is handled like any other: the
//! core deduplicates by event id, and dropping retries would lose events
//! whose first delivery never arrived.
//!
//! slack-morphism's own axum middleware is not used: it answers a bad
//! signature with 400, has no body limit, and reads the body before the
//! limit could apply.

use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

use super::Inbound;
use super::events::{self, SlashCommand};
use super::inbox::{Intake, Refused};
use crate::config::Secret;

/// How far a request's timestamp may be from our clock.
pub const TOLERANCE_SECS: i64 = 300;
/// How long a request may wait for room in the translation queue before
/// it is refused with 503 (Slack then retries it).
const QUEUE_WAIT: Duration = Duration::from_secs(2);

/// What the handlers share: a cheap clone per request.
#[derive(Clone)]
pub struct EventsState {
    secret: Secret,
    max_body: usize,
    intake: Intake,
}

impl EventsState {
    pub(crate) fn new(secret: Secret, max_body: usize, intake: Intake) -> Self {
        EventsState {
            secret,
            max_body,
            intake,
        }
    }
}

/// The routes, for [`serve`] and for tests without a socket.
pub(crate) fn router(state: EventsState) -> Router {
    Router::new()
        .route("/slack/events", post(events_route))
        .route("/slack/interactions", post(interactions_route))
        .route("/slack/commands", post(commands_route))
        .with_state(state)
}

/// Serves the routes on `listener` until `shutdown`.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    state: EventsState,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    tracing::info!(addr = ?listener.local_addr().ok(), "Slack Events API listening");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    Ok(())
}

/// The `X-Slack-Signature` value for `body` sent at `timestamp` (unix
/// seconds): for tests, benchmarks and anyone writing a client.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// Why a signature was refused (shown to the caller; reveals nothing).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SignatureError {
    Missing,
    Stale,
    Mismatch,
}

/// Checks Slack's v0 signature of `body` at time `now` (unix seconds).
pub(crate) fn verify(
    secret: &str,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(ts), Some(sig)) = (
        header("x-slack-request-timestamp"),
        header("x-slack-signature"),
    ) else {
        return Err(SignatureError::Missing);
    };
    let t: i64 = ts.trim().parse().map_err(|_| SignatureError::Mismatch)?;
    if (now - t).abs() > TOLERANCE_SECS {
        return Err(SignatureError::Stale);
    }
    let sig = sig
        .strip_prefix("v0=")
        .and_then(|h| hex::decode(h).ok())
        .ok_or(SignatureError::Mismatch)?;
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("v0:{t}:").as_bytes());
    mac.update(body);
    mac.verify_slice(&sig).map_err(|_| SignatureError::Mismatch)
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn refuse(status: StatusCode, why: &str) -> Response {
    (status, why.to_owned()).into_response()
}

/// Steps 1 and 2: the body, read within the limit and signature-checked.
async fn verified_body(
    st: &EventsState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Bytes, Response> {
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > st.max_body) {
        return Err(refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large",
        ));
    }
    let bytes = axum::body::to_bytes(body, st.max_body)
        .await
        .map_err(|_| refuse(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"))?;
    match verify(st.secret.expose(), headers, &bytes, now()) {
        Ok(()) => Ok(bytes),
        Err(e) => {
            tracing::warn!(reason = ?e, "Slack request with a bad signature refused");
            let why = match e {
                SignatureError::Missing => "missing signature headers",
                SignatureError::Stale => "request timestamp too old or in the future",
                SignatureError::Mismatch => "signature does not match",
            };
            Err(refuse(StatusCode::UNAUTHORIZED, why))
        }
    }
}

/// Step 3's keeping and queueing: 200 once both are done; otherwise 503,
/// and Slack sends it again.
async fn enqueue(st: &EventsState, item: Inbound) -> Response {
    match st.intake.accept(item, QUEUE_WAIT).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(Refused::Busy) => refuse(StatusCode::SERVICE_UNAVAILABLE, "busy; retry later"),
        Err(Refused::Store) => refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "could not store the event; retry later",
        ),
        Err(Refused::Closed) => refuse(StatusCode::SERVICE_UNAVAILABLE, "shutting down"),
    }
}

async fn events_route(State(st): State<EventsState>, headers: HeaderMap, body: Body) -> Response {
    let bytes = match verified_body(&st, &headers, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Ok(v) = serde_json::from_slice::<Value>(&bytes) else {
        return refuse(StatusCode::BAD_REQUEST, "body is not JSON");
    };
    match v.get("type").and_then(Value::as_str) {
        Some("url_verification") => match v.get("challenge").and_then(Value::as_str) {
            Some(c) => axum::Json(serde_json::json!({ "challenge": c })).into_response(),
            None => refuse(
                StatusCode::BAD_REQUEST,
                "url_verification without a challenge",
            ),
        },
        Some("event_callback") => match events::check_push(&v) {
            Ok(()) => enqueue(&st, Inbound::Push(v)).await,
            Err(e) => refuse(StatusCode::BAD_REQUEST, &e),
        },
        Some("app_rate_limited") => {
            tracing::warn!("Slack is dropping events: app_rate_limited");
            StatusCode::OK.into_response()
        }
        Some(_) => StatusCode::OK.into_response(),
        None => refuse(StatusCode::BAD_REQUEST, "body has no type"),
    }
}

#[derive(serde::Deserialize)]
struct InteractionForm {
    payload: String,
}

async fn interactions_route(
    State(st): State<EventsState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let bytes = match verified_body(&st, &headers, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Ok(form) = serde_urlencoded::from_bytes::<InteractionForm>(&bytes) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "expected a form with a payload field",
        );
    };
    let Ok(v) = serde_json::from_str::<Value>(&form.payload) else {
        return refuse(StatusCode::BAD_REQUEST, "payload is not JSON");
    };
    if let Err(e) = events::check_interaction(&v) {
        return refuse(StatusCode::BAD_REQUEST, &e);
    }
    enqueue(&st, Inbound::Interaction(v)).await
}

async fn commands_route(State(st): State<EventsState>, headers: HeaderMap, body: Body) -> Response {
    let bytes = match verified_body(&st, &headers, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    match serde_urlencoded::from_bytes::<SlashCommand>(&bytes) {
        Ok(c) => enqueue(&st, Inbound::Command(c)).await,
        Err(e) => refuse(
            StatusCode::BAD_REQUEST,
            &format!("not a slash command: {e}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderValue, Request};
    use tower::ServiceExt;

    use super::*;

    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

    fn headers(ts: i64, sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            "x-slack-request-timestamp",
            HeaderValue::from_str(&ts.to_string()).unwrap(),
        );
        h.insert("x-slack-signature", HeaderValue::from_str(sig).unwrap());
        h
    }

    #[test]
    fn signature_matches_slacks_documented_example() {
        // From Slack's "Verifying requests from Slack" guide.
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let ts = 1531420618;
        assert_eq!(
            sign(SECRET, ts, body),
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
        );
        assert_eq!(
            verify(SECRET, &headers(ts, &sign(SECRET, ts, body)), body, ts + 10),
            Ok(())
        );
    }

    #[test]
    fn wrong_stale_or_missing_signatures_are_refused() {
        let body = b"{}";
        let t = 1_700_000_000;
        let good = sign(SECRET, t, body);
        assert_eq!(
            verify("other", &headers(t, &good), body, t),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(SECRET, &headers(t, &good), b"{ }", t),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(SECRET, &headers(t, &good), body, t + TOLERANCE_SECS + 1),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(SECRET, &headers(t, "v0=zz"), body, t),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(SECRET, &HeaderMap::new(), body, t),
            Err(SignatureError::Missing)
        );
    }

    async fn post(router: Router, path: &str, body: Vec<u8>, sig_secret: &str) -> StatusCode {
        let t = now();
        let req = Request::post(path)
            .header("x-slack-request-timestamp", t.to_string())
            .header("x-slack-signature", sign(sig_secret, t, &body))
            .body(Body::from(body))
            .unwrap();
        router.oneshot(req).await.unwrap().status()
    }

    #[tokio::test]
    async fn routes_check_size_then_signature_then_shape() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(8);
        let intake = Intake {
            tx,
            inbox: std::sync::Arc::new(super::super::inbox::inbox(None)),
        };
        let r = router(EventsState::new(Secret::new("S", SECRET), 2048, intake));
        let ok =
            br#"{"type":"event_callback","event_id":"Ev1","event":{"type":"message"}}"#.to_vec();
        assert_eq!(
            post(r.clone(), "/slack/events", ok.clone(), "nope").await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            post(r.clone(), "/slack/events", vec![b' '; 4096], SECRET).await,
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            post(r.clone(), "/slack/events", b"{nope".to_vec(), SECRET).await,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            post(
                r.clone(),
                "/slack/events",
                br#"{"type":"event_callback"}"#.to_vec(),
                SECRET
            )
            .await,
            StatusCode::BAD_REQUEST
        );
        assert!(rx.try_recv().is_err(), "nothing queued yet");
        assert_eq!(
            post(r.clone(), "/slack/events", ok, SECRET).await,
            StatusCode::OK
        );
        assert!(matches!(
            rx.try_recv(),
            Ok(super::super::inbox::Kept {
                item: Inbound::Push(_),
                ..
            })
        ));
        assert_eq!(
            post(
                r.clone(),
                "/slack/interactions",
                b"payload=%7Bnot".to_vec(),
                SECRET
            )
            .await,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            post(
                r.clone(),
                "/slack/commands",
                b"command=%2Fcaseroom".to_vec(),
                SECRET
            )
            .await,
            StatusCode::BAD_REQUEST
        );
        assert!(rx.try_recv().is_err());
        // The bot is stopping: 503, so Slack sends the event again.
        drop(rx);
        let again =
            br#"{"type":"event_callback","event_id":"Ev2","event":{"type":"message"}}"#.to_vec();
        assert_eq!(
            post(r.clone(), "/slack/events", again, SECRET).await,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
