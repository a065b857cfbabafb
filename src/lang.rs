//! Languages the team answers customers in.
//!
//! The product supports Chinese and English: a customer's language picks the
//! reply template, the checklist and the wording of the bot's own messages.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A language the playbooks are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    /// Simplified Chinese.
    #[default]
    Zh,
    /// English.
    En,
}

impl Lang {
    /// Every supported language, in the order playbooks list them.
    pub const ALL: [Lang; 2] = [Lang::Zh, Lang::En];

    /// The short code used in config, playbooks and JSON (`zh`, `en`).
    pub fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh",
            Lang::En => "en",
        }
    }
}

impl fmt::Display for Lang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Lang {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "zh" | "zh-cn" | "zh-hans" | "cn" | "chinese" => Ok(Lang::Zh),
            "en" | "en-us" | "en-gb" | "english" => Ok(Lang::En),
            other => Err(format!(
                "unknown language `{other}` (expected `zh` or `en`)"
            )),
        }
    }
}
