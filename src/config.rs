//! Configuration: `config/caseroom.toml` parsed in two stages.
//!
//! Stage one deserializes the file into `Raw*` structs that mirror what the
//! user wrote (unknown keys are refused). Stage two, the `Validator`,
//! checks every value and builds the objects the rest of the bot uses
//! (durations, time zones, socket addresses, secrets read from the
//! environment). Every problem becomes a [`ConfigError`] naming the file, the
//! key and the line, and all of them are reported at once.
//!
//! Secrets never appear in the file: keys ending in `_env` name an
//! environment variable, and the value is held in a [`Secret`] whose `Debug`
//! output is redacted so it cannot leak into logs.
//!
//! Each section has a file of its own under `src/config/` holding its raw
//! form, its validation (an `impl Validator` block) and its types; this file
//! holds the top-level keys and puts the sections together.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use jiff::SignedDuration;
use serde::Deserialize;
use toml::Spanned;

use crate::lang::Lang;

mod discord;
mod error;
mod http;
mod matrix;
mod oncall;
mod outbound;
mod rooms;
mod secret;
mod sla;
mod slack;
mod store;
mod suggest;

pub use discord::{DISCORD_API, DiscordConfig};
pub use error::{ConfigError, ConfigErrors};
use error::{key_at, line_of};
pub use http::HttpConfig;
use matrix::RawMatrix;
pub use matrix::{E2eeConfig, MatrixConfig};
pub use oncall::{
    Escalation, OncallConfig, PageTarget, Rotation, Schedule, Shift, ShiftLength, Step,
};
pub use outbound::OutboundConfig;
pub use rooms::{Role, Roles, Rooms};
pub use secret::Secret;
pub use sla::{Calendar, Policy, SlaConfig, Warning};
pub use slack::{SlackConfig, SlackMode};
pub use store::StoreConfig;
pub use suggest::SuggestConfig;

// ---------------------------------------------------------------------------
// Stage one: what the user wrote.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    data_dir: Option<Spanned<String>>,
    default_language: Option<Spanned<String>>,
    command_prefix: Option<Spanned<String>>,
    escalate_reaction: Option<String>,
    #[serde(default)]
    rooms: rooms::RawRooms,
    #[serde(default)]
    roles: rooms::RawRoles,
    #[serde(default)]
    suggest: suggest::RawSuggest,
    #[serde(default)]
    http: http::RawHttp,
    #[serde(default)]
    sla: sla::RawSla,
    #[serde(default)]
    oncall: oncall::RawOncall,
    #[serde(default)]
    outbound: outbound::RawOutbound,
    #[serde(default)]
    store: store::RawStore,
    matrix: Option<RawMatrix>,
    slack: Option<slack::RawSlack>,
    discord: Option<discord::RawDiscord>,
}

// ---------------------------------------------------------------------------
// Stage two: validated configuration.

/// The validated configuration the bot runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from, for messages.
    pub source: PathBuf,
    pub data_dir: PathBuf,
    pub default_language: Lang,
    pub command_prefix: String,
    pub escalate_reaction: String,
    pub rooms: Rooms,
    pub roles: Roles,
    pub suggest: SuggestConfig,
    pub http: HttpConfig,
    pub sla: SlaConfig,
    pub oncall: OncallConfig,
    pub outbound: OutboundConfig,
    pub store: StoreConfig,
    pub matrix: Option<MatrixConfig>,
    pub slack: Option<SlackConfig>,
    pub discord: Option<DiscordConfig>,
    /// Secret variables named in the file but not set. Always empty from
    /// [`Config::load`] and [`Config::parse`] (there they are errors);
    /// [`Config::load_offline`] collects them here instead, because commands
    /// that never talk to chat or serve the webhook do not need them.
    pub missing_secrets: Vec<ConfigError>,
}

/// Whether a secret variable that is not set is an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrets {
    /// `run`: the bot needs every secret of what it enables.
    Required,
    /// Offline commands (`check`, `case`, `export`, `import`, ...).
    Optional,
}

impl Config {
    /// Reads and validates a config file, taking secrets from the process
    /// environment.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let src = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: path.to_owned(),
                line: None,
                key: String::new(),
                message: format!("cannot read config file: {e}"),
            }])
        })?;
        Config::parse(path, &src, &|var| std::env::var(var).ok())
    }

    /// Like [`Config::load`], for commands that use no secret: secret
    /// variables that are not set land in [`Config::missing_secrets`].
    pub fn load_offline(path: &Path) -> Result<Config, ConfigErrors> {
        let src = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: path.to_owned(),
                line: None,
                key: String::new(),
                message: format!("cannot read config file: {e}"),
            }])
        })?;
        Config::parse_with(
            path,
            &src,
            &|var| std::env::var(var).ok(),
            Secrets::Optional,
        )
    }

    /// Parses config text. `env` looks up environment variables, so tests
    /// can supply their own.
    pub fn parse(
        path: &Path,
        src: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigErrors> {
        Config::parse_with(path, src, env, Secrets::Required)
    }

    /// Parses config text; `secrets` says whether unset secret variables
    /// are errors.
    pub fn parse_with(
        path: &Path,
        src: &str,
        env: &dyn Fn(&str) -> Option<String>,
        secrets: Secrets,
    ) -> Result<Config, ConfigErrors> {
        let raw: RawConfig = toml::from_str(src).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            ConfigErrors(vec![ConfigError {
                file: path.to_owned(),
                line: Some(line_of(src, span.start)),
                key: key_at(src, span),
                message: e.message().trim().to_owned(),
            }])
        })?;
        let mut v = Validator {
            file: path,
            src,
            env,
            secrets,
            errors: Vec::new(),
            missing_secrets: Vec::new(),
        };
        let mut config = v.config(raw);
        config.missing_secrets = v.missing_secrets;
        if v.errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(v.errors))
        }
    }
}

/// Collects errors while building the validated config.
struct Validator<'a> {
    file: &'a Path,
    src: &'a str,
    env: &'a dyn Fn(&str) -> Option<String>,
    secrets: Secrets,
    errors: Vec<ConfigError>,
    /// Unset secret variables when `secrets` is [`Secrets::Optional`].
    missing_secrets: Vec<ConfigError>,
}

impl Validator<'_> {
    fn error(&mut self, span: Option<Range<usize>>, key: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.to_owned(),
            line: span.map(|s| line_of(self.src, s.start)),
            key: key.to_owned(),
            message: message.into(),
        });
    }

    fn config(&mut self, raw: RawConfig) -> Config {
        let default_language = match &raw.default_language {
            None => Lang::Zh,
            Some(s) => s.get_ref().parse().unwrap_or_else(|e: String| {
                self.error(Some(s.span()), "default_language", e);
                Lang::Zh
            }),
        };
        let command_prefix = match raw.command_prefix {
            None => "!".to_owned(),
            Some(p)
                if p.get_ref().trim().is_empty() || p.get_ref().contains(char::is_whitespace) =>
            {
                self.error(
                    Some(p.span()),
                    "command_prefix",
                    "must be non-empty and contain no spaces",
                );
                "!".to_owned()
            }
            Some(p) => p.into_inner(),
        };
        let rooms = self.rooms(raw.rooms);
        let roles = self.roles(raw.roles);
        let suggest = self.suggest(raw.suggest);
        let http = self.http(raw.http);
        // Rotations are written in the team's zone unless they say otherwise.
        let team_tz = raw.sla.default_zone();
        let oncall = self.oncall(raw.oncall, &team_tz);
        let sla = self.sla(raw.sla, &oncall);
        let outbound = self.outbound(raw.outbound);
        let store = self.store(raw.store);
        let matrix = raw.matrix.filter(|m| m.enabled).map(|m| self.matrix(m));
        let slack = raw.slack.filter(|s| s.enabled).map(|s| self.slack(s));
        let discord = raw.discord.filter(|d| d.enabled).map(|d| self.discord(d));
        Config {
            source: self.file.to_owned(),
            data_dir: PathBuf::from(
                raw.data_dir
                    .map(Spanned::into_inner)
                    .unwrap_or_else(|| "data".into()),
            ),
            default_language,
            command_prefix,
            escalate_reaction: raw.escalate_reaction.unwrap_or_else(|| "🎫".into()),
            rooms,
            roles,
            suggest,
            http,
            sla,
            oncall,
            outbound,
            store,
            matrix,
            slack,
            discord,
            missing_secrets: Vec::new(),
        }
    }

    fn secret(&mut self, var: &Spanned<String>, key: &str) -> Secret {
        let name = var.get_ref();
        match (self.env)(name) {
            Some(v) if !v.is_empty() => Secret::new(name, v),
            _ => {
                let message =
                    format!("environment variable {name} is not set (it must hold the secret)");
                match self.secrets {
                    Secrets::Required => self.error(Some(var.span()), key, message),
                    Secrets::Optional => self.missing_secrets.push(ConfigError {
                        file: self.file.to_owned(),
                        line: Some(line_of(self.src, var.span().start)),
                        key: key.to_owned(),
                        message,
                    }),
                }
                Secret::new(name, "")
            }
        }
    }

    fn addr(&mut self, s: Option<Spanned<String>>, key: &str, default: &str) -> SocketAddr {
        let fallback: SocketAddr = default.parse().expect("default address parses");
        let Some(s) = s else { return fallback };
        s.get_ref().parse().unwrap_or_else(|e| {
            self.error(
                Some(s.span()),
                key,
                format!(
                    "`{}` is not a socket address like 127.0.0.1:8080: {e}",
                    s.get_ref()
                ),
            );
            fallback
        })
    }

    fn duration(&mut self, s: &Spanned<String>, key: &str) -> Option<SignedDuration> {
        match parse_duration(s.get_ref()) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(Some(s.span()), key, e);
                None
            }
        }
    }
}

/// Parses durations such as `90s`, `15m`, `4h`, `1h 30m`, `2d`.
pub fn parse_duration(s: &str) -> Result<SignedDuration, String> {
    let bad = || {
        format!(
            "`{s}` is not a duration (write e.g. \"90s\", \"15m\", \"4h\", \"1h 30m\" or \"2d\")"
        )
    };
    let t = s.trim();
    if t.is_empty() {
        return Err(bad());
    }
    let mut total = SignedDuration::ZERO;
    let mut num = String::new();
    let mut seen = false;
    let mut chars = t.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        if c.is_whitespace() {
            continue;
        }
        let mut unit = String::from(c);
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphabetic() {
                unit.push(n);
                chars.next();
            } else {
                break;
            }
        }
        let n: i64 = num.parse().map_err(|_| bad())?;
        num.clear();
        let secs = match unit.as_str() {
            "s" | "sec" | "secs" => 1,
            "m" | "min" | "mins" => 60,
            "h" | "hr" | "hrs" => 3600,
            "d" | "day" | "days" => 86400,
            "w" => 7 * 86400,
            _ => return Err(bad()),
        };
        total += SignedDuration::from_secs(n.checked_mul(secs).ok_or_else(bad)?);
        seen = true;
    }
    if !num.is_empty() || !seen || total <= SignedDuration::ZERO {
        return Err(bad());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("15m").unwrap(),
            SignedDuration::from_mins(15)
        );
        assert_eq!(
            parse_duration("1h 30m").unwrap(),
            SignedDuration::from_mins(90)
        );
        assert_eq!(
            parse_duration("1h30m").unwrap(),
            SignedDuration::from_mins(90)
        );
        assert_eq!(
            parse_duration("2d").unwrap(),
            SignedDuration::from_hours(48)
        );
        for bad in ["", "15", "m", "15 minutes later", "0s", "-5m", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad} should be refused");
        }
    }
}
