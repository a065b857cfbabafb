//! `!case [id]`: a case's summary and recent history. Leads ask for any
//! case; in a case's thread, `!case` alone shows that case to its team.

use super::CmdError;
use crate::bot::Ctx;
use crate::case::CaseId;
use crate::config::Role;

#[derive(Debug, Clone, PartialEq)]
pub struct CaseShow {
    /// `None`: the case whose thread the command was sent in.
    pub id: Option<CaseId>,
}

impl CaseShow {
    pub fn parse(args: &str) -> Result<Self, String> {
        if args.is_empty() {
            return Ok(CaseShow { id: None });
        }
        args.parse().map(|id| CaseShow { id: Some(id) })
    }

    pub(crate) fn apply(self, ctx: &mut Ctx) -> Result<(), CmdError> {
        let here = ctx.case.as_ref().map(|c| c.id);
        let id = match (self.id, here) {
            (Some(id), _) => id,
            (None, Some(id)) => id,
            (None, None) => {
                return Err(CmdError::Usage(
                    "Which case? `case C-12`, or `case` alone in a case's thread.".into(),
                ));
            }
        };
        // A case's own thread is its team's place: agents may look there.
        if !(here == Some(id) && ctx.holds(Role::Agent)) {
            ctx.require(Role::Lead, "case")?;
        }
        let store = &ctx.shared().store;
        let Some(case) = store.case(id)? else {
            return Err(CmdError::Usage(format!("No case {id}.")));
        };
        let events = store.events(id)?;
        ctx.reply(crate::view::case_summary(&case, &events))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_id_or_nothing() {
        assert_eq!(CaseShow::parse("").unwrap().id, None);
        assert_eq!(CaseShow::parse("C-12").unwrap().id, Some(CaseId(12)));
        assert!(CaseShow::parse("nonsense").is_err());
    }
}
