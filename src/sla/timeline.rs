//! A case's SLA clocks, replayed from its history.
//!
//! Every target instance is a [`Run`]: the first-response clock starts when
//! the case opens, a next-response clock with each unanswered customer
//! message (once the first response is given), a resolution clock when the
//! case opens and again when it is reopened. A run is a list of running
//! segments: waiting on the customer closes the open segment, resuming
//! starts a new one, so the time left is carried over exactly. Resolving or
//! closing the case ends every run.
//!
//! What already fired is part of the history too: `sla` events
//! ([`EventKind::Sla`]) belong to the latest run of their target (alert
//! events to the run that opened the alert), so replaying the history tells
//! which warnings, breaches and pages were sent — nothing is ever sent
//! twice, across restarts included.
//!
//! The `what` of an `sla` event is one of:
//!
//! | what                                  | meaning                          |
//! |---------------------------------------|----------------------------------|
//! | `warning <label>`                     | a warning was posted             |
//! | `breached`                            | the target was missed            |
//! | `alert A-7 opened`                    | the miss got an on-call alert    |
//! | `alert A-7 paged step 2 round 1`      | an escalation step paged         |
//! | `alert A-7 acknowledged`              | the actor acknowledged it        |
//! | `alert A-7 snoozed until <timestamp>` | paging waits until then          |
//! | `alert A-7 reminder`                  | a reminder after the ack         |
//! | `alert A-7 closed`                    | the alert is over                |

use std::fmt;
use std::str::FromStr;

use jiff::{SignedDuration, Timestamp};

use super::calendar::Counting;
use crate::case::{Case, CaseId, Event, EventKind};

/// The three SLA targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    FirstResponse,
    NextResponse,
    Resolution,
}

impl Target {
    pub const ALL: [Target; 3] = [
        Target::FirstResponse,
        Target::NextResponse,
        Target::Resolution,
    ];

    /// The name in case history and config.
    pub fn as_str(self) -> &'static str {
        match self {
            Target::FirstResponse => "first_response",
            Target::NextResponse => "next_response",
            Target::Resolution => "resolution",
        }
    }

    /// How it reads in chat.
    pub fn label(self) -> &'static str {
        match self {
            Target::FirstResponse => "first response",
            Target::NextResponse => "next response",
            Target::Resolution => "resolution",
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

impl FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Target::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("unknown SLA target `{s}`"))
    }
}

/// An on-call alert's short id, `A-7`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(into = "String", try_from = "String")]
pub struct AlertId(pub u64);

impl From<AlertId> for String {
    fn from(id: AlertId) -> String {
        id.to_string()
    }
}

impl TryFrom<String> for AlertId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl fmt::Display for AlertId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "A-{}", self.0)
    }
}

impl FromStr for AlertId {
    type Err = String;
    /// Accepts `A-7`, `a-7`, `#7` and `7`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        crate::case::parse_short_id(s, 'A')
            .map(AlertId)
            .ok_or_else(|| format!("`{s}` is not an alert id (expected something like A-7)"))
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The target was reached: the response was given, the case resolved.
    Done,
    /// The case was resolved or closed before this target was reached
    /// (e.g. resolved without a reply in the thread).
    Stopped,
}

/// One instance of a target's clock.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub target: Target,
    /// Sequence number of the event that started it.
    pub seq: u32,
    pub started: Timestamp,
    /// Running segments, oldest first; an open one (`None` end) while the
    /// clock runs. Empty while a run that started during a wait is paused.
    pub segments: Vec<(Timestamp, Option<Timestamp>)>,
    pub end: Option<(Timestamp, End)>,
    /// Labels of the warnings already posted.
    pub warned: Vec<String>,
    /// When the breach was recorded.
    pub breached: Option<Timestamp>,
    pub alert: Option<AlertLog>,
}

/// What happened to an alert so far.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertLog {
    pub id: AlertId,
    pub opened: Timestamp,
    /// The last page: when, step (1-based) and round (1-based).
    pub last_page: Option<(Timestamp, u32, u32)>,
    pub acked: Option<(String, Timestamp)>,
    pub snoozed_until: Option<Timestamp>,
    pub last_reminder: Option<Timestamp>,
    pub closed: Option<Timestamp>,
}

impl AlertLog {
    pub fn is_open(&self) -> bool {
        self.closed.is_none()
    }
}

impl Run {
    fn new(target: Target, seq: u32, at: Timestamp, running: bool) -> Run {
        Run {
            target,
            seq,
            started: at,
            segments: if running { vec![(at, None)] } else { vec![] },
            end: None,
            warned: Vec::new(),
            breached: None,
            alert: None,
        }
    }

    /// Still counting, or paused; not yet done or stopped.
    pub fn is_active(&self) -> bool {
        self.end.is_none()
    }

    /// Counting right now (active and not paused).
    pub fn is_running(&self) -> bool {
        self.end.is_none() && matches!(self.segments.last(), Some((_, None)))
    }

    fn pause(&mut self, at: Timestamp) {
        if let Some((_, end @ None)) = self.segments.last_mut() {
            *end = Some(at);
        }
    }

    fn resume(&mut self, at: Timestamp) {
        if self.end.is_none() && !self.is_running() {
            self.segments.push((at, None));
        }
    }

    fn finish(&mut self, at: Timestamp, how: End) {
        if self.end.is_none() {
            self.pause(at);
            self.end = Some((at, how));
        }
    }

    /// Counted time used by `now`.
    pub fn used(&self, counting: Counting, now: Timestamp) -> SignedDuration {
        self.segments
            .iter()
            .map(|(from, to)| counting.between(*from, to.unwrap_or(now).min(now)))
            .sum()
    }

    /// The instant at which this run has used `x` of counted time, if it
    /// gets there: within a finished segment, or (when running) in the
    /// open one. `None` while paused short of `x`, or if it ended short.
    pub fn instant_at(&self, counting: Counting, x: SignedDuration) -> Option<Timestamp> {
        let mut acc = SignedDuration::ZERO;
        for (from, to) in &self.segments {
            match to {
                Some(to) => {
                    let part = counting.between(*from, *to);
                    if acc + part >= x {
                        return counting.add(*from, x - acc);
                    }
                    acc += part;
                }
                None => return counting.add(*from, x - acc),
            }
        }
        None
    }
}

/// A case with its SLA runs.
#[derive(Debug, Clone)]
pub struct Timeline {
    pub case: Case,
    pub runs: Vec<Run>,
}

impl Timeline {
    /// Replays a case's history. Events that break the lifecycle are
    /// refused by the store before they are written, so replay errors mean
    /// corrupt data.
    pub fn build(id: CaseId, events: &[Event]) -> Result<Timeline, String> {
        let case = Case::replay(id, events)?;
        let mut runs: Vec<Run> = Vec::new();
        let mut waiting = false;
        for ev in events {
            let at = ev.at;
            match &ev.kind {
                EventKind::Opened(_) => {
                    runs.push(Run::new(Target::FirstResponse, ev.seq, at, true));
                    runs.push(Run::new(Target::Resolution, ev.seq, at, true));
                }
                EventKind::WaitingOnCustomer => {
                    waiting = true;
                    runs.iter_mut().for_each(|r| r.pause(at));
                }
                EventKind::Resumed => {
                    waiting = false;
                    runs.iter_mut().for_each(|r| r.resume(at));
                }
                EventKind::AgentMessage { .. } | EventKind::Reply { .. } => {
                    for r in runs.iter_mut().filter(|r| {
                        matches!(r.target, Target::FirstResponse | Target::NextResponse)
                    }) {
                        r.finish(at, End::Done);
                    }
                }
                EventKind::CustomerMessage { .. } => {
                    let answered_first = runs
                        .iter()
                        .any(|r| r.target == Target::FirstResponse && r.end.is_some());
                    let open = runs
                        .iter()
                        .any(|r| r.target == Target::Resolution && r.is_active());
                    let pending = runs
                        .iter()
                        .any(|r| r.target == Target::NextResponse && r.is_active());
                    if answered_first && open && !pending {
                        runs.push(Run::new(Target::NextResponse, ev.seq, at, !waiting));
                    }
                }
                EventKind::Resolved { .. } => {
                    waiting = false;
                    for r in &mut runs {
                        let how = if r.target == Target::Resolution {
                            End::Done
                        } else {
                            End::Stopped
                        };
                        r.finish(at, how);
                    }
                }
                EventKind::Closed => {
                    runs.iter_mut().for_each(|r| r.finish(at, End::Stopped));
                }
                EventKind::Reopened => {
                    runs.push(Run::new(Target::Resolution, ev.seq, at, true));
                }
                EventKind::Sla { target, what } => record(&mut runs, ev, target, what),
                _ => {}
            }
        }
        Ok(Timeline { case, runs })
    }

    /// Every alert ever opened for this case, with the run it is about.
    pub fn alerts(&self) -> impl Iterator<Item = (&Run, &AlertLog)> {
        self.runs
            .iter()
            .filter_map(|r| r.alert.as_ref().map(|a| (r, a)))
    }

    pub fn alert(&self, id: AlertId) -> Option<(&Run, &AlertLog)> {
        self.alerts().find(|(_, a)| a.id == id)
    }
}

/// Applies one `sla` event to the run it belongs to.
fn record(runs: &mut [Run], ev: &Event, target: &str, what: &str) {
    let at = ev.at;
    if let Some(rest) = what.strip_prefix("alert ") {
        let (id, verb) = rest.split_once(' ').unwrap_or((rest, ""));
        let Ok(id) = id.parse::<AlertId>() else {
            return;
        };
        if verb == "opened" {
            if let Some(run) = latest(runs, target) {
                run.alert = Some(AlertLog {
                    id,
                    opened: at,
                    last_page: None,
                    acked: None,
                    snoozed_until: None,
                    last_reminder: None,
                    closed: None,
                });
            }
            return;
        }
        let Some(alert) = runs
            .iter_mut()
            .filter_map(|r| r.alert.as_mut())
            .find(|a| a.id == id)
        else {
            return;
        };
        let words: Vec<&str> = verb.split_whitespace().collect();
        match words.as_slice() {
            ["paged", "step", step, "round", round] => {
                if let (Ok(s), Ok(r)) = (step.parse(), round.parse()) {
                    alert.last_page = Some((at, s, r));
                }
            }
            ["acknowledged"] => alert.acked = Some((ev.actor.clone(), at)),
            ["snoozed", "until", t] => alert.snoozed_until = t.parse().ok(),
            ["reminder"] => alert.last_reminder = Some(at),
            ["closed"] => alert.closed = Some(at),
            _ => {}
        }
        return;
    }
    let Some(run) = latest(runs, target) else {
        return;
    };
    if what == "breached" {
        run.breached.get_or_insert(at);
    } else if let Some(label) = what.strip_prefix("warning ") {
        run.warned.push(label.to_owned());
    }
}

fn latest<'a>(runs: &'a mut [Run], target: &str) -> Option<&'a mut Run> {
    let target: Target = target.parse().ok()?;
    runs.iter_mut().rev().find(|r| r.target == target)
}

/// Histories for unit tests: minute offsets from 2026-03-02T01:00Z.
#[cfg(test)]
pub(crate) mod tests_support {
    use jiff::Timestamp;

    use crate::case::{Channel, Customer, Event, EventKind, NewCase, Priority};

    /// `min` minutes after 2026-03-02T01:00Z (09:00 in Shanghai, a Monday).
    pub(crate) fn t(min: i64) -> Timestamp {
        Timestamp::from_second(1_772_413_200 + min * 60).unwrap() // 2026-03-02T01:00Z
    }

    pub(crate) fn history(kinds: &[(i64, EventKind)]) -> Vec<Event> {
        let mut out = vec![Event {
            seq: 0,
            at: t(0),
            actor: "test".into(),
            kind: EventKind::Opened(NewCase {
                external_id: "T-1".into(),
                subject: String::new(),
                body: "b".into(),
                customer: Customer::default(),
                channel: Channel::Chat,
                priority: Priority::P1,
                tags: vec![],
            }),
            reason: None,
        }];
        for (min, kind) in kinds {
            out.push(Event {
                seq: out.len() as u32,
                at: t(*min),
                actor: "@a:x".into(),
                kind: kind.clone(),
                reason: None,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::{history, t};
    use super::*;

    fn assigned() -> EventKind {
        EventKind::Assigned {
            assignee: "@a:x".into(),
        }
    }

    fn sla(target: &str, what: &str) -> EventKind {
        EventKind::Sla {
            target: target.into(),
            what: what.into(),
        }
    }

    #[test]
    fn wait_pauses_and_resume_carries_the_time_left() {
        let events = history(&[
            (1, assigned()),
            (10, EventKind::WaitingOnCustomer),
            (70, EventKind::Resumed),
        ]);
        let tl = Timeline::build(CaseId(1), &events).unwrap();
        let res = tl
            .runs
            .iter()
            .find(|r| r.target == Target::Resolution)
            .unwrap();
        assert_eq!(res.segments, vec![(t(0), Some(t(10))), (t(70), None)]);
        assert_eq!(
            res.used(Counting::Wall, t(80)),
            SignedDuration::from_mins(20)
        );
        // 30 minutes of target: 10 before the wait, 20 after it.
        assert_eq!(
            res.instant_at(Counting::Wall, SignedDuration::from_mins(30)),
            Some(t(90))
        );
        assert_eq!(
            res.instant_at(Counting::Wall, SignedDuration::from_mins(5)),
            Some(t(5))
        );
    }

    #[test]
    fn responses_finish_response_clocks_and_customer_messages_start_new_ones() {
        let events = history(&[
            (1, assigned()),
            (
                5,
                EventKind::CustomerMessage {
                    text: "still there?".into(),
                },
            ),
            (7, EventKind::AgentMessage { text: "yes".into() }),
            (
                20,
                EventKind::CustomerMessage {
                    text: "and?".into(),
                },
            ),
            (
                25,
                EventKind::CustomerMessage {
                    text: "hello??".into(),
                },
            ),
            (
                40,
                EventKind::AgentMessage {
                    text: "done".into(),
                },
            ),
            (
                50,
                EventKind::CustomerMessage {
                    text: "thanks".into(),
                },
            ),
        ]);
        let tl = Timeline::build(CaseId(1), &events).unwrap();
        type Row = (Target, Timestamp, Option<(Timestamp, End)>);
        let kinds: Vec<Row> = tl
            .runs
            .iter()
            .map(|r| (r.target, r.started, r.end))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (Target::FirstResponse, t(0), Some((t(7), End::Done))),
                (Target::Resolution, t(0), None),
                // The message before the first response starts nothing; the
                // second of two unanswered ones starts nothing either.
                (Target::NextResponse, t(20), Some((t(40), End::Done))),
                (Target::NextResponse, t(50), None),
            ]
        );
    }

    #[test]
    fn resolve_stops_everything_and_reopen_starts_a_new_resolution_clock() {
        let events = history(&[
            (1, assigned()),
            (30, EventKind::Resolved { playbook: None }),
            (100, EventKind::Reopened),
        ]);
        let tl = Timeline::build(CaseId(1), &events).unwrap();
        let kinds: Vec<_> = tl.runs.iter().map(|r| (r.target, r.end)).collect();
        assert_eq!(
            kinds,
            vec![
                (Target::FirstResponse, Some((t(30), End::Stopped))),
                (Target::Resolution, Some((t(30), End::Done))),
                (Target::Resolution, None),
            ]
        );
        assert_eq!(tl.runs[2].started, t(100));
        assert!(tl.runs[2].is_running());
    }

    #[test]
    fn sla_events_are_attributed_to_their_run_and_alert() {
        let mut events = history(&[
            (1, assigned()),
            (12, sla("first_response", "warning 80%")),
            (15, sla("first_response", "breached")),
            (15, sla("first_response", "alert A-3 opened")),
            (15, sla("first_response", "alert A-3 paged step 1 round 1")),
            (20, sla("first_response", "alert A-3 paged step 2 round 1")),
            (22, sla("first_response", "alert A-3 acknowledged")),
            (
                23,
                sla(
                    "first_response",
                    "alert A-3 snoozed until 2026-03-02T02:00:00Z",
                ),
            ),
        ]);
        events[7].actor = "@oncall:x".into();
        let tl = Timeline::build(CaseId(1), &events).unwrap();
        let fr = &tl.runs[0];
        assert_eq!(fr.warned, vec!["80%".to_owned()]);
        assert_eq!(fr.breached, Some(t(15)));
        let a = fr.alert.as_ref().unwrap();
        assert_eq!(a.id, AlertId(3));
        assert_eq!(a.last_page, Some((t(20), 2, 1)));
        assert_eq!(a.acked, Some(("@oncall:x".to_owned(), t(22))));
        assert_eq!(a.snoozed_until, Some(t(60)));
        assert!(a.is_open());
        assert_eq!(
            tl.alert(AlertId(3)).unwrap().0.target,
            Target::FirstResponse
        );
    }

    #[test]
    fn alert_ids_parse_in_friendly_forms() {
        for s in ["A-7", "a-7", "#7", "7", " A-7 "] {
            assert_eq!(s.parse::<AlertId>().unwrap(), AlertId(7));
        }
        assert!("A-".parse::<AlertId>().is_err());
        assert!("C-7".parse::<AlertId>().is_err());
        assert_eq!(AlertId(7).to_string(), "A-7");
    }
}
