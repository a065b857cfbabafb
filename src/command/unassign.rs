//! `!unassign`: put the case back in the queue.

use super::{CmdError, no_args};
use crate::bot::Ctx;
use crate::case::EventKind;
use crate::config::Role;

#[derive(Debug, Clone, PartialEq)]
pub struct Unassign;

impl Unassign {
    pub fn parse(args: &str) -> Result<Self, String> {
        no_args(args).map(|_| Unassign)
    }

    pub(crate) fn apply(self, ctx: &mut Ctx) -> Result<(), CmdError> {
        ctx.require(Role::Agent, "unassign")?;
        ctx.change("unassign", vec![(EventKind::Unassigned, None)], |c| {
            format!("↩️ **{}** is back in the queue ({}).", c.id, c.status)
        })?;
        Ok(())
    }
}
