//! Configuration: `config/caseroom.toml` parsed in two stages.
//!
//! Stage one deserializes the file into `Raw*` structs that mirror what the
//! user wrote (unknown keys are refused). Stage two, [`Config::from_raw`],
//! checks every value and builds the objects the rest of the bot uses
//! (durations, time zones, socket addresses, secrets read from the
//! environment). Every problem becomes a [`ConfigError`] naming the file, the
//! key and the line, and all of them are reported at once.
//!
//! Secrets never appear in the file: keys ending in `_env` name an
//! environment variable, and the value is held in a [`Secret`] whose `Debug`
//! output is redacted so it cannot leak into logs.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use jiff::civil::{Date, DateTime, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use toml::Spanned;

use crate::case::Priority;
use crate::lang::Lang;

mod matrix;
mod outbound;
use matrix::RawMatrix;
pub use matrix::{E2eeConfig, MatrixConfig};
pub use outbound::OutboundConfig;

/// One problem in the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line number, when the problem has a place in the file.
    pub line: Option<usize>,
    /// Dotted key path such as `http.max_body_bytes`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// All problems found in one config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A secret read from the environment. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    /// The environment variable it came from, safe to log.
    pub var: String,
    value: String,
}

impl Secret {
    pub fn new(var: impl Into<String>, value: impl Into<String>) -> Secret {
        Secret {
            var: var.into(),
            value: value.into(),
        }
    }

    /// The secret itself. Call only where it is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.value
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(${} = [redacted])", self.var)
    }
}

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
    rooms: RawRooms,
    #[serde(default)]
    roles: RawRoles,
    #[serde(default)]
    suggest: RawSuggest,
    #[serde(default)]
    http: RawHttp,
    #[serde(default)]
    sla: RawSla,
    #[serde(default)]
    oncall: RawOncall,
    #[serde(default)]
    outbound: outbound::RawOutbound,
    matrix: Option<RawMatrix>,
    slack: Option<RawSlack>,
    discord: Option<RawDiscord>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRooms {
    team: Option<String>,
    #[serde(default)]
    intake: Vec<String>,
    oncall: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoles {
    #[serde(default)]
    agent: Vec<String>,
    #[serde(default)]
    lead: Vec<String>,
    #[serde(default)]
    oncall: Vec<String>,
    #[serde(default)]
    admin: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSuggest {
    playbooks_dir: Option<String>,
    threshold: Option<Spanned<f64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    #[serde(default)]
    enabled: bool,
    listen: Option<Spanned<String>>,
    metrics_listen: Option<Spanned<String>>,
    max_body_bytes: Option<Spanned<u64>>,
    #[serde(default)]
    secret_envs: Vec<Spanned<String>>,
    rate_limit_per_minute: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSla {
    #[serde(default)]
    calendars: BTreeMap<String, RawCalendar>,
    #[serde(default)]
    policies: BTreeMap<Spanned<String>, RawPolicy>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCalendar {
    timezone: Spanned<String>,
    #[serde(default)]
    hours: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    holidays: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    calendar: Option<Spanned<String>>,
    #[serde(default)]
    business_time: bool,
    first_response: Option<Spanned<String>>,
    next_response: Option<Spanned<String>>,
    resolution: Option<Spanned<String>>,
    #[serde(default)]
    warnings: Vec<Spanned<String>>,
    escalation: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOncall {
    #[serde(default)]
    rotations: BTreeMap<String, RawRotation>,
    #[serde(default)]
    escalations: BTreeMap<String, RawEscalation>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRotation {
    timezone: Option<Spanned<String>>,
    #[serde(default)]
    members: Vec<Spanned<String>>,
    start: Option<Spanned<String>>,
    shift: Option<Spanned<String>>,
    #[serde(default)]
    shifts: Vec<RawShift>,
    #[serde(default)]
    overrides: Vec<RawShift>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShift {
    user: Spanned<String>,
    from: Spanned<String>,
    to: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEscalation {
    repeat: Option<Spanned<u32>>,
    repeat_after: Option<Spanned<String>>,
    remind_every: Option<Spanned<String>>,
    #[serde(default)]
    steps: Vec<RawStep>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    delay: Option<Spanned<String>>,
    target: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlack {
    #[serde(default)]
    enabled: bool,
    mode: Option<Spanned<String>>,
    bot_token_env: Spanned<String>,
    app_token_env: Option<Spanned<String>>,
    signing_secret_env: Option<Spanned<String>>,
    user_token_env: Option<Spanned<String>>,
    events_listen: Option<Spanned<String>>,
    api_base_url: Option<Spanned<String>>,
    events_max_body_bytes: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDiscord {
    #[serde(default)]
    enabled: bool,
    token_env: Spanned<String>,
    #[serde(default)]
    application_id: u64,
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

/// The rooms the bot works in (platform room ids).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rooms {
    pub team: String,
    pub intake: Vec<String>,
    pub oncall: String,
}

/// What a chat user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Agent,
    Lead,
    Oncall,
    Admin,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Agent => "agent",
            Role::Lead => "lead",
            Role::Oncall => "oncall",
            Role::Admin => "admin",
        })
    }
}

/// Which users hold which role.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roles {
    pub agent: BTreeSet<String>,
    pub lead: BTreeSet<String>,
    pub oncall: BTreeSet<String>,
    pub admin: BTreeSet<String>,
}

impl Roles {
    /// Whether `user` holds `role`; admins hold every role.
    pub fn has(&self, user: &str, role: Role) -> bool {
        if self.admin.contains(user) {
            return true;
        }
        match role {
            Role::Agent => self.agent.contains(user),
            Role::Lead => self.lead.contains(user),
            Role::Oncall => self.oncall.contains(user),
            Role::Admin => false,
        }
    }

    /// Whether `user` holds any role at all (is part of the team).
    pub fn is_member(&self, user: &str) -> bool {
        [Role::Agent, Role::Lead, Role::Oncall]
            .into_iter()
            .any(|r| self.has(user, r))
    }
}

#[derive(Debug, Clone)]
pub struct SuggestConfig {
    pub playbooks_dir: PathBuf,
    /// Below this confidence the engine abstains.
    pub threshold: f32,
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

#[derive(Debug, Clone, Default)]
pub struct SlaConfig {
    pub calendars: BTreeMap<String, Calendar>,
    pub policies: BTreeMap<Priority, Policy>,
}

/// Business hours in one time zone.
#[derive(Debug, Clone)]
pub struct Calendar {
    pub timezone: TimeZone,
    /// Opening hours per weekday, Monday first; `None` is closed.
    pub hours: [Option<(Time, Time)>; 7],
    pub holidays: BTreeSet<Date>,
}

/// SLA targets for one priority.
#[derive(Debug, Clone)]
pub struct Policy {
    pub calendar: String,
    pub business_time: bool,
    pub first_response: Option<SignedDuration>,
    pub next_response: Option<SignedDuration>,
    pub resolution: Option<SignedDuration>,
    pub warnings: Vec<Warning>,
    /// The escalation policy (in [`OncallConfig::escalations`]) that pages
    /// people when a target is breached; `None` posts the alert unaddressed.
    pub escalation: Option<String>,
}

/// When to warn before a target is missed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Warning {
    /// At this fraction of the target (0.8 = 80%).
    Fraction(f64),
    /// This long before the due time.
    Before(SignedDuration),
}

/// On-call rotations and escalation policies (`[oncall]`).
#[derive(Debug, Clone, Default)]
pub struct OncallConfig {
    pub rotations: BTreeMap<String, Rotation>,
    pub escalations: BTreeMap<String, Escalation>,
}

/// Who is on call when: a schedule plus temporary overrides. The
/// computation lives in `sla::oncall`.
#[derive(Debug, Clone)]
pub struct Rotation {
    /// Zone the handoff times are written in; daily and weekly handoffs keep
    /// their local time across DST changes.
    pub timezone: TimeZone,
    pub schedule: Schedule,
    /// Someone else covers a span; a later override wins over an earlier one.
    pub overrides: Vec<Shift>,
}

/// The regular part of a rotation.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// Members take turns of equal length, the first one from `start`.
    Turns {
        members: Vec<String>,
        start: DateTime,
        length: ShiftLength,
    },
    /// An explicit list of shifts; gaps have nobody on call.
    Shifts(Vec<Shift>),
}

/// How long one turn lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShiftLength {
    /// Whole local days (`1d` daily, `1w` weekly): the handoff stays at the
    /// same wall-clock time when the zone changes its offset.
    Days(i32),
    /// An exact duration such as `12h`.
    Exact(SignedDuration),
}

/// One person on call from `from` until `to` (exclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shift {
    pub user: String,
    pub from: Timestamp,
    pub to: Timestamp,
}

/// Who is paged, in which order, when an SLA target is breached.
#[derive(Debug, Clone)]
pub struct Escalation {
    /// Never empty.
    pub steps: Vec<Step>,
    /// How many times the steps run in total (1 = once).
    pub repeat: u32,
    /// Wait after the last step before the steps start again.
    pub repeat_after: SignedDuration,
    /// Reminder interval while an acknowledged alert's case stays breached.
    pub remind_every: Option<SignedDuration>,
}

/// One escalation step: wait `delay` after the previous page (the first
/// step: after the breach), then page `target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub delay: SignedDuration,
    pub target: PageTarget,
}

/// Whom a step pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageTarget {
    /// One person, by chat user id.
    User(String),
    /// Whoever the rotation has on call at the time of the page.
    Rotation(String),
    /// Everyone in a room: the on-call room (`None`) or another one.
    Room(Option<String>),
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

#[derive(Debug, Clone)]
pub struct DiscordConfig {
    pub token: Secret,
    pub application_id: u64,
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
        let rooms = Rooms {
            team: raw.rooms.team.unwrap_or_else(|| "team".to_owned()),
            intake: if raw.rooms.intake.is_empty() {
                vec!["intake".to_owned()]
            } else {
                raw.rooms.intake
            },
            oncall: raw.rooms.oncall.unwrap_or_else(|| "oncall".to_owned()),
        };
        let roles = Roles {
            agent: raw.roles.agent.into_iter().collect(),
            lead: raw.roles.lead.into_iter().collect(),
            oncall: raw.roles.oncall.into_iter().collect(),
            admin: raw.roles.admin.into_iter().collect(),
        };
        let threshold = match raw.suggest.threshold {
            None => crate::playbook::DEFAULT_THRESHOLD,
            Some(t) if !(0.0..=1.0).contains(t.get_ref()) => {
                self.error(
                    Some(t.span()),
                    "suggest.threshold",
                    "must be between 0 and 1",
                );
                crate::playbook::DEFAULT_THRESHOLD
            }
            Some(t) => *t.get_ref() as f32,
        };
        let suggest = SuggestConfig {
            playbooks_dir: PathBuf::from(
                raw.suggest
                    .playbooks_dir
                    .unwrap_or_else(|| "playbooks".into()),
            ),
            threshold,
        };
        let http = self.http(raw.http);
        // Rotations are written in the team's zone unless they say otherwise.
        let team_tz = raw
            .sla
            .calendars
            .get("default")
            .and_then(|c| TimeZone::get(c.timezone.get_ref()).ok())
            .unwrap_or(TimeZone::UTC);
        let oncall = self.oncall(raw.oncall, &team_tz);
        let sla = self.sla(raw.sla, &oncall);
        let outbound = self.outbound(raw.outbound);
        let matrix = raw.matrix.filter(|m| m.enabled).map(|m| self.matrix(m));
        let slack = raw.slack.filter(|s| s.enabled).map(|s| self.slack(s));
        let discord = raw.discord.filter(|d| d.enabled).map(|d| DiscordConfig {
            token: self.secret(&d.token_env, "discord.token_env"),
            application_id: d.application_id,
        });
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

    fn http(&mut self, raw: RawHttp) -> HttpConfig {
        let listen = self.addr(raw.listen, "http.listen", "127.0.0.1:8080");
        let metrics_listen = self.addr(raw.metrics_listen, "http.metrics_listen", "127.0.0.1:9090");
        let max_body_bytes = match raw.max_body_bytes {
            None => 64 * 1024,
            Some(n) if *n.get_ref() < 1024 || *n.get_ref() > 16 * 1024 * 1024 => {
                self.error(
                    Some(n.span()),
                    "http.max_body_bytes",
                    "must be between 1024 and 16777216",
                );
                64 * 1024
            }
            Some(n) => *n.get_ref() as usize,
        };
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

    fn duration(&mut self, s: &Spanned<String>, key: &str) -> Option<SignedDuration> {
        match parse_duration(s.get_ref()) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(Some(s.span()), key, e);
                None
            }
        }
    }

    fn sla(&mut self, raw: RawSla, oncall: &OncallConfig) -> SlaConfig {
        let mut calendars = BTreeMap::new();
        for (name, cal) in raw.calendars {
            let key = format!("sla.calendars.{name}");
            let timezone = match TimeZone::get(cal.timezone.get_ref()) {
                Ok(tz) => tz,
                Err(_) => {
                    self.error(
                        Some(cal.timezone.span()),
                        &format!("{key}.timezone"),
                        format!(
                            "unknown IANA time zone `{}` (e.g. Asia/Shanghai)",
                            cal.timezone.get_ref()
                        ),
                    );
                    TimeZone::UTC
                }
            };
            let mut hours = [None; 7];
            for (day, range) in &cal.hours {
                let hkey = format!("{key}.hours.{}", day.get_ref());
                let Some(wd) = parse_weekday(day.get_ref()) else {
                    self.error(
                        Some(day.span()),
                        &hkey,
                        "unknown weekday (use mon, tue, wed, thu, fri, sat, sun)",
                    );
                    continue;
                };
                match parse_hours(range.get_ref()) {
                    Ok(h) => hours[wd.to_monday_zero_offset() as usize] = Some(h),
                    Err(e) => self.error(Some(range.span()), &hkey, e),
                }
            }
            let mut holidays = BTreeSet::new();
            for h in &cal.holidays {
                match h.get_ref().parse::<Date>() {
                    Ok(d) => {
                        holidays.insert(d);
                    }
                    Err(_) => self.error(
                        Some(h.span()),
                        &format!("{key}.holidays"),
                        format!("`{}` is not a date like 2026-10-01", h.get_ref()),
                    ),
                }
            }
            calendars.insert(
                name,
                Calendar {
                    timezone,
                    hours,
                    holidays,
                },
            );
        }
        let mut policies = BTreeMap::new();
        for (prio, p) in raw.policies {
            let key = format!("sla.policies.{}", prio.get_ref());
            let Ok(priority) = prio.get_ref().parse::<Priority>() else {
                self.error(
                    Some(prio.span()),
                    &key,
                    "policies are named after priorities: p1, p2, p3, p4",
                );
                continue;
            };
            let calendar = match &p.calendar {
                None => "default".to_owned(),
                Some(c) => c.get_ref().clone(),
            };
            if p.business_time && !calendars.contains_key(&calendar) {
                let span = p.calendar.as_ref().map(|c| c.span());
                self.error(
                    span,
                    &format!("{key}.calendar"),
                    format!("no calendar named `{calendar}` in [sla.calendars]"),
                );
            }
            if p.business_time
                && calendars
                    .get(&calendar)
                    .is_some_and(|c: &Calendar| c.hours.iter().all(Option::is_none))
            {
                let span = p.calendar.as_ref().map(|c| c.span());
                self.error(
                    span,
                    &format!("{key}.calendar"),
                    format!(
                        "calendar `{calendar}` has no opening hours, so business time never passes"
                    ),
                );
            }
            // Without an explicit name, a policy uses the escalation named
            // `default` when there is one.
            let escalation = match &p.escalation {
                Some(e) if !oncall.escalations.contains_key(e.get_ref()) => {
                    self.error(
                        Some(e.span()),
                        &format!("{key}.escalation"),
                        format!(
                            "no escalation policy named `{}` in [oncall.escalations]",
                            e.get_ref()
                        ),
                    );
                    None
                }
                Some(e) => Some(e.get_ref().clone()),
                None => oncall
                    .escalations
                    .contains_key("default")
                    .then(|| "default".to_owned()),
            };
            let first_response = p
                .first_response
                .as_ref()
                .and_then(|d| self.duration(d, &format!("{key}.first_response")));
            let next_response = p
                .next_response
                .as_ref()
                .and_then(|d| self.duration(d, &format!("{key}.next_response")));
            let resolution = p
                .resolution
                .as_ref()
                .and_then(|d| self.duration(d, &format!("{key}.resolution")));
            let mut warnings = Vec::new();
            for w in &p.warnings {
                match parse_warning(w.get_ref()) {
                    Ok(w) => warnings.push(w),
                    Err(e) => self.error(Some(w.span()), &format!("{key}.warnings"), e),
                }
            }
            policies.insert(
                priority,
                Policy {
                    calendar,
                    business_time: p.business_time,
                    first_response,
                    next_response,
                    resolution,
                    warnings,
                    escalation,
                },
            );
        }
        SlaConfig {
            calendars,
            policies,
        }
    }

    fn oncall(&mut self, raw: RawOncall, team_tz: &TimeZone) -> OncallConfig {
        let mut rotations = BTreeMap::new();
        for (name, r) in raw.rotations {
            let key = format!("oncall.rotations.{name}");
            let timezone = match &r.timezone {
                Some(tz) => self.timezone(tz, &format!("{key}.timezone")),
                None => team_tz.clone(),
            };
            // Problems with the rotation as a whole point at its first line.
            let span = r
                .timezone
                .as_ref()
                .or(r.start.as_ref())
                .or(r.shift.as_ref())
                .map(|t| t.span());
            let overrides = self.shifts(&r.overrides, &timezone, &format!("{key}.overrides"));
            let schedule = if !r.shifts.is_empty() {
                if !r.members.is_empty() || r.start.is_some() || r.shift.is_some() {
                    self.error(
                        Some(r.shifts[0].user.span()),
                        &format!("{key}.shifts"),
                        "give either `shifts` or `members` with `start` and `shift`, not both",
                    );
                }
                Schedule::Shifts(self.shifts(&r.shifts, &timezone, &format!("{key}.shifts")))
            } else {
                let members: Vec<String> = r.members.iter().map(|m| m.get_ref().clone()).collect();
                if members.is_empty() {
                    self.error(
                        span.clone(),
                        &format!("{key}.members"),
                        "a rotation needs `members` (chat user ids taking turns) or a list of `shifts`",
                    );
                }
                let start = match &r.start {
                    Some(s) => s.get_ref().parse::<DateTime>().unwrap_or_else(|_| {
                        self.error(
                            Some(s.span()),
                            &format!("{key}.start"),
                            format!(
                                "`{}` is not a local date and time like 2026-01-05T09:00",
                                s.get_ref()
                            ),
                        );
                        DateTime::default()
                    }),
                    None => {
                        self.error(
                            span.clone(),
                            &format!("{key}.start"),
                            "missing: when the first member's first turn starts, e.g. \"2026-01-05T09:00\"",
                        );
                        DateTime::default()
                    }
                };
                let length = match &r.shift {
                    Some(s) => match self.duration(s, &format!("{key}.shift")) {
                        Some(d) if d.as_secs() % 86400 == 0 && d.subsec_nanos() == 0 => {
                            ShiftLength::Days((d.as_secs() / 86400) as i32)
                        }
                        Some(d) => ShiftLength::Exact(d),
                        None => ShiftLength::Days(7),
                    },
                    None => {
                        self.error(
                            span.clone(),
                            &format!("{key}.shift"),
                            "missing: how long one turn lasts, e.g. \"1d\" or \"1w\"",
                        );
                        ShiftLength::Days(7)
                    }
                };
                Schedule::Turns {
                    members,
                    start,
                    length,
                }
            };
            rotations.insert(
                name,
                Rotation {
                    timezone,
                    schedule,
                    overrides,
                },
            );
        }
        let mut escalations = BTreeMap::new();
        for (name, e) in raw.escalations {
            let key = format!("oncall.escalations.{name}");
            if e.steps.is_empty() {
                self.error(
                    None,
                    &format!("{key}.steps"),
                    "an escalation policy needs at least one step",
                );
                continue;
            }
            let mut steps = Vec::new();
            for s in &e.steps {
                let delay = match &s.delay {
                    None => SignedDuration::ZERO,
                    Some(d) if is_zero_duration(d.get_ref()) => SignedDuration::ZERO,
                    Some(d) => self
                        .duration(d, &format!("{key}.steps.delay"))
                        .unwrap_or(SignedDuration::ZERO),
                };
                let target = match parse_page_target(s.target.get_ref()) {
                    Ok(PageTarget::Rotation(r)) if !rotations.contains_key(&r) => {
                        self.error(
                            Some(s.target.span()),
                            &format!("{key}.steps.target"),
                            format!("no rotation named `{r}` in [oncall.rotations]"),
                        );
                        continue;
                    }
                    Ok(t) => t,
                    Err(msg) => {
                        self.error(Some(s.target.span()), &format!("{key}.steps.target"), msg);
                        continue;
                    }
                };
                steps.push(Step { delay, target });
            }
            let repeat = match &e.repeat {
                None => 1,
                Some(n) if *n.get_ref() == 0 || *n.get_ref() > 100 => {
                    self.error(
                        Some(n.span()),
                        &format!("{key}.repeat"),
                        "must be between 1 and 100",
                    );
                    1
                }
                Some(n) => *n.get_ref(),
            };
            let repeat_after = e
                .repeat_after
                .as_ref()
                .and_then(|d| self.duration(d, &format!("{key}.repeat_after")))
                .unwrap_or(SignedDuration::from_mins(15));
            let remind_every = match &e.remind_every {
                Some(d) if is_zero_duration(d.get_ref()) => None,
                Some(d) => self.duration(d, &format!("{key}.remind_every")),
                None => None,
            };
            if steps.is_empty() {
                continue;
            }
            escalations.insert(
                name,
                Escalation {
                    steps,
                    repeat,
                    repeat_after,
                    remind_every,
                },
            );
        }
        OncallConfig {
            rotations,
            escalations,
        }
    }

    fn timezone(&mut self, s: &Spanned<String>, key: &str) -> TimeZone {
        TimeZone::get(s.get_ref()).unwrap_or_else(|_| {
            self.error(
                Some(s.span()),
                key,
                format!(
                    "unknown IANA time zone `{}` (e.g. Asia/Shanghai)",
                    s.get_ref()
                ),
            );
            TimeZone::UTC
        })
    }

    /// Shifts written in local time; `to` must come after `from`.
    fn shifts(&mut self, raw: &[RawShift], tz: &TimeZone, key: &str) -> Vec<Shift> {
        let mut out = Vec::new();
        for s in raw {
            let at = |v: &Spanned<String>, this: &mut Self| -> Option<Timestamp> {
                match v
                    .get_ref()
                    .parse::<DateTime>()
                    .ok()
                    .and_then(|dt| tz.to_timestamp(dt).ok())
                {
                    Some(t) => Some(t),
                    None => {
                        this.error(
                            Some(v.span()),
                            key,
                            format!(
                                "`{}` is not a local date and time like 2026-03-02T09:00",
                                v.get_ref()
                            ),
                        );
                        None
                    }
                }
            };
            let (Some(from), Some(to)) = (at(&s.from, self), at(&s.to, self)) else {
                continue;
            };
            if to <= from {
                self.error(Some(s.to.span()), key, "a shift must end after it starts");
                continue;
            }
            out.push(Shift {
                user: s.user.get_ref().clone(),
                from,
                to,
            });
        }
        out
    }

    fn slack(&mut self, s: RawSlack) -> SlackConfig {
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
        let events_max_body_bytes = match s.events_max_body_bytes {
            None => 256 * 1024,
            Some(n) if *n.get_ref() < 1024 || *n.get_ref() > 16 * 1024 * 1024 => {
                self.error(
                    Some(n.span()),
                    "slack.events_max_body_bytes",
                    "must be between 1024 and 16777216",
                );
                256 * 1024
            }
            Some(n) => *n.get_ref() as usize,
        };
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

/// `0`, `0s`, `0m`: an explicit "no wait", which [`parse_duration`] refuses.
fn is_zero_duration(s: &str) -> bool {
    let t = s.trim().trim_end_matches(|c: char| c.is_ascii_alphabetic());
    !t.is_empty() && t.chars().all(|c| c == '0')
}

/// `rotation:<name>`, `user:<chat user id>`, `room` (the on-call room) or
/// `room:<room id>`.
fn parse_page_target(s: &str) -> Result<PageTarget, String> {
    let t = s.trim();
    let bad = || {
        format!(
            "`{s}` is not a page target (write \"rotation:<name>\", \"user:<user id>\", \"room\" or \"room:<room id>\")"
        )
    };
    if t == "room" {
        return Ok(PageTarget::Room(None));
    }
    let (kind, rest) = t.split_once(':').ok_or_else(bad)?;
    let rest = rest.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    match kind {
        "rotation" => Ok(PageTarget::Rotation(rest.to_owned())),
        "user" => Ok(PageTarget::User(rest.to_owned())),
        "room" => Ok(PageTarget::Room(Some(rest.to_owned()))),
        _ => Err(bad()),
    }
}

fn parse_warning(s: &str) -> Result<Warning, String> {
    if let Some(pct) = s.trim().strip_suffix('%') {
        let f: f64 = pct
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not a percentage like \"80%\""))?;
        if !(0.0 < f && f < 100.0) {
            return Err(format!(
                "`{s}`: a warning percentage must be between 0% and 100%"
            ));
        }
        return Ok(Warning::Fraction(f / 100.0));
    }
    parse_duration(s)
        .map(Warning::Before)
        .map_err(|_| format!("`{s}` is neither a percentage (\"80%\") nor a lead time (\"15m\")"))
}

fn parse_weekday(s: &str) -> Option<Weekday> {
    Some(match s.to_ascii_lowercase().as_str() {
        "mon" | "monday" => Weekday::Monday,
        "tue" | "tuesday" => Weekday::Tuesday,
        "wed" | "wednesday" => Weekday::Wednesday,
        "thu" | "thursday" => Weekday::Thursday,
        "fri" | "friday" => Weekday::Friday,
        "sat" | "saturday" => Weekday::Saturday,
        "sun" | "sunday" => Weekday::Sunday,
        _ => return None,
    })
}

fn parse_hours(s: &str) -> Result<(Time, Time), String> {
    let bad = || format!("`{s}` is not an opening-hours range like \"09:00-18:00\"");
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let open: Time = a.trim().parse().map_err(|_| bad())?;
    let close: Time = if b.trim() == "24:00" {
        Time::MAX
    } else {
        b.trim().parse().map_err(|_| bad())?
    };
    if close <= open {
        return Err(format!("`{s}`: closing time must be after opening time"));
    }
    Ok((open, close))
}

/// 1-based line number of a byte offset.
fn line_of(src: &str, offset: usize) -> usize {
    src[..offset.min(src.len())].matches('\n').count() + 1
}

/// The dotted key path at a byte offset: the nearest `[table]` header above
/// it plus the key on its own line.
fn key_at(src: &str, span: Range<usize>) -> String {
    let start = span.start.min(src.len());
    let line_start = src[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = src[start..].find('\n').map_or(src.len(), |i| start + i);
    let line = &src[line_start..line_end];
    let key = if line.trim_start().starts_with('[') {
        String::new()
    } else {
        line.split('=')
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches('"')
            .to_owned()
    };
    // The key the error is about may be the one under the span itself (an
    // unknown key) rather than the first one on the line (inline tables).
    let at_span = src[start..span.end.min(src.len()).max(start)]
        .trim()
        .trim_matches('"')
        .to_owned();
    let table = src[..line_start]
        .lines()
        .rev()
        .chain(std::iter::once(line))
        .find_map(|l| {
            let t = l.trim();
            (t.starts_with('[') && !t.contains('='))
                .then(|| t.trim_matches(|c| c == '[' || c == ']').to_owned())
        });
    let table = if line.trim_start().starts_with('[') {
        Some(
            line.trim()
                .trim_matches(|c| c == '[' || c == ']')
                .to_owned(),
        )
    } else {
        table
    };
    let mut parts: Vec<String> = table.into_iter().filter(|t| !t.is_empty()).collect();
    if !key.is_empty() {
        parts.push(key.clone());
    }
    if !at_span.is_empty()
        && at_span != key
        && !at_span.contains(['=', '\n', '{', '[', ' ', ','])
        && line.contains(&format!("{at_span} ="))
    {
        parts.push(at_span);
    }
    parts.join(".")
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

    #[test]
    fn warnings() {
        assert_eq!(parse_warning("80%").unwrap(), Warning::Fraction(0.8));
        assert_eq!(
            parse_warning("15m").unwrap(),
            Warning::Before(SignedDuration::from_mins(15))
        );
        assert!(parse_warning("180%").is_err());
    }

    #[test]
    fn page_targets_and_zero_delays() {
        assert_eq!(
            parse_page_target("rotation:primary").unwrap(),
            PageTarget::Rotation("primary".into())
        );
        assert_eq!(
            parse_page_target("user:@carol:example.org").unwrap(),
            PageTarget::User("@carol:example.org".into())
        );
        assert_eq!(parse_page_target("room").unwrap(), PageTarget::Room(None));
        assert_eq!(
            parse_page_target("room:!leads:x").unwrap(),
            PageTarget::Room(Some("!leads:x".into()))
        );
        for bad in ["", "carol", "team:x", "rotation:"] {
            assert!(parse_page_target(bad).is_err(), "{bad}");
        }
        assert!(is_zero_duration("0s") && is_zero_duration("0") && is_zero_duration("00m"));
        assert!(!is_zero_duration("10s") && !is_zero_duration("s"));
    }

    #[test]
    fn secret_debug_is_redacted() {
        let s = Secret::new("X_TOKEN", "hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }
}
