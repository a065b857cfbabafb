//! Events: the append-only history of a case.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::model::{Channel, Customer, Priority};

/// One entry in a case's history: what happened, who did it, when and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the case's history, from 0 (the `opened` event).
    pub seq: u32,
    pub at: Timestamp,
    /// The chat user id, `bot`, `webhook`, or `cli` that caused it.
    pub actor: String,
    #[serde(flatten)]
    pub kind: EventKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The facts a case is opened with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewCase {
    pub external_id: String,
    pub subject: String,
    pub body: String,
    pub customer: Customer,
    pub channel: Channel,
    pub priority: Priority,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// What happened. Serialized with a `kind` tag and the payload's fields
/// beside it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    Opened(NewCase),
    /// The engine picked a playbook (or abstained) for a new case.
    Triaged {
        playbook: Option<String>,
        confidence: f32,
    },
    /// A later suggestion, e.g. after new information; status unchanged.
    Suggested {
        playbook: Option<String>,
        confidence: f32,
    },
    Assigned {
        assignee: String,
    },
    Unassigned,
    WaitingOnCustomer,
    Resumed,
    Resolved {
        playbook: Option<String>,
    },
    Reopened,
    Closed,
    PriorityChanged {
        priority: Priority,
    },
    Tagged {
        tag: String,
    },
    Note {
        text: String,
    },
    /// A plain message by the team in the case thread.
    AgentMessage {
        text: String,
    },
    /// New text from the customer (e.g. a helpdesk update).
    CustomerMessage {
        text: String,
    },
    /// An agent's reply to the customer (`reply`, `send`), handed to the
    /// helpdesk; it is the case's first or next response.
    Reply {
        text: String,
    },
    /// An agent rendered a playbook's reply for this case.
    ReplyDrafted {
        playbook: String,
    },
    /// The bot posted something about this case to chat.
    Posted {
        platform: String,
        room: String,
        message_id: String,
        /// `root`, `thread`, `alert`...
        what: String,
    },
    /// An SLA warning, breach or alert change.
    Sla {
        target: String,
        what: String,
    },
}

impl EventKind {
    /// The `kind` tag as written in history and exports.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Opened(_) => "opened",
            EventKind::Triaged { .. } => "triaged",
            EventKind::Suggested { .. } => "suggested",
            EventKind::Assigned { .. } => "assigned",
            EventKind::Unassigned => "unassigned",
            EventKind::WaitingOnCustomer => "waiting_on_customer",
            EventKind::Resumed => "resumed",
            EventKind::Resolved { .. } => "resolved",
            EventKind::Reopened => "reopened",
            EventKind::Closed => "closed",
            EventKind::PriorityChanged { .. } => "priority_changed",
            EventKind::Tagged { .. } => "tagged",
            EventKind::Note { .. } => "note",
            EventKind::AgentMessage { .. } => "agent_message",
            EventKind::CustomerMessage { .. } => "customer_message",
            EventKind::Reply { .. } => "reply",
            EventKind::ReplyDrafted { .. } => "reply_drafted",
            EventKind::Posted { .. } => "posted",
            EventKind::Sla { .. } => "sla",
        }
    }

    /// The verb used in refusals: "cannot {action} C-12".
    pub fn action(&self) -> &'static str {
        match self {
            EventKind::Opened(_) => "open",
            EventKind::Triaged { .. } => "triage",
            EventKind::Suggested { .. } => "re-suggest for",
            EventKind::Assigned { .. } => "assign",
            EventKind::Unassigned => "unassign",
            EventKind::WaitingOnCustomer => "wait on the customer for",
            EventKind::Resumed => "resume",
            EventKind::Resolved { .. } => "resolve",
            EventKind::Reopened => "reopen",
            EventKind::Closed => "close",
            EventKind::PriorityChanged { .. } => "change the priority of",
            EventKind::Tagged { .. } => "tag",
            EventKind::Note { .. } => "add a note to",
            EventKind::AgentMessage { .. } | EventKind::CustomerMessage { .. } => {
                "add a message to"
            }
            EventKind::ReplyDrafted { .. } => "draft a reply for",
            EventKind::Reply { .. } => "reply to the customer of",
            EventKind::Posted { .. } => "post about",
            EventKind::Sla { .. } => "record an SLA event on",
        }
    }

    /// A one-line human summary for `case show` and chat.
    pub fn summary(&self) -> String {
        match self {
            EventKind::Opened(n) => format!(
                "opened from {} ({}, {})",
                n.external_id, n.channel, n.priority
            ),
            EventKind::Triaged {
                playbook,
                confidence,
            }
            | EventKind::Suggested {
                playbook,
                confidence,
            } => match playbook {
                Some(p) => format!("{}: {p} ({:.0}%)", self.name(), confidence * 100.0),
                None => format!(
                    "{}: no playbook (abstained, {:.0}%)",
                    self.name(),
                    confidence * 100.0
                ),
            },
            EventKind::Assigned { assignee } => format!("assigned to {assignee}"),
            EventKind::Resolved { playbook: Some(p) } => format!("resolved with {p}"),
            EventKind::PriorityChanged { priority } => format!("priority set to {priority}"),
            EventKind::Tagged { tag } => format!("tagged {tag}"),
            EventKind::Note { text } => format!("note: {text}"),
            EventKind::AgentMessage { text } => format!("agent message: {text}"),
            EventKind::CustomerMessage { text } => format!("customer message: {text}"),
            EventKind::Reply { text } => format!("reply to the customer: {text}"),
            EventKind::ReplyDrafted { playbook } => format!("reply drafted with {playbook}"),
            EventKind::Posted {
                platform,
                room,
                message_id,
                what,
            } => {
                format!("posted {what} to {platform} {room} ({message_id})")
            }
            EventKind::Sla { target, what } => format!("sla {target}: {what}"),
            other => other.name().replace('_', " "),
        }
    }
}
