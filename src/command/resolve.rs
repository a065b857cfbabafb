//! `!resolve [playbook]`: resolve the case, recording what solved it.
//!
//! An unclaimed case is claimed by the resolver first. The playbook (given,
//! or else the one drafted or suggested) is recorded and taught to the
//! classifier.

use super::CmdError;
use crate::bot::Ctx;
use crate::case::{EventKind, Status};
use crate::config::Role;

#[derive(Debug, Clone, PartialEq)]
pub struct Resolve {
    pub playbook: Option<String>,
}

impl Resolve {
    pub fn parse(args: &str) -> Result<Self, String> {
        let p = args.trim();
        if p.contains(char::is_whitespace) {
            return Err("Name at most one playbook.".into());
        }
        Ok(Resolve {
            playbook: (!p.is_empty()).then(|| p.to_lowercase()),
        })
    }

    pub(crate) fn apply(self, ctx: &mut Ctx) -> Result<(), CmdError> {
        ctx.require(Role::Agent, "resolve")?;
        let case = ctx.case("resolve")?.clone();
        let engine = ctx.bot.engine();
        if let Some(p) = &self.playbook
            && engine.playbooks().get(p).is_none()
        {
            let known: Vec<_> = engine.playbooks().ids().collect();
            return Err(CmdError::Usage(format!(
                "No playbook `{p}`. Known: {}.",
                known.join(", ")
            )));
        }
        let playbook = self
            .playbook
            .or_else(|| case.chosen_playbook.clone())
            .or_else(|| case.suggested_playbook.clone());
        let mut events = Vec::new();
        if matches!(
            case.status,
            Status::New | Status::Triaged | Status::Reopened
        ) {
            events.push((
                EventKind::Assigned {
                    assignee: ctx.sender().to_owned(),
                },
                Some("claimed to resolve".into()),
            ));
        }
        events.push((
            EventKind::Resolved {
                playbook: playbook.clone(),
            },
            None,
        ));
        let resolved = ctx.change("resolve", events, |c| match &playbook {
            Some(p) => format!("✅ **{}** resolved with *{p}*.", c.id),
            None => format!("✅ **{}** resolved.", c.id),
        })?;
        if let Some(p) = &playbook {
            ctx.bot.learn_resolved(&resolved, p);
        }
        Ok(())
    }
}
