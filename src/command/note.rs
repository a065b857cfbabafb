//! `!note <text>`: an internal note in the case history (redacted).

use super::CmdError;
use crate::bot::Ctx;
use crate::case::EventKind;
use crate::config::Role;
use crate::redact::redact;

#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    pub text: String,
}

impl Note {
    pub fn parse(args: &str) -> Result<Self, String> {
        if args.trim().is_empty() {
            return Err("Write the note after the command.".into());
        }
        Ok(Note {
            text: args.trim().to_owned(),
        })
    }

    pub(crate) fn apply(self, ctx: &mut Ctx) -> Result<(), CmdError> {
        ctx.require(Role::Agent, "note")?;
        let text = redact(&self.text).into_owned();
        let redacted = text != self.text;
        ctx.change("note", vec![(EventKind::Note { text }, None)], |c| {
            let extra = if redacted {
                " Card numbers, codes and passwords in it were redacted."
            } else {
                ""
            };
            format!("📝 Note added to **{}**.{extra}", c.id)
        })?;
        Ok(())
    }
}
