//! `!reopen`: reopen a resolved case.

use super::{CmdError, no_args};
use crate::bot::Ctx;
use crate::case::EventKind;
use crate::config::Role;

#[derive(Debug, Clone, PartialEq)]
pub struct Reopen;

impl Reopen {
    pub fn parse(args: &str) -> Result<Self, String> {
        no_args(args).map(|_| Reopen)
    }

    pub(crate) fn apply(self, ctx: &mut Ctx) -> Result<(), CmdError> {
        ctx.require(Role::Agent, "reopen")?;
        ctx.change("reopen", vec![(EventKind::Reopened, None)], |c| {
            format!("🔁 **{}** reopened. `!claim` it to work on it.", c.id)
        })?;
        Ok(())
    }
}
