//! `[http]`: the webhook and metrics listeners. Raw form, validation, types.

use std::net::SocketAddr;

use serde::Deserialize;
use toml::Spanned;

use super::{Secret, Validator};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    #[serde(default)]
    enabled: bool,
    listen: Option<Spanned<String>>,
    metrics_listen: Option<Spanned<String>>,
    max_body_bytes: Option<Spanned<u64>>,
    #[serde(default)]
    secret_envs: Vec<Spanned<String>>,
    rate_limit_per_minute: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub enabled: bool,
    pub listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    pub max_body_bytes: usize,
    /// Active webhook secrets; empty unless `enabled`.
    pub secrets: Vec<Secret>,
    pub rate_limit_per_minute: u32,
}

impl Validator<'_> {
    /// A request body limit: 1 KiB to 16 MiB, `default` when not given.
    pub(super) fn body_limit(
        &mut self,
        n: Option<Spanned<u64>>,
        key: &str,
        default: usize,
    ) -> usize {
        match n {
            None => default,
            Some(n) if *n.get_ref() < 1024 || *n.get_ref() > 16 * 1024 * 1024 => {
                self.error(Some(n.span()), key, "must be between 1024 and 16777216");
                default
            }
            Some(n) => *n.get_ref() as usize,
        }
    }

    pub(super) fn http(&mut self, raw: RawHttp) -> HttpConfig {
        let listen = self.addr(raw.listen, "http.listen", "127.0.0.1:8080");
        let metrics_listen = self.addr(raw.metrics_listen, "http.metrics_listen", "127.0.0.1:9090");
        let max_body_bytes = self.body_limit(raw.max_body_bytes, "http.max_body_bytes", 64 * 1024);
        let secrets = if raw.enabled {
            if raw.secret_envs.is_empty() {
                self.error(
                    None,
                    "http.secret_envs",
                    "the webhook is enabled but no secret variable is named",
                );
            }
            raw.secret_envs
                .iter()
                .map(|v| self.secret(v, "http.secret_envs"))
                .collect()
        } else {
            Vec::new()
        };
        HttpConfig {
            enabled: raw.enabled,
            listen,
            metrics_listen,
            max_body_bytes,
            secrets,
            rate_limit_per_minute: raw.rate_limit_per_minute.unwrap_or(6000),
        }
    }
}
