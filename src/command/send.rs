//! `!send`: send the drafted reply to the customer — the draft of the last
//! `use` (or of the suggested playbook), in the customer's language, with
//! the case's fields. Same path as `reply`.

use super::{CmdError, no_args};
use crate::bot::Ctx;
use crate::config::Role;

#[derive(Debug, Clone, PartialEq)]
pub struct Send;

impl Send {
    pub fn parse(args: &str) -> Result<Self, String> {
        no_args(args).map(|_| Send)
    }

    pub(crate) fn apply(self, ctx: &mut Ctx) -> Result<(), CmdError> {
        ctx.require(Role::Agent, "send")?;
        let case = ctx.case("send")?.clone();
        let Some(playbook) = case
            .chosen_playbook
            .clone()
            .or_else(|| case.suggested_playbook.clone())
        else {
            return Err(CmdError::Usage(format!(
                "There is no draft for {} yet: `use <playbook>` drafts one, or write the reply yourself with `reply <text>`.",
                case.id
            )));
        };
        let engine = ctx.bot.engine();
        let suggestion = ctx.bot.suggest_for(&case, "")?;
        let draft = engine
            .render_reply(
                &playbook,
                case.customer.language,
                &suggestion.fields,
                case.customer.name.as_deref(),
            )
            .map_err(|e| CmdError::Internal(anyhow::anyhow!("rendering {playbook}: {e}")))?;
        super::reply::send_to_customer(ctx, "send", &draft)
    }
}
