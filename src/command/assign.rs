//! `!assign @user`: give the case to a teammate.

use super::{CmdError, parse_user};
use crate::bot::Ctx;
use crate::case::EventKind;
use crate::config::Role;

#[derive(Debug, Clone, PartialEq)]
pub struct Assign {
    pub user: String,
}

impl Assign {
    pub fn parse(args: &str) -> Result<Self, String> {
        if args.is_empty() {
            return Err(String::new());
        }
        parse_user(args).map(|user| Assign { user })
    }

    pub(crate) fn apply(self, ctx: &mut Ctx) -> Result<(), CmdError> {
        ctx.require(Role::Agent, "assign")?;
        ctx.case("assign")?;
        assign_to(ctx, "assign", &self.user)
    }
}

/// Assigns the context's case to `user`, who must be on the team.
pub(super) fn assign_to(ctx: &mut Ctx, command: &str, user: &str) -> Result<(), CmdError> {
    if !ctx.shared().config.roles.has(user, Role::Agent) {
        return Err(CmdError::Refused(format!(
            "{user} is not an agent, so cases cannot be assigned to them (see [roles] agent in the config)."
        )));
    }
    let by = ctx.sender().to_owned();
    let user = user.to_owned();
    ctx.change(
        command,
        vec![(
            EventKind::Assigned {
                assignee: user.clone(),
            },
            Some(format!("assigned by {by}")),
        )],
        |c| format!("👉 **{}** is now with {user} ({}).", c.id, c.status),
    )?;
    Ok(())
}
