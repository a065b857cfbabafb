//! `[outbound]`: signed case events POSTed to the helpdesk, and the path
//! agents' replies take to the customer. Raw form, validation, types.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{Secret, Validator, parse_duration};
use crate::outbound::TYPES;

/// What the user wrote under `[outbound]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOutbound {
    #[serde(default)]
    enabled: bool,
    url: Option<Spanned<String>>,
    #[serde(default)]
    secret_envs: Vec<Spanned<String>>,
    events: Option<Vec<Spanned<String>>>,
    max_attempts: Option<Spanned<u32>>,
    timeout: Option<Spanned<String>>,
    concurrency: Option<Spanned<u32>>,
}

/// The validated `[outbound]` section.
#[derive(Debug, Clone)]
pub struct OutboundConfig {
    pub enabled: bool,
    /// Where events are POSTed (http or https).
    pub url: String,
    /// The first signs; all are accepted by a receiver that rotates.
    pub secrets: Vec<Secret>,
    /// The event types sent (see [`crate::outbound::TYPES`]).
    pub events: Vec<String>,
    /// Tries before an event is set aside (`caseroom outbound retry`).
    pub max_attempts: u32,
    /// How long one POST may take.
    pub timeout: Duration,
    /// Events in flight at once (each case's events stay in order).
    pub concurrency: usize,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        OutboundConfig {
            enabled: false,
            url: String::new(),
            secrets: Vec::new(),
            events: TYPES.iter().map(|t| t.to_string()).collect(),
            max_attempts: 12,
            timeout: Duration::from_secs(10),
            concurrency: 8,
        }
    }
}

impl OutboundConfig {
    /// Whether events of `kind` go to the helpdesk.
    pub fn sends(&self, kind: &str) -> bool {
        self.enabled && self.events.iter().any(|e| e == kind)
    }
}

impl Validator<'_> {
    pub(super) fn outbound(&mut self, raw: RawOutbound) -> OutboundConfig {
        let mut out = OutboundConfig {
            enabled: raw.enabled,
            ..OutboundConfig::default()
        };
        if let Some(events) = raw.events {
            out.events.clear();
            for e in events {
                if TYPES.contains(&e.get_ref().as_str()) {
                    out.events.push(e.into_inner());
                } else {
                    self.error(
                        Some(e.span()),
                        "outbound.events",
                        format!(
                            "unknown event type `{}`; known: {}",
                            e.get_ref(),
                            TYPES.join(", ")
                        ),
                    );
                }
            }
        }
        if let Some(n) = raw.max_attempts {
            if *n.get_ref() == 0 {
                self.error(
                    Some(n.span()),
                    "outbound.max_attempts",
                    "must be at least 1",
                );
            } else {
                out.max_attempts = *n.get_ref();
            }
        }
        if let Some(n) = raw.concurrency {
            if !(1..=256).contains(n.get_ref()) {
                self.error(
                    Some(n.span()),
                    "outbound.concurrency",
                    "must be between 1 and 256",
                );
            } else {
                out.concurrency = *n.get_ref() as usize;
            }
        }
        if let Some(t) = raw.timeout {
            match parse_duration(t.get_ref()) {
                Ok(d) if d.is_positive() => {
                    out.timeout = d.unsigned_abs();
                }
                Ok(_) => self.error(Some(t.span()), "outbound.timeout", "must be positive"),
                Err(e) => self.error(Some(t.span()), "outbound.timeout", e),
            }
        }
        if !raw.enabled {
            return out;
        }
        match raw.url {
            Some(u)
                if u.get_ref().starts_with("http://") || u.get_ref().starts_with("https://") =>
            {
                out.url = u.into_inner();
            }
            Some(u) => self.error(
                Some(u.span()),
                "outbound.url",
                format!("`{}` is not an http(s) URL", u.get_ref()),
            ),
            None => self.error(
                None,
                "outbound.url",
                "outbound events are enabled but no url is set",
            ),
        }
        if raw.secret_envs.is_empty() {
            self.error(
                None,
                "outbound.secret_envs",
                "outbound events are enabled but no secret variable is named (events must be signed)",
            );
        }
        out.secrets = raw
            .secret_envs
            .iter()
            .map(|v| self.secret(v, "outbound.secret_envs"))
            .collect();
        out
    }
}
