//! `!help`: what the bot understands.

use super::{COMMANDS, CmdError};
use crate::bot::Ctx;

#[derive(Debug, Clone, PartialEq)]
pub struct Help;

impl Help {
    pub fn parse(_args: &str) -> Result<Self, String> {
        Ok(Help)
    }

    pub(crate) fn apply(self, ctx: &mut Ctx) -> Result<(), CmdError> {
        let p = &ctx.shared().config.command_prefix;
        let mut text =
            String::from("**caseroom commands** (case commands go in the case's thread)\n");
        for (name, args, what) in COMMANDS {
            let args = if args.is_empty() {
                String::new()
            } else {
                format!(" {args}")
            };
            text.push_str(&format!("- `{p}{name}{args}` — {what}\n"));
        }
        text.push_str(&format!(
            "\nReact with {} on a message in an intake room to escalate it.",
            ctx.shared().config.escalate_reaction
        ));
        ctx.reply(text)?;
        Ok(())
    }
}
