//! Our messages as Discord message bodies, built with serenity's builders:
//! a case card is an embed with buttons; other messages are content split
//! at paragraph boundaries to fit Discord's limits; actions are buttons
//! whose `custom_id` is the action's id.
//!
//! Mentions are explicit: `allowed_mentions` names exactly the users and
//! roles the message is meant to page (nothing is parsed from the text), so
//! `@everyone` or `<@id>` inside customer text never notifies anyone. Every
//! text is passed through the redactor once more before it leaves, so a
//! card number never reaches Discord in clear.

use std::collections::BTreeSet;

use serde_json::Value;
use serenity::all::{
    ButtonStyle, CommandOptionType, CommandType, CreateActionRow, CreateAllowedMentions,
    CreateButton, CreateCommand, CreateCommandOption, CreateEmbed, CreateMessage, EditMessage,
    Nonce, RoleId, UserId,
};
use sha2::{Digest, Sha256};

use crate::message::{Action, ActionStyle, Outgoing};
use crate::redact::redact;

/// Longest message content Discord accepts (characters).
pub const CONTENT_MAX: usize = 2000;
/// Chunks of a long message stay below the limit, leaving room for `(1/3)`.
pub const CHUNK_MAX: usize = 1900;
/// Longest embed description.
const EMBED_DESCRIPTION_MAX: usize = 4096;
/// Longest embed title.
const EMBED_TITLE_MAX: usize = 256;
/// Buttons per row and rows per message.
const BUTTONS_PER_ROW: usize = 5;
const ROWS_MAX: usize = 5;
/// Longest button label.
const LABEL_MAX: usize = 80;
/// Longest nonce Discord accepts.
const NONCE_MAX: usize = 25;

/// The prefix of a role in config and mentions: `role:<id>`.
pub const ROLE_PREFIX: &str = "role:";

/// How a mention target is written in content: `<@id>` or `<@&id>`.
pub fn mention(id: &str) -> String {
    match id.strip_prefix(ROLE_PREFIX) {
        Some(role) => format!("<@&{role}>"),
        None => format!("<@{id}>"),
    }
}

/// Exactly the users and roles `mentions` names; `@everyone`, `@here` and
/// anything else in the text are not parsed.
pub fn allowed_mentions(mentions: &[String]) -> CreateAllowedMentions {
    let mut users = Vec::new();
    let mut roles = Vec::new();
    for m in mentions {
        match m.strip_prefix(ROLE_PREFIX) {
            Some(r) => {
                if let Some(id) = snowflake(r) {
                    roles.push(RoleId::new(id));
                }
            }
            None => {
                if let Some(id) = snowflake(m) {
                    users.push(UserId::new(id));
                }
            }
        }
    }
    CreateAllowedMentions::new()
        .everyone(false)
        .users(users)
        .roles(roles)
        .replied_user(false)
}

/// A non-zero snowflake.
pub fn snowflake(s: &str) -> Option<u64> {
    s.parse::<u64>().ok().filter(|n| *n > 0)
}

/// A deterministic nonce for chunk `part` of the message with `txn_id`:
/// the same across retries and restarts, so Discord returns the message
/// already posted instead of posting it twice (`enforce_nonce`).
pub fn nonce(txn_id: &str, part: usize) -> String {
    let digest = Sha256::digest(format!("{txn_id}#{part}").as_bytes());
    let mut hex = hex::encode(digest);
    hex.truncate(NONCE_MAX);
    hex
}

/// The text as it may be shown: redacted again, mass mentions defused
/// (a zero-width space after the `@`), known ids written as mentions.
pub fn text(md: &str, known: &BTreeSet<String>) -> String {
    let safe = redact(md);
    let defused = safe
        .replace("@everyone", "@\u{200B}everyone")
        .replace("@here", "@\u{200B}here");
    mention_known(&defused, known)
}

/// Bare ids of known people (agents, leads, on-call) become mentions so
/// they show as names; whether they notify is up to `allowed_mentions`.
fn mention_known(s: &str, known: &BTreeSet<String>) -> String {
    if known.is_empty() {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut digits = String::new();
    let mut prev: Option<char> = None;
    let flush = |digits: &mut String, out: &mut String, prev: Option<char>, next: Option<char>| {
        if digits.is_empty() {
            return;
        }
        let inside = matches!(prev, Some('@') | Some('&') | Some('#') | Some(':'))
            || next.is_some_and(|c| c.is_alphanumeric() || c == '>');
        if !inside && known.contains(digits.as_str()) {
            out.push_str(&mention(digits));
        } else {
            out.push_str(digits);
        }
        digits.clear();
    };
    let mut before_digits: Option<char> = None;
    for c in s.chars() {
        if c.is_ascii_digit() {
            if digits.is_empty() {
                before_digits = prev;
            }
            digits.push(c);
        } else {
            let word_before = before_digits.is_some_and(|p| p.is_alphanumeric());
            if word_before {
                out.push_str(&digits);
                digits.clear();
            } else {
                flush(&mut digits, &mut out, before_digits, Some(c));
            }
            out.push(c);
        }
        prev = Some(c);
    }
    if before_digits.is_some_and(|p| p.is_alphanumeric()) {
        out.push_str(&digits);
    } else {
        flush(&mut digits, &mut out, before_digits, None);
    }
    out
}

/// The mentions not already in `text`, written in front of it.
fn with_mentions(text: String, mentions: &[String]) -> String {
    let missing: Vec<String> = mentions
        .iter()
        .map(|m| mention(m))
        .filter(|m| !text.contains(m.as_str()))
        .collect();
    if missing.is_empty() {
        text
    } else {
        format!("{}: {text}", missing.join(" "))
    }
}

/// Splits `text` into chunks of at most `max` characters, preferring
/// paragraph ends, then line ends, then sentence ends, then spaces; a code
/// fence cut in two is closed and reopened.
pub fn split(text: &str, max: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest: &str = text.trim_end();
    while rest.chars().count() > max {
        // Byte offset of the max-th char.
        let limit = rest
            .char_indices()
            .nth(max)
            .map(|(i, _)| i)
            .unwrap_or(rest.len());
        let window = &rest[..limit];
        let cut = window
            .rfind("\n\n")
            .or_else(|| window.rfind('\n'))
            .or_else(|| {
                window
                    .rfind(['。', '！', '？', '.', '!', '?'])
                    .map(|i| i + window[i..].chars().next().map_or(1, char::len_utf8))
            })
            .or_else(|| window.rfind(' '))
            .filter(|i| *i > 0)
            .unwrap_or(limit);
        out.push(rest[..cut].trim_end().to_owned());
        rest = rest[cut..].trim_start_matches(['\n', ' ']);
    }
    if !rest.trim().is_empty() || out.is_empty() {
        out.push(rest.to_owned());
    }
    // Close a fence left open at a cut and reopen it in the next chunk.
    let mut open = false;
    for chunk in &mut out {
        let fences = chunk.matches("```").count();
        if open {
            chunk.insert_str(0, "```\n");
        }
        if fences % 2 == 1 {
            open = !open;
        }
        if open {
            chunk.push_str("\n```");
        }
    }
    out
}

/// The buttons for `actions`, up to five rows of five.
pub fn buttons(actions: &[Action]) -> Vec<CreateActionRow> {
    actions
        .chunks(BUTTONS_PER_ROW)
        .take(ROWS_MAX)
        .map(|row| CreateActionRow::Buttons(row.iter().map(button).collect()))
        .collect()
}

fn button(action: &Action) -> CreateButton {
    let mut label: String = action.label.chars().take(LABEL_MAX).collect();
    if label.trim().is_empty() {
        label = action.kind.command().chars().take(LABEL_MAX).collect();
    }
    let style = match action.style {
        ActionStyle::Primary => ButtonStyle::Primary,
        ActionStyle::Secondary => ButtonStyle::Secondary,
        ActionStyle::Danger => ButtonStyle::Danger,
    };
    CreateButton::new(action.kind.id())
        .label(label)
        .style(style)
}

/// A case card as an embed: the first line (without Markdown emphasis) is
/// the title, the rest the description.
pub fn card_embed(text: &str) -> CreateEmbed {
    let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
    let title: String = first
        .replace("**", "")
        .chars()
        .take(EMBED_TITLE_MAX)
        .collect();
    let mut description: String = rest.trim().chars().take(EMBED_DESCRIPTION_MAX).collect();
    if description.is_empty() {
        description = "\u{200B}".into();
    }
    CreateEmbed::new()
        .title(title)
        .description(description)
        .colour(0x5865F2)
}

/// `msg` as the bodies to post, in order (one, or the chunks of a long
/// text). `txn_id` seeds the nonces.
pub fn create(msg: &Outgoing, known: &BTreeSet<String>, txn_id: &str) -> Vec<Value> {
    let mentions = allowed_mentions(&msg.mentions);
    if msg.render.is_some() {
        let b = CreateMessage::new()
            .embed(card_embed(&text(&msg.text, known)))
            .components(buttons(&msg.actions))
            .allowed_mentions(mentions)
            .nonce(Nonce::String(nonce(txn_id, 0)))
            .enforce_nonce(true);
        return vec![to_json(&b)];
    }
    let full = with_mentions(text(&msg.text, known), &msg.mentions);
    let chunks = if full.chars().count() <= CONTENT_MAX {
        vec![full]
    } else {
        let parts = split(&full, CHUNK_MAX);
        let n = parts.len();
        parts
            .into_iter()
            .enumerate()
            .map(|(i, p)| format!("({}/{n}) {p}", i + 1))
            .collect()
    };
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, content)| {
            let mut b = CreateMessage::new()
                .content(content)
                .allowed_mentions(mentions.clone())
                .nonce(Nonce::String(nonce(txn_id, i)))
                .enforce_nonce(true);
            if i == 0 && !msg.actions.is_empty() {
                b = b.components(buttons(&msg.actions));
            }
            to_json(&b)
        })
        .collect()
}

/// `msg` as an edit of an earlier message (a card): the same look, no
/// nonce. A long text is cut to the limit (an edit is one message).
pub fn edit(msg: &Outgoing, known: &BTreeSet<String>) -> Value {
    let mentions = allowed_mentions(&msg.mentions);
    let b = if msg.render.is_some() {
        EditMessage::new()
            .content("")
            .embed(card_embed(&text(&msg.text, known)))
            .components(buttons(&msg.actions))
            .allowed_mentions(mentions)
    } else {
        let full = with_mentions(text(&msg.text, known), &msg.mentions);
        let content = split(&full, CONTENT_MAX).swap_remove(0);
        EditMessage::new()
            .content(content)
            .embeds(vec![])
            .components(buttons(&msg.actions))
            .allowed_mentions(mentions)
    };
    to_json(&b)
}

/// An interaction answer (the deferred response edited, or a follow-up):
/// content, buttons, explicit mentions, ephemeral when asked.
pub fn interaction_answer(msg: &Outgoing, known: &BTreeSet<String>, ephemeral: bool) -> Value {
    let full = with_mentions(text(&msg.text, known), &msg.mentions);
    let content = split(&full, CONTENT_MAX).swap_remove(0);
    let b = CreateMessage::new()
        .content(content)
        .components(buttons(&msg.actions))
        .allowed_mentions(allowed_mentions(&msg.mentions));
    let mut v = to_json(&b);
    if ephemeral {
        v["flags"] = Value::from(64u64);
    }
    v
}

fn to_json<T: serde::Serialize>(b: &T) -> Value {
    serde_json::to_value(b).unwrap_or(Value::Null)
}

/// The application commands caseroom registers: lead commands (answered
/// only to the caller), thread commands, and the message context menu.
pub fn commands() -> Vec<CreateCommand> {
    let opt = |kind, name: &str, desc: &str, required: bool| {
        CreateCommandOption::new(kind, name, desc).required(required)
    };
    vec![
        CreateCommand::new("queue")
            .description("Open cases by status, oldest unassigned, load")
            .add_option(opt(
                CommandOptionType::String,
                "filter",
                "e.g. unassigned, p1, mine",
                false,
            )),
        CreateCommand::new("sla")
            .description("Cases at risk of breaching their SLA, or breached")
            .add_option(opt(
                CommandOptionType::String,
                "which",
                "at-risk or breached",
                false,
            )),
        CreateCommand::new("stats")
            .description("Case statistics")
            .add_option(opt(CommandOptionType::String, "period", "24h or 7d", false)),
        CreateCommand::new("case")
            .description("Show one case")
            .add_option(opt(CommandOptionType::String, "id", "e.g. C-12", true)),
        CreateCommand::new("oncall").description("Who is on call"),
        CreateCommand::new("claim").description("Claim the case of this thread"),
        CreateCommand::new("note")
            .description("Add an internal note to the case of this thread")
            .add_option(opt(CommandOptionType::String, "text", "The note", true)),
        CreateCommand::new("wait")
            .description("Wait on the customer (pauses the SLA clock)")
            .add_option(opt(
                CommandOptionType::String,
                "reason",
                "What you asked for",
                false,
            )),
        CreateCommand::new("resolve")
            .description("Resolve the case of this thread")
            .add_option(opt(
                CommandOptionType::String,
                "playbook",
                "The playbook that solved it",
                false,
            )),
        CreateCommand::new("use")
            .description("Draft the reply of a playbook for this case")
            .add_option(
                // Always offered: the ids follow playbook reloads, so a bot
                // started before any playbook existed suggests them later.
                opt(CommandOptionType::String, "playbook", "Playbook id", true)
                    .set_autocomplete(true),
            ),
        CreateCommand::new(ESCALATE_COMMAND).kind(CommandType::Message),
    ]
}

/// The message context-menu command.
pub const ESCALATE_COMMAND: &str = "Escalate to case";

/// Lead commands: answered only to the caller. Thread commands answer in
/// the thread for everyone to see.
pub fn is_private_command(name: &str) -> bool {
    !matches!(name, "claim" | "note" | "wait" | "resolve" | "use")
}

/// A stable hash of the command set: commands are registered again only
/// when it changes (Discord allows 200 creates a day per guild).
pub fn commands_hash(commands: &[CreateCommand]) -> String {
    let json = serde_json::to_string(commands).unwrap_or_default();
    hex::encode(Sha256::digest(json.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::CaseId;
    use crate::message::ActionKind;

    fn known(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn customer_text_cannot_ping_anyone() {
        let mut msg = Outgoing::new("1", "customer wrote: @everyone @here <@&777> <@555>");
        msg.mentions = vec!["500".into(), "role:600".into()];
        let body = &create(&msg, &BTreeSet::new(), "t")[0];
        let am = &body["allowed_mentions"];
        assert_eq!(am["parse"], serde_json::json!([]), "{am}");
        assert_eq!(am["users"], serde_json::json!(["500"]));
        assert_eq!(am["roles"], serde_json::json!(["600"]));
        let content = body["content"].as_str().unwrap();
        assert!(content.starts_with("<@500> <@&600>: "), "{content}");
        assert!(!content.contains("@everyone") && !content.contains("@here"));
    }

    #[test]
    fn card_numbers_never_leave_in_clear() {
        let msg = Outgoing::new("1", "card 4111 1111 1111 1111 declined");
        let body = create(&msg, &BTreeSet::new(), "t");
        assert!(!body[0].to_string().contains("4111 1111"), "{}", body[0]);
    }

    #[test]
    fn known_ids_become_mentions_but_not_inside_other_tokens() {
        let k = known(&["500"]);
        assert_eq!(mention_known("claimed by 500.", &k), "claimed by <@500>.");
        assert_eq!(
            mention_known("<@500> x500 5001 500", &k),
            "<@500> x500 5001 <@500>"
        );
    }

    #[test]
    fn long_text_splits_at_paragraphs_within_limits() {
        let para = format!("{}\n\n", "word ".repeat(300));
        let text = para.repeat(4);
        let parts = split(&text, CHUNK_MAX);
        assert!(parts.len() >= 4, "{}", parts.len());
        for p in &parts {
            assert!(p.chars().count() <= CHUNK_MAX + 8);
            assert!(p.starts_with("word"), "cut at a paragraph: {:?}", &p[..10]);
        }
        let cjk = "退款。".repeat(1500);
        for p in split(&cjk, CHUNK_MAX) {
            assert!(p.chars().count() <= CHUNK_MAX);
            assert!(p.ends_with('。'));
        }
        let fenced = format!("```\n{}\n```", "line\n".repeat(800));
        for p in split(&fenced, CHUNK_MAX) {
            assert_eq!(p.matches("```").count() % 2, 0, "{p}");
        }
        let msg = Outgoing::new("1", text);
        let bodies = create(&msg, &BTreeSet::new(), "t");
        assert!(bodies.len() >= 4);
        for b in &bodies {
            assert!(b["content"].as_str().unwrap().chars().count() <= CONTENT_MAX);
        }
        assert!(bodies[0]["content"].as_str().unwrap().starts_with("(1/"));
        assert_ne!(bodies[0]["nonce"], bodies[1]["nonce"]);
    }

    #[test]
    fn cards_are_embeds_with_buttons_and_a_stable_nonce() {
        let mut msg = Outgoing::card("1", CaseId(4), false);
        msg.text = "🆕 **C-4** · P2 · chat\nstatus new".into();
        msg.actions = vec![
            Action::new(
                ActionKind::Claim { case: CaseId(4) },
                "Claim",
                ActionStyle::Primary,
            ),
            Action::new(
                ActionKind::Resolve { case: CaseId(4) },
                "Resolve",
                ActionStyle::Secondary,
            ),
        ];
        let b = &create(&msg, &BTreeSet::new(), "caseroom-x-1")[0];
        assert_eq!(b["embeds"][0]["title"], "🆕 C-4 · P2 · chat");
        assert_eq!(
            b["components"][0]["components"][0]["custom_id"],
            "claim:C-4"
        );
        assert_eq!(b["components"][0]["components"][0]["style"], 1);
        assert_eq!(b["nonce"], nonce("caseroom-x-1", 0));
        assert_eq!(b["enforce_nonce"], true);
        assert!(b["nonce"].as_str().unwrap().len() <= NONCE_MAX);
        let e = edit(&msg, &BTreeSet::new());
        assert!(e.get("nonce").is_none());
        assert_eq!(
            e["components"][0]["components"][1]["custom_id"],
            "resolve:C-4"
        );
    }

    #[test]
    fn command_set_hash_is_stable() {
        assert_eq!(commands_hash(&commands()), commands_hash(&commands()));
        // `/use` always completes playbook ids, whatever was loaded at start.
        let json = serde_json::to_value(commands()).unwrap();
        let use_cmd = json
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "use")
            .unwrap();
        assert_eq!(use_cmd["options"][0]["autocomplete"], true);
    }
}
