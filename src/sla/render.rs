//! How SLA warnings, alerts and reports read in chat. Pure functions.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use super::plan::{Risk, TargetSla};
use super::timeline::{AlertId, Target};
use crate::case::{Case, Priority};
use crate::store::OpenCase;
use crate::view::human;

/// `03-02 10:15 CST`.
pub fn when(t: Timestamp, tz: &TimeZone) -> String {
    t.to_zoned(tz.clone())
        .strftime("%m-%d %H:%M %Z")
        .to_string()
}

/// Who was paged, for messages and history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paged {
    /// The room the page goes to.
    pub room: String,
    /// People notified by name.
    pub mentions: Vec<String>,
    /// How the page names its target.
    pub who: String,
}

fn assignee(case: &Case) -> String {
    case.assignee
        .clone()
        .unwrap_or_else(|| "nobody (unassigned)".into())
}

/// A warning in the case thread.
pub fn warning(
    case: &Case,
    target: Target,
    label: &str,
    due: Timestamp,
    now: Timestamp,
    tz: &TimeZone,
) -> String {
    let who = match &case.assignee {
        Some(a) => a.clone(),
        None => "Nobody has claimed it — `!claim` it.".into(),
    };
    format!(
        "⏰ **{}** · *{target}* is at {label}: {} left, due {}. {who}",
        case.id,
        human(due.duration_since(now)),
        when(due, tz)
    )
}

/// The breach note in the case thread.
pub fn breach_note(
    case: &Case,
    target: Target,
    due: Timestamp,
    alert: AlertId,
    tz: &TimeZone,
) -> String {
    let who = case.assignee.as_deref().unwrap_or("nobody has claimed it");
    format!(
        "🚨 **{}** missed its *{target}* target (due {}). On-call is alerted as **{alert}**. Assignee: {who}.",
        case.id,
        when(due, tz)
    )
}

/// The alert a message is about.
#[derive(Debug, Clone, Copy)]
pub struct About<'a> {
    pub case: &'a Case,
    pub target: Target,
    pub alert: AlertId,
}

/// The alert posted in the on-call room when a target is missed. `page`
/// is the first step's page with its step count, or `later` how long until
/// that step pages.
pub fn alert(
    a: About,
    due: Timestamp,
    now: Timestamp,
    page: Option<(&Paged, usize)>,
    later: Option<SignedDuration>,
    tz: &TimeZone,
) -> String {
    let About {
        case,
        target,
        alert,
    } = a;
    let mut out = format!(
        "🚨 **{alert}** · **{}** ({}) missed *{target}* — due {}, {} over. Assignee: {}.",
        case.id,
        case.priority,
        when(due, tz),
        human(now.duration_since(due)),
        assignee(case)
    );
    match (page, later) {
        (Some((p, steps)), _) => {
            let _ = write!(out, "\nPaging {} (step 1/{steps}).", p.who);
        }
        (None, Some(d)) => {
            let _ = write!(out, "\nPaging starts in {} unless acknowledged.", human(d));
        }
        (None, None) => {}
    }
    let _ = write!(
        out,
        "\n`!ack {alert}` stops the escalation · `!snooze {alert} 30m` delays it."
    );
    out
}

/// A later escalation step: `step` of `steps` in `round`, `since` the breach.
pub fn page(
    a: About,
    p: &Paged,
    (step, steps, round): (u32, usize, u32),
    since: SignedDuration,
) -> String {
    let About {
        case,
        target,
        alert,
    } = a;
    let round = if round > 1 {
        format!(", round {round}")
    } else {
        String::new()
    };
    format!(
        "📟 **{alert}** · **{}** ({}) *{target}* breached {} ago and nobody has acknowledged — paging {} (step {step}/{steps}{round}). `!ack {alert}`",
        case.id,
        case.priority,
        human(since),
        p.who
    )
}

pub fn reminder(
    case: &Case,
    target: Target,
    alert: AlertId,
    acker: &str,
    over: SignedDuration,
) -> String {
    format!(
        "🔁 **{alert}** · **{}** ({}) is still breached: *{target}*, {} over. {acker} acknowledged it.",
        case.id,
        case.priority,
        human(over)
    )
}

pub fn closed(alert: AlertId, why: &str) -> String {
    format!("✅ **{alert}** closed: {why}.")
}

/// One line of the `sla` report.
fn report_line(
    case: Option<&OpenCase>,
    id: crate::case::CaseId,
    t: &TargetSla,
    now: Timestamp,
    tz: &TimeZone,
) -> String {
    let prio = case.map_or(String::new(), |c| format!(" {}", c.priority));
    let who = case.map_or_else(
        || "?".into(),
        |c| {
            c.assignee
                .clone()
                .unwrap_or_else(|| "nobody (unassigned)".into())
        },
    );
    let timing = match (t.due, t.paused_left) {
        (Some(due), _) if due <= now => {
            format!(
                "{} over (due {})",
                human(now.duration_since(due)),
                when(due, tz)
            )
        }
        (_, Some(left)) => format!("paused, {} left", human(left)),
        (Some(due), None) => format!(
            "{} left (due {})",
            human(due.duration_since(now)),
            when(due, tz)
        ),
        (None, None) => "-".into(),
    };
    let alert = match t.alert {
        Some((a, true)) => format!(" · {a} (acknowledged)"),
        Some((a, false)) => format!(" · {a} (not acknowledged)"),
        None => String::new(),
    };
    format!("- {id}{prio} *{}* · {timing} · {who}{alert}", t.target)
}

/// The lead's `sla` report: breached and at-risk targets, most urgent
/// first. `cases` holds the listed cases (for priority and assignee).
/// Rows of each kind `sla` lists; the rest are counted.
pub const REPORT_ROWS: usize = 25;

/// `rows`: the first [`REPORT_ROWS`] breached and at-risk targets, in
/// order; `counts`: how many are breached and at risk in all.
pub fn report(
    rows: &[(crate::case::CaseId, TargetSla, Risk)],
    counts: [usize; 2],
    cases: &BTreeMap<crate::case::CaseId, OpenCase>,
    show: (bool, bool),
    now: Timestamp,
    tz: &TimeZone,
) -> String {
    let breached: Vec<_> = rows.iter().filter(|r| r.2 == Risk::Breached).collect();
    let at_risk: Vec<_> = rows.iter().filter(|r| r.2 == Risk::AtRisk).collect();
    let mut out = format!(
        "⏱️ **SLA** — {} breached · {} at risk ({})\n",
        counts[0],
        counts[1],
        when(now, tz)
    );
    let (show_breached, show_risk) = show;
    for (title, list, total, show) in [
        ("Breached", &breached, counts[0], show_breached),
        ("At risk", &at_risk, counts[1], show_risk),
    ] {
        if !show {
            continue;
        }
        if list.is_empty() {
            let _ = writeln!(out, "**{title}**: none");
            continue;
        }
        let _ = writeln!(out, "**{title}**");
        for (id, t, _) in list.iter().take(REPORT_ROWS) {
            let _ = writeln!(out, "{}", report_line(cases.get(id), *id, t, now, tz));
        }
        if total > REPORT_ROWS {
            let _ = writeln!(out, "… and {} more", total - REPORT_ROWS);
        }
    }
    out.trim_end().to_owned()
}

/// SLA met per target and priority, for `stats`: (met, judged).
pub type MetTable = BTreeMap<(Target, Priority), (u32, u32)>;

pub fn met(table: &MetTable) -> String {
    let mut out = String::from("SLA met:");
    if table.is_empty() {
        out.push_str(" no targets met or missed yet");
        return out;
    }
    for target in Target::ALL {
        let cells: Vec<String> = Priority::ALL
            .iter()
            .filter_map(|p| table.get(&(target, *p)).map(|c| (p, c)))
            .map(|(p, (met, n))| {
                format!(
                    "{p} {:.0}% ({met}/{n})",
                    100.0 * f64::from(*met) / f64::from(*n)
                )
            })
            .collect();
        if !cells.is_empty() {
            let _ = write!(out, "\n- {target}: {}", cells.join(" · "));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn met_table_reads_per_target_and_priority() {
        let mut t = MetTable::new();
        t.insert((Target::FirstResponse, Priority::P1), (9, 10));
        t.insert((Target::FirstResponse, Priority::P3), (1, 1));
        t.insert((Target::Resolution, Priority::P1), (1, 2));
        assert_eq!(
            met(&t),
            "SLA met:\n- first response: P1 90% (9/10) · P3 100% (1/1)\n- resolution: P1 50% (1/2)"
        );
        assert_eq!(
            met(&MetTable::new()),
            "SLA met: no targets met or missed yet"
        );
    }

    #[test]
    fn times_show_in_the_calendar_zone() {
        let tz = TimeZone::get("Asia/Shanghai").unwrap();
        let t: Timestamp = "2026-03-02T01:15:00Z".parse().unwrap();
        assert_eq!(when(t, &tz), "03-02 09:15 CST");
    }
}
