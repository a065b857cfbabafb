//! `[rooms]` and `[roles]`: where the bot works and who may do what. Raw
//! form, validation, types.

use std::collections::BTreeSet;
use std::fmt;

use serde::Deserialize;

use super::Validator;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRooms {
    team: Option<String>,
    #[serde(default)]
    intake: Vec<String>,
    oncall: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoles {
    #[serde(default)]
    agent: Vec<String>,
    #[serde(default)]
    lead: Vec<String>,
    #[serde(default)]
    oncall: Vec<String>,
    #[serde(default)]
    admin: Vec<String>,
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

    /// Whether `user`, or one of the platform `groups` they belong to (a
    /// Discord `role:<id>`), holds `role`.
    pub fn has_in(&self, user: &str, groups: &[String], role: Role) -> bool {
        self.has(user, role) || groups.iter().any(|g| self.has(g, role))
    }

    /// Whether `user` holds any role at all (is part of the team).
    pub fn is_member(&self, user: &str) -> bool {
        self.is_member_in(user, &[])
    }

    /// Like [`Roles::is_member`], counting the user's platform groups.
    pub fn is_member_in(&self, user: &str, groups: &[String]) -> bool {
        [Role::Agent, Role::Lead, Role::Oncall]
            .into_iter()
            .any(|r| self.has_in(user, groups, r))
    }
}

impl Validator<'_> {
    pub(super) fn rooms(&mut self, raw: RawRooms) -> Rooms {
        Rooms {
            team: raw.team.unwrap_or_else(|| "team".to_owned()),
            intake: if raw.intake.is_empty() {
                vec!["intake".to_owned()]
            } else {
                raw.intake
            },
            oncall: raw.oncall.unwrap_or_else(|| "oncall".to_owned()),
        }
    }

    pub(super) fn roles(&mut self, raw: RawRoles) -> Roles {
        Roles {
            agent: raw.agent.into_iter().collect(),
            lead: raw.lead.into_iter().collect(),
            oncall: raw.oncall.into_iter().collect(),
            admin: raw.admin.into_iter().collect(),
        }
    }
}
