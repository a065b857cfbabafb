//! `!snooze <alert> <duration>`: no pages or reminders for an alert until
//! the time is up (on-call staff).

use jiff::SignedDuration;

use super::CmdError;
use crate::bot::Ctx;
use crate::config::{Role, parse_duration};
use crate::sla::{AlertCommand, AlertId};

/// Longer snoozes hide a breach for too long; ack it instead.
const MAX_SNOOZE: SignedDuration = SignedDuration::from_hours(24);

#[derive(Debug, Clone, PartialEq)]
pub struct Snooze {
    pub alert: AlertId,
    pub duration: SignedDuration,
}

impl Snooze {
    pub fn parse(args: &str) -> Result<Self, String> {
        let Some((alert, dur)) = args.split_once(char::is_whitespace) else {
            return Err(String::new());
        };
        let duration = parse_duration(dur)?;
        if duration > MAX_SNOOZE {
            return Err("Snooze for at most 24h.".into());
        }
        Ok(Snooze {
            alert: alert.parse()?,
            duration,
        })
    }

    pub(crate) fn apply(self, ctx: &mut Ctx) -> Result<(), CmdError> {
        ctx.require(Role::Oncall, "snooze")?;
        super::ack::alert_command(ctx, self.alert, AlertCommand::Snooze(self.duration))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_alert_and_duration() {
        assert_eq!(
            Snooze::parse("A-3 30m").unwrap(),
            Snooze {
                alert: AlertId(3),
                duration: SignedDuration::from_mins(30)
            }
        );
        assert!(Snooze::parse("A-3").is_err());
        assert!(Snooze::parse("A-3 soon").is_err());
        assert!(Snooze::parse("A-3 2d").is_err());
    }
}
