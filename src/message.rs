//! What arrives from chat and what the bot sends back, in our own types.
//!
//! Platform adapters translate their SDK's events into [`Incoming`] and
//! deliver [`Outgoing`] messages; the core never sees an SDK type. Message
//! text is Markdown: adapters send it as a plain body plus formatted HTML
//! where the platform supports it.

use serde::{Deserialize, Serialize};

use crate::case::CaseId;

/// Something a person did in a room the bot is in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incoming {
    /// The room (Matrix room id, Slack channel id, Discord channel id).
    pub room: String,
    /// The sender's platform user id, e.g. `@alice:example.org`.
    pub sender: String,
    /// The platform's id for this event; the bot handles each id once.
    pub event_id: String,
    pub kind: IncomingKind,
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
        }
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

    pub fn record_as(mut self, key: impl Into<String>) -> Outgoing {
        self.record_as = Some(key.into());
        self
    }
}

/// The key a case's root message is recorded under.
pub fn root_key(case: CaseId) -> String {
    format!("root:{case}")
}
