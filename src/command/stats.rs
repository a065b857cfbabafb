//! `!stats`: counts, first-response and resolution times, suggestion
//! acceptance, SLA met % per target and priority.

use super::{CmdError, no_args};
use crate::bot::Ctx;
use crate::config::Role;
use crate::store::CaseFilter;

#[derive(Debug, Clone, PartialEq)]
pub struct Stats;

impl Stats {
    pub fn parse(args: &str) -> Result<Self, String> {
        no_args(args).map(|_| Stats)
    }

    pub(crate) fn apply(self, ctx: &mut Ctx) -> Result<(), CmdError> {
        ctx.require(Role::Lead, "stats")?;
        let all = ctx.shared().store.cases(&CaseFilter::default())?;
        let met = ctx.bot.sla().met(&all)?;
        ctx.reply(crate::view::stats_with_sla(&all, &met))?;
        Ok(())
    }
}
