//! `!priority p1..p4`: change the priority.

use super::CmdError;
use crate::bot::Ctx;
use crate::case::{EventKind, Priority};
use crate::config::Role;

#[derive(Debug, Clone, PartialEq)]
pub struct SetPriority {
    pub priority: Priority,
}

impl SetPriority {
    pub fn parse(args: &str) -> Result<Self, String> {
        args.parse().map(|priority| SetPriority { priority })
    }

    pub(crate) fn apply(self, ctx: &mut Ctx) -> Result<(), CmdError> {
        ctx.require(Role::Agent, "priority")?;
        let p = self.priority;
        ctx.change(
            "priority",
            vec![(EventKind::PriorityChanged { priority: p }, None)],
            |c| format!("**{}** is now {p}.", c.id),
        )?;
        Ok(())
    }
}
