//! `!case <id>`: a case's summary and recent history.

use super::CmdError;
use crate::bot::Ctx;
use crate::case::CaseId;
use crate::config::Role;

#[derive(Debug, Clone, PartialEq)]
pub struct CaseShow {
    pub id: CaseId,
}

impl CaseShow {
    pub fn parse(args: &str) -> Result<Self, String> {
        if args.is_empty() {
            return Err(String::new());
        }
        args.parse().map(|id| CaseShow { id })
    }

    pub(crate) fn apply(self, ctx: &mut Ctx) -> Result<(), CmdError> {
        ctx.require(Role::Lead, "case")?;
        let store = &ctx.shared().store;
        let Some(case) = store.case(self.id)? else {
            return Err(CmdError::Usage(format!("No case {}.", self.id)));
        };
        let events = store.events(self.id)?;
        ctx.reply(crate::view::case_summary(&case, &events))?;
        Ok(())
    }
}
