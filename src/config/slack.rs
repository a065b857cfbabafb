//! `[slack]`: the Slack adapter's transport, tokens and endpoints. Raw
//! form, validation, types.

use std::net::SocketAddr;

use serde::Deserialize;
use toml::Spanned;

use super::{Secret, Validator};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSlack {
    #[serde(default)]
    pub(super) enabled: bool,
    mode: Option<Spanned<String>>,
    bot_token_env: Spanned<String>,
    app_token_env: Option<Spanned<String>>,
    signing_secret_env: Option<Spanned<String>>,
    user_token_env: Option<Spanned<String>>,
    events_listen: Option<Spanned<String>>,
    api_base_url: Option<Spanned<String>>,
    events_max_body_bytes: Option<Spanned<u64>>,
}

/// How Slack delivers events to the bot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlackMode {
    /// Socket Mode: the bot opens a WebSocket to Slack (no public URL).
    Socket,
    /// The Events API: Slack POSTs signed requests to our HTTP listener.
    Events,
}

#[derive(Debug, Clone)]
pub struct SlackConfig {
    pub mode: SlackMode,
    /// The bot token (`xoxb-`), for every Web API call.
    pub bot_token: Secret,
    /// The app-level token (`xapp-`), for Socket Mode only.
    pub app_token: Option<Secret>,
    /// The request signing secret, for the Events API only.
    pub signing_secret: Option<Secret>,
    /// An optional user token (`xoxp-`) of someone allowed to delete
    /// people's messages: only a user token can delete a pasted card
    /// number; without one a lead is asked to.
    pub user_token: Option<Secret>,
    /// Where the Events API listener binds.
    pub events_listen: SocketAddr,
    /// Where Web API calls go, without a trailing slash.
    pub api_base_url: String,
    /// Largest request body the Events API listener accepts.
    pub events_max_body_bytes: usize,
}

impl Validator<'_> {
    pub(super) fn slack(&mut self, s: RawSlack) -> SlackConfig {
        let mode = match s.mode.as_ref().map(|m| m.get_ref().as_str()) {
            None | Some("socket") => SlackMode::Socket,
            Some("events") => SlackMode::Events,
            Some(other) => {
                self.error(
                    s.mode.as_ref().map(|m| m.span()),
                    "slack.mode",
                    format!("`{other}` is not a mode; use \"socket\" or \"events\""),
                );
                SlackMode::Socket
            }
        };
        let required = |this: &mut Self, var: &Option<Spanned<String>>, key: &str| match var {
            Some(v) => Some(this.secret(v, key)),
            None => {
                this.error(
                    None,
                    key,
                    format!(
                        "slack.mode = \"{}\" needs {key}",
                        if mode == SlackMode::Socket {
                            "socket"
                        } else {
                            "events"
                        }
                    ),
                );
                None
            }
        };
        let app_token = match mode {
            SlackMode::Socket => required(self, &s.app_token_env, "slack.app_token_env"),
            SlackMode::Events => None,
        };
        let signing_secret = match mode {
            SlackMode::Events => required(self, &s.signing_secret_env, "slack.signing_secret_env"),
            SlackMode::Socket => None,
        };
        let events_listen = self.addr(s.events_listen, "slack.events_listen", "127.0.0.1:3000");
        let api_base_url = match s.api_base_url {
            None => "https://slack.com/api".to_owned(),
            Some(u) => {
                let url = u.get_ref().trim_end_matches('/').to_owned();
                if !url.starts_with("https://") && !url.starts_with("http://") {
                    self.error(
                        Some(u.span()),
                        "slack.api_base_url",
                        "must be a URL starting with https:// (http:// only for a local fake)",
                    );
                }
                url
            }
        };
        let events_max_body_bytes = self.body_limit(
            s.events_max_body_bytes,
            "slack.events_max_body_bytes",
            256 * 1024,
        );
        let user_token = s
            .user_token_env
            .as_ref()
            .map(|v| self.secret(v, "slack.user_token_env"));
        SlackConfig {
            mode,
            bot_token: self.secret(&s.bot_token_env, "slack.bot_token_env"),
            app_token,
            signing_secret,
            user_token,
            events_listen,
            api_base_url,
            events_max_body_bytes,
        }
    }
}
