//! `!stats`: counts, first-response and resolution times, suggestion
//! acceptance, SLA met % per target and priority.

use super::{CmdError, no_args};
use crate::bot::Ctx;
use crate::config::Role;

#[derive(Debug, Clone, PartialEq)]
pub struct Stats;

impl Stats {
    pub fn parse(args: &str) -> Result<Self, String> {
        no_args(args).map(|_| Stats)
    }

    pub(crate) fn apply(self, ctx: &mut Ctx) -> Result<(), CmdError> {
        ctx.require(Role::Lead, "stats")?;
        // Running totals kept with every write: no case is read.
        let store = &ctx.shared().store;
        let tally = store.tally();
        let met = crate::sla::engine::met_table(&tally);
        let mut text = crate::view::stats_with_sla(&tally, &met);
        if let Some((done, of)) = store.sla_backfill() {
            text.push_str(&format!(
                "\n(SLA met % still counting cases from before the upgrade: {done} of {of})"
            ));
        }
        ctx.reply(text)?;
        Ok(())
    }
}
