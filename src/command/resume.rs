//! `!resume`: the customer answered; back to work.

use super::{CmdError, no_args};
use crate::bot::Ctx;
use crate::case::EventKind;
use crate::config::Role;

#[derive(Debug, Clone, PartialEq)]
pub struct Resume;

impl Resume {
    pub fn parse(args: &str) -> Result<Self, String> {
        no_args(args).map(|_| Resume)
    }

    pub(crate) fn apply(self, ctx: &mut Ctx) -> Result<(), CmdError> {
        ctx.require(Role::Agent, "resume")?;
        ctx.change("resume", vec![(EventKind::Resumed, None)], |c| {
            format!(
                "▶️ **{}** is back with {}.",
                c.id,
                c.assignee.as_deref().unwrap_or("the team")
            )
        })?;
        Ok(())
    }
}
