//! On-call rotations: who is on call at an instant, and who comes next.
//!
//! A rotation is a regular schedule — members taking equal turns from a
//! start, or an explicit list of shifts — plus temporary overrides, the
//! latest of which wins. Turns of whole days keep their local handoff time
//! (09:00 stays 09:00 across a DST change) because they are added as
//! calendar days in the rotation's zone; other lengths are exact.

use jiff::{SignedDuration, Timestamp, ToSpan};

use crate::config::{Rotation, Schedule, Shift, ShiftLength};

/// How many handoffs [`Rotation::next`] looks ahead for someone new.
const LOOKAHEAD: usize = 64;

/// Who is on call from when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handoff {
    pub at: Timestamp,
    pub user: Option<String>,
}

impl Rotation {
    /// The person on call at `t`, if anyone.
    pub fn on_call_at(&self, t: Timestamp) -> Option<&str> {
        if let Some(o) = self.overrides.iter().rev().find(|s| covers(s, t)) {
            return Some(&o.user);
        }
        match &self.schedule {
            Schedule::Shifts(shifts) => shifts
                .iter()
                .rev()
                .find(|s| covers(s, t))
                .map(|s| s.user.as_str()),
            Schedule::Turns { members, .. } => {
                let k = self.turn_at(t)?;
                members
                    .get(k.rem_euclid(members.len() as i64) as usize)
                    .map(String::as_str)
            }
        }
    }

    /// The next time someone else is on call after `t` (looking a few
    /// handoffs ahead), or the next handoff when it is the same person.
    pub fn next(&self, t: Timestamp) -> Option<Handoff> {
        let now = self.on_call_at(t).map(str::to_owned);
        let mut at = t;
        let mut first = None;
        for _ in 0..LOOKAHEAD {
            at = self.next_change(at)?;
            let user = self.on_call_at(at).map(str::to_owned);
            let h = Handoff { at, user };
            if h.user != now {
                return Some(h);
            }
            first.get_or_insert(h);
        }
        first
    }

    /// The first instant after `t` at which the schedule or an override
    /// changes.
    fn next_change(&self, t: Timestamp) -> Option<Timestamp> {
        let mut edges: Vec<Timestamp> =
            self.overrides.iter().flat_map(|s| [s.from, s.to]).collect();
        match &self.schedule {
            Schedule::Shifts(shifts) => edges.extend(shifts.iter().flat_map(|s| [s.from, s.to])),
            Schedule::Turns { .. } => {
                if let Some(k) = self.turn_at(t) {
                    edges.extend(self.turn_start(k + 1));
                }
            }
        }
        edges.into_iter().filter(|e| *e > t).min()
    }

    /// The number of the turn running at `t` (turn 0 starts at `start`;
    /// earlier instants have negative turns).
    fn turn_at(&self, t: Timestamp) -> Option<i64> {
        let Schedule::Turns { length, .. } = &self.schedule else {
            return None;
        };
        let start = self.turn_start(0)?;
        let approx = match length {
            ShiftLength::Days(d) => SignedDuration::from_hours(24 * i64::from(*d)),
            ShiftLength::Exact(d) => *d,
        };
        if approx <= SignedDuration::ZERO {
            return None;
        }
        // The estimate is off by at most one turn (a DST change moves a
        // handoff by an hour); walk to the exact turn.
        let mut k = t
            .duration_since(start)
            .as_secs()
            .div_euclid(approx.as_secs().max(1));
        for _ in 0..8 {
            if self.turn_start(k)? > t {
                k -= 1;
            } else if self.turn_start(k + 1)? <= t {
                k += 1;
            } else {
                return Some(k);
            }
        }
        None
    }

    fn turn_start(&self, k: i64) -> Option<Timestamp> {
        let Schedule::Turns { start, length, .. } = &self.schedule else {
            return None;
        };
        match length {
            ShiftLength::Days(d) => {
                let days = k.checked_mul(i64::from(*d))?;
                let local = start.checked_add(i32::try_from(days).ok()?.days()).ok()?;
                self.timezone.to_timestamp(local).ok()
            }
            ShiftLength::Exact(d) => {
                let first = self.timezone.to_timestamp(*start).ok()?;
                let off = SignedDuration::from_secs(d.as_secs().checked_mul(k)?);
                first.checked_add(off).ok()
            }
        }
    }
}

fn covers(s: &Shift, t: Timestamp) -> bool {
    s.from <= t && t < s.to
}

#[cfg(test)]
mod tests {
    use jiff::tz::TimeZone;

    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn weekly(tz: &str, members: &[&str], start: &str, length: ShiftLength) -> Rotation {
        Rotation {
            timezone: TimeZone::get(tz).unwrap(),
            schedule: Schedule::Turns {
                members: members.iter().map(|m| m.to_string()).collect(),
                start: start.parse().unwrap(),
                length,
            },
            overrides: vec![],
        }
    }

    #[test]
    fn weekly_turns_with_an_override() {
        let mut r = weekly(
            "Asia/Shanghai",
            &["@a", "@b", "@c"],
            "2026-01-05T09:00",
            ShiftLength::Days(7),
        );
        #[rustfmt::skip]
        let rows = [
            ("2026-01-05T09:00:00+08:00", "@a"),
            ("2026-01-12T08:59:59+08:00", "@a"),
            ("2026-01-12T09:00:00+08:00", "@b"),
            ("2026-01-19T12:00:00+08:00", "@c"),
            ("2026-01-26T09:00:00+08:00", "@a"),
            // Before the start the turns run backwards.
            ("2026-01-04T12:00:00+08:00", "@c"),
        ];
        for (at, who) in rows {
            assert_eq!(r.on_call_at(ts(at)), Some(who), "{at}");
        }
        r.overrides.push(Shift {
            user: "@d".into(),
            from: ts("2026-01-13T18:00:00+08:00"),
            to: ts("2026-01-14T09:00:00+08:00"),
        });
        assert_eq!(r.on_call_at(ts("2026-01-13T20:00:00+08:00")), Some("@d"));
        assert_eq!(r.on_call_at(ts("2026-01-14T09:00:00+08:00")), Some("@b"));
        // Next: the override, then back to @b.
        assert_eq!(
            r.next(ts("2026-01-13T10:00:00+08:00")),
            Some(Handoff {
                at: ts("2026-01-13T18:00:00+08:00"),
                user: Some("@d".into())
            })
        );
        assert_eq!(
            r.next(ts("2026-01-13T20:00:00+08:00")),
            Some(Handoff {
                at: ts("2026-01-14T09:00:00+08:00"),
                user: Some("@b".into())
            })
        );
        assert_eq!(
            r.next(ts("2026-01-15T00:00:00+08:00")),
            Some(Handoff {
                at: ts("2026-01-19T09:00:00+08:00"),
                user: Some("@c".into())
            })
        );
    }

    #[test]
    fn daily_handoffs_keep_local_time_across_dst() {
        let r = weekly(
            "America/New_York",
            &["@a", "@b"],
            "2026-03-06T09:00",
            ShiftLength::Days(1),
        );
        // 09:00 EST on the 7th, 09:00 EDT on the 8th and 9th.
        assert_eq!(r.on_call_at(ts("2026-03-07T08:59:00-05:00")), Some("@a"));
        assert_eq!(r.on_call_at(ts("2026-03-07T09:00:00-05:00")), Some("@b"));
        assert_eq!(r.on_call_at(ts("2026-03-08T08:59:00-04:00")), Some("@b"));
        assert_eq!(r.on_call_at(ts("2026-03-08T09:00:00-04:00")), Some("@a"));
        assert_eq!(
            r.next(ts("2026-03-08T12:00:00-04:00")).unwrap().at,
            ts("2026-03-09T09:00:00-04:00")
        );
    }

    #[test]
    fn exact_turns_and_explicit_shifts() {
        let r = weekly(
            "Europe/Berlin",
            &["@day", "@night"],
            "2026-03-28T08:00",
            ShiftLength::Exact(SignedDuration::from_hours(12)),
        );
        // Exact 12-hour turns drift in local time across the DST change:
        // the 20:00 handoff happens at 21:00 CEST after it.
        assert_eq!(
            r.on_call_at(ts("2026-03-28T20:00:00+01:00")),
            Some("@night")
        );
        assert_eq!(r.on_call_at(ts("2026-03-29T20:30:00+02:00")), Some("@day"));
        assert_eq!(
            r.on_call_at(ts("2026-03-29T21:00:00+02:00")),
            Some("@night")
        );
        let shifts = Rotation {
            timezone: TimeZone::UTC,
            schedule: Schedule::Shifts(vec![
                Shift {
                    user: "@x".into(),
                    from: ts("2026-03-02T00:00:00Z"),
                    to: ts("2026-03-03T00:00:00Z"),
                },
                Shift {
                    user: "@y".into(),
                    from: ts("2026-03-04T00:00:00Z"),
                    to: ts("2026-03-05T00:00:00Z"),
                },
            ]),
            overrides: vec![],
        };
        assert_eq!(shifts.on_call_at(ts("2026-03-02T12:00:00Z")), Some("@x"));
        assert_eq!(shifts.on_call_at(ts("2026-03-03T12:00:00Z")), None);
        assert_eq!(
            shifts.next(ts("2026-03-02T12:00:00Z")),
            Some(Handoff {
                at: ts("2026-03-03T00:00:00Z"),
                user: None
            })
        );
        assert_eq!(
            shifts.next(ts("2026-03-03T12:00:00Z")),
            Some(Handoff {
                at: ts("2026-03-04T00:00:00Z"),
                user: Some("@y".into())
            })
        );
        assert_eq!(shifts.next(ts("2026-03-06T00:00:00Z")), None);
    }
}
