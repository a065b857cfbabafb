//! Prometheus metrics, served on their own listener (not the public one).
//!
//! Counters and histograms are recorded through the `metrics` facade where
//! things happen; gauges that describe stored state (cases by status, outbox
//! depth and age) are computed from the store when scraped.

use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

use crate::case::Status;
use crate::store::Store;

/// Installs the process-wide recorder once and returns its handle.
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0,
                ])
                .expect("static buckets are valid")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed");
            }
            handle
        })
        .clone()
}

/// A ticket webhook outcome: created, duplicate, bad_signature, ...
pub fn ticket(outcome: &'static str) {
    metrics::counter!("caseroom_tickets_received_total", "outcome" => outcome).increment(1);
}

pub fn webhook_latency(d: Duration) {
    metrics::histogram!("caseroom_webhook_latency_seconds").record(d.as_secs_f64());
}

pub fn suggestion_latency(d: Duration) {
    metrics::histogram!("caseroom_suggestion_latency_seconds").record(d.as_secs_f64());
}

/// Time from a message entering the outbox to the platform accepting it.
pub fn delivery_latency(d: Duration) {
    metrics::histogram!("caseroom_delivery_latency_seconds").record(d.as_secs_f64());
}

/// A platform told us to wait (429 / `M_LIMIT_EXCEEDED`).
pub fn rate_limit_wait(platform: &'static str, d: Duration) {
    metrics::counter!("caseroom_rate_limit_waits_total", "platform" => platform).increment(1);
    metrics::counter!("caseroom_rate_limit_wait_seconds_total", "platform" => platform)
        .increment(d.as_secs());
}

/// Sets the gauges that come from the store.
fn refresh(store: &Store) {
    for st in Status::ALL {
        match store.count_status(st) {
            Ok(n) => metrics::gauge!("caseroom_cases", "status" => st.as_str()).set(n as f64),
            Err(e) => tracing::warn!("metrics: {e}"),
        }
    }
    if let Ok(pending) = store.pending_outbox() {
        metrics::gauge!("caseroom_outbox_depth").set(pending.len() as f64);
        let now = jiff::Timestamp::now();
        let oldest = pending
            .iter()
            .filter_map(|(_, m)| m.queued_at)
            .min()
            .map(|t| now.duration_since(t).as_secs_f64())
            .unwrap_or(0.0);
        metrics::gauge!("caseroom_outbox_oldest_age_seconds").set(oldest.max(0.0));
    }
    if let Ok(pending) = store.outbound_from(0) {
        metrics::gauge!("caseroom_outbound_pending").set(pending.len() as f64);
    }
    if let Ok(failed) = store.outbound_failed() {
        metrics::gauge!("caseroom_outbound_set_aside").set(failed.len() as f64);
    }
}

/// One try to deliver a helpdesk event: `delivered`, `retry`, `rate_limited`
/// or `set_aside`.
pub fn outbound(outcome: &'static str) {
    metrics::counter!("caseroom_outbound_attempts_total", "outcome" => outcome).increment(1);
}

/// The metrics app: `GET /metrics`.
pub fn router(store: Store) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(store): State<Store>| async move {
                refresh(&store);
                handle().render()
            }),
        )
        // Operators' view of the helpdesk queue (this listener is not public).
        .route(
            "/outbound",
            get(|State(store): State<Store>| async move {
                let list = |r: Result<Vec<(u64, crate::outbound::Queued)>, _>| {
                    r.map(|v| {
                        v.into_iter()
                            .map(|(seq, q)| serde_json::json!({"seq": seq, "event": q.event, "attempts": q.attempts, "last_error": q.last_error}))
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default()
                };
                axum::Json(serde_json::json!({
                    "pending": list(store.outbound_from(0)),
                    "set_aside": list(store.outbound_failed()),
                }))
            }),
        )
        .route(
            "/outbound/retry",
            axum::routing::post(
                |State(store): State<Store>,
                 axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>| async move {
                    match store.outbound_retry(q.get("id").map(String::as_str)) {
                        Ok(n) => (axum::http::StatusCode::OK, axum::Json(serde_json::json!({"retried": n}))),
                        Err(e) => (
                            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                            axum::Json(serde_json::json!({"error": e.to_string()})),
                        ),
                    }
                },
            ),
        )
        .with_state(store)
}

/// Serves `/metrics` on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: Store,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    handle();
    tracing::info!(addr = %listener.local_addr()?, "metrics listening");
    axum::serve(listener, router(store))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}
