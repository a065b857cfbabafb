//! `!queue`: open cases by status and priority, cases at SLA risk, age,
//! oldest unassigned, per-agent load.

use super::{CmdError, no_args};
use crate::bot::Ctx;
use crate::config::Role;

#[derive(Debug, Clone, PartialEq)]
pub struct Queue;

impl Queue {
    pub fn parse(args: &str) -> Result<Self, String> {
        no_args(args).map(|_| Queue)
    }

    pub(crate) fn apply(self, ctx: &mut Ctx) -> Result<(), CmdError> {
        ctx.require(Role::Lead, "queue")?;
        // From the open-case index: no case is read but the few listed.
        let store = &ctx.shared().store;
        let open = store.open_cases();
        let risk = ctx.bot.sla().risks();
        let excerpt = |id| {
            store
                .case(id)
                .ok()
                .flatten()
                .map(|c| c.body)
                .unwrap_or_default()
        };
        let text = crate::view::queue_with_sla(&open, ctx.bot.now(), &risk, excerpt);
        ctx.reply(text)?;
        Ok(())
    }
}
