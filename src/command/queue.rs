//! `!queue`: open cases by status and priority, cases at SLA risk, age,
//! oldest unassigned, per-agent load.

use super::{CmdError, no_args};
use crate::bot::Ctx;
use crate::config::Role;
use crate::store::CaseFilter;

#[derive(Debug, Clone, PartialEq)]
pub struct Queue;

impl Queue {
    pub fn parse(args: &str) -> Result<Self, String> {
        no_args(args).map(|_| Queue)
    }

    pub(crate) fn apply(self, ctx: &mut Ctx) -> Result<(), CmdError> {
        ctx.require(Role::Lead, "queue")?;
        let open = ctx.shared().store.cases(&CaseFilter {
            open_only: true,
            ..Default::default()
        })?;
        let risk = ctx.bot.sla().risks();
        ctx.reply(crate::view::queue_with_sla(&open, ctx.bot.now(), &risk))?;
        Ok(())
    }
}
