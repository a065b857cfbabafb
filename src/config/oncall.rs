//! `[oncall]`: rotations and escalation policies. Raw form, validation,
//! types; who is on call when is computed in `sla::oncall`.

use std::collections::BTreeMap;

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use toml::Spanned;

use super::Validator;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOncall {
    #[serde(default)]
    rotations: BTreeMap<String, RawRotation>,
    #[serde(default)]
    escalations: BTreeMap<String, RawEscalation>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRotation {
    timezone: Option<Spanned<String>>,
    #[serde(default)]
    members: Vec<Spanned<String>>,
    start: Option<Spanned<String>>,
    shift: Option<Spanned<String>>,
    #[serde(default)]
    shifts: Vec<RawShift>,
    #[serde(default)]
    overrides: Vec<RawShift>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawShift {
    user: Spanned<String>,
    from: Spanned<String>,
    to: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEscalation {
    repeat: Option<Spanned<u32>>,
    repeat_after: Option<Spanned<String>>,
    remind_every: Option<Spanned<String>>,
    #[serde(default)]
    steps: Vec<RawStep>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStep {
    delay: Option<Spanned<String>>,
    target: Spanned<String>,
}

/// On-call rotations and escalation policies (`[oncall]`).
#[derive(Debug, Clone, Default)]
pub struct OncallConfig {
    pub rotations: BTreeMap<String, Rotation>,
    pub escalations: BTreeMap<String, Escalation>,
}

/// Who is on call when: a schedule plus temporary overrides. The
/// computation lives in `sla::oncall`.
#[derive(Debug, Clone)]
pub struct Rotation {
    /// Zone the handoff times are written in; daily and weekly handoffs keep
    /// their local time across DST changes.
    pub timezone: TimeZone,
    pub schedule: Schedule,
    /// Someone else covers a span; a later override wins over an earlier one.
    pub overrides: Vec<Shift>,
}

/// The regular part of a rotation.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// Members take turns of equal length, the first one from `start`.
    Turns {
        members: Vec<String>,
        start: DateTime,
        length: ShiftLength,
    },
    /// An explicit list of shifts; gaps have nobody on call.
    Shifts(Vec<Shift>),
}

/// How long one turn lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShiftLength {
    /// Whole local days (`1d` daily, `1w` weekly): the handoff stays at the
    /// same wall-clock time when the zone changes its offset.
    Days(i32),
    /// An exact duration such as `12h`.
    Exact(SignedDuration),
}

/// One person on call from `from` until `to` (exclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shift {
    pub user: String,
    pub from: Timestamp,
    pub to: Timestamp,
}

/// Who is paged, in which order, when an SLA target is breached.
#[derive(Debug, Clone)]
pub struct Escalation {
    /// Never empty.
    pub steps: Vec<Step>,
    /// How many times the steps run in total (1 = once).
    pub repeat: u32,
    /// Wait after the last step before the steps start again.
    pub repeat_after: SignedDuration,
    /// Reminder interval while an acknowledged alert's case stays breached.
    pub remind_every: Option<SignedDuration>,
}

/// One escalation step: wait `delay` after the previous page (the first
/// step: after the breach), then page `target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub delay: SignedDuration,
    pub target: PageTarget,
}

/// Whom a step pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageTarget {
    /// One person, by chat user id.
    User(String),
    /// Whoever the rotation has on call at the time of the page.
    Rotation(String),
    /// Everyone in a room: the on-call room (`None`) or another one.
    Room(Option<String>),
}

impl Validator<'_> {
    pub(super) fn oncall(&mut self, raw: RawOncall, team_tz: &TimeZone) -> OncallConfig {
        let mut rotations = BTreeMap::new();
        for (name, r) in raw.rotations {
            let key = format!("oncall.rotations.{name}");
            let timezone = match &r.timezone {
                Some(tz) => self.timezone(tz, &format!("{key}.timezone")),
                None => team_tz.clone(),
            };
            // Problems with the rotation as a whole point at its first line.
            let span = r
                .timezone
                .as_ref()
                .or(r.start.as_ref())
                .or(r.shift.as_ref())
                .map(|t| t.span());
            let overrides = self.shifts(&r.overrides, &timezone, &format!("{key}.overrides"));
            let schedule = if !r.shifts.is_empty() {
                if !r.members.is_empty() || r.start.is_some() || r.shift.is_some() {
                    self.error(
                        Some(r.shifts[0].user.span()),
                        &format!("{key}.shifts"),
                        "give either `shifts` or `members` with `start` and `shift`, not both",
                    );
                }
                Schedule::Shifts(self.shifts(&r.shifts, &timezone, &format!("{key}.shifts")))
            } else {
                let members: Vec<String> = r.members.iter().map(|m| m.get_ref().clone()).collect();
                if members.is_empty() {
                    self.error(
                        span.clone(),
                        &format!("{key}.members"),
                        "a rotation needs `members` (chat user ids taking turns) or a list of `shifts`",
                    );
                }
                let start = match &r.start {
                    Some(s) => s.get_ref().parse::<DateTime>().unwrap_or_else(|_| {
                        self.error(
                            Some(s.span()),
                            &format!("{key}.start"),
                            format!(
                                "`{}` is not a local date and time like 2026-01-05T09:00",
                                s.get_ref()
                            ),
                        );
                        DateTime::default()
                    }),
                    None => {
                        self.error(
                            span.clone(),
                            &format!("{key}.start"),
                            "missing: when the first member's first turn starts, e.g. \"2026-01-05T09:00\"",
                        );
                        DateTime::default()
                    }
                };
                let length = match &r.shift {
                    Some(s) => match self.duration(s, &format!("{key}.shift")) {
                        Some(d) if d.as_secs() % 86400 == 0 && d.subsec_nanos() == 0 => {
                            ShiftLength::Days((d.as_secs() / 86400) as i32)
                        }
                        Some(d) => ShiftLength::Exact(d),
                        None => ShiftLength::Days(7),
                    },
                    None => {
                        self.error(
                            span.clone(),
                            &format!("{key}.shift"),
                            "missing: how long one turn lasts, e.g. \"1d\" or \"1w\"",
                        );
                        ShiftLength::Days(7)
                    }
                };
                Schedule::Turns {
                    members,
                    start,
                    length,
                }
            };
            rotations.insert(
                name,
                Rotation {
                    timezone,
                    schedule,
                    overrides,
                },
            );
        }
        let mut escalations = BTreeMap::new();
        for (name, e) in raw.escalations {
            let key = format!("oncall.escalations.{name}");
            if e.steps.is_empty() {
                self.error(
                    None,
                    &format!("{key}.steps"),
                    "an escalation policy needs at least one step",
                );
                continue;
            }
            let mut steps = Vec::new();
            for s in &e.steps {
                let delay = match &s.delay {
                    None => SignedDuration::ZERO,
                    Some(d) if is_zero_duration(d.get_ref()) => SignedDuration::ZERO,
                    Some(d) => self
                        .duration(d, &format!("{key}.steps.delay"))
                        .unwrap_or(SignedDuration::ZERO),
                };
                let target = match parse_page_target(s.target.get_ref()) {
                    Ok(PageTarget::Rotation(r)) if !rotations.contains_key(&r) => {
                        self.error(
                            Some(s.target.span()),
                            &format!("{key}.steps.target"),
                            format!("no rotation named `{r}` in [oncall.rotations]"),
                        );
                        continue;
                    }
                    Ok(t) => t,
                    Err(msg) => {
                        self.error(Some(s.target.span()), &format!("{key}.steps.target"), msg);
                        continue;
                    }
                };
                steps.push(Step { delay, target });
            }
            let repeat = match &e.repeat {
                None => 1,
                Some(n) if *n.get_ref() == 0 || *n.get_ref() > 100 => {
                    self.error(
                        Some(n.span()),
                        &format!("{key}.repeat"),
                        "must be between 1 and 100",
                    );
                    1
                }
                Some(n) => *n.get_ref(),
            };
            let repeat_after = e
                .repeat_after
                .as_ref()
                .and_then(|d| self.duration(d, &format!("{key}.repeat_after")))
                .unwrap_or(SignedDuration::from_mins(15));
            let remind_every = match &e.remind_every {
                Some(d) if is_zero_duration(d.get_ref()) => None,
                Some(d) => self.duration(d, &format!("{key}.remind_every")),
                None => None,
            };
            if steps.is_empty() {
                continue;
            }
            escalations.insert(
                name,
                Escalation {
                    steps,
                    repeat,
                    repeat_after,
                    remind_every,
                },
            );
        }
        OncallConfig {
            rotations,
            escalations,
        }
    }

    pub(super) fn timezone(&mut self, s: &Spanned<String>, key: &str) -> TimeZone {
        TimeZone::get(s.get_ref()).unwrap_or_else(|_| {
            self.error(
                Some(s.span()),
                key,
                format!(
                    "unknown IANA time zone `{}` (e.g. Asia/Shanghai)",
                    s.get_ref()
                ),
            );
            TimeZone::UTC
        })
    }

    /// Shifts written in local time; `to` must come after `from`.
    pub(super) fn shifts(&mut self, raw: &[RawShift], tz: &TimeZone, key: &str) -> Vec<Shift> {
        let mut out = Vec::new();
        for s in raw {
            let at = |v: &Spanned<String>, this: &mut Self| -> Option<Timestamp> {
                match v
                    .get_ref()
                    .parse::<DateTime>()
                    .ok()
                    .and_then(|dt| tz.to_timestamp(dt).ok())
                {
                    Some(t) => Some(t),
                    None => {
                        this.error(
                            Some(v.span()),
                            key,
                            format!(
                                "`{}` is not a local date and time like 2026-03-02T09:00",
                                v.get_ref()
                            ),
                        );
                        None
                    }
                }
            };
            let (Some(from), Some(to)) = (at(&s.from, self), at(&s.to, self)) else {
                continue;
            };
            if to <= from {
                self.error(Some(s.to.span()), key, "a shift must end after it starts");
                continue;
            }
            out.push(Shift {
                user: s.user.get_ref().clone(),
                from,
                to,
            });
        }
        out
    }
}

/// `0`, `0s`, `0m`: an explicit "no wait", which [`parse_duration`] refuses.
fn is_zero_duration(s: &str) -> bool {
    let t = s.trim().trim_end_matches(|c: char| c.is_ascii_alphabetic());
    !t.is_empty() && t.chars().all(|c| c == '0')
}

/// `rotation:<name>`, `user:<chat user id>`, `room` (the on-call room) or
/// `room:<room id>`.
fn parse_page_target(s: &str) -> Result<PageTarget, String> {
    let t = s.trim();
    let bad = || {
        format!(
            "`{s}` is not a page target (write \"rotation:<name>\", \"user:<user id>\", \"room\" or \"room:<room id>\")"
        )
    };
    if t == "room" {
        return Ok(PageTarget::Room(None));
    }
    let (kind, rest) = t.split_once(':').ok_or_else(bad)?;
    let rest = rest.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    match kind {
        "rotation" => Ok(PageTarget::Rotation(rest.to_owned())),
        "user" => Ok(PageTarget::User(rest.to_owned())),
        "room" => Ok(PageTarget::Room(Some(rest.to_owned()))),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_targets_and_zero_delays() {
        assert_eq!(
            parse_page_target("rotation:primary").unwrap(),
            PageTarget::Rotation("primary".into())
        );
        assert_eq!(
            parse_page_target("user:@carol:example.org").unwrap(),
            PageTarget::User("@carol:example.org".into())
        );
        assert_eq!(parse_page_target("room").unwrap(), PageTarget::Room(None));
        assert_eq!(
            parse_page_target("room:!leads:x").unwrap(),
            PageTarget::Room(Some("!leads:x".into()))
        );
        for bad in ["", "carol", "team:x", "rotation:"] {
            assert!(parse_page_target(bad).is_err(), "{bad}");
        }
        assert!(is_zero_duration("0s") && is_zero_duration("0") && is_zero_duration("00m"));
        assert!(!is_zero_duration("10s") && !is_zero_duration("s"));
    }
}
