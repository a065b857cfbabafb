//! The REST calls the outbox makes (post, edit, delete, threads,
//! interaction answers), over reqwest.
//!
//! Why not serenity's `Http` for these: with its ratelimiter on it ignores
//! the configured base URL (so a loopback fake cannot serve it), and with
//! the ratelimiter off a 429 comes back without its `Retry-After` and
//! `X-RateLimit-Global` headers. The outbox needs both to wait on the right
//! channel for the right time, so deliveries read the response themselves.
//! Request bodies are serenity's builders serialized, answers are parsed
//! into serenity's models.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::platform::SendError;

/// Limit for one REST call; a slower call is a transient failure.
const API_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait after a 429 that names no delay.
const DEFAULT_RATE_LIMIT_WAIT: Duration = Duration::from_secs(1);

/// Discord's JSON error codes the adapter branches on.
pub(crate) mod code {
    /// The thread for this message already exists.
    pub const THREAD_EXISTS: i64 = 160004;
    /// Missing Permissions.
    pub const MISSING_PERMISSIONS: i64 = 50013;
    /// Unknown Webhook (an interaction token that expired).
    pub const UNKNOWN_WEBHOOK: i64 = 10015;
    /// Unknown interaction.
    pub const UNKNOWN_INTERACTION: i64 = 10062;
}

/// A failed call: what the outbox should do, plus Discord's code.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RestError {
    pub send: SendError,
    /// Discord's JSON `code` (0 when the body had none).
    pub code: i64,
    /// Whether a 429 was the global limit (every channel waits).
    pub global: bool,
}

impl From<RestError> for SendError {
    fn from(e: RestError) -> SendError {
        e.send
    }
}

/// A reqwest client bound to a base URL and a bot token.
#[derive(Clone)]
pub(crate) struct Rest {
    client: reqwest::Client,
    /// `https://discord.com` (or a fake's), without a trailing slash.
    base: String,
    /// `Bot <token>`.
    auth: String,
}

impl std::fmt::Debug for Rest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rest").field("base", &self.base).finish()
    }
}

impl Rest {
    pub fn new(base: &str, token: &str) -> anyhow::Result<Rest> {
        let client = reqwest::Client::builder()
            .timeout(API_TIMEOUT)
            .user_agent(concat!(
                "DiscordBot (https://github.com/caseroom, ",
                env!("CARGO_PKG_VERSION"),
                ")"
            ))
            .build()?;
        Ok(Rest {
            client,
            base: base.trim_end_matches('/').to_owned(),
            auth: format!("Bot {token}"),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v10{path}", self.base)
    }

    /// One call; `body` as JSON when given. Returns the parsed answer
    /// (`Value::Null` for 204).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        reason: Option<&str>,
    ) -> Result<Value, RestError> {
        let mut req = self
            .client
            .request(method, self.url(path))
            .header("Authorization", &self.auth);
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(serde_json::to_vec(b).unwrap_or_default());
        }
        if let Some(r) = reason {
            // The audit log reason, percent-encoded as Discord wants.
            req = req.header("X-Audit-Log-Reason", percent_encode(r));
        }
        let resp = req.send().await.map_err(|e| RestError {
            send: SendError::Transient(format!("Discord request failed: {e}")),
            code: 0,
            global: false,
        })?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        if status.is_success() {
            if text.trim().is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_str(&text).map_err(|e| RestError {
                send: SendError::Transient(format!("Discord answered unreadable JSON: {e}")),
                code: 0,
                global: false,
            });
        }
        Err(error(status, &headers, &text))
    }

    /// [`Rest::call`], parsing the answer into `T` (a serenity model).
    pub async fn call_as<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T, RestError> {
        let v = self.call(method, path, body, None).await?;
        serde_json::from_value(v).map_err(|e| RestError {
            send: SendError::Transient(format!("Discord's answer does not parse: {e}")),
            code: 0,
            global: false,
        })
    }
}

/// What a non-2xx answer means for the outbox.
pub(crate) fn error(status: StatusCode, headers: &HeaderMap, body: &str) -> RestError {
    let json: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let code = json["code"].as_i64().unwrap_or(0);
    let message = json["message"].as_str().unwrap_or("").to_owned();
    if status == StatusCode::TOO_MANY_REQUESTS {
        let header_secs = headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok());
        let secs = header_secs.or_else(|| json["retry_after"].as_f64());
        let wait = secs
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| Duration::from_secs_f64(s.min(3600.0)))
            .unwrap_or(DEFAULT_RATE_LIMIT_WAIT);
        let global = headers
            .get("x-ratelimit-global")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || json["global"].as_bool() == Some(true);
        return RestError {
            send: SendError::RateLimited(wait),
            code,
            global,
        };
    }
    let what = format!("Discord HTTP {} (code {code}: {message})", status.as_u16());
    let send = if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
        SendError::Transient(what)
    } else if status == StatusCode::UNAUTHORIZED {
        // A token fixed in the environment delivers the message later.
        SendError::Transient(what)
    } else {
        SendError::Permanent(what)
    };
    RestError {
        send,
        code,
        global: false,
    }
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~ ".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn a_429_waits_for_retry_after_and_tells_a_global_limit() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("2.5"));
        let e = error(
            StatusCode::TOO_MANY_REQUESTS,
            &h,
            r#"{"message":"You are being rate limited.","retry_after":2.5,"global":false}"#,
        );
        assert_eq!(e.send, SendError::RateLimited(Duration::from_millis(2500)));
        assert!(!e.global);
        h.insert("x-ratelimit-global", HeaderValue::from_static("true"));
        let e = error(StatusCode::TOO_MANY_REQUESTS, &h, "{}");
        assert!(e.global);
        // No header: the body's retry_after, else a default.
        let e = error(
            StatusCode::TOO_MANY_REQUESTS,
            &HeaderMap::new(),
            r#"{"retry_after":0.75,"global":true}"#,
        );
        assert_eq!(e.send, SendError::RateLimited(Duration::from_millis(750)));
        assert!(e.global);
        let e = error(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new(), "");
        assert_eq!(e.send, SendError::RateLimited(DEFAULT_RATE_LIMIT_WAIT));
    }

    #[test]
    fn other_errors_are_retried_only_when_they_can_heal() {
        let none = HeaderMap::new();
        let e = error(
            StatusCode::FORBIDDEN,
            &none,
            r#"{"message":"Missing Permissions","code":50013}"#,
        );
        assert!(matches!(e.send, SendError::Permanent(_)));
        assert_eq!(e.code, code::MISSING_PERMISSIONS);
        assert!(matches!(
            error(StatusCode::BAD_GATEWAY, &none, "").send,
            SendError::Transient(_)
        ));
        assert!(matches!(
            error(
                StatusCode::NOT_FOUND,
                &none,
                r#"{"message":"Unknown Channel","code":10003}"#
            )
            .send,
            SendError::Permanent(_)
        ));
    }
}
