//! What Slack sends, as [`Incoming`]: pure translation, no network.
//!
//! Only the fields caseroom uses are read, with serde structs written
//! after Slack's recorded payloads (see the research notes), so a field
//! Slack adds or a subtype we do not know never breaks parsing.
//!
//! - `message` → [`IncomingKind::Message`] (a thread reply when `thread_ts`
//!   differs from `ts`). Ignored: the bot's own posts (`bot_id`, or its user
//!   id), `hidden` events and subtypes other than `file_share` and
//!   `thread_broadcast` (edits, deletes, joins...).
//! - `reaction_added` on a message → [`IncomingKind::Reaction`] with the
//!   emoji as the core knows it (`:ticket:` → 🎫, `:raised_hand:` → ✋ ...);
//!   the reacted-to text is fetched afterwards ([`Translated::NeedsTarget`]).
//! - `block_actions` → [`IncomingKind::Action`] with the button's
//!   `action_id` (the core parses it and checks the clicker's role).
//! - the message shortcut [`SHORTCUT_CALLBACK_ID`] → the escalation reaction
//!   on that message, so it takes the core's 🎫 path (intake room, agent
//!   role, one case per message).
//! - `/caseroom <verb> [args] [public]` → the typed command `!<verb> args`,
//!   answered through the command's `response_url` (only the caller sees it)
//!   unless `public` was given.

use serde::Deserialize;
use serde_json::Value;

use super::Inbound;
use super::render::plain_text;
use crate::message::{Incoming, IncomingKind};

/// The `callback_id` of the message shortcut "Escalate to case" (see
/// `config/slack-app-manifest.yml`).
pub const SHORTCUT_CALLBACK_ID: &str = "caseroom.escalate";

/// The command prefix the core parses; slash commands are rewritten to it.
const PREFIX: &str = "!";

/// Who the bot is, to ignore its own events.
pub(crate) struct Me<'a> {
    pub user: &'a str,
    pub escalate_key: &'a str,
}

/// A translated payload.
#[derive(Debug, PartialEq)]
pub(crate) enum Translated {
    Ready(Incoming),
    /// A reaction whose target message (channel, ts) must be fetched.
    NeedsTarget(Incoming, String, String),
    Ignored(&'static str),
}

/// A slash command, from a form body (Events API) or JSON (Socket Mode).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct SlashCommand {
    pub command: String,
    #[serde(default)]
    pub text: String,
    pub user_id: String,
    pub channel_id: String,
    #[serde(default)]
    pub response_url: Option<String>,
    pub trigger_id: String,
}

#[derive(Deserialize)]
struct Callback {
    event_id: String,
    event: Value,
}

#[derive(Deserialize)]
struct MessageEvent {
    channel: String,
    user: Option<String>,
    #[serde(default)]
    text: String,
    ts: String,
    thread_ts: Option<String>,
    subtype: Option<String>,
    bot_id: Option<String>,
    #[serde(default)]
    hidden: bool,
}

#[derive(Deserialize)]
struct ReactionEvent {
    user: String,
    reaction: String,
    item: ReactionItem,
    item_user: Option<String>,
}

#[derive(Deserialize)]
struct ReactionItem {
    #[serde(rename = "type")]
    kind: String,
    channel: Option<String>,
    ts: Option<String>,
}

#[derive(Deserialize)]
struct Id {
    id: String,
}

#[derive(Deserialize)]
#[serde(tag = "type")]
enum Interaction {
    #[serde(rename = "block_actions")]
    BlockActions {
        user: Id,
        channel: Option<Id>,
        container: Option<Container>,
        actions: Vec<ActionRef>,
    },
    #[serde(rename = "message_action")]
    MessageAction {
        callback_id: String,
        user: Id,
        channel: Id,
        message: ShortcutMessage,
        trigger_id: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct Container {
    message_ts: Option<String>,
    channel_id: Option<String>,
}

#[derive(Deserialize)]
struct ActionRef {
    action_id: String,
    action_ts: String,
}

#[derive(Deserialize)]
struct ShortcutMessage {
    ts: String,
    #[serde(default)]
    text: String,
    user: Option<String>,
}

/// Checks that an Events API body or interaction payload has the shape we
/// read, for the HTTP transport's 400.
pub(crate) fn check_push(v: &Value) -> Result<(), String> {
    Callback::deserialize(v)
        .map(|_| ())
        .map_err(|e| format!("not an event callback: {e}"))
}

pub(crate) fn check_interaction(v: &Value) -> Result<(), String> {
    Interaction::deserialize(v)
        .map(|_| ())
        .map_err(|e| format!("not an interaction payload: {e}"))
}

/// Translates one payload.
pub(crate) fn translate(raw: Inbound, me: &Me) -> Translated {
    match raw {
        Inbound::Push(v) => push(v, me),
        Inbound::Interaction(v) => interaction(v, me),
        Inbound::Command(c) => command(c),
    }
}

fn push(v: Value, me: &Me) -> Translated {
    let Ok(cb) = Callback::deserialize(&v) else {
        return Translated::Ignored("not an event callback");
    };
    match cb.event.get("type").and_then(Value::as_str) {
        Some("message") => message(cb.event, me),
        Some("reaction_added") => reaction(cb.event, &cb.event_id, me),
        _ => Translated::Ignored("event type not handled"),
    }
}

fn message(event: Value, me: &Me) -> Translated {
    let Ok(m) = MessageEvent::deserialize(&event) else {
        return Translated::Ignored("malformed message event");
    };
    if m.hidden {
        return Translated::Ignored("hidden message");
    }
    // Our own posts carry bot_id but no subtype; other bots are not agents.
    if m.bot_id.is_some() {
        return Translated::Ignored("a bot's message");
    }
    match m.subtype.as_deref() {
        None | Some("file_share") | Some("thread_broadcast") => {}
        Some(_) => return Translated::Ignored("message subtype not handled"),
    }
    let Some(user) = m.user else {
        return Translated::Ignored("message without a user");
    };
    if user == me.user {
        return Translated::Ignored("own message");
    }
    let thread_root = m.thread_ts.filter(|t| *t != m.ts);
    Translated::Ready(Incoming {
        event_id: format!("slack:msg:{}:{}", m.channel, m.ts),
        room: m.channel,
        sender: user,
        groups: Vec::new(),
        kind: IncomingKind::Message {
            text: plain_text(&m.text),
            thread_root,
        },
        reply_handle: None,
    })
}

fn reaction(event: Value, event_id: &str, me: &Me) -> Translated {
    let Ok(r) = ReactionEvent::deserialize(&event) else {
        return Translated::Ignored("malformed reaction event");
    };
    if r.user == me.user {
        return Translated::Ignored("own reaction");
    }
    let (Some(channel), Some(ts)) = (r.item.channel, r.item.ts) else {
        return Translated::Ignored("reaction without a message");
    };
    if r.item.kind != "message" {
        return Translated::Ignored("reaction on a file");
    }
    let incoming = Incoming {
        room: channel.clone(),
        sender: r.user,
        groups: Vec::new(),
        event_id: format!("slack:ev:{event_id}"),
        kind: IncomingKind::Reaction {
            key: emoji(&r.reaction),
            target: ts.clone(),
            target_text: None,
            target_sender: r.item_user,
        },
        reply_handle: None,
    };
    if emoji(&r.reaction) == me.escalate_key {
        Translated::NeedsTarget(incoming, channel, ts)
    } else {
        Translated::Ready(incoming)
    }
}

fn interaction(v: Value, me: &Me) -> Translated {
    let Ok(i) = Interaction::deserialize(&v) else {
        return Translated::Ignored("malformed interaction");
    };
    match i {
        Interaction::BlockActions {
            user,
            channel,
            container,
            actions,
        } => {
            let Some(action) = actions.into_iter().next() else {
                return Translated::Ignored("block_actions without an action");
            };
            let (message, container_channel) = match container {
                Some(c) => (c.message_ts, c.channel_id),
                None => (None, None),
            };
            let Some(room) = channel.map(|c| c.id).or(container_channel) else {
                return Translated::Ignored("a click outside a channel");
            };
            Translated::Ready(Incoming {
                room,
                event_id: format!("slack:act:{}:{}", user.id, action.action_ts),
                sender: user.id,
                groups: Vec::new(),
                kind: IncomingKind::Action {
                    id: action.action_id,
                    message,
                },
                reply_handle: None,
            })
        }
        Interaction::MessageAction {
            callback_id,
            user,
            channel,
            message,
            trigger_id,
        } => {
            if callback_id != SHORTCUT_CALLBACK_ID {
                return Translated::Ignored("unknown shortcut");
            }
            Translated::Ready(Incoming {
                room: channel.id,
                sender: user.id,
                groups: Vec::new(),
                event_id: format!("slack:shortcut:{trigger_id}"),
                kind: IncomingKind::Reaction {
                    key: me.escalate_key.to_owned(),
                    target: message.ts,
                    target_text: Some(plain_text(&message.text)),
                    target_sender: message.user,
                },
                reply_handle: None,
            })
        }
        Interaction::Other => Translated::Ignored("interaction type not handled"),
    }
}

fn command(c: SlashCommand) -> Translated {
    let text = plain_text(&c.text);
    let mut words: Vec<&str> = text.split_whitespace().collect();
    let public = words
        .last()
        .is_some_and(|w| w.eq_ignore_ascii_case("public"));
    if public {
        words.pop();
    }
    let typed = if words.is_empty() {
        format!("{PREFIX}help")
    } else {
        format!("{PREFIX}{}", words.join(" "))
    };
    Translated::Ready(Incoming {
        room: c.channel_id,
        sender: c.user_id,
        groups: Vec::new(),
        event_id: format!("slack:cmd:{}", c.trigger_id),
        kind: IncomingKind::Message {
            text: typed,
            thread_root: None,
        },
        reply_handle: if public { None } else { c.response_url },
    })
}

/// A Slack emoji name as the character the core compares with.
pub(crate) fn emoji(name: &str) -> String {
    let base = name.split("::").next().unwrap_or(name);
    match base {
        "ticket" => "🎫".into(),
        "admission_tickets" => "🎟".into(),
        "raised_hand" | "hand" => "✋".into(),
        "white_check_mark" | "heavy_check_mark" => "✅".into(),
        "+1" | "thumbsup" => "👍".into(),
        other => format!(":{other}:"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ME: Me = Me {
        user: "UBOT",
        escalate_key: "🎫",
    };

    fn cb(event: Value) -> Inbound {
        Inbound::Push(json!({
            "type": "event_callback", "team_id": "T1", "api_app_id": "A1",
            "event_id": "Ev01", "event_time": 1700000000, "event": event
        }))
    }

    fn ready(t: Translated) -> Incoming {
        match t {
            Translated::Ready(i) => i,
            other => panic!("expected Ready, got {other:?}"),
        }
    }

    #[test]
    fn thread_reply_becomes_a_message_keyed_by_channel_and_ts() {
        let i = ready(translate(
            cb(
                json!({"type":"message","channel":"C1","user":"U2","text":"!assign <@U3|bo>",
                      "ts":"1700000050.000200","thread_ts":"1700000000.000100"}),
            ),
            &ME,
        ));
        assert_eq!(i.event_id, "slack:msg:C1:1700000050.000200");
        assert_eq!(i.sender, "U2");
        assert_eq!(
            i.kind,
            IncomingKind::Message {
                text: "!assign U3".into(),
                thread_root: Some("1700000000.000100".into())
            }
        );
        // A thread's root itself is not "in" the thread.
        let root = ready(translate(
            cb(
                json!({"type":"message","channel":"C1","user":"U2","text":"hi",
                      "ts":"1.1","thread_ts":"1.1"}),
            ),
            &ME,
        ));
        assert!(matches!(
            root.kind,
            IncomingKind::Message {
                thread_root: None,
                ..
            }
        ));
    }

    #[test]
    fn own_posts_edits_and_joins_are_ignored_but_broadcasts_and_files_are_not() {
        for event in [
            json!({"type":"message","channel":"C1","bot_id":"B1","text":"card","ts":"1.1"}),
            json!({"type":"message","channel":"C1","user":"UBOT","text":"x","ts":"1.2"}),
            json!({"type":"message","subtype":"message_changed","channel":"C1","ts":"1.3",
                   "message":{"user":"U2","text":"x","ts":"1.0"}}),
            json!({"type":"message","subtype":"channel_join","channel":"C1","user":"U2","text":"joined","ts":"1.4"}),
            json!({"type":"message","channel":"C1","user":"U2","text":"x","ts":"1.5","hidden":true}),
        ] {
            assert!(
                matches!(translate(cb(event.clone()), &ME), Translated::Ignored(_)),
                "{event}"
            );
        }
        for subtype in ["thread_broadcast", "file_share"] {
            let i = ready(translate(
                cb(
                    json!({"type":"message","subtype":subtype,"channel":"C1","user":"U2",
                          "text":"!claim","ts":"2.1","thread_ts":"2.0"}),
                ),
                &ME,
            ));
            assert!(matches!(i.kind, IncomingKind::Message { .. }), "{subtype}");
        }
    }

    #[test]
    fn ticket_reaction_needs_its_target_and_others_do_not() {
        let t = translate(
            cb(
                json!({"type":"reaction_added","user":"U2","reaction":"ticket","item_user":"U9",
                      "item":{"type":"message","channel":"C9","ts":"3.1"},"event_ts":"3.2"}),
            ),
            &ME,
        );
        let Translated::NeedsTarget(i, channel, ts) = t else {
            panic!("{t:?}")
        };
        assert_eq!((channel.as_str(), ts.as_str()), ("C9", "3.1"));
        assert_eq!(i.event_id, "slack:ev:Ev01");
        assert!(matches!(&i.kind, IncomingKind::Reaction { key, .. } if key == "🎫"));
        let hand = ready(translate(
            cb(
                json!({"type":"reaction_added","user":"U2","reaction":"raised_hand::skin-tone-3",
                      "item":{"type":"message","channel":"C9","ts":"3.1"}}),
            ),
            &ME,
        ));
        assert!(matches!(&hand.kind, IncomingKind::Reaction { key, .. } if key == "✋"));
    }

    #[test]
    fn button_click_becomes_an_action_with_its_id() {
        let i = ready(translate(
            Inbound::Interaction(json!({
                "type":"block_actions","user":{"id":"U2","username":"ana","team_id":"T1"},
                "trigger_id":"1.2.3","container":{"type":"message","message_ts":"1.1","channel_id":"C1"},
                "channel":{"id":"C1","name":"support"},"response_url":"http://127.0.0.1:9/act/1",
                "actions":[{"type":"button","action_id":"claim:C-4","block_id":"b","action_ts":"1.9"}]
            })),
            &ME,
        ));
        assert_eq!(i.room, "C1");
        assert_eq!(i.event_id, "slack:act:U2:1.9");
        assert_eq!(
            i.kind,
            IncomingKind::Action {
                id: "claim:C-4".into(),
                message: Some("1.1".into())
            }
        );
        assert_eq!(i.reply_handle, None);
    }

    #[test]
    fn shortcut_becomes_the_escalation_reaction() {
        let i = ready(translate(
            Inbound::Interaction(json!({
                "type":"message_action","callback_id":SHORTCUT_CALLBACK_ID,"trigger_id":"t1",
                "user":{"id":"U2"},"channel":{"id":"C9"},
                "message":{"type":"message","ts":"5.1","user":"U7","text":"card declined &amp; charged"},
                "response_url":"http://127.0.0.1:9/r"
            })),
            &ME,
        ));
        assert_eq!(i.event_id, "slack:shortcut:t1");
        assert_eq!(
            i.kind,
            IncomingKind::Reaction {
                key: "🎫".into(),
                target: "5.1".into(),
                target_text: Some("card declined & charged".into()),
                target_sender: Some("U7".into())
            }
        );
    }

    #[test]
    fn slash_command_becomes_the_typed_command() {
        let c = |text: &str| SlashCommand {
            command: "/caseroom".into(),
            text: text.into(),
            user_id: "U5".into(),
            channel_id: "C1".into(),
            response_url: Some("http://127.0.0.1:9/cmd".into()),
            trigger_id: "9.9".into(),
        };
        let i = ready(command(c("case C-12")));
        assert_eq!(
            i.kind,
            IncomingKind::Message {
                text: "!case C-12".into(),
                thread_root: None
            }
        );
        assert_eq!(i.reply_handle.as_deref(), Some("http://127.0.0.1:9/cmd"));
        assert_eq!(i.event_id, "slack:cmd:9.9");
        let public = ready(command(c("queue public")));
        assert!(matches!(&public.kind, IncomingKind::Message { text, .. } if text == "!queue"));
        assert_eq!(public.reply_handle, None);
        let empty = ready(command(c("")));
        assert!(matches!(&empty.kind, IncomingKind::Message { text, .. } if text == "!help"));
    }
}
