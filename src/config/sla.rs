//! `[sla]`: business-hours calendars and the targets per priority. Raw
//! form, validation, types.

use std::collections::{BTreeMap, BTreeSet};

use jiff::SignedDuration;
use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;
use serde::Deserialize;
use toml::Spanned;

use super::{OncallConfig, Validator, parse_duration};
use crate::case::Priority;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSla {
    #[serde(default)]
    calendars: BTreeMap<String, RawCalendar>,
    #[serde(default)]
    policies: BTreeMap<Spanned<String>, RawPolicy>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCalendar {
    timezone: Spanned<String>,
    #[serde(default)]
    hours: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    holidays: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    calendar: Option<Spanned<String>>,
    #[serde(default)]
    business_time: bool,
    first_response: Option<Spanned<String>>,
    next_response: Option<Spanned<String>>,
    resolution: Option<Spanned<String>>,
    #[serde(default)]
    warnings: Vec<Spanned<String>>,
    escalation: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Default)]
pub struct SlaConfig {
    pub calendars: BTreeMap<String, Calendar>,
    pub policies: BTreeMap<Priority, Policy>,
}

/// Business hours in one time zone.
#[derive(Debug, Clone)]
pub struct Calendar {
    pub timezone: TimeZone,
    /// Opening hours per weekday, Monday first; `None` is closed.
    pub hours: [Option<(Time, Time)>; 7],
    pub holidays: BTreeSet<Date>,
}

/// SLA targets for one priority.
#[derive(Debug, Clone)]
pub struct Policy {
    pub calendar: String,
    pub business_time: bool,
    pub first_response: Option<SignedDuration>,
    pub next_response: Option<SignedDuration>,
    pub resolution: Option<SignedDuration>,
    pub warnings: Vec<Warning>,
    /// The escalation policy (in [`OncallConfig::escalations`]) that pages
    /// people when a target is breached; `None` posts the alert unaddressed.
    pub escalation: Option<String>,
}

/// When to warn before a target is missed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Warning {
    /// At this fraction of the target (0.8 = 80%).
    Fraction(f64),
    /// This long before the due time.
    Before(SignedDuration),
}

impl RawSla {
    /// The team's zone: the `default` calendar's, else UTC. Rotations are
    /// written in it unless they name their own.
    pub(super) fn default_zone(&self) -> TimeZone {
        self.calendars
            .get("default")
            .and_then(|c| TimeZone::get(c.timezone.get_ref()).ok())
            .unwrap_or(TimeZone::UTC)
    }
}

impl Validator<'_> {
    pub(super) fn sla(&mut self, raw: RawSla, oncall: &OncallConfig) -> SlaConfig {
        let mut calendars = BTreeMap::new();
        for (name, cal) in raw.calendars {
            let key = format!("sla.calendars.{name}");
            let timezone = match TimeZone::get(cal.timezone.get_ref()) {
                Ok(tz) => tz,
                Err(_) => {
                    self.error(
                        Some(cal.timezone.span()),
                        &format!("{key}.timezone"),
                        format!(
                            "unknown IANA time zone `{}` (e.g. Asia/Shanghai)",
                            cal.timezone.get_ref()
                        ),
                    );
                    TimeZone::UTC
                }
            };
            let mut hours = [None; 7];
            for (day, range) in &cal.hours {
                let hkey = format!("{key}.hours.{}", day.get_ref());
                let Some(wd) = parse_weekday(day.get_ref()) else {
                    self.error(
                        Some(day.span()),
                        &hkey,
                        "unknown weekday (use mon, tue, wed, thu, fri, sat, sun)",
                    );
                    continue;
                };
                match parse_hours(range.get_ref()) {
                    Ok(h) => hours[wd.to_monday_zero_offset() as usize] = Some(h),
                    Err(e) => self.error(Some(range.span()), &hkey, e),
                }
            }
            let mut holidays = BTreeSet::new();
            for h in &cal.holidays {
                match h.get_ref().parse::<Date>() {
                    Ok(d) => {
                        holidays.insert(d);
                    }
                    Err(_) => self.error(
                        Some(h.span()),
                        &format!("{key}.holidays"),
                        format!("`{}` is not a date like 2026-10-01", h.get_ref()),
                    ),
                }
            }
            calendars.insert(
                name,
                Calendar {
                    timezone,
                    hours,
                    holidays,
                },
            );
        }
        let mut policies = BTreeMap::new();
        for (prio, p) in raw.policies {
            let key = format!("sla.policies.{}", prio.get_ref());
            let Ok(priority) = prio.get_ref().parse::<Priority>() else {
                self.error(
                    Some(prio.span()),
                    &key,
                    "policies are named after priorities: p1, p2, p3, p4",
                );
                continue;
            };
            let calendar = match &p.calendar {
                None => "default".to_owned(),
                Some(c) => c.get_ref().clone(),
            };
            if p.business_time && !calendars.contains_key(&calendar) {
                let span = p.calendar.as_ref().map(|c| c.span());
                self.error(
                    span,
                    &format!("{key}.calendar"),
                    format!("no calendar named `{calendar}` in [sla.calendars]"),
                );
            }
            if p.business_time
                && calendars
                    .get(&calendar)
                    .is_some_and(|c: &Calendar| c.hours.iter().all(Option::is_none))
            {
                let span = p.calendar.as_ref().map(|c| c.span());
                self.error(
                    span,
                    &format!("{key}.calendar"),
                    format!(
                        "calendar `{calendar}` has no opening hours, so business time never passes"
                    ),
                );
            }
            // Without an explicit name, a policy uses the escalation named
            // `default` when there is one.
            let escalation = match &p.escalation {
                Some(e) if !oncall.escalations.contains_key(e.get_ref()) => {
                    self.error(
                        Some(e.span()),
                        &format!("{key}.escalation"),
                        format!(
                            "no escalation policy named `{}` in [oncall.escalations]",
                            e.get_ref()
                        ),
                    );
                    None
                }
                Some(e) => Some(e.get_ref().clone()),
                None => oncall
                    .escalations
                    .contains_key("default")
                    .then(|| "default".to_owned()),
            };
            let first_response = p
                .first_response
                .as_ref()
                .and_then(|d| self.duration(d, &format!("{key}.first_response")));
            let next_response = p
                .next_response
                .as_ref()
                .and_then(|d| self.duration(d, &format!("{key}.next_response")));
            let resolution = p
                .resolution
                .as_ref()
                .and_then(|d| self.duration(d, &format!("{key}.resolution")));
            let mut warnings = Vec::new();
            for w in &p.warnings {
                match parse_warning(w.get_ref()) {
                    Ok(w) => warnings.push(w),
                    Err(e) => self.error(Some(w.span()), &format!("{key}.warnings"), e),
                }
            }
            policies.insert(
                priority,
                Policy {
                    calendar,
                    business_time: p.business_time,
                    first_response,
                    next_response,
                    resolution,
                    warnings,
                    escalation,
                },
            );
        }
        SlaConfig {
            calendars,
            policies,
        }
    }
}

fn parse_warning(s: &str) -> Result<Warning, String> {
    if let Some(pct) = s.trim().strip_suffix('%') {
        let f: f64 = pct
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not a percentage like \"80%\""))?;
        if !(0.0 < f && f < 100.0) {
            return Err(format!(
                "`{s}`: a warning percentage must be between 0% and 100%"
            ));
        }
        return Ok(Warning::Fraction(f / 100.0));
    }
    parse_duration(s)
        .map(Warning::Before)
        .map_err(|_| format!("`{s}` is neither a percentage (\"80%\") nor a lead time (\"15m\")"))
}

fn parse_weekday(s: &str) -> Option<Weekday> {
    Some(match s.to_ascii_lowercase().as_str() {
        "mon" | "monday" => Weekday::Monday,
        "tue" | "tuesday" => Weekday::Tuesday,
        "wed" | "wednesday" => Weekday::Wednesday,
        "thu" | "thursday" => Weekday::Thursday,
        "fri" | "friday" => Weekday::Friday,
        "sat" | "saturday" => Weekday::Saturday,
        "sun" | "sunday" => Weekday::Sunday,
        _ => return None,
    })
}

fn parse_hours(s: &str) -> Result<(Time, Time), String> {
    let bad = || format!("`{s}` is not an opening-hours range like \"09:00-18:00\"");
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let open: Time = a.trim().parse().map_err(|_| bad())?;
    let close: Time = if b.trim() == "24:00" {
        Time::MAX
    } else {
        b.trim().parse().map_err(|_| bad())?
    };
    if close <= open {
        return Err(format!("`{s}`: closing time must be after opening time"));
    }
    Ok((open, close))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings() {
        assert_eq!(parse_warning("80%").unwrap(), Warning::Fraction(0.8));
        assert_eq!(
            parse_warning("15m").unwrap(),
            Warning::Before(SignedDuration::from_mins(15))
        );
        assert!(parse_warning("180%").is_err());
    }
}
