//! `!claim`: take the case.

use super::{CmdError, no_args};
use crate::bot::Ctx;
use crate::case::EventKind;
use crate::config::Role;

#[derive(Debug, Clone, PartialEq)]
pub struct Claim;

impl Claim {
    pub fn parse(args: &str) -> Result<Self, String> {
        no_args(args).map(|_| Claim)
    }

    pub(crate) fn apply(self, ctx: &mut Ctx) -> Result<(), CmdError> {
        ctx.require(Role::Agent, "claim")?;
        let case = ctx.case("claim")?;
        if case.assignee.as_deref() == Some(ctx.sender())
            && case.status == crate::case::Status::Assigned
        {
            return Err(CmdError::Usage(format!("{} is already yours.", case.id)));
        }
        let me = ctx.sender().to_owned();
        ctx.change(
            "claim",
            vec![(
                EventKind::Assigned {
                    assignee: me.clone(),
                },
                Some("claimed".into()),
            )],
            |c| format!("✋ {me} claimed **{}** ({}).", c.id, c.status),
        )?;
        Ok(())
    }
}
