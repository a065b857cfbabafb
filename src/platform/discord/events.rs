//! What Discord sends, as [`Incoming`]: pure translation of serenity's
//! models, no network. Where the event happened ([`Place`]: a channel, or a
//! thread and its parent channel) is worked out before, by the adapter.
//!
//! - `MESSAGE_CREATE` → [`IncomingKind::Message`]; in a thread, the room is
//!   the parent channel and the thread root the thread's id (a case thread
//!   is started from its card, so the two ids are the same). Ignored: bots
//!   (including ourselves) and message types other than default and reply.
//! - `MESSAGE_REACTION_ADD` → [`IncomingKind::Reaction`] with the emoji as
//!   the core knows it; the reacted-to text is fetched afterwards.
//! - slash commands → the typed command (`/queue filter:p1` → `!queue p1`),
//!   answered through the interaction ([`Incoming::reply_handle`]).
//! - the message command "Escalate to case" → the escalation reaction on
//!   its target message, so it takes the core's 🎫 path (intake room, agent
//!   role, one case per message).
//! - a button → [`IncomingKind::Action`] with its `custom_id`.
//!
//! Event ids make the core's "handle each id once" cover the gateway's
//! replays after a resume: `discord:msg:<channel>:<id>`,
//! `discord:react:<channel>:<message>:<user>:<emoji>`, `discord:int:<id>`.

use serenity::all::{
    CommandDataOptionValue, CommandInteraction, CommandType, ComponentInteraction, Message,
    MessageType, Reaction, ReactionType, RoleId,
};

use super::render::{ESCALATE_COMMAND, ROLE_PREFIX};
use crate::message::{Incoming, IncomingKind};

/// Where an event happened, in the core's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Place {
    /// The channel (a thread's parent for a thread).
    pub room: String,
    /// The thread's id, when it happened in a thread.
    pub thread: Option<String>,
}

/// Who the bot is and how the core reads commands.
pub(crate) struct Me<'a> {
    pub user: u64,
    pub escalate_key: &'a str,
    pub prefix: &'a str,
}

/// How an interaction is answered; written into [`Incoming::reply_handle`]
/// as `<kind>:<token>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// A command deferred publicly: the first reply edits the "thinking"
    /// message, later ones are follow-ups.
    Public,
    /// A command deferred ephemerally: only the caller sees the replies.
    Private,
    /// A button press acknowledged without a message: replies meant for
    /// the presser (refusals) are ephemeral follow-ups, the rest are posted
    /// where they belong (the case thread).
    Click,
}

impl Answer {
    pub fn handle(self, token: &str) -> String {
        let kind = match self {
            Answer::Public => "pub",
            Answer::Private => "eph",
            Answer::Click => "btn",
        };
        format!("{kind}:{token}")
    }

    pub fn parse(handle: &str) -> Option<(Answer, &str)> {
        let (kind, token) = handle.split_once(':')?;
        let a = match kind {
            "pub" => Answer::Public,
            "eph" => Answer::Private,
            "btn" => Answer::Click,
            _ => return None,
        };
        Some((a, token))
    }
}

/// The event id of a message, also how the adapter finds the channel to
/// delete it from: `discord:msg:<channel>:<id>`.
pub(crate) fn message_event_id(channel: u64, id: u64) -> String {
    format!("discord:msg:{channel}:{id}")
}

/// `(channel, message)` from [`message_event_id`], or a bare message id.
pub(crate) fn parse_message_target(target: &str) -> (Option<&str>, &str) {
    match target.strip_prefix("discord:msg:") {
        Some(rest) => match rest.split_once(':') {
            Some((c, m)) => (Some(c), m),
            None => (None, rest),
        },
        None => (None, target),
    }
}

/// A message someone wrote, or why it is ignored.
pub(crate) fn message(m: &Message, place: Place, me: &Me) -> Result<Incoming, &'static str> {
    if m.author.id.get() == me.user {
        return Err("own message");
    }
    if m.author.bot || m.webhook_id.is_some() {
        return Err("a bot's message");
    }
    if !matches!(m.kind, MessageType::Regular | MessageType::InlineReply) {
        return Err("message type not handled");
    }
    Ok(Incoming {
        room: place.room,
        sender: m.author.id.get().to_string(),
        groups: role_groups(m.member.as_ref().map(|m| m.roles.as_slice())),
        event_id: message_event_id(m.channel_id.get(), m.id.get()),
        kind: IncomingKind::Message {
            text: plain_text(&m.content),
            thread_root: place.thread,
        },
        reply_handle: None,
    })
}

/// A reaction. Its target text is filled in by the adapter for the
/// escalation emoji.
pub(crate) fn reaction(r: &Reaction, place: Place, me: &Me) -> Result<Incoming, &'static str> {
    let Some(user) = r.user_id else {
        return Err("reaction without a user");
    };
    if user.get() == me.user {
        return Err("own reaction");
    }
    let key = match &r.emoji {
        ReactionType::Unicode(s) => s.clone(),
        ReactionType::Custom { name, .. } => format!(":{}:", name.as_deref().unwrap_or("?")),
        _ => return Err("unknown emoji kind"),
    };
    Ok(Incoming {
        event_id: format!(
            "discord:react:{}:{}:{}:{}",
            r.channel_id, r.message_id, user, key
        ),
        room: place.room,
        sender: user.get().to_string(),
        groups: role_groups(r.member.as_ref().map(|m| m.roles.as_slice())),
        kind: IncomingKind::Reaction {
            key,
            target: r.message_id.get().to_string(),
            target_text: None,
            target_sender: r.message_author_id.map(|u| u.get().to_string()),
        },
        reply_handle: None,
    })
}

/// A slash or message command, and how to answer it.
pub(crate) fn command(
    c: &CommandInteraction,
    place: Place,
    me: &Me,
) -> Result<(Incoming, Answer), &'static str> {
    let sender = c.user.id.get().to_string();
    let event_id = format!("discord:int:{}", c.id);
    if c.data.kind == CommandType::Message {
        if c.data.name != ESCALATE_COMMAND {
            return Err("unknown message command");
        }
        let target = c.data.target_id.map(|t| t.get().to_string());
        let message = c
            .data
            .target_id
            .and_then(|t| c.data.resolved.messages.get(&t.to_message_id()));
        let Some(target) = target else {
            return Err("message command without a target");
        };
        let answer = Answer::Private;
        return Ok((
            Incoming {
                room: place.room,
                sender,
                groups: role_groups(c.member.as_ref().map(|m| m.roles.as_slice())),
                event_id,
                kind: IncomingKind::Reaction {
                    key: me.escalate_key.to_owned(),
                    target,
                    target_text: message.map(|m| plain_text(&m.content)),
                    target_sender: message.map(|m| m.author.id.get().to_string()),
                },
                reply_handle: Some(answer.handle(&c.token)),
            },
            answer,
        ));
    }
    if c.data.kind != CommandType::ChatInput {
        return Err("command type not handled");
    }
    let mut words = vec![format!("{}{}", me.prefix, c.data.name)];
    for o in &c.data.options {
        match &o.value {
            CommandDataOptionValue::String(s) => words.push(s.trim().to_owned()),
            CommandDataOptionValue::Integer(n) => words.push(n.to_string()),
            CommandDataOptionValue::User(u) => words.push(u.get().to_string()),
            CommandDataOptionValue::Boolean(b) => words.push(b.to_string()),
            _ => {}
        }
    }
    let text = words
        .into_iter()
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let answer = if super::render::is_private_command(&c.data.name) {
        Answer::Private
    } else {
        Answer::Public
    };
    Ok((
        Incoming {
            room: place.room,
            sender,
            groups: role_groups(c.member.as_ref().map(|m| m.roles.as_slice())),
            event_id,
            kind: IncomingKind::Message {
                text: plain_text(&text),
                thread_root: place.thread,
            },
            reply_handle: Some(answer.handle(&c.token)),
        },
        answer,
    ))
}

/// The sender's guild roles as `[roles]` names them (`role:<id>`).
fn role_groups(roles: Option<&[RoleId]>) -> Vec<String> {
    roles
        .unwrap_or_default()
        .iter()
        .map(|r| format!("{ROLE_PREFIX}{r}"))
        .collect()
}

/// A button press.
pub(crate) fn click(c: &ComponentInteraction, place: Place) -> Incoming {
    Incoming {
        room: place.room,
        sender: c.user.id.get().to_string(),
        groups: role_groups(c.member.as_ref().map(|m| m.roles.as_slice())),
        event_id: format!("discord:int:{}", c.id),
        kind: IncomingKind::Action {
            id: c.data.custom_id.clone(),
            message: Some(c.message.id.get().to_string()),
        },
        reply_handle: Some(Answer::Click.handle(&c.token)),
    }
}

/// Discord message text to the plain text the core reads: user and role
/// mentions `<@1>`, `<@!1>`, `<@&2>` become the bare id (`role:2`), channel
/// mentions `#<id>`; the rest is kept.
pub(crate) fn plain_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(open) = rest.find('<') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('>') else {
            out.push_str(&rest[open..]);
            rest = "";
            break;
        };
        let inner = &after[..close];
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if let Some(role) = inner.strip_prefix("@&").filter(|t| digits(t)) {
            out.push_str("role:");
            out.push_str(role);
        } else if let Some(user) = inner
            .strip_prefix("@!")
            .or_else(|| inner.strip_prefix('@'))
            .filter(|t| digits(t))
        {
            out.push_str(user);
        } else if let Some(ch) = inner.strip_prefix('#').filter(|t| digits(t)) {
            out.push('#');
            out.push_str(ch);
        } else {
            out.push('<');
            out.push_str(inner);
            out.push('>');
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_read_as_ids() {
        assert_eq!(plain_text("!assign <@501> now"), "!assign 501 now");
        assert_eq!(
            plain_text("<@!501> <@&60> <#1100> <t:1:R>"),
            "501 role:60 #1100 <t:1:R>"
        );
        assert_eq!(plain_text("a < b"), "a < b");
    }

    #[test]
    fn handles_round_trip() {
        for a in [Answer::Public, Answer::Private, Answer::Click] {
            let h = a.handle("tok:en");
            assert_eq!(Answer::parse(&h), Some((a, "tok:en")));
        }
        assert_eq!(Answer::parse("https://x"), None);
    }

    #[test]
    fn message_targets_carry_their_channel() {
        let id = message_event_id(1200, 1300);
        assert_eq!(parse_message_target(&id), (Some("1200"), "1300"));
        assert_eq!(parse_message_target("1300"), (None, "1300"));
    }
}
