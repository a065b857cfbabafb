//! `!reply <text>`: answer the customer, through the helpdesk. The text is
//! redacted, recorded as the case's reply (its first or next response), and
//! queued as a `case.reply` event; the thread is told when the helpdesk has
//! accepted it (or that it is still pending). Plain thread messages stay
//! internal: nothing reaches a customer without this verb or `send`.

use super::CmdError;
use crate::bot::Ctx;
use crate::case::{EventKind, Status};
use crate::config::Role;

#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub text: String,
}

impl Reply {
    pub fn parse(args: &str) -> Result<Self, String> {
        if args.trim().is_empty() {
            return Err("Write the reply after the command, e.g. `reply We have refunded the second charge.`".into());
        }
        Ok(Reply {
            text: args.trim().to_owned(),
        })
    }

    pub(crate) fn apply(self, ctx: &mut Ctx) -> Result<(), CmdError> {
        send_to_customer(ctx, "reply", &self.text)
    }
}

/// The shared path of `reply` and `send`: role, case, helpdesk and state
/// checks, then one atomic write of the reply event (which queues the
/// helpdesk event) and the card update.
pub(super) fn send_to_customer(ctx: &mut Ctx, command: &str, text: &str) -> Result<(), CmdError> {
    ctx.require(Role::Agent, command)?;
    let case = ctx.case(command)?.clone();
    if !ctx.bot.replies_enabled() {
        return Err(CmdError::Refused(
            "No helpdesk is connected for replies (`[outbound]` with the `case.reply` event is off), so nothing can reach the customer from here. Copy the text into the helpdesk instead.".into(),
        ));
    }
    if case.status == Status::Closed {
        return Err(CmdError::Refused(format!(
            "{} is closed: the customer's ticket is finished. Reopen it in the helpdesk if they need more.",
            case.id
        )));
    }
    let text = crate::redact::redact(text).into_owned();
    let store = &ctx.shared().store;
    store
        .commit(
            Some(case.id),
            ctx.sender(),
            ctx.bot.now(),
            vec![(EventKind::Reply { text }, None)],
            vec![ctx.bot.card_update(case.id)],
            Some(&ctx.msg.event_id),
        )
        .map_err(|e| match e {
            crate::store::StoreError::Transition(t) => CmdError::Refused(format!("{t}.")),
            other => CmdError::Internal(other.into()),
        })?;
    // No line yet: the thread hears of it once the helpdesk accepted it.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_text() {
        assert!(Reply::parse("  ").is_err());
        assert_eq!(Reply::parse(" thanks ").unwrap().text, "thanks");
    }
}
