//! `!wait`: waiting on the customer (pauses SLA clocks).

use super::{CmdError, no_args};
use crate::bot::Ctx;
use crate::case::EventKind;
use crate::config::Role;

#[derive(Debug, Clone, PartialEq)]
pub struct Wait;

impl Wait {
    pub fn parse(args: &str) -> Result<Self, String> {
        no_args(args).map(|_| Wait)
    }

    pub(crate) fn apply(self, ctx: &mut Ctx) -> Result<(), CmdError> {
        ctx.require(Role::Agent, "wait")?;
        ctx.change("wait", vec![(EventKind::WaitingOnCustomer, None)], |c| {
            format!(
                "⏸️ **{}** is waiting on the customer. `!resume` when they answer.",
                c.id
            )
        })?;
        Ok(())
    }
}
