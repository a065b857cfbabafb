//! What arrives from chat and what the bot sends back, in our own types.
//!
//! Platform adapters translate their SDK's events into [`Incoming`] and
//! deliver [`Outgoing`] messages; the core never sees an SDK type. Message
//! text is Markdown: adapters send it as a plain body plus formatted HTML
//! where the platform supports it.
//!
//! A message can carry one-click [`Action`]s (claim, resolve, acknowledge
//! ...). Adapters render them the platform's way — buttons on Slack and
//! Discord, reactions on Matrix, typed hints in the terminal — and report a
//! click (or reaction) as [`IncomingKind::Action`], which the core runs as the
//! same command as its typed form.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::case::CaseId;
use crate::sla::AlertId;

/// Something a person did in a room the bot is in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incoming {
    /// The room (Matrix room id, Slack channel id, Discord channel id).
    pub room: String,
    /// The sender's platform user id, e.g. `@alice:example.org`.
    pub sender: String,
    /// Groups the sender belongs to on the platform, written as `[roles]`
    /// names them (Discord roles as `role:<id>`); a role given to a group
    /// is held by its members. Empty where the platform has none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// The platform's id for this event; the bot handles each id once.
    pub event_id: String,
    pub kind: IncomingKind,
    /// An opaque handle the platform gives for answering this event (a
    /// Slack `response_url`, a Discord interaction token). Replies to the
    /// event carry it in [`Outgoing::reply_handle`]; the core never reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_handle: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum IncomingKind {
    /// A text message, in a thread when `thread_root` is set.
    Message {
        text: String,
        thread_root: Option<String>,
    },
    /// A reaction (`key`, e.g. 🎫) on another message.
    Reaction {
        key: String,
        /// The message reacted to.
        target: String,
        /// Its text, when the adapter could fetch it.
        target_text: Option<String>,
        /// Its sender, when known.
        target_sender: Option<String>,
    },
    /// A click on one of the bot's [`Action`]s (a button), or a reaction
    /// the adapter already mapped to one.
    Action {
        /// [`ActionKind::id`] of the action, e.g. `claim:C-12`.
        id: String,
        /// The bot's message the action was on, when known.
        message: Option<String>,
    },
}

/// Which thread an outgoing message goes to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThreadRef {
    /// A message whose platform id is known.
    Message(String),
    /// A message the bot sent earlier under this key (see
    /// [`Outgoing::record_as`]), e.g. a case's root message; resolved when
    /// delivered, which is after that message because a room's messages go
    /// out in order.
    Key(String),
}

/// A message the bot sends. Written to the outbox before it is sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outgoing {
    pub room: String,
    /// Markdown text.
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<ThreadRef>,
    /// Users to mention (notified), by platform user id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mentions: Vec<String>,
    /// Remember the delivered message id under this key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_as: Option<String>,
    /// The case this message is about; its delivery is recorded in the
    /// case's history, and a root message becomes the case's thread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case: Option<CaseId>,
    /// `root` for a case's root message (its thread), else what it is.
    #[serde(default)]
    pub what: String,
    /// Instead of posting `text`, remove this earlier message (someone
    /// pasted a card number, CVV, password or code); `text` is the reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redacts: Option<String>,
    /// When it entered the outbox (set by the store), for delivery latency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_at: Option<jiff::Timestamp>,
    /// Instead of posting, edit the message recorded under this key (see
    /// [`Outgoing::record_as`]) to read like this one. Edits wait for the
    /// message they edit, and a burst of edits to one message is coalesced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edits: Option<String>,
    /// One-click actions shown with the message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<Action>,
    /// The text (and actions) are rendered when the message is delivered,
    /// from the current state: a case's card always shows the latest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub render: Option<Render>,
    /// Only this user needs to see it (a refusal of their click): platforms
    /// with private replies (Slack ephemeral messages, Discord ephemeral
    /// responses) use one; others post it normally.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_to: Option<String>,
    /// Copied from [`Incoming::reply_handle`] of the event this answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_handle: Option<String>,
}

/// What the outbox renders at delivery time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Render {
    /// The live card of a case: status, assignee, SLA, playbook, actions.
    Card { case: CaseId },
    /// The suggestion posted in a new case's thread (checklist and draft
    /// reply), rendered from the engine's verdict kept here: a few hundred
    /// bytes in the outbox instead of the full text.
    Suggestion {
        case: CaseId,
        suggestion: Box<crate::playbook::Suggestion>,
    },
}

/// A one-click action on a message: a button on Slack and Discord, a
/// reaction on Matrix, a typed hint in the terminal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    pub kind: ActionKind,
    /// The button's label, e.g. "Claim".
    pub label: String,
    pub style: ActionStyle,
}

/// What an action does, and to which case or alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "do")]
pub enum ActionKind {
    Claim {
        case: CaseId,
    },
    Resolve {
        case: CaseId,
    },
    /// Draft the reply of this playbook (`use <playbook>`).
    UsePlaybook {
        case: CaseId,
        playbook: String,
    },
    /// Send the drafted reply to the customer (`send`).
    SendDraft {
        case: CaseId,
    },
    Ack {
        alert: AlertId,
    },
    Snooze {
        alert: AlertId,
        minutes: u32,
    },
}

/// How a button looks where the platform has styles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionStyle {
    Primary,
    Secondary,
    Danger,
}

impl Action {
    pub fn new(kind: ActionKind, label: impl Into<String>, style: ActionStyle) -> Action {
        Action {
            kind,
            label: label.into(),
            style,
        }
    }
}

impl ActionKind {
    /// A short stable id for the platform's button (Slack `action_id`,
    /// Discord `custom_id`, at most 100 characters): `claim:C-12`,
    /// `use:C-12:refund`, `ack:A-7`, `snooze:A-7:15`.
    pub fn id(&self) -> String {
        match self {
            ActionKind::Claim { case } => format!("claim:{case}"),
            ActionKind::Resolve { case } => format!("resolve:{case}"),
            ActionKind::SendDraft { case } => format!("send:{case}"),
            ActionKind::UsePlaybook { case, playbook } => {
                let mut id = format!("use:{case}:{playbook}");
                id.truncate(100);
                id
            }
            ActionKind::Ack { alert } => format!("ack:{alert}"),
            ActionKind::Snooze { alert, minutes } => format!("snooze:{alert}:{minutes}"),
        }
    }

    /// Parses [`ActionKind::id`]; `None` for anything else (a stale or
    /// forged id).
    pub fn parse(id: &str) -> Option<ActionKind> {
        let mut parts = id.splitn(3, ':');
        let verb = parts.next()?;
        let subject = parts.next()?;
        let rest = parts.next();
        let case = || {
            subject
                .parse::<CaseId>()
                .ok()
                .filter(|_| subject.starts_with('C'))
        };
        let alert = || {
            subject
                .parse::<AlertId>()
                .ok()
                .filter(|_| subject.starts_with('A'))
        };
        Some(match (verb, rest) {
            ("claim", None) => ActionKind::Claim { case: case()? },
            ("resolve", None) => ActionKind::Resolve { case: case()? },
            ("send", None) => ActionKind::SendDraft { case: case()? },
            ("use", Some(p)) if !p.is_empty() => ActionKind::UsePlaybook {
                case: case()?,
                playbook: p.to_owned(),
            },
            ("ack", None) => ActionKind::Ack { alert: alert()? },
            ("snooze", Some(m)) => ActionKind::Snooze {
                alert: alert()?,
                minutes: m.parse().ok().filter(|m| *m > 0 && *m <= 24 * 60)?,
            },
            _ => return None,
        })
    }

    /// The typed command this action stands for, e.g. `claim` or
    /// `snooze A-7 15m` (without the prefix).
    pub fn command(&self) -> String {
        match self {
            ActionKind::Claim { .. } => "claim".into(),
            ActionKind::Resolve { .. } => "resolve".into(),
            ActionKind::SendDraft { .. } => "send".into(),
            ActionKind::UsePlaybook { playbook, .. } => format!("use {playbook}"),
            ActionKind::Ack { alert } => format!("ack {alert}"),
            ActionKind::Snooze { alert, minutes } => format!("snooze {alert} {minutes}m"),
        }
    }

    /// The case it is about, if any.
    pub fn case(&self) -> Option<CaseId> {
        match self {
            ActionKind::Claim { case }
            | ActionKind::Resolve { case }
            | ActionKind::SendDraft { case }
            | ActionKind::UsePlaybook { case, .. } => Some(*case),
            ActionKind::Ack { .. } | ActionKind::Snooze { .. } => None,
        }
    }

    /// The reaction that triggers it on platforms without buttons.
    pub fn reaction(&self) -> Option<&'static str> {
        match self {
            ActionKind::Claim { .. } => Some("✋"),
            ActionKind::Resolve { .. } => Some("✅"),
            ActionKind::Ack { .. } => Some("👍"),
            ActionKind::UsePlaybook { .. }
            | ActionKind::SendDraft { .. }
            | ActionKind::Snooze { .. } => None,
        }
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id())
    }
}

/// Whether reaction `key` means `wanted` (ignoring emoji variation
/// selectors and skin tones, which clients add freely).
pub fn same_reaction(key: &str, wanted: &str) -> bool {
    let plain = |s: &str| -> String {
        s.chars()
            .filter(|c| !matches!(*c, '\u{FE0E}' | '\u{FE0F}' | '\u{1F3FB}'..='\u{1F3FF}'))
            .collect()
    };
    plain(key) == plain(wanted)
}

/// One line telling how to use `actions` by reaction, e.g.
/// "React ✋ to claim · ✅ to resolve"; empty when none has a reaction.
pub fn reaction_hint(actions: &[Action]) -> String {
    let parts: Vec<String> = actions
        .iter()
        .filter_map(|a| {
            a.kind
                .reaction()
                .map(|r| format!("{r} to {}", a.label.to_lowercase()))
        })
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("React {}", parts.join(" · "))
    }
}

/// One line listing `actions` as the commands to type, e.g.
/// "Actions: `C-3: !claim` · `C-3: !resolve`" (terminal mode).
pub fn command_hint(actions: &[Action], prefix: &str) -> String {
    let parts: Vec<String> = actions
        .iter()
        .map(|a| match a.kind.case() {
            Some(case) => format!("`{case}: {prefix}{}`", a.kind.command()),
            None => format!("`{prefix}{}`", a.kind.command()),
        })
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("Actions: {}", parts.join(" · "))
    }
}

impl Outgoing {
    /// A plain message in `room`.
    pub fn new(room: impl Into<String>, text: impl Into<String>) -> Outgoing {
        Outgoing {
            room: room.into(),
            text: text.into(),
            thread: None,
            mentions: Vec::new(),
            record_as: None,
            case: None,
            what: "reply".into(),
            redacts: None,
            queued_at: None,
            edits: None,
            actions: Vec::new(),
            render: None,
            private_to: None,
            reply_handle: None,
        }
    }

    /// The live card of `case` in `room`, rendered when delivered. As the
    /// case's root it is recorded under [`root_key`]; as an update it edits
    /// that message.
    pub fn card(room: impl Into<String>, case: CaseId, update: bool) -> Outgoing {
        let mut out = Outgoing::new(room, String::new());
        out.render = Some(Render::Card { case });
        out.case = Some(case);
        if update {
            out.edits = Some(root_key(case));
            out.what = "card".into();
        } else {
            out.record_as = Some(root_key(case));
            out.what = "root".into();
        }
        out
    }

    /// Removes message `event_id` from `room`, giving `reason`.
    pub fn redaction(
        room: impl Into<String>,
        event_id: impl Into<String>,
        reason: impl Into<String>,
    ) -> Outgoing {
        let mut out = Outgoing::new(room, reason);
        out.redacts = Some(event_id.into());
        out.what = "redaction".into();
        out
    }

    pub fn in_thread(mut self, thread: Option<ThreadRef>) -> Outgoing {
        self.thread = thread;
        self
    }

    pub fn about(mut self, case: CaseId, what: &str) -> Outgoing {
        self.case = Some(case);
        self.what = what.into();
        self
    }

    pub fn mention(mut self, users: impl IntoIterator<Item = String>) -> Outgoing {
        self.mentions.extend(users);
        self
    }

    pub fn with_actions(mut self, actions: Vec<Action>) -> Outgoing {
        self.actions = actions;
        self
    }

    pub fn record_as(mut self, key: impl Into<String>) -> Outgoing {
        self.record_as = Some(key.into());
        self
    }
}

/// The key a case's root message is recorded under.
pub fn root_key(case: CaseId) -> String {
    format!("root:{case}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_ids_round_trip_and_refuse_junk() {
        let kinds = [
            ActionKind::Claim { case: CaseId(12) },
            ActionKind::Resolve { case: CaseId(1) },
            ActionKind::SendDraft { case: CaseId(2) },
            ActionKind::UsePlaybook {
                case: CaseId(3),
                playbook: "refund".into(),
            },
            ActionKind::Ack { alert: AlertId(7) },
            ActionKind::Snooze {
                alert: AlertId(7),
                minutes: 15,
            },
        ];
        for k in kinds {
            assert_eq!(ActionKind::parse(&k.id()), Some(k.clone()), "{k}");
        }
        for junk in [
            "",
            "claim",
            "claim:",
            "claim:A-1",
            "ack:C-1",
            "use:C-1",
            "use:C-1:",
            "snooze:A-1",
            "snooze:A-1:0",
            "snooze:A-1:x",
            "drop:C-1",
            "claim:C-1:x",
        ] {
            assert_eq!(ActionKind::parse(junk), None, "{junk}");
        }
    }

    #[test]
    fn reactions_match_whatever_variation_clients_add() {
        assert!(same_reaction("✋", "✋"));
        assert!(same_reaction("✋\u{FE0F}", "✋"));
        assert!(same_reaction("✋\u{1F3FD}", "✋"));
        assert!(same_reaction("👍\u{1F3FB}", "👍"));
        assert!(!same_reaction("👎", "👍"));
    }
}
