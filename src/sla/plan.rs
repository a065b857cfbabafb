//! What a case's SLA needs now, and when it next needs something.
//!
//! [`plan`] is a pure function of a case's [`Timeline`], the settings and
//! an instant: the actions due by then (warn, breach, page, remind, close)
//! and the next instant anything falls due. The scheduler calls it when a
//! timer fires and after every change to the case; tests call it directly.
//!
//! Rules that keep messages to one per miss:
//! - a warning fires once per run; when several are overdue (the bot was
//!   down) only the latest is posted, and none once the target is breached;
//! - a breach fires once per run, however its due time moves later;
//! - an unacknowledged alert pages the next step when that step's delay has
//!   passed; after downtime it pages only the step it should be at now;
//! - an acknowledged alert reminds every `remind_every` while still breached;
//! - an alert closes as soon as its run is no longer breached and active
//!   (the response was given, the case resolved or closed).

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use super::calendar::Counting;
use super::timeline::{AlertId, AlertLog, End, Run, Target, Timeline};
use crate::case::{Priority, Status};
use crate::config::{Config, Escalation, OncallConfig, Policy, SlaConfig, Warning};

/// The part of the config the SLA engine works from.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub sla: SlaConfig,
    pub oncall: OncallConfig,
    /// Where cases' root messages (and so their threads) are.
    pub team_room: String,
    /// Where alerts page on-call staff.
    pub oncall_room: String,
}

impl Settings {
    pub fn from_config(c: &Config) -> Settings {
        Settings {
            sla: c.sla.clone(),
            oncall: c.oncall.clone(),
            team_room: c.rooms.team.clone(),
            oncall_room: c.rooms.oncall.clone(),
        }
    }

    /// The policy for a priority, with how it counts time.
    pub fn policy(&self, p: Priority) -> Option<PolicyView<'_>> {
        let policy = self.sla.policies.get(&p)?;
        let cal = self.sla.calendars.get(&policy.calendar);
        let counting = match cal {
            Some(c) if policy.business_time => Counting::Business(c),
            _ => Counting::Wall,
        };
        Some(PolicyView {
            policy,
            counting,
            escalation: policy
                .escalation
                .as_ref()
                .and_then(|e| self.oncall.escalations.get(e)),
        })
    }

    /// The zone times are shown in: the default calendar's, else UTC.
    pub fn display_tz(&self) -> TimeZone {
        self.sla
            .calendars
            .get("default")
            .or_else(|| self.sla.calendars.values().next())
            .map_or(TimeZone::UTC, |c| c.timezone.clone())
    }
}

/// A policy with its calendar and escalation looked up.
#[derive(Debug, Clone, Copy)]
pub struct PolicyView<'a> {
    pub policy: &'a Policy,
    pub counting: Counting<'a>,
    pub escalation: Option<&'a Escalation>,
}

impl PolicyView<'_> {
    pub fn target(&self, t: Target) -> Option<SignedDuration> {
        match t {
            Target::FirstResponse => self.policy.first_response,
            Target::NextResponse => self.policy.next_response,
            Target::Resolution => self.policy.resolution,
        }
    }

    /// Warning points of a target `d` long: (offset into the target, label),
    /// earliest first. Points at or before the start are left out.
    pub fn warnings(&self, d: SignedDuration) -> Vec<(SignedDuration, String)> {
        let mut out: Vec<(SignedDuration, String)> = self
            .policy
            .warnings
            .iter()
            .map(|w| (warning_offset(*w, d), warning_label(*w)))
            .filter(|(off, _)| *off > SignedDuration::ZERO && *off < d)
            .collect();
        out.sort_by_key(|(off, _)| *off);
        out
    }

    /// When a target counts as at risk: its first warning point, or 80%
    /// when the policy has no warnings.
    fn risk_offset(&self, d: SignedDuration) -> SignedDuration {
        self.warnings(d)
            .first()
            .map_or_else(|| d.mul_f64(0.8), |(off, _)| *off)
    }
}

fn warning_offset(w: Warning, d: SignedDuration) -> SignedDuration {
    match w {
        Warning::Fraction(f) => {
            SignedDuration::from_millis((d.as_millis() as f64 * f).round() as i64)
        }
        Warning::Before(lead) => d - lead,
    }
}

/// `80%`, `12.5%`, `15m before`: how a warning is named in history.
pub fn warning_label(w: Warning) -> String {
    match w {
        Warning::Fraction(f) => format!("{}%", (f * 10000.0).round() / 100.0),
        Warning::Before(lead) => format!("{} before", crate::view::human(lead)),
    }
}

/// Something to do for a case now. `run` indexes [`Timeline::runs`].
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Warn {
        run: usize,
        label: String,
        due: Timestamp,
    },
    Breach {
        run: usize,
        due: Timestamp,
    },
    Page {
        run: usize,
        alert: AlertId,
        step: u32,
        round: u32,
    },
    Remind {
        run: usize,
        alert: AlertId,
    },
    Close {
        run: usize,
        alert: AlertId,
        why: String,
    },
}

/// How one active target stands, kept in memory for `sla`, `queue` and
/// the timers.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetSla {
    pub target: Target,
    /// When it is (or was) due; `None` while paused short of the target.
    pub due: Option<Timestamp>,
    /// Counted time left, while paused.
    pub paused_left: Option<SignedDuration>,
    /// When it becomes at risk; `None` while paused short of that.
    pub risk_at: Option<Timestamp>,
    /// Its open alert, and whether someone acknowledged it.
    pub alert: Option<(AlertId, bool)>,
}

/// Where a target stands at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Risk {
    Ok,
    AtRisk,
    Breached,
}

impl TargetSla {
    pub fn risk(&self, now: Timestamp) -> Risk {
        if self.due.is_some_and(|t| t <= now) {
            Risk::Breached
        } else if self.risk_at.is_some_and(|t| t <= now) {
            Risk::AtRisk
        } else {
            Risk::Ok
        }
    }
}

/// The result of [`plan`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// The next instant (after `now`) something falls due.
    pub next: Option<Timestamp>,
    /// Active targets and targets with an open alert.
    pub targets: Vec<TargetSla>,
}

/// What is due for `tl` at `now`, and when the next thing is.
pub fn plan(tl: &Timeline, settings: &Settings, now: Timestamp) -> Plan {
    let mut out = Plan::default();
    let policy = settings.policy(tl.case.priority);
    let later = |t: Timestamp, out: &mut Plan| {
        if t > now && out.next.is_none_or(|n| t < n) {
            out.next = Some(t);
        }
    };
    for (i, run) in tl.runs.iter().enumerate() {
        let open_alert = run.alert.as_ref().filter(|a| a.is_open());
        let Some((p, d)) = policy.and_then(|p| p.target(run.target).map(|d| (p, d))) else {
            if let Some(a) = open_alert {
                out.actions.push(Action::Close {
                    run: i,
                    alert: a.id,
                    why: "the policy no longer has this target".into(),
                });
            }
            continue;
        };
        if !run.is_active() && open_alert.is_none() {
            continue;
        }
        let c = p.counting;
        let due = run.instant_at(c, d);
        let breached = run.is_active() && due.is_some_and(|t| t <= now);
        if run.is_active() {
            if breached && run.breached.is_none() {
                out.actions.push(Action::Breach {
                    run: i,
                    due: due.unwrap_or(now),
                });
            }
            if !breached {
                let points = p.warnings(d);
                let fired = points
                    .iter()
                    .filter(|(_, label)| run.warned.contains(label))
                    .map(|(off, _)| *off)
                    .max();
                let mut overdue = None;
                for (off, label) in points
                    .iter()
                    .filter(|(off, _)| fired.is_none_or(|f| *off > f))
                {
                    match run.instant_at(c, *off) {
                        Some(t) if t <= now => overdue = Some(label.clone()),
                        Some(t) => {
                            later(t, &mut out);
                            break;
                        }
                        None => break,
                    }
                }
                if let (Some(label), Some(due)) = (overdue, due) {
                    out.actions.push(Action::Warn { run: i, label, due });
                }
                if let Some(t) = due {
                    later(t, &mut out);
                }
            }
        }
        if let Some(a) = open_alert {
            if !breached {
                out.actions.push(Action::Close {
                    run: i,
                    alert: a.id,
                    why: close_reason(tl, run),
                });
            } else if let Some((at, action)) = next_alert_action(i, a, p.escalation, now) {
                if at <= now {
                    out.actions.push(action);
                } else {
                    later(at, &mut out);
                }
            }
        }
        if run.is_active() {
            out.targets.push(TargetSla {
                target: run.target,
                due,
                paused_left: (!run.is_running()).then(|| d - run.used(c, now)),
                risk_at: run.instant_at(c, p.risk_offset(d)),
                alert: open_alert.map(|a| (a.id, a.acked.is_some())),
            });
        } else if let Some(a) = open_alert {
            out.targets.push(TargetSla {
                target: run.target,
                due: None,
                paused_left: None,
                risk_at: None,
                alert: Some((a.id, a.acked.is_some())),
            });
        }
    }
    // Anything due now is handled by the caller right away.
    if !out.actions.is_empty() {
        out.next = Some(now);
    }
    out
}

fn close_reason(tl: &Timeline, run: &Run) -> String {
    match (tl.case.status, run.end) {
        (Status::Resolved, _) => format!("{} was resolved", tl.case.id),
        (Status::Closed, _) => format!("{} was closed", tl.case.id),
        (_, Some((_, End::Done))) => format!("{} got its {}", tl.case.id, run.target),
        (_, Some((_, End::Stopped))) => format!("{}'s {} clock stopped", tl.case.id, run.target),
        (_, None) => format!("{} is no longer breached (its due time moved)", tl.case.id),
    }
}

/// The alert's next page or reminder and when it is due.
fn next_alert_action(
    run: usize,
    a: &AlertLog,
    esc: Option<&Escalation>,
    now: Timestamp,
) -> Option<(Timestamp, Action)> {
    let esc = esc?;
    let n = esc.steps.len() as i64;
    let snooze = a.snoozed_until.unwrap_or(a.opened);
    if let Some((_, acked_at)) = &a.acked {
        let every = esc.remind_every?;
        let base = a.last_reminder.map_or(*acked_at, |r| r.max(*acked_at));
        let at = base.checked_add(every).ok()?.max(snooze);
        return Some((at, Action::Remind { run, alert: a.id }));
    }
    let total = n * i64::from(esc.repeat);
    let (last, base) = match a.last_page {
        Some((at, step, round)) => ((i64::from(round) - 1) * n + i64::from(step) - 1, at),
        None => (-1, a.opened),
    };
    let delay = |k: i64| {
        if k > 0 && k % n == 0 {
            esc.repeat_after
        } else {
            esc.steps[(k % n) as usize].delay
        }
    };
    let mut k = last + 1;
    if k >= total {
        return None;
    }
    let mut at = base.checked_add(delay(k)).ok()?.max(snooze);
    // After downtime, page only the step the alert should be at by now.
    while k + 1 < total {
        match at.checked_add(delay(k + 1)) {
            Ok(t) if t <= now => {
                at = t;
                k += 1;
            }
            _ => break,
        }
    }
    Some((
        at,
        Action::Page {
            run,
            alert: a.id,
            step: (k % n + 1) as u32,
            round: (k / n + 1) as u32,
        },
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::case::{CaseId, Event, EventKind};
    use crate::config::{PageTarget, Step};
    use crate::sla::timeline::tests_support::{history, t};

    fn settings(warnings: Vec<Warning>) -> Settings {
        let mut s = Settings::default();
        s.sla.policies.insert(
            Priority::P1,
            Policy {
                calendar: "default".into(),
                business_time: false,
                first_response: Some(SignedDuration::from_mins(10)),
                next_response: Some(SignedDuration::from_mins(30)),
                resolution: Some(SignedDuration::from_mins(60)),
                warnings,
                escalation: Some("default".into()),
            },
        );
        s.oncall.escalations = BTreeMap::from([(
            "default".to_owned(),
            Escalation {
                steps: vec![
                    Step {
                        delay: SignedDuration::ZERO,
                        target: PageTarget::User("@one".into()),
                    },
                    Step {
                        delay: SignedDuration::from_mins(5),
                        target: PageTarget::User("@two".into()),
                    },
                ],
                repeat: 2,
                repeat_after: SignedDuration::from_mins(20),
                remind_every: Some(SignedDuration::from_mins(30)),
            },
        )]);
        s
    }

    fn sla(target: &str, what: &str) -> EventKind {
        EventKind::Sla {
            target: target.into(),
            what: what.into(),
        }
    }

    fn plan_at(events: &[Event], s: &Settings, min: i64) -> Plan {
        plan(&Timeline::build(CaseId(1), events).unwrap(), s, t(min))
    }

    fn first_response_only() -> Settings {
        let mut s = settings(vec![Warning::Fraction(0.5), Warning::Fraction(0.8)]);
        let p = s.sla.policies.get_mut(&Priority::P1).unwrap();
        p.resolution = None;
        s
    }

    #[test]
    fn warnings_then_breach_each_once() {
        let s = first_response_only();
        let mut ev = history(&[]);
        let p = plan_at(&ev, &s, 4);
        assert!(p.actions.is_empty());
        assert_eq!(p.next, Some(t(5)));
        let p = plan_at(&ev, &s, 5);
        assert_eq!(
            p.actions,
            vec![Action::Warn {
                run: 0,
                label: "50%".into(),
                due: t(10)
            }]
        );
        ev = history(&[(5, sla("first_response", "warning 50%"))]);
        let p = plan_at(&ev, &s, 5);
        assert!(p.actions.is_empty());
        assert_eq!(p.next, Some(t(8)));
        ev = history(&[
            (5, sla("first_response", "warning 50%")),
            (8, sla("first_response", "warning 80%")),
        ]);
        assert_eq!(plan_at(&ev, &s, 9).next, Some(t(10)));
        assert_eq!(
            plan_at(&ev, &s, 10).actions,
            vec![Action::Breach { run: 0, due: t(10) }]
        );
        ev.push(Event {
            seq: 3,
            at: t(10),
            actor: "bot".into(),
            kind: sla("first_response", "breached"),
            reason: None,
        });
        let p = plan_at(&ev, &s, 10);
        assert!(p.actions.is_empty(), "{p:?}");
        assert_eq!(p.next, None);
        assert_eq!(p.targets[0].risk(t(10)), Risk::Breached);
    }

    #[test]
    fn after_downtime_only_the_latest_warning_or_the_breach_fires() {
        let s = first_response_only();
        let ev = history(&[]);
        assert_eq!(
            plan_at(&ev, &s, 9).actions,
            vec![Action::Warn {
                run: 0,
                label: "80%".into(),
                due: t(10)
            }]
        );
        assert_eq!(
            plan_at(&ev, &s, 30).actions,
            vec![Action::Breach { run: 0, due: t(10) }]
        );
    }

    #[test]
    fn lead_time_warnings_and_risk() {
        let s = settings(vec![Warning::Before(SignedDuration::from_mins(3))]);
        let ev = history(&[]);
        let p = plan_at(&ev, &s, 0);
        assert_eq!(p.next, Some(t(7)));
        let fr = &p.targets[0];
        assert_eq!((fr.due, fr.risk_at), (Some(t(10)), Some(t(7))));
        assert_eq!(fr.risk(t(6)), Risk::Ok);
        assert_eq!(fr.risk(t(7)), Risk::AtRisk);
        assert_eq!(
            plan_at(&ev, &s, 7).actions,
            vec![Action::Warn {
                run: 0,
                label: "3m before".into(),
                due: t(10)
            }]
        );
    }

    #[test]
    fn paused_targets_have_no_timer_and_keep_their_time_left() {
        let s = first_response_only();
        let ev = history(&[
            (
                1,
                EventKind::Assigned {
                    assignee: "@a:x".into(),
                },
            ),
            (3, EventKind::WaitingOnCustomer),
        ]);
        let p = plan_at(&ev, &s, 100);
        assert!(p.actions.is_empty());
        assert_eq!(p.next, None);
        assert_eq!(p.targets[0].paused_left, Some(SignedDuration::from_mins(7)));
        let ev = history(&[
            (
                1,
                EventKind::Assigned {
                    assignee: "@a:x".into(),
                },
            ),
            (3, EventKind::WaitingOnCustomer),
            (100, EventKind::Resumed),
        ]);
        let p = plan_at(&ev, &s, 100);
        // Only 3 of the 10 minutes were used before the wait: the 50%
        // warning comes 2 minutes after resuming, the breach 7 minutes.
        assert_eq!(p.next, Some(t(102)));
        assert_eq!(p.targets[0].due, Some(t(107)));
    }

    fn breached_with_alert(extra: &[(i64, EventKind)]) -> Vec<Event> {
        let mut kinds = vec![
            (
                1,
                EventKind::Assigned {
                    assignee: "@a:x".into(),
                },
            ),
            (10, sla("first_response", "breached")),
            (10, sla("first_response", "alert A-1 opened")),
            (10, sla("first_response", "alert A-1 paged step 1 round 1")),
        ];
        kinds.extend(extra.iter().cloned());
        history(&kinds)
    }

    #[test]
    fn escalation_steps_rounds_and_downtime() {
        let s = first_response_only();
        let ev = breached_with_alert(&[]);
        let p = plan_at(&ev, &s, 12);
        assert_eq!(p.next, Some(t(15)));
        let page = |step, round| Action::Page {
            run: 0,
            alert: AlertId(1),
            step,
            round,
        };
        assert_eq!(plan_at(&ev, &s, 15).actions, vec![page(2, 1)]);
        let ev =
            breached_with_alert(&[(15, sla("first_response", "alert A-1 paged step 2 round 1"))]);
        // Round 2 starts `repeat_after` (20m) after the last step.
        assert_eq!(plan_at(&ev, &s, 16).next, Some(t(35)));
        assert_eq!(plan_at(&ev, &s, 35).actions, vec![page(1, 2)]);
        // Down from minute 12 to 60: one page, for where it should be now.
        let ev = breached_with_alert(&[]);
        assert_eq!(plan_at(&ev, &s, 60).actions, vec![page(2, 2)]);
        // All rounds done: nothing more.
        let ev =
            breached_with_alert(&[(40, sla("first_response", "alert A-1 paged step 2 round 2"))]);
        let p = plan_at(&ev, &s, 200);
        assert!(p.actions.is_empty() && p.next.is_none(), "{p:?}");
    }

    #[test]
    fn ack_stops_paging_and_reminds_while_breached() {
        let s = first_response_only();
        let ev = breached_with_alert(&[(12, sla("first_response", "alert A-1 acknowledged"))]);
        let p = plan_at(&ev, &s, 15);
        assert!(p.actions.is_empty());
        assert_eq!(p.next, Some(t(42)));
        assert_eq!(p.targets[0].alert, Some((AlertId(1), true)));
        assert_eq!(
            plan_at(&ev, &s, 42).actions,
            vec![Action::Remind {
                run: 0,
                alert: AlertId(1)
            }]
        );
        let ev = breached_with_alert(&[
            (12, sla("first_response", "alert A-1 acknowledged")),
            (42, sla("first_response", "alert A-1 reminder")),
        ]);
        assert_eq!(plan_at(&ev, &s, 43).next, Some(t(72)));
    }

    #[test]
    fn snooze_delays_the_next_page() {
        let s = first_response_only();
        let ev = breached_with_alert(&[(
            11,
            sla(
                "first_response",
                "alert A-1 snoozed until 2026-03-02T01:40:00Z",
            ),
        )]);
        let p = plan_at(&ev, &s, 15);
        assert!(p.actions.is_empty());
        assert_eq!(p.next, Some(t(40)));
        assert_eq!(
            plan_at(&ev, &s, 40).actions,
            vec![Action::Page {
                run: 0,
                alert: AlertId(1),
                step: 2,
                round: 1
            }]
        );
    }

    #[test]
    fn response_or_resolution_closes_the_alert() {
        let s = first_response_only();
        let ev = breached_with_alert(&[(20, EventKind::AgentMessage { text: "hi".into() })]);
        let p = plan_at(&ev, &s, 20);
        assert_eq!(
            p.actions,
            vec![Action::Close {
                run: 0,
                alert: AlertId(1),
                why: "C-1 got its first response".into()
            }]
        );
        let ev = breached_with_alert(&[(20, EventKind::Resolved { playbook: None })]);
        let p = plan_at(&ev, &s, 20);
        assert_eq!(
            p.actions,
            vec![Action::Close {
                run: 0,
                alert: AlertId(1),
                why: "C-1 was resolved".into()
            }]
        );
        let ev = breached_with_alert(&[
            (20, EventKind::Resolved { playbook: None }),
            (20, sla("first_response", "alert A-1 closed")),
        ]);
        let p = plan_at(&ev, &s, 20);
        assert!(p.actions.is_empty() && p.targets.is_empty(), "{p:?}");
    }

    #[test]
    fn reopen_starts_a_new_resolution_target() {
        let s = settings(vec![]);
        let ev = history(&[
            (
                1,
                EventKind::Assigned {
                    assignee: "@a:x".into(),
                },
            ),
            (2, EventKind::AgentMessage { text: "hi".into() }),
            (30, EventKind::Resolved { playbook: None }),
            (500, EventKind::Reopened),
        ]);
        let p = plan_at(&ev, &s, 500);
        assert_eq!(p.targets.len(), 1);
        assert_eq!(p.targets[0].target, Target::Resolution);
        assert_eq!(p.targets[0].due, Some(t(560)));
        assert_eq!(p.next, Some(t(560)));
    }

    /// Due times through pauses and reopens, in business time: a P1 policy
    /// on the Shanghai calendar (09:00-18:00 on weekdays, holidays on
    /// 2026-10-01, 10-02 and 10-05) with a 2h first response and a 4h
    /// resolution. Times are local (+08:00).
    #[test]
    fn due_times_through_pauses_and_reopens() {
        use jiff::civil::Time;

        let open: Time = "09:00".parse().unwrap();
        let close: Time = "18:00".parse().unwrap();
        let mut hours = [None; 7];
        hours[..5].fill(Some((open, close)));
        let mut s = settings(vec![]);
        s.sla.calendars.insert(
            "default".into(),
            crate::config::Calendar {
                timezone: TimeZone::get("Asia/Shanghai").unwrap(),
                hours,
                holidays: ["2026-10-01", "2026-10-02", "2026-10-05"]
                    .iter()
                    .map(|d| d.parse().unwrap())
                    .collect(),
            },
        );
        let p = s.sla.policies.get_mut(&Priority::P1).unwrap();
        p.business_time = true;
        p.first_response = Some(SignedDuration::from_hours(2));
        p.resolution = Some(SignedDuration::from_hours(4));
        let local = |s: &str| -> Timestamp { format!("{s}+08:00").parse().unwrap() };
        use EventKind as K;
        let claim = || K::Assigned {
            assignee: "@a:x".into(),
        };
        let reply = || K::AgentMessage { text: "hi".into() };
        #[rustfmt::skip]
        type Row = (&'static str, Vec<(&'static str, EventKind)>, Target, &'static str);
        let rows: Vec<Row> = vec![
            (
                "pause overnight carries the time left",
                vec![
                    ("2026-03-02T16:00", claim()),
                    ("2026-03-02T17:00", K::WaitingOnCustomer),
                    ("2026-03-03T10:00", K::Resumed),
                ],
                Target::FirstResponse,
                "2026-03-03T11:00",
            ),
            (
                "pause over a weekend",
                vec![
                    ("2026-03-06T17:00", claim()),
                    ("2026-03-06T17:30", K::WaitingOnCustomer),
                    ("2026-03-09T08:00", K::Resumed),
                ],
                Target::FirstResponse,
                "2026-03-09T10:30",
            ),
            (
                "resumed after hours: counting waits for opening",
                vec![
                    ("2026-03-02T09:00", claim()),
                    ("2026-03-02T10:00", K::WaitingOnCustomer),
                    ("2026-03-02T20:00", K::Resumed),
                ],
                Target::FirstResponse,
                "2026-03-03T10:00",
            ),
            (
                "two pauses",
                vec![
                    ("2026-03-02T09:00", claim()),
                    ("2026-03-02T09:30", K::WaitingOnCustomer),
                    ("2026-03-02T11:00", K::Resumed),
                    ("2026-03-02T12:00", K::WaitingOnCustomer),
                    ("2026-03-02T15:00", K::Resumed),
                ],
                Target::Resolution,
                "2026-03-02T17:30",
            ),
            (
                "reopen starts a full resolution target",
                vec![
                    ("2026-03-02T09:00", claim()),
                    ("2026-03-02T09:10", reply()),
                    ("2026-03-02T10:00", K::Resolved { playbook: None }),
                    ("2026-03-06T17:00", K::Reopened),
                ],
                Target::Resolution,
                "2026-03-09T12:00",
            ),
            (
                "reopen before a holiday week",
                vec![
                    ("2026-09-30T09:00", claim()),
                    ("2026-09-30T09:10", reply()),
                    ("2026-09-30T10:00", K::Resolved { playbook: None }),
                    ("2026-09-30T17:00", K::Reopened),
                ],
                Target::Resolution,
                "2026-10-06T12:00",
            ),
        ];
        for (name, events, target, due) in rows {
            let opened = local(events[0].0);
            let mut history = vec![Event {
                seq: 0,
                at: opened,
                actor: "t".into(),
                kind: EventKind::Opened(crate::case::NewCase {
                    external_id: "T".into(),
                    subject: String::new(),
                    body: "b".into(),
                    customer: Default::default(),
                    channel: Default::default(),
                    priority: Priority::P1,
                    tags: vec![],
                }),
                reason: None,
            }];
            for (at, kind) in events {
                history.push(Event {
                    seq: history.len() as u32,
                    at: local(at),
                    actor: "t".into(),
                    kind,
                    reason: None,
                });
            }
            let now = history.last().unwrap().at;
            let tl = Timeline::build(CaseId(1), &history).unwrap();
            let p = plan(&tl, &s, now);
            let got = p.targets.iter().find(|t| t.target == target).map(|t| t.due);
            assert_eq!(got, Some(Some(local(due))), "{name}");
        }
    }

    #[test]
    fn warning_labels() {
        assert_eq!(warning_label(Warning::Fraction(0.8)), "80%");
        assert_eq!(warning_label(Warning::Fraction(0.125)), "12.5%");
        assert_eq!(
            warning_label(Warning::Before(SignedDuration::from_mins(90))),
            "1h 30m before"
        );
    }
}
