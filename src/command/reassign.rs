//! `!reassign <id> @user`: a lead gives any case to a teammate.

use super::{CmdError, parse_user};
use crate::bot::Ctx;
use crate::case::CaseId;
use crate::config::Role;

#[derive(Debug, Clone, PartialEq)]
pub struct Reassign {
    pub case: CaseId,
    pub user: String,
}

impl Reassign {
    pub fn parse(args: &str) -> Result<Self, String> {
        let Some((id, user)) = args.split_once(char::is_whitespace) else {
            return Err(String::new());
        };
        Ok(Reassign {
            case: id.parse()?,
            user: parse_user(user)?,
        })
    }

    pub(crate) fn apply(self, ctx: &mut Ctx) -> Result<(), CmdError> {
        ctx.require(Role::Lead, "reassign")?;
        let Some(case) = ctx.shared().store.case(self.case)? else {
            return Err(CmdError::Usage(format!("No case {}.", self.case)));
        };
        ctx.case = Some(case);
        super::assign::assign_to(ctx, "reassign", &self.user)
    }
}
