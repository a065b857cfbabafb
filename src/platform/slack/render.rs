//! Our Markdown and actions in Slack's terms: mrkdwn text and Block Kit.
//!
//! The core writes Markdown (`**bold**`, `[text](url)`, `` `code` ``,
//! `> quote`); Slack reads its own mrkdwn (`*bold*`, `<url|text>`) and
//! needs `&`, `<` and `>` escaped so that text from a ticket can never turn
//! into `<!channel>` or a fake mention. Known user ids (the people in the
//! config's roles, and whoever a message mentions) become `<@U…>` mentions.
//!
//! A message is a fallback `text` (notifications, screen readers) plus
//! blocks: its text in section blocks (Slack caps one at 3000 characters)
//! and its [`Action`]s as buttons whose `action_id` is [`ActionKind::id`],
//! so a click arrives as that id.

use std::collections::BTreeSet;

use slack_morphism::prelude::*;

use crate::message::{Action, ActionStyle, Outgoing};

/// Longest text of one section block.
const SECTION_MAX: usize = 3000;
/// Longest button label.
const LABEL_MAX: usize = 75;
/// Most elements in one actions block.
const BUTTONS_PER_BLOCK: usize = 25;
/// Most blocks in one message (Slack refuses more); text beyond is cut.
const BLOCKS_MAX: usize = 50;

/// The content of `msg` for chat.postMessage / chat.update / postEphemeral.
pub fn content(msg: &Outgoing, known_users: &BTreeSet<String>) -> SlackMessageContent {
    let mut users = known_users.clone();
    users.extend(msg.mentions.iter().cloned());
    let mut text = mrkdwn(&msg.text, &users);
    let missing: Vec<String> = msg
        .mentions
        .iter()
        .map(|u| mention(u))
        .filter(|m| !text.contains(m.as_str()))
        .collect();
    if !missing.is_empty() {
        text = format!("{}: {text}", missing.join(" "));
    }
    let blocks = blocks(&text, &msg.actions);
    SlackMessageContent::new()
        .with_text(fallback(&text))
        .with_blocks(blocks)
}

/// The core's answer to a command, as an answer to `/caseroom …`: the
/// command it names is the slash form the user typed, not the `!` form
/// that works in threads.
pub fn slash_answer(text: &str) -> String {
    text.replace("Unknown command `!", "Unknown command `/caseroom ")
        .replace(
            "`!help` lists the commands",
            "`/caseroom help` lists the commands",
        )
}

/// How Slack writes a mention of `id`: a user group (`S…`, e.g. an
/// on-call group) as `<!subteam^S…>`, anyone else as `<@U…>`.
pub fn mention(id: &str) -> String {
    if id.starts_with('S') {
        format!("<!subteam^{id}>")
    } else {
        format!("<@{id}>")
    }
}

/// The notification text: the first lines of the message.
fn fallback(text: &str) -> String {
    let mut out: String = text.chars().take(SECTION_MAX).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

/// Sections holding `text` (split at line ends), then the buttons.
pub fn blocks(text: &str, actions: &[Action]) -> Vec<SlackBlock> {
    let mut blocks: Vec<SlackBlock> = Vec::new();
    let button_blocks = actions.len().div_ceil(BUTTONS_PER_BLOCK);
    for chunk in split_text(text, SECTION_MAX) {
        if blocks.len() + button_blocks >= BLOCKS_MAX {
            break;
        }
        blocks.push(
            SlackSectionBlock::new()
                .with_text(SlackBlockText::MarkDown(SlackBlockMarkDownText::new(chunk)))
                .into(),
        );
    }
    for group in actions.chunks(BUTTONS_PER_BLOCK) {
        let elements = group.iter().map(|a| button(a).into()).collect();
        blocks.push(SlackActionsBlock::new(elements).into());
    }
    blocks
}

/// One action as a button: `action_id` is the action's id, the label is
/// plain text (Slack refuses mrkdwn there).
pub fn button(action: &Action) -> SlackBlockButtonElement {
    let mut label: String = action.label.chars().take(LABEL_MAX).collect();
    if label.trim().is_empty() {
        label = action.kind.command();
    }
    let b = SlackBlockButtonElement::new(SlackBlockPlainTextOnly::from(label))
        .with_action_id(SlackActionId(action.kind.id()));
    match action.style {
        ActionStyle::Primary => b.with_style(SlackBlockButtonStyle::Primary),
        ActionStyle::Danger => b.with_style(SlackBlockButtonStyle::Danger),
        ActionStyle::Secondary => b,
    }
}

/// Splits `text` into pieces of at most `max` characters, at line ends
/// where it can.
fn split_text(text: &str, max: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut cur_len = 0usize;
    for line in text.split_inclusive('\n') {
        let len = line.chars().count();
        if cur_len + len > max && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
            cur_len = 0;
        }
        if len > max {
            let chars: Vec<char> = line.chars().collect();
            for piece in chars.chunks(max) {
                out.push(piece.iter().collect());
            }
            continue;
        }
        cur.push_str(line);
        cur_len += len;
    }
    if !cur.trim().is_empty() || out.is_empty() {
        out.push(cur);
    }
    out.retain(|s| !s.trim().is_empty());
    if out.is_empty() {
        // A section needs some text.
        out.push(" ".into());
    }
    out
}

/// Markdown to Slack mrkdwn. Code spans and fenced blocks are kept as they
/// are (only escaped); `users` are written as `<@id>` mentions.
pub fn mrkdwn(md: &str, users: &BTreeSet<String>) -> String {
    let mut out = String::with_capacity(md.len() + 16);
    let mut in_fence = false;
    for (i, line) in md.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") {
            in_fence = !in_fence;
            out.push_str(&escape(line));
            continue;
        }
        if in_fence {
            out.push_str(&escape(line));
            continue;
        }
        // Headings become bold lines; quotes keep their marker.
        let (prefix, body) = if let Some(rest) = heading(trimmed) {
            out.push('*');
            out.push_str(&inline(rest, users));
            out.push('*');
            continue;
        } else if let Some(rest) = trimmed.strip_prefix("> ") {
            ("> ", rest)
        } else if trimmed == ">" {
            (">", "")
        } else if let Some(rest) = trimmed
            .strip_prefix("- ")
            .or_else(|| trimmed.strip_prefix("* "))
        {
            ("• ", rest)
        } else {
            ("", line)
        };
        out.push_str(prefix);
        out.push_str(&inline(body, users));
    }
    out
}

fn heading(line: &str) -> Option<&str> {
    let hashes = line.chars().take_while(|c| *c == '#').count();
    if (1..=6).contains(&hashes) {
        line[hashes..].strip_prefix(' ').map(str::trim)
    } else {
        None
    }
}

/// `&`, `<` and `>` as Slack wants them in text.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// One line's inline Markdown: code spans kept, the rest converted.
fn inline(line: &str, users: &BTreeSet<String>) -> String {
    let mut out = String::new();
    for (i, part) in line.split('`').enumerate() {
        if i > 0 {
            out.push('`');
        }
        if i % 2 == 1 {
            out.push_str(&escape(part));
        } else {
            out.push_str(&emphasis(part, users));
        }
    }
    out
}

/// Bold, italics, strike-through, links and mentions outside code.
fn emphasis(s: &str, users: &BTreeSet<String>) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let rest = &chars[i..];
        if starts(rest, "**") || starts(rest, "__") {
            if let Some(end) = find(&chars, i + 2, &rest[..2]) {
                let inner: String = chars[i + 2..end].iter().collect();
                out.push('*');
                out.push_str(&emphasis(&inner, users));
                out.push('*');
                i = end + 2;
                continue;
            }
        } else if starts(rest, "~~") {
            if let Some(end) = find(&chars, i + 2, &['~', '~']) {
                let inner: String = chars[i + 2..end].iter().collect();
                out.push('~');
                out.push_str(&emphasis(&inner, users));
                out.push('~');
                i = end + 2;
                continue;
            }
        } else if (rest[0] == '*' || rest[0] == '_')
            && rest.get(1).is_some_and(|c| !c.is_whitespace())
            && (i == 0 || !chars[i - 1].is_alphanumeric())
        {
            if let Some(end) = find(&chars, i + 1, &[rest[0]])
                && end > i + 1
                && !chars[end - 1].is_whitespace()
            {
                let inner: String = chars[i + 1..end].iter().collect();
                out.push('_');
                out.push_str(&emphasis(&inner, users));
                out.push('_');
                i = end + 1;
                continue;
            }
        } else if rest[0] == '['
            && let Some((label, url, used)) = link(rest)
        {
            out.push('<');
            out.push_str(&url.replace('|', "%7C").replace('>', "%3E"));
            out.push('|');
            out.push_str(&escape(&label));
            out.push('>');
            i += used;
            continue;
        }
        // A known user id standing alone becomes a mention.
        if chars[i].is_ascii_alphanumeric() && (i == 0 || !chars[i - 1].is_ascii_alphanumeric()) {
            let end = (i..chars.len())
                .find(|&j| !chars[j].is_ascii_alphanumeric())
                .unwrap_or(chars.len());
            let word: String = chars[i..end].iter().collect();
            if users.contains(&word) {
                out.push_str(&mention(&word));
                i = end;
                continue;
            }
            out.push_str(&escape(&word));
            i = end;
            continue;
        }
        out.push_str(&escape(&chars[i].to_string()));
        i += 1;
    }
    out
}

fn starts(s: &[char], pat: &str) -> bool {
    let p: Vec<char> = pat.chars().collect();
    s.len() >= p.len() && s[..p.len()] == p[..]
}

/// Index of the next `pat` at or after `from`.
fn find(s: &[char], from: usize, pat: &[char]) -> Option<usize> {
    (from..s.len().saturating_sub(pat.len() - 1)).find(|&j| s[j..j + pat.len()] == *pat)
}

/// `[label](url)` at the start of `s`: (label, url, chars used).
fn link(s: &[char]) -> Option<(String, String, usize)> {
    let close = s.iter().position(|c| *c == ']')?;
    if s.get(close + 1) != Some(&'(') {
        return None;
    }
    let end = close + 2 + s[close + 2..].iter().position(|c| *c == ')')?;
    let label: String = s[1..close].iter().collect();
    let url: String = s[close + 2..end].iter().collect();
    if !(url.starts_with("http://") || url.starts_with("https://") || url.starts_with("mailto:")) {
        return None;
    }
    Some((label, url, end + 1))
}

/// Slack message text (as received) to the plain text the core reads:
/// `<@U1|ana>` → `U1`, `<#C1|x>` → `#x`, `<http://a|b>` → `http://a`,
/// entities unescaped.
pub fn plain_text(slack: &str) -> String {
    let mut out = String::with_capacity(slack.len());
    let mut rest = slack;
    while let Some(open) = rest.find('<') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('>') else {
            out.push_str(&rest[open..]);
            rest = "";
            break;
        };
        let inner = &after[..close];
        let (target, label) = match inner.split_once('|') {
            Some((t, l)) => (t, Some(l)),
            None => (inner, None),
        };
        if let Some(user) = target.strip_prefix('@') {
            out.push_str(user);
        } else if let Some(channel) = target.strip_prefix('#') {
            out.push('#');
            out.push_str(label.unwrap_or(channel));
        } else if let Some(special) = target.strip_prefix('!') {
            out.push('@');
            out.push_str(label.unwrap_or(special));
        } else {
            out.push_str(target.strip_prefix("mailto:").unwrap_or(target));
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::CaseId;
    use crate::message::ActionKind;

    fn users(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn markdown_becomes_mrkdwn() {
        let none = BTreeSet::new();
        assert_eq!(mrkdwn("**P1** case", &none), "*P1* case");
        assert_eq!(mrkdwn("an *italic* word", &none), "an _italic_ word");
        assert_eq!(mrkdwn("~~gone~~", &none), "~gone~");
        assert_eq!(
            mrkdwn("see [the ticket](https://help.example/t/1)", &none),
            "see <https://help.example/t/1|the ticket>"
        );
        assert_eq!(mrkdwn("## Checklist", &none), "*Checklist*");
        assert_eq!(mrkdwn("- one\n- two", &none), "• one\n• two");
        assert_eq!(mrkdwn("> quoted & <b>", &none), "> quoted &amp; &lt;b&gt;");
        assert_eq!(mrkdwn("snake_case_name", &none), "snake_case_name");
        assert_eq!(mrkdwn("2 * 3 * 4", &none), "2 * 3 * 4");
    }

    #[test]
    fn ticket_text_cannot_ping_the_channel_or_fake_a_mention() {
        let none = BTreeSet::new();
        assert_eq!(
            mrkdwn("hi <!channel> and <@U999>", &none),
            "hi &lt;!channel&gt; and &lt;@U999&gt;"
        );
        assert_eq!(
            mrkdwn("[x](javascript:alert(1))", &none),
            "[x](javascript:alert(1))"
        );
    }

    #[test]
    fn code_is_kept_and_known_users_become_mentions() {
        let u = users(&["U0ALICE1"]);
        assert_eq!(
            mrkdwn("claimed by U0ALICE1 · `!claim **x**`", &u),
            "claimed by <@U0ALICE1> · `!claim **x**`"
        );
        assert_eq!(mrkdwn("XU0ALICE1 U0ALICE12", &u), "XU0ALICE1 U0ALICE12");
        assert_eq!(
            mrkdwn("```\n**raw** <x>\n```", &u),
            "```\n**raw** &lt;x&gt;\n```"
        );
    }

    #[test]
    fn received_text_reads_as_plain_text() {
        assert_eq!(
            plain_text("!assign <@U2|ana> &lt;now&gt; &amp; <https://x.io/a|x.io>"),
            "!assign U2 <now> & https://x.io/a"
        );
        assert_eq!(plain_text("<#C1|support> <!here>"), "#support @here");
    }

    #[test]
    fn actions_become_buttons_with_their_ids() {
        let actions = vec![
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
        let json = serde_json::to_value(blocks("*C-4* card", &actions)).unwrap();
        assert_eq!(json[0]["type"], "section");
        assert_eq!(json[0]["text"]["type"], "mrkdwn");
        assert_eq!(json[0]["text"]["text"], "*C-4* card");
        assert_eq!(json[1]["type"], "actions");
        let buttons = json[1]["elements"].as_array().unwrap();
        assert_eq!(buttons[0]["type"], "button");
        assert_eq!(buttons[0]["action_id"], "claim:C-4");
        assert_eq!(buttons[0]["text"]["type"], "plain_text");
        assert_eq!(buttons[0]["text"]["text"], "Claim");
        assert_eq!(buttons[0]["style"], "primary");
        assert_eq!(buttons[1]["action_id"], "resolve:C-4");
        assert!(buttons[1].get("style").is_none());
    }

    #[test]
    fn long_text_is_split_into_sections_within_limits() {
        let line = format!("{}\n", "x".repeat(999));
        let text = line.repeat(7);
        let b = blocks(&text, &[]);
        assert!(b.len() >= 3);
        for block in serde_json::to_value(&b).unwrap().as_array().unwrap() {
            let t = block["text"]["text"].as_str().unwrap();
            assert!(t.chars().count() <= SECTION_MAX);
        }
        let huge = "y".repeat(SECTION_MAX * 60);
        assert!(blocks(&huge, &[]).len() <= BLOCKS_MAX);
    }

    #[test]
    fn mentions_not_in_the_text_are_prepended() {
        let mut msg = Outgoing::new("C1", "SLA breached on **C-2**");
        msg.mentions = vec!["U0BOB".into()];
        let c = content(&msg, &BTreeSet::new());
        assert_eq!(c.text.as_deref(), Some("<@U0BOB>: SLA breached on *C-2*"));
        // A user group (an on-call group) is mentioned as one.
        let mut msg = Outgoing::new("C1", "paging S0ONCALL for C-2");
        msg.mentions = vec!["S0ONCALL".into()];
        let c = content(&msg, &BTreeSet::new());
        assert_eq!(
            c.text.as_deref(),
            Some("paging <!subteam^S0ONCALL> for C-2")
        );
    }
}
