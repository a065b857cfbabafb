//! `!use <playbook>`: draft that playbook's reply with this case's fields.

use super::CmdError;
use crate::bot::Ctx;
use crate::case::EventKind;
use crate::config::Role;

#[derive(Debug, Clone, PartialEq)]
pub struct UsePlaybook {
    pub playbook: String,
}

impl UsePlaybook {
    pub fn parse(args: &str) -> Result<Self, String> {
        let p = args.trim();
        if p.is_empty() || p.contains(char::is_whitespace) {
            return Err("Name one playbook, e.g. `refund`.".into());
        }
        Ok(UsePlaybook {
            playbook: p.to_lowercase(),
        })
    }

    pub(crate) fn apply(self, ctx: &mut Ctx) -> Result<(), CmdError> {
        ctx.require(Role::Agent, "use")?;
        let case = ctx.case("use")?.clone();
        let engine = ctx.bot.engine();
        let Some(pb) = engine.playbooks().get(&self.playbook) else {
            let known: Vec<_> = engine.playbooks().ids().collect();
            return Err(CmdError::Usage(format!(
                "No playbook `{}`. Known: {}.",
                self.playbook,
                known.join(", ")
            )));
        };
        let suggestion = ctx.bot.suggest_for(&case, "")?;
        let lang = case.customer.language;
        let draft = engine
            .render_reply(
                pb.id(),
                lang,
                &suggestion.fields,
                case.customer.name.as_deref(),
            )
            .map_err(|e| CmdError::Internal(anyhow::anyhow!("rendering {}: {e}", pb.id())))?;
        let text = format!(
            "✍️ **{}** — draft reply from *{}* ({lang}), edit before sending:\n\n{}",
            case.id,
            pb.title(lang),
            crate::view::quote(&draft)
        );
        let out = ctx.reply_msg(text);
        ctx.shared().store.commit(
            Some(case.id),
            ctx.sender(),
            ctx.bot.now(),
            vec![(
                EventKind::ReplyDrafted {
                    playbook: pb.id().to_owned(),
                },
                None,
            )],
            vec![out, ctx.bot.card_update(case.id)],
            Some(&ctx.msg.event_id),
        )?;
        Ok(())
    }
}
