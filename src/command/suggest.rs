//! `!suggest [more text]`: run the playbook engine again for this case.

use jiff::Timestamp;

use super::CmdError;
use crate::bot::Ctx;
use crate::case::EventKind;
use crate::config::Role;
use crate::redact::redact;
use crate::view;

#[derive(Debug, Clone, PartialEq)]
pub struct Suggest {
    pub extra: String,
}

impl Suggest {
    pub fn parse(args: &str) -> Result<Self, String> {
        Ok(Suggest {
            extra: args.trim().to_owned(),
        })
    }

    pub(crate) fn apply(self, ctx: &mut Ctx) -> Result<(), CmdError> {
        ctx.require(Role::Agent, "suggest")?;
        let case = ctx.case("suggest")?.clone();
        let extra = redact(&self.extra).into_owned();
        let suggestion = ctx.bot.suggest_for(&case, &extra)?;
        let engine = ctx.bot.engine();
        let text = view::suggestion_message(&case, &suggestion, &engine);
        let mut events = Vec::new();
        if !extra.is_empty() {
            events.push((
                EventKind::Note { text: extra },
                Some("added for suggest".into()),
            ));
        }
        events.push((
            EventKind::Suggested {
                playbook: suggestion.playbook.clone(),
                confidence: suggestion.confidence,
            },
            None,
        ));
        let out = ctx.reply_msg(text);
        ctx.shared().store.commit(
            Some(case.id),
            ctx.sender(),
            Timestamp::now(),
            events,
            vec![out],
            Some(&ctx.msg.event_id),
        )?;
        Ok(())
    }
}
