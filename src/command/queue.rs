//! `!queue`: open cases by status and priority, age, oldest unassigned,
//! per-agent load.

use jiff::Timestamp;

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
        ctx.reply(crate::view::queue(&open, Timestamp::now()))?;
        Ok(())
    }
}
