//! `!ack <alert>`: acknowledge an SLA alert, which stops its escalation
//! (on-call staff). Reminders follow while the case stays breached.

use super::CmdError;
use crate::bot::Ctx;
use crate::config::Role;
use crate::sla::{AlertCommand, AlertId};

#[derive(Debug, Clone, PartialEq)]
pub struct Ack {
    pub alert: AlertId,
}

impl Ack {
    pub fn parse(args: &str) -> Result<Self, String> {
        if args.is_empty() || args.contains(char::is_whitespace) {
            return Err(String::new());
        }
        Ok(Ack {
            alert: args.parse()?,
        })
    }

    pub(crate) fn apply(self, ctx: &mut Ctx) -> Result<(), CmdError> {
        ctx.require(Role::Oncall, "ack")?;
        alert_command(ctx, self.alert, AlertCommand::Ack)
    }
}

/// Runs `ack`/`snooze` on the alert; a refusal (unknown or closed alert,
/// already acknowledged) is replied to.
pub(super) fn alert_command(
    ctx: &mut Ctx,
    alert: AlertId,
    cmd: AlertCommand,
) -> Result<(), CmdError> {
    let outcome =
        ctx.bot
            .sla()
            .alert_command(alert, ctx.sender(), cmd, &ctx.msg.event_id, |text| {
                ctx.reply_msg(text)
            })?;
    outcome.map_err(CmdError::Usage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_alert_ids() {
        assert_eq!(Ack::parse("A-7").unwrap().alert, AlertId(7));
        assert!(Ack::parse("").is_err());
        assert!(Ack::parse("A-7 A-8").is_err());
        assert!(Ack::parse("C-7").is_err());
    }
}
