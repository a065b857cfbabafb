//! The ticket webhook and health endpoints (axum), and the Prometheus
//! metrics listener.
//!
//! `POST /v1/tickets` takes a signed JSON ticket and opens a case through
//! the same path as chat escalations ([`Bot::open_ticket`]): the answer is
//! `201 {"case_id"}` once the case is durably stored, or `200` with the
//! existing case id when the external id was seen before. Bad input gets a
//! JSON error naming the problem and stores nothing. [`router`] builds the
//! app so tests drive it without a socket.

pub mod metrics;
pub mod signature;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::bot::{Bot, Ticket};
use crate::case::{Channel, Customer, Priority};
use crate::config::HttpConfig;
use crate::lang::Lang;

/// Longest accepted external ticket id.
const MAX_EXTERNAL_ID: usize = 128;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    bot: Bot,
    config: HttpConfig,
    /// Set when shutdown starts: new tickets get 503 so the helpdesk retries
    /// against the next instance instead of losing them.
    draining: Arc<AtomicBool>,
    /// Set once the chat platform is connected (for `/readyz`).
    ready: Arc<AtomicBool>,
    limiter: Arc<RateLimiter>,
}

impl AppState {
    pub fn new(bot: Bot, config: HttpConfig, ready: Arc<AtomicBool>) -> AppState {
        // The metrics recorder goes in before the first request: counted
        // before it is installed (the metrics listener's task may not have
        // run yet), a ticket would go to the no-op recorder, uncounted.
        metrics::handle();
        let limiter = Arc::new(RateLimiter::new(config.rate_limit_per_minute));
        AppState {
            bot,
            config,
            draining: Arc::new(AtomicBool::new(false)),
            ready,
            limiter,
        }
    }

    /// From now on, refuse new tickets with 503.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }
}

/// The public app: webhook and health checks.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/tickets", post(create_ticket))
        .route("/v1/tickets/{external_id}/messages", post(customer_message))
        .route(
            "/healthz",
            get(|| async { Json200(json!({"status": "ok"})) }),
        )
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// Serves the webhook on `listener` until `shutdown`; in-flight requests
/// finish, new tickets meanwhile get 503.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    tracing::info!(addr = %listener.local_addr()?, "ticket webhook listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.cancelled().await;
            state.drain();
        })
        .await
}

struct Json200(serde_json::Value);

impl IntoResponse for Json200 {
    fn into_response(self) -> Response {
        (StatusCode::OK, axum::Json(self.0)).into_response()
    }
}

fn error(status: StatusCode, outcome: &'static str, message: impl Into<String>) -> Response {
    metrics::ticket(outcome);
    (status, axum::Json(json!({"error": message.into()}))).into_response()
}

async fn readyz(State(st): State<AppState>) -> Response {
    let store_ok = st.bot.store().seen("readyz-probe").is_ok();
    let platform = st.ready.load(Ordering::SeqCst);
    let status = if store_ok && platform && !st.draining.load(Ordering::SeqCst) {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(json!({"store": store_ok, "platform": platform})),
    )
        .into_response()
}

/// The ticket as the helpdesk sends it.
#[derive(Debug, Deserialize)]
struct TicketIn {
    external_id: String,
    #[serde(default)]
    subject: String,
    body: String,
    #[serde(default)]
    customer: CustomerIn,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    priority: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    metadata: Option<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
struct CustomerIn {
    id: Option<String>,
    name: Option<String>,
    email: Option<String>,
    language: Option<String>,
}

/// The checks every signed webhook request passes before its JSON is read:
/// draining, rate limit, content type, size, signature. Returns the raw body.
async fn signed_body(st: &AppState, req: Request) -> Result<Bytes, Response> {
    if st.draining.load(Ordering::SeqCst) {
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "shutting down; retry shortly",
        ));
    }
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    if !st.limiter.allow(client) {
        return Err(error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many requests from this client; slow down",
        ));
    }
    let (parts, body) = req.into_parts();
    if !is_json(&parts.headers) {
        return Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "bad_content_type",
            "Content-Type must be application/json",
        ));
    }
    let limit = st.config.max_body_bytes;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("body is larger than {limit} bytes"),
        ));
    }
    let bytes: Bytes = match axum::body::to_bytes(Body::new(body), limit).await {
        Ok(b) => b,
        Err(_) => {
            return Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("body is larger than {limit} bytes"),
            ));
        }
    };
    let sig = parts
        .headers
        .get("x-caseroom-signature")
        .and_then(|v| v.to_str().ok());
    if let Err(e) = signature::verify(
        sig,
        &bytes,
        &st.config.secrets,
        jiff::Timestamp::now().as_second(),
    ) {
        tracing::warn!(%client, "webhook refused: {e}");
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            e.to_string(),
        ));
    }
    Ok(bytes)
}

async fn create_ticket(State(st): State<AppState>, req: Request) -> Response {
    let started = Instant::now();
    let bytes = match signed_body(&st, req).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let ticket: TicketIn = match serde_json::from_slice(&bytes) {
        Ok(t) => t,
        Err(e) if e.is_data() => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("invalid ticket: {e}"),
            );
        }
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("malformed JSON: {e}"),
            );
        }
    };
    let ticket = match validate(ticket) {
        Ok(t) => t,
        Err(msg) => return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid", msg),
    };
    // Suggesting and writing take tens of microseconds; the wait for the
    // disk flush is async, so no thread is parked per request.
    let opened = st
        .bot
        .open_ticket_deferred(ticket, "webhook", None, |_| Vec::new());
    let (case, created) = match opened {
        Ok((case, created, durable)) => {
            if let Some(d) = durable
                && let Err(e) = d.wait_async().await
            {
                tracing::error!("flushing a ticket failed: {e}");
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "error",
                    "could not store the ticket; retry",
                );
            }
            st.bot.wake_outbox();
            (case, created)
        }
        Err(e) => {
            tracing::error!("storing a ticket failed: {e:#}");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "error",
                "could not store the ticket; retry",
            );
        }
    };
    metrics::ticket(if created { "created" } else { "duplicate" });
    metrics::webhook_latency(started.elapsed());
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (
        status,
        axum::Json(json!({"case_id": case.id.to_string(), "created": created})),
    )
        .into_response()
}

/// A later message from the customer on a ticket (a helpdesk update).
#[derive(Debug, Deserialize)]
struct MessageIn {
    body: String,
}

/// `POST /v1/tickets/{external_id}/messages`: the customer wrote again. The
/// text goes into the case history and its thread, restarts the next-response
/// clock, and brings a waiting case back (a resolved one is reopened).
async fn customer_message(
    State(st): State<AppState>,
    Path(external_id): Path<String>,
    req: Request,
) -> Response {
    let bytes = match signed_body(&st, req).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let msg: MessageIn = match serde_json::from_slice(&bytes) {
        Ok(m) => m,
        Err(e) if e.is_data() => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("invalid message: {e}"),
            );
        }
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("malformed JSON: {e}"),
            );
        }
    };
    if msg.body.trim().is_empty() {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "body must not be empty",
        );
    }
    let bot = st.bot.clone();
    let ext = external_id.clone();
    // A store commit waits for the flush: off the async workers.
    let result = tokio::task::spawn_blocking(move || bot.customer_message(&ext, &msg.body)).await;
    match result {
        Ok(Ok(Some(case))) => {
            metrics::ticket("customer_message");
            (
                StatusCode::OK,
                axum::Json(json!({"case_id": case.id.to_string(), "status": case.status.as_str()})),
            )
                .into_response()
        }
        Ok(Ok(None)) => error(
            StatusCode::NOT_FOUND,
            "unknown_ticket",
            format!("no case for external_id `{external_id}`"),
        ),
        Ok(Err(e)) => match e.downcast_ref::<crate::store::StoreError>() {
            Some(crate::store::StoreError::Transition(t)) => {
                error(StatusCode::CONFLICT, "conflict", t.to_string())
            }
            _ => {
                tracing::error!("storing a customer message failed: {e:#}");
                error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "error",
                    "could not store the message; retry",
                )
            }
        },
        Err(e) => {
            tracing::error!("customer message handler panicked: {e}");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "error",
                "could not store the message; retry",
            )
        }
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// Checks the rules a well-formed ticket must follow.
fn validate(t: TicketIn) -> Result<Ticket, String> {
    let external_id = t.external_id.trim().to_owned();
    if external_id.is_empty() {
        return Err("external_id must not be empty".into());
    }
    if external_id.chars().count() > MAX_EXTERNAL_ID {
        return Err(format!(
            "external_id is longer than {MAX_EXTERNAL_ID} characters"
        ));
    }
    if t.body.trim().is_empty() {
        return Err("body must not be empty".into());
    }
    let channel = match t.channel.as_deref() {
        None => Channel::Web,
        Some(c) => c.parse::<Channel>()?,
    };
    let priority = t
        .priority
        .as_deref()
        .map(str::parse::<Priority>)
        .transpose()?;
    if let Some(ts) = &t.created_at {
        ts.parse::<jiff::Timestamp>()
            .map_err(|_| format!("created_at `{ts}` is not an RFC 3339 time"))?;
    }
    if let Some(m) = &t.metadata
        && !m.is_object()
    {
        return Err("metadata must be a JSON object".into());
    }
    let language = match t.customer.language.as_deref() {
        None => None,
        Some(l) => Some(l.parse::<Lang>()?),
    };
    let customer = Customer {
        id: t.customer.id,
        name: t.customer.name,
        email: t.customer.email,
        language: language.unwrap_or_default(),
    };
    Ok(Ticket {
        external_id,
        subject: t.subject,
        body: t.body,
        customer,
        channel,
        priority,
        tags: Vec::new(),
        language_known: language.is_some(),
    })
}

/// A token bucket per client address.
pub struct RateLimiter {
    per_minute: u32,
    /// A `std::sync::Mutex`: held for a map lookup, never across an await.
    buckets: std::sync::Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(per_minute: u32) -> RateLimiter {
        RateLimiter {
            per_minute,
            buckets: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `client`; false when its bucket is empty.
    pub fn allow(&self, client: IpAddr) -> bool {
        let cap = self.per_minute.max(1) as f64;
        let rate = cap / 60.0;
        let now = Instant::now();
        let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if b.len() > 100_000 {
            b.retain(|_, (_, at)| now.duration_since(*at).as_secs() < 120);
        }
        let (tokens, at) = b.entry(client).or_insert((cap, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * rate).min(cap);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}
