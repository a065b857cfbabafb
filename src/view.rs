//! How the bot's messages read: Markdown for root messages, suggestions,
//! queue, stats and case summaries. Pure functions of their inputs.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use crate::case::{Case, CaseId, Event, EventKind, Priority, Status};
use crate::message::{Action, ActionKind, ActionStyle};
use crate::playbook::{Engine, Suggestion};
use crate::sla::Risk;
use crate::sla::plan::TargetSla;
use crate::sla::render::MetTable;
use crate::store::tally::Histogram;
use crate::store::{OpenCase, Tally};

/// Longest customer text quoted in a root message.
const ROOT_EXCERPT: usize = 280;

/// A case's live card: its root message in the team room, edited in place
/// on every change, so the room reads as the live queue. Shows id,
/// priority, channel, customer, status and assignee, the customer's words,
/// the playbook (suggested or chosen) and how sure, the SLA due times and
/// the most urgent risk, open alerts, tags and the last activity.
pub fn card(
    case: &Case,
    engine: &Engine,
    sla: &[TargetSla],
    now: Timestamp,
    tz: &TimeZone,
) -> String {
    let customer = case.customer.name.as_deref().unwrap_or("unknown customer");
    let mut out = format!(
        "{} **{}** · {} · {} · {} ({})\n",
        status_icon(case.status),
        case.id,
        case.priority,
        case.channel,
        customer,
        case.customer.language
    );
    let who = match &case.assignee {
        Some(a) => format!(" — {a}"),
        None if case.status.is_open() => " — unassigned".into(),
        None => String::new(),
    };
    let _ = writeln!(out, "**{}**{who}", case.status.as_str().replace('_', " "));
    if !case.subject.is_empty() {
        let _ = writeln!(out, "**{}**", one_line(&case.subject, 120));
    }
    let _ = writeln!(out, "{}", quote(&excerpt(&case.body, ROOT_EXCERPT)));
    let _ = writeln!(out, "{}", playbook_line(case, engine));
    if case.status.is_open()
        && let Some(line) = sla_line(sla, now, tz)
    {
        let _ = writeln!(out, "{line}");
    }
    let mut last = format!("Updated {} ago", human(now.duration_since(case.updated_at)));
    if !case.tags.is_empty() {
        let tags: Vec<&str> = case.tags.iter().map(String::as_str).collect();
        last = format!("Tags: {} · {last}", tags.join(", "));
    }
    out.push_str(&last);
    out
}

/// The buttons on a case's card, for its current state: Claim while
/// nobody has it, Resolve while open, Use-suggested-playbook while one was
/// suggested and none chosen yet, Send-draft while there is a draft and
/// replies reach the customer (`replies`).
pub fn card_actions(case: &Case, replies: bool) -> Vec<Action> {
    let mut actions = Vec::new();
    if !case.status.is_open() {
        return actions;
    }
    let id = case.id;
    if case.assignee.is_none() {
        actions.push(Action::new(
            ActionKind::Claim { case: id },
            "Claim",
            ActionStyle::Primary,
        ));
    }
    actions.push(Action::new(
        ActionKind::Resolve { case: id },
        "Resolve",
        ActionStyle::Secondary,
    ));
    if let (Some(p), None) = (&case.suggested_playbook, &case.chosen_playbook) {
        actions.push(Action::new(
            ActionKind::UsePlaybook {
                case: id,
                playbook: p.clone(),
            },
            format!("Use {p}"),
            ActionStyle::Secondary,
        ));
    }
    if replies && case.chosen_playbook.is_some() {
        actions.push(Action::new(
            ActionKind::SendDraft { case: id },
            "Send draft",
            ActionStyle::Primary,
        ));
    }
    actions
}

fn status_icon(s: Status) -> &'static str {
    match s {
        Status::New | Status::Triaged => "🎫",
        Status::Assigned => "👤",
        Status::WaitingOnCustomer => "⏸️",
        Status::Resolved => "✅",
        Status::Reopened => "🔁",
        Status::Closed => "🔒",
    }
}

fn playbook_line(case: &Case, engine: &Engine) -> String {
    let lang = case.customer.language;
    let title = |id: &str| {
        engine
            .playbooks()
            .get(id)
            .map_or_else(|| id.to_owned(), |pb| format!("{} ({id})", pb.title(lang)))
    };
    match (&case.chosen_playbook, &case.suggested_playbook) {
        (Some(chosen), _) => format!("Playbook: **{}** (chosen)", title(chosen)),
        (None, Some(s)) => format!(
            "Suggested: **{}** — {:.0}% sure",
            title(s),
            case.suggestion_confidence.unwrap_or_default() * 100.0
        ),
        (None, None) => match case.suggestion_confidence {
            Some(c) => format!(
                "Suggested: no playbook — not sure enough ({:.0}%)",
                c * 100.0
            ),
            None => "Suggested: no playbook yet".into(),
        },
    }
}

/// "SLA: first response 03-02 10:15 CST (in 12m) · resolution ... —
/// ⚠️ first response due in 12m", or `None` without active targets.
fn sla_line(sla: &[TargetSla], now: Timestamp, tz: &TimeZone) -> Option<String> {
    if sla.is_empty() {
        return None;
    }
    let parts: Vec<String> = sla
        .iter()
        .map(|t| match (t.due, t.paused_left) {
            (Some(due), _) => {
                let rel = if due <= now {
                    format!("{} ago", human(now.duration_since(due)))
                } else {
                    format!("in {}", human(due.duration_since(now)))
                };
                format!(
                    "{} {} ({rel})",
                    t.target.label(),
                    crate::sla::render::when(due, tz)
                )
            }
            (None, Some(left)) => format!("{} paused, {} left", t.target.label(), human(left)),
            (None, None) => format!("{} paused", t.target.label()),
        })
        .collect();
    let mut line = format!("SLA: {}", parts.join(" · "));
    let worst = sla
        .iter()
        .map(|t| (t.risk(now), t))
        .filter(|(r, _)| *r != Risk::Ok)
        .max_by_key(|(r, t)| (*r, std::cmp::Reverse(t.due)));
    if let Some((risk, t)) = worst {
        let due = t.due.unwrap_or(now);
        let _ = match risk {
            Risk::Breached => write!(
                line,
                " — 🔥 {} breached {} ago",
                t.target.label(),
                human(now.duration_since(due))
            ),
            _ => write!(
                line,
                " — ⚠️ {} due in {}",
                t.target.label(),
                human(due.duration_since(now))
            ),
        };
    }
    for (alert, acked) in sla.iter().filter_map(|t| t.alert) {
        let _ = write!(
            line,
            " · 🚨 {alert} {}",
            if acked { "acknowledged" } else { "open" }
        );
    }
    Some(line)
}

/// The suggestion posted in a case's thread: playbook, why, fields,
/// checklist and the reply draft in the customer's language.
pub fn suggestion_message(case: &Case, s: &Suggestion, engine: &Engine) -> String {
    let lang = case.customer.language;
    let mut out = String::new();
    let Some(pb) = s
        .playbook
        .as_deref()
        .and_then(|p| engine.playbooks().get(p))
    else {
        let _ = writeln!(
            out,
            "🤔 **{}**: no playbook fits well enough ({:.0}%).",
            case.id,
            s.confidence * 100.0
        );
        if !s.ranked.is_empty() {
            let cands: Vec<_> = s
                .ranked
                .iter()
                .map(|r| format!("{} {:.0}%", r.playbook, r.confidence * 100.0))
                .collect();
            let _ = writeln!(
                out,
                "Closest: {}. `!use <playbook>` drafts a reply from one of them.",
                cands.join(", ")
            );
        }
        write_fields(&mut out, &s.fields);
        return out;
    };
    let _ = writeln!(
        out,
        "💡 **{}** — {} ({:.0}%)",
        pb.title(lang),
        pb.id(),
        s.confidence * 100.0
    );
    if !s.why.is_empty() {
        let _ = writeln!(out, "Why: {}", s.why.join("; "));
    }
    write_fields(&mut out, &s.fields);
    let _ = writeln!(out, "\n**Checklist**");
    for (i, step) in pb.checklist(lang).iter().enumerate() {
        let _ = writeln!(out, "{}. {step}", i + 1);
    }
    match engine.render_reply(pb.id(), lang, &s.fields, case.customer.name.as_deref()) {
        Ok(draft) => {
            let _ = writeln!(
                out,
                "\n**Draft reply** ({lang}) — edit before sending:\n{}",
                quote(&draft)
            );
        }
        Err(e) => {
            tracing::warn!(playbook = pb.id(), "reply draft failed: {e}");
            let _ = writeln!(out, "\n(the reply draft could not be rendered: {e})");
        }
    }
    out
}

fn write_fields(out: &mut String, fields: &BTreeMap<String, String>) {
    if fields.is_empty() {
        return;
    }
    let parts: Vec<_> = fields.iter().map(|(k, v)| format!("{k}: `{v}`")).collect();
    let _ = writeln!(out, "Fields: {}", parts.join(" · "));
}

/// Markdown block quote.
pub fn quote(text: &str) -> String {
    text.trim()
        .lines()
        .map(|l| format!("> {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn excerpt(text: &str, max: usize) -> String {
    let t = text.trim();
    if t.chars().count() <= max {
        t.to_owned()
    } else {
        t.chars()
            .take(max - 1)
            .chain(std::iter::once('…'))
            .collect()
    }
}

fn one_line(text: &str, max: usize) -> String {
    excerpt(&text.replace('\n', " "), max)
}

/// "3h 12m", "2d 4h", "45s".
pub fn human(d: SignedDuration) -> String {
    let secs = d.as_secs().abs();
    let (d_, h, m, s) = (
        secs / 86400,
        secs % 86400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    match (d_, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m}m"),
        (d_, h, _) => format!("{d_}d {h}h"),
    }
}

const AGE_BUCKETS: [(&str, i64); 4] = [
    ("<1h", 3600),
    ("1-4h", 4 * 3600),
    ("4-24h", 24 * 3600),
    (">1d", i64::MAX),
];

/// The lead's `queue`: open cases by status and priority with an at-risk
/// column (`risk` holds the worst SLA risk of each case that has one), by
/// age, the oldest unassigned ones and each agent's load. `open` comes from
/// the store's open-case index; `excerpt_of` gives the text of the few
/// cases listed by name.
pub fn queue_with_sla(
    open: &[OpenCase],
    now: Timestamp,
    risk: &HashMap<CaseId, Risk>,
    excerpt_of: impl Fn(CaseId) -> String,
) -> String {
    let mut out = format!("📋 **Queue** — {} open\n", open.len());
    if open.is_empty() {
        out.push_str("Nothing open. 🎉");
        return out;
    }
    let statuses: Vec<Status> = Status::ALL.into_iter().filter(|s| s.is_open()).collect();
    let _ = writeln!(
        out,
        "```\n{:<20} {:>3} {:>3} {:>3} {:>3} {:>7} {:>5}",
        "status", "P1", "P2", "P3", "P4", "at-risk", "total"
    );
    // One pass: counts per status and priority, at risk, age, load (plain
    // arrays: this runs over every open case).
    let prio = |p: Priority| Priority::ALL.iter().position(|x| *x == p).unwrap_or(0);
    let mut cells = [[0usize; 4]; Status::ALL.len()];
    let mut at_risk = [0usize; Status::ALL.len()];
    let mut ages = [0usize; 4];
    let mut unassigned: Vec<&OpenCase> = Vec::new();
    // Hashed, sorted once at the end: a tree compared names for every
    // assigned case (a seventh of `queue` at 100k open cases).
    let mut load: HashMap<&str, (usize, usize)> = HashMap::new();
    for c in open {
        let st = usize::from(c.status.code());
        cells[st][prio(c.priority)] += 1;
        if !risk.is_empty() && risk.contains_key(&c.id) {
            at_risk[st] += 1;
        }
        let age = now.duration_since(c.created_at).as_secs();
        let i = AGE_BUCKETS
            .iter()
            .position(|(_, lim)| age < *lim)
            .unwrap_or(3);
        ages[i] += 1;
        match &c.assignee {
            None => unassigned.push(c),
            Some(a) => {
                let e = load.entry(a).or_default();
                e.0 += 1;
                if c.status == Status::WaitingOnCustomer {
                    e.1 += 1;
                }
            }
        }
    }
    for st in &statuses {
        let row = cells[usize::from(st.code())];
        let total: usize = row.iter().sum();
        let _ = writeln!(
            out,
            "{:<20} {:>3} {:>3} {:>3} {:>3} {:>7} {:>5}",
            st.as_str(),
            row[0],
            row[1],
            row[2],
            row[3],
            at_risk[usize::from(st.code())],
            total
        );
    }
    let breached = risk.values().filter(|r| **r == Risk::Breached).count();
    if !risk.is_empty() {
        let _ = write!(
            out,
            "\nat-risk: {} breached, {} at risk (`sla` lists them)",
            breached,
            risk.len() - breached
        );
    }
    let _ = writeln!(
        out,
        "\nage: {}\n```",
        AGE_BUCKETS
            .iter()
            .zip(ages)
            .map(|((n, _), k)| format!("{n} {k}"))
            .collect::<Vec<_>>()
            .join(" · ")
    );
    if !unassigned.is_empty() {
        let oldest = unassigned.len().min(5);
        unassigned.select_nth_unstable_by_key(oldest - 1, |c| (c.created_at, c.id));
        unassigned.truncate(oldest);
        unassigned.sort_by_key(|c| (c.created_at, c.id));
        out.push_str("**Oldest unassigned**\n");
        for c in unassigned {
            let _ = writeln!(
                out,
                "- {} {} · {} old · {}",
                c.id,
                c.priority,
                human(now.duration_since(c.created_at)),
                one_line(&excerpt_of(c.id), 60)
            );
        }
    }
    if !load.is_empty() {
        out.push_str("**Load**\n");
        let mut load: Vec<_> = load.into_iter().collect();
        load.sort_unstable_by_key(|(a, _)| *a);
        for (a, (n, waiting)) in load {
            let _ = writeln!(out, "- {a}: {n} open ({waiting} waiting on customer)");
        }
    }
    out
}

/// A case summary with its recent history, for `case <id>`.
pub fn case_summary(c: &Case, events: &[Event]) -> String {
    let mut out = format!(
        "**{}** [{}] {} · {} · {}\n",
        c.id,
        c.status,
        c.priority,
        c.channel,
        c.assignee.as_deref().unwrap_or("unassigned")
    );
    let _ = writeln!(out, "{}", quote(&excerpt(&c.body, 200)));
    if let Some(p) = c.chosen_playbook.as_ref().or(c.suggested_playbook.as_ref()) {
        let _ = writeln!(out, "Playbook: {p}");
    }
    let _ = writeln!(out, "History ({} events, latest last):", events.len());
    let interesting: Vec<&Event> = events
        .iter()
        .filter(|e| !matches!(e.kind, EventKind::Posted { .. }))
        .collect();
    for e in interesting.iter().rev().take(10).rev() {
        let _ = writeln!(
            out,
            "- {} {} — {}",
            e.at.strftime("%m-%d %H:%M"),
            e.actor,
            e.kind.summary()
        );
    }
    out
}

/// The lead's `stats`: counts, median first-response and resolution times,
/// and how often the suggested playbook was the one that solved the case,
/// from the store's running totals.
pub fn stats(t: &Tally) -> String {
    let mut out = format!("📈 **Stats** — {} cases\n", t.cases());
    let counts: Vec<String> = Status::ALL
        .iter()
        .filter_map(|s| t.by_status.get(s).map(|n| (s, n)))
        .filter(|(_, n)| **n > 0)
        .map(|(s, n)| format!("{s} {n}"))
        .collect();
    let _ = writeln!(
        out,
        "By status: {}",
        if counts.is_empty() {
            "-".into()
        } else {
            counts.join(" · ")
        }
    );
    let _ = writeln!(out, "First response: {}", median_line(&t.first_response));
    let _ = writeln!(out, "Resolution: {}", median_line(&t.resolution));
    if t.judged == 0 {
        out.push_str("Suggestion acceptance: no resolved cases with a playbook yet");
    } else {
        let _ = write!(
            out,
            "Suggestion acceptance: {:.0}% ({}/{} cases solved with the suggested playbook)",
            100.0 * t.accepted as f64 / t.judged as f64,
            t.accepted,
            t.judged
        );
    }
    out
}

/// [`stats`] followed by SLA met % per target and priority.
pub fn stats_with_sla(t: &Tally, met: &MetTable) -> String {
    format!("{}\n{}", stats(t), crate::sla::render::met(met))
}

fn median_line(h: &Histogram) -> String {
    let n = h.len();
    let (Some(median), Some(p90)) = (
        h.at_rank(n / 2),
        h.at_rank(((n as f64 * 0.9).ceil() as u64).saturating_sub(1)),
    ) else {
        return "-".into();
    };
    format!("median {} · p90 {} (n={n})", human(median), human(p90))
}
