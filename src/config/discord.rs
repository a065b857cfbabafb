//! `[discord]`: the Discord adapter's bot token, application and guild.
//! Raw form, validation, types.
//!
//! Rooms are channel ids and roles are user ids, or `role:<id>` for a
//! Discord server role: its members hold the caseroom role (the adapter
//! passes the sender's roles in `Incoming::groups`), and pages mention it.

use serde::Deserialize;
use toml::Spanned;

use super::{Secret, Validator};

/// Where Discord's REST API lives; tests point `api_base_url` at a fake.
pub const DISCORD_API: &str = "https://discord.com";

/// A snowflake as written: Discord shows ids as strings, TOML users often
/// write them as integers.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum RawId {
    Int(i64),
    Text(String),
}

/// What the user wrote under `[discord]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDiscord {
    #[serde(default)]
    pub(super) enabled: bool,
    token_env: Spanned<String>,
    application_id: Option<Spanned<RawId>>,
    guild_id: Option<Spanned<RawId>>,
    api_base_url: Option<Spanned<String>>,
}

/// The validated `[discord]` section.
#[derive(Debug, Clone)]
pub struct DiscordConfig {
    /// The bot token (without the `Bot ` prefix).
    pub token: Secret,
    /// The application id: commands are registered under it and
    /// interaction follow-ups are sent to its webhook.
    pub application_id: u64,
    /// The server (guild) the bot serves; commands are registered there
    /// (guild commands apply at once, global ones take up to an hour).
    pub guild_id: u64,
    /// REST base URL without a trailing slash (`https://discord.com`).
    pub api_base_url: String,
}

impl Validator<'_> {
    pub(super) fn discord(&mut self, raw: RawDiscord) -> DiscordConfig {
        let token = self.secret(&raw.token_env, "discord.token_env");
        let application_id = self.snowflake(raw.application_id, "discord.application_id");
        let guild_id = self.snowflake(raw.guild_id, "discord.guild_id");
        let api_base_url = match raw.api_base_url {
            None => DISCORD_API.to_owned(),
            Some(u) => {
                let url = u.get_ref().trim_end_matches('/').to_owned();
                if !url.starts_with("https://") && !url.starts_with("http://") {
                    self.error(
                        Some(u.span()),
                        "discord.api_base_url",
                        "must be a URL starting with https:// (http:// only for a local fake)",
                    );
                }
                url
            }
        };
        DiscordConfig {
            token,
            application_id,
            guild_id,
            api_base_url,
        }
    }

    /// A required, non-zero snowflake.
    fn snowflake(&mut self, raw: Option<Spanned<RawId>>, key: &str) -> u64 {
        let Some(raw) = raw else {
            self.error(
                None,
                key,
                "is required (Developer Mode → right-click → Copy ID)",
            );
            return 0;
        };
        let parsed = match raw.get_ref() {
            RawId::Int(n) => u64::try_from(*n).ok(),
            RawId::Text(s) => s.trim().parse::<u64>().ok(),
        };
        match parsed {
            Some(n) if n > 0 => n,
            _ => {
                self.error(
                    Some(raw.span()),
                    key,
                    "must be a Discord id: a positive number such as \"123456789012345678\"",
                );
                0
            }
        }
    }
}
