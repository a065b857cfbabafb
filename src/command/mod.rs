//! Chat commands: one file per command, each with a pure `parse` and an
//! `apply` that does the work through the bot's [`Ctx`](crate::bot::Ctx).
//!
//! [`parse`] recognises `!name args` (the prefix comes from the config);
//! [`Command`] only dispatches.

mod ack;
mod assign;
mod case_show;
mod claim;
mod escalate;
mod help;
mod note;
mod oncall;
mod priority;
mod queue;
mod reassign;
mod reopen;
mod reply;
mod resolve;
mod resume;
mod send;
mod sla;
mod snooze;
mod stats;
mod suggest;
mod tag;
mod unassign;
mod use_playbook;
mod wait;

use crate::bot::Ctx;

/// Why a command did not run. The message is shown to the sender.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    /// Wrong arguments or wrong place: a short usage reply.
    #[error("{0}")]
    Usage(String),
    /// Not allowed: missing role, or an illegal case transition.
    #[error("🚫 {0}")]
    Refused(String),
    /// Our fault (storage, rendering); logged and reported.
    #[error("{0:#}")]
    Internal(#[from] anyhow::Error),
}

impl From<crate::store::StoreError> for CmdError {
    fn from(e: crate::store::StoreError) -> Self {
        CmdError::Internal(e.into())
    }
}

/// A parsed command.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Escalate(escalate::Escalate),
    Claim(claim::Claim),
    Assign(assign::Assign),
    Unassign(unassign::Unassign),
    Priority(priority::SetPriority),
    Tag(tag::Tag),
    Note(note::Note),
    Suggest(suggest::Suggest),
    Use(use_playbook::UsePlaybook),
    Wait(wait::Wait),
    Resume(resume::Resume),
    Resolve(resolve::Resolve),
    Reopen(reopen::Reopen),
    Reply(reply::Reply),
    Send(send::Send),
    Help(help::Help),
    Queue(queue::Queue),
    Case(case_show::CaseShow),
    Stats(stats::Stats),
    Reassign(reassign::Reassign),
    Sla(sla::Sla),
    Oncall(oncall::Oncall),
    Ack(ack::Ack),
    Snooze(snooze::Snooze),
}

/// Every command: name, arguments, what it does. Drives parsing and `help`.
pub(crate) const COMMANDS: &[(&str, &str, &str)] = &[
    (
        "escalate",
        "<text>",
        "open a case from an intake room (agents)",
    ),
    ("claim", "", "take the case (in its thread)"),
    ("assign", "@user", "give the case to a teammate"),
    ("unassign", "", "put the case back in the queue"),
    ("priority", "p1..p4", "change the priority"),
    ("tag", "<tag>", "add a tag"),
    ("note", "<text>", "add an internal note"),
    (
        "suggest",
        "[more text]",
        "suggest a playbook again, e.g. after new information",
    ),
    (
        "use",
        "<playbook>",
        "draft the reply of that playbook for this case",
    ),
    ("wait", "", "waiting on the customer (pauses the SLA clock)"),
    ("resume", "", "the customer answered; back to work"),
    (
        "resolve",
        "[playbook]",
        "resolve, recording the playbook that solved it",
    ),
    ("reopen", "", "reopen a resolved case"),
    (
        "reply",
        "<text>",
        "reply to the customer through the helpdesk",
    ),
    (
        "send",
        "",
        "send the drafted reply (last `use`, or the suggestion) to the customer",
    ),
    ("help", "", "this list"),
    (
        "queue",
        "",
        "open cases by status, priority and age; per-agent load (leads)",
    ),
    (
        "case",
        "[id]",
        "a case's summary and recent history (leads; alone, in a case thread: that case)",
    ),
    (
        "stats",
        "",
        "counts, response and resolution times, suggestion acceptance (leads)",
    ),
    (
        "reassign",
        "<id> @user",
        "give any case to a teammate (leads)",
    ),
    (
        "sla",
        "[at-risk|breached]",
        "SLA targets at risk and breached, with time left or over (leads)",
    ),
    ("oncall", "", "who is on call now and next, and open alerts"),
    (
        "ack",
        "<alert>",
        "acknowledge an SLA alert, stopping its escalation (on-call)",
    ),
    (
        "snooze",
        "<alert> <duration>",
        "no pages for an alert until the time is up (on-call)",
    ),
];

/// The usage line of a command, e.g. "`!assign @user` — give the case to a teammate".
pub(crate) fn usage(prefix: &str, name: &str) -> String {
    COMMANDS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(n, args, what)| {
            let args = if args.is_empty() {
                String::new()
            } else {
                format!(" {args}")
            };
            format!("Usage: `{prefix}{n}{args}` — {what}")
        })
        .unwrap_or_default()
}

/// Parses `text` as a command. `None` when it is not one (no prefix);
/// `Some(Err(reply))` for an unknown command or wrong arguments.
pub fn parse(text: &str, prefix: &str) -> Option<Result<Command, String>> {
    let rest = text.trim().strip_prefix(prefix)?;
    let (name, args) = match rest.split_once(char::is_whitespace) {
        Some((n, a)) => (n, a.trim()),
        None => (rest, ""),
    };
    let name = name.to_lowercase();
    if name.is_empty() {
        return None;
    }
    let parsed = match name.as_str() {
        "escalate" => escalate::Escalate::parse(args).map(Command::Escalate),
        "claim" => claim::Claim::parse(args).map(Command::Claim),
        "assign" => assign::Assign::parse(args).map(Command::Assign),
        "unassign" => unassign::Unassign::parse(args).map(Command::Unassign),
        "priority" | "prio" => priority::SetPriority::parse(args).map(Command::Priority),
        "tag" => tag::Tag::parse(args).map(Command::Tag),
        "note" => note::Note::parse(args).map(Command::Note),
        "suggest" => suggest::Suggest::parse(args).map(Command::Suggest),
        "use" => use_playbook::UsePlaybook::parse(args).map(Command::Use),
        "wait" => wait::Wait::parse(args).map(Command::Wait),
        "resume" => resume::Resume::parse(args).map(Command::Resume),
        "resolve" => resolve::Resolve::parse(args).map(Command::Resolve),
        "reopen" => reopen::Reopen::parse(args).map(Command::Reopen),
        "reply" => reply::Reply::parse(args).map(Command::Reply),
        "send" => send::Send::parse(args).map(Command::Send),
        "help" => help::Help::parse(args).map(Command::Help),
        "queue" => queue::Queue::parse(args).map(Command::Queue),
        "case" => case_show::CaseShow::parse(args).map(Command::Case),
        "stats" => stats::Stats::parse(args).map(Command::Stats),
        "reassign" => reassign::Reassign::parse(args).map(Command::Reassign),
        "sla" => sla::Sla::parse(args).map(Command::Sla),
        "oncall" => oncall::Oncall::parse(args).map(Command::Oncall),
        "ack" => ack::Ack::parse(args).map(Command::Ack),
        "snooze" => snooze::Snooze::parse(args).map(Command::Snooze),
        other => {
            return Some(Err(format!(
                "Unknown command `{prefix}{other}`. `{prefix}help` lists the commands."
            )));
        }
    };
    Some(parsed.map_err(|why| {
        let usage = usage(prefix, &name);
        if why.is_empty() {
            usage
        } else {
            format!("{why}\n{usage}")
        }
    }))
}

impl Command {
    pub fn name(&self) -> &'static str {
        match self {
            Command::Escalate(_) => "escalate",
            Command::Claim(_) => "claim",
            Command::Assign(_) => "assign",
            Command::Unassign(_) => "unassign",
            Command::Priority(_) => "priority",
            Command::Tag(_) => "tag",
            Command::Note(_) => "note",
            Command::Suggest(_) => "suggest",
            Command::Use(_) => "use",
            Command::Wait(_) => "wait",
            Command::Resume(_) => "resume",
            Command::Resolve(_) => "resolve",
            Command::Reopen(_) => "reopen",
            Command::Reply(_) => "reply",
            Command::Send(_) => "send",
            Command::Help(_) => "help",
            Command::Queue(_) => "queue",
            Command::Case(_) => "case",
            Command::Stats(_) => "stats",
            Command::Reassign(_) => "reassign",
            Command::Sla(_) => "sla",
            Command::Oncall(_) => "oncall",
            Command::Ack(_) => "ack",
            Command::Snooze(_) => "snooze",
        }
    }

    pub(crate) fn apply(self, ctx: &mut Ctx) -> Result<(), CmdError> {
        match self {
            Command::Escalate(c) => c.apply(ctx),
            Command::Claim(c) => c.apply(ctx),
            Command::Assign(c) => c.apply(ctx),
            Command::Unassign(c) => c.apply(ctx),
            Command::Priority(c) => c.apply(ctx),
            Command::Tag(c) => c.apply(ctx),
            Command::Note(c) => c.apply(ctx),
            Command::Suggest(c) => c.apply(ctx),
            Command::Use(c) => c.apply(ctx),
            Command::Wait(c) => c.apply(ctx),
            Command::Resume(c) => c.apply(ctx),
            Command::Resolve(c) => c.apply(ctx),
            Command::Reopen(c) => c.apply(ctx),
            Command::Reply(c) => c.apply(ctx),
            Command::Send(c) => c.apply(ctx),
            Command::Help(c) => c.apply(ctx),
            Command::Queue(c) => c.apply(ctx),
            Command::Case(c) => c.apply(ctx),
            Command::Stats(c) => c.apply(ctx),
            Command::Reassign(c) => c.apply(ctx),
            Command::Sla(c) => c.apply(ctx),
            Command::Oncall(c) => c.apply(ctx),
            Command::Ack(c) => c.apply(ctx),
            Command::Snooze(c) => c.apply(ctx),
        }
    }
}

/// Refuses arguments for commands that take none.
pub(crate) fn no_args(args: &str) -> Result<(), String> {
    if args.is_empty() {
        Ok(())
    } else {
        Err(format!("This command takes no arguments (got `{args}`)."))
    }
}

/// Parses a user mention: `@alice:example.org`, `<@U123>`, or a bare name.
pub(crate) fn parse_user(arg: &str) -> Result<String, String> {
    let a = arg.trim();
    if a.is_empty() || a.contains(char::is_whitespace) {
        return Err("Name exactly one user.".into());
    }
    let a = a
        .strip_prefix("<@")
        .and_then(|x| x.strip_suffix('>'))
        .unwrap_or(a);
    Ok(a.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands_and_explains_mistakes() {
        assert_eq!(parse("hello", "!"), None);
        assert_eq!(parse("!", "!"), None);
        assert!(matches!(parse("!claim", "!"), Some(Ok(Command::Claim(_)))));
        assert!(matches!(
            parse("  !CLAIM ", "!"),
            Some(Ok(Command::Claim(_)))
        ));
        let err = parse("!frobnicate now", "!").unwrap().unwrap_err();
        assert_eq!(
            err,
            "Unknown command `!frobnicate`. `!help` lists the commands."
        );
        let err = parse("!priority p9", "!").unwrap().unwrap_err();
        assert!(err.contains("Usage: `!priority p1..p4`"), "{err}");
        let err = parse("!claim now", "!").unwrap().unwrap_err();
        assert!(err.contains("takes no arguments"), "{err}");
        let err = parse("!assign", "!").unwrap().unwrap_err();
        assert!(err.contains("Usage: `!assign @user`"), "{err}");
        let err = parse("!escalate", "!").unwrap().unwrap_err();
        assert!(err.contains("Usage: `!escalate <text>`"), "{err}");
        assert!(matches!(parse("?queue", "?"), Some(Ok(Command::Queue(_)))));
        let Some(Ok(Command::Reassign(r))) = parse("!reassign C-4 @bob:x", "!") else {
            panic!()
        };
        assert_eq!(
            r,
            reassign::Reassign {
                case: crate::case::CaseId(4),
                user: "@bob:x".into()
            }
        );
    }

    #[test]
    fn every_command_has_help() {
        for (name, _, _) in COMMANDS {
            assert!(!usage("!", name).is_empty());
            let parsed = parse(&format!("!{name}"), "!").unwrap();
            if let Ok(cmd) = parsed {
                assert_eq!(cmd.name(), *name);
            }
        }
    }
}
