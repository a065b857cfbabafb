//! `!escalate <text>`: open a case from a message in an intake room.

use super::CmdError;
use crate::bot::Ctx;
use crate::config::Role;

#[derive(Debug, Clone, PartialEq)]
pub struct Escalate {
    pub text: String,
}

impl Escalate {
    pub fn parse(args: &str) -> Result<Self, String> {
        if args.trim().is_empty() {
            return Err("Give the customer's message to escalate.".into());
        }
        Ok(Escalate {
            text: args.trim().to_owned(),
        })
    }

    pub(crate) fn apply(self, ctx: &mut Ctx) -> Result<(), CmdError> {
        ctx.require(Role::Agent, "escalate")?;
        let intake = &ctx.shared().config.rooms.intake;
        if !intake.contains(&ctx.msg.room) {
            return Err(CmdError::Usage(format!(
                "`escalate` works in an intake room ({}).",
                intake.join(", ")
            )));
        }
        let event_id = ctx.msg.event_id.clone();
        ctx.bot.escalate_from_chat(ctx, &self.text, &event_id)?;
        Ok(())
    }
}
