//! `!oncall`: who is on call now and next in each rotation, and the open
//! alerts (leads and on-call staff).

use super::{CmdError, no_args};
use crate::bot::Ctx;
use crate::config::Role;

#[derive(Debug, Clone, PartialEq)]
pub struct Oncall;

impl Oncall {
    pub fn parse(args: &str) -> Result<Self, String> {
        no_args(args).map(|_| Oncall)
    }

    pub(crate) fn apply(self, ctx: &mut Ctx) -> Result<(), CmdError> {
        // On-call staff need this as much as leads do.
        if ctx.require(Role::Oncall, "oncall").is_err() {
            ctx.require(Role::Lead, "oncall")?;
        }
        let text = ctx.bot.sla().oncall_report();
        ctx.reply(text)?;
        Ok(())
    }
}
