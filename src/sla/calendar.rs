//! Counting time: every second (wall time), or only while the team is open
//! (business time in a [`Calendar`]).
//!
//! A calendar's opening hours are local times in its IANA zone. Each open
//! day becomes one interval of real instants, converted by jiff — so a
//! day's opening and closing follow the zone's offset on that day, and
//! counting across nights, weekends, holidays and DST changes is just
//! summing intervals. Local times that do not exist (in a spring-forward
//! gap) or exist twice (in a fall-back fold) are resolved the way jiff's
//! "compatible" disambiguation does (the later instant in a gap, the earlier
//! one in a fold), like most calendar software.

use jiff::civil::{Date, Time};
use jiff::{SignedDuration, Timestamp};

use crate::config::Calendar;

/// How far ahead opening hours are searched. Config validation refuses a
/// business-time calendar without any open weekday, so this only bounds a
/// calendar whose every open day for ten years is a holiday.
const HORIZON_DAYS: usize = 3700;

/// How a policy counts time.
#[derive(Debug, Clone, Copy)]
pub enum Counting<'a> {
    /// Every second counts.
    Wall,
    /// Only the calendar's opening hours count.
    Business(&'a Calendar),
}

impl Counting<'_> {
    /// Counted time between `from` and `to` (zero when `to` is not later).
    pub fn between(self, from: Timestamp, to: Timestamp) -> SignedDuration {
        if to <= from {
            return SignedDuration::ZERO;
        }
        match self {
            Counting::Wall => to.duration_since(from),
            Counting::Business(cal) => {
                let mut total = SignedDuration::ZERO;
                for (open, close) in open_intervals(cal, from) {
                    if open >= to {
                        break;
                    }
                    total += close.min(to).duration_since(open.max(from));
                }
                total
            }
        }
    }

    /// The instant at which `d` of counted time has passed since `from`.
    /// `None` only when business time never accumulates that much.
    pub fn add(self, from: Timestamp, d: SignedDuration) -> Option<Timestamp> {
        if d <= SignedDuration::ZERO {
            return Some(from);
        }
        match self {
            Counting::Wall => from.checked_add(d).ok(),
            Counting::Business(cal) => {
                let mut left = d;
                for (open, close) in open_intervals(cal, from) {
                    let start = open.max(from);
                    let avail = close.duration_since(start);
                    if left <= avail {
                        return start.checked_add(left).ok();
                    }
                    left -= avail;
                }
                None
            }
        }
    }
}

/// The opening intervals that end after `from`, in order.
fn open_intervals(cal: &Calendar, from: Timestamp) -> impl Iterator<Item = (Timestamp, Timestamp)> {
    let first = from.to_zoned(cal.timezone.clone()).date();
    std::iter::successors(Some(first), |d| d.tomorrow().ok())
        .take(HORIZON_DAYS)
        .filter_map(|date| open_interval(cal, date))
        .filter(move |(_, close)| *close > from)
}

/// The instants a calendar is open on `date`, if it opens that day.
pub fn open_interval(cal: &Calendar, date: Date) -> Option<(Timestamp, Timestamp)> {
    if cal.holidays.contains(&date) {
        return None;
    }
    let (open, close) = cal.hours[date.weekday().to_monday_zero_offset() as usize]?;
    let tz = &cal.timezone;
    let open = tz.to_timestamp(date.to_datetime(open)).ok()?;
    // "24:00" is stored as the last representable time of the day; it means
    // the start of the next day (which is not always 24 hours later).
    let close = if close == Time::MAX {
        date.tomorrow().ok()?.to_zoned(tz.clone()).ok()?.timestamp()
    } else {
        tz.to_timestamp(date.to_datetime(close)).ok()?
    };
    (close > open).then_some((open, close))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use jiff::civil::Weekday;
    use jiff::tz::TimeZone;

    use super::*;

    /// A calendar open `hours` on the weekdays in `days` (Monday = 0).
    fn cal(tz: &str, days: &[usize], hours: (&str, &str), holidays: &[&str]) -> Calendar {
        let open: Time = hours.0.parse().unwrap();
        let close: Time = if hours.1 == "24:00" {
            Time::MAX
        } else {
            hours.1.parse().unwrap()
        };
        let mut h = [None; 7];
        for d in days {
            h[*d] = Some((open, close));
        }
        Calendar {
            timezone: TimeZone::get(tz).unwrap(),
            hours: h,
            holidays: holidays
                .iter()
                .map(|d| d.parse().unwrap())
                .collect::<BTreeSet<Date>>(),
        }
    }

    const WEEKDAYS: &[usize] = &[0, 1, 2, 3, 4];
    const EVERY_DAY: &[usize] = &[0, 1, 2, 3, 4, 5, 6];

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn dur(s: &str) -> SignedDuration {
        crate::config::parse_duration(s).unwrap()
    }

    /// Due times: start + target, counted in business or wall time. Starts
    /// and expectations carry their UTC offset, so each row also says which
    /// side of a DST change it is on.
    #[test]
    fn due_times() {
        let shanghai = cal(
            "Asia/Shanghai",
            WEEKDAYS,
            ("09:00", "18:00"),
            &["2026-10-01", "2026-10-02", "2026-10-05"],
        );
        let ny = cal("America/New_York", WEEKDAYS, ("09:00", "17:00"), &[]);
        let ny_24x7 = cal("America/New_York", EVERY_DAY, ("00:00", "24:00"), &[]);
        let ny_night = cal("America/New_York", EVERY_DAY, ("01:00", "04:00"), &[]);
        let berlin = cal("Europe/Berlin", WEEKDAYS, ("09:00", "17:00"), &[]);
        let berlin_24x7 = cal("Europe/Berlin", EVERY_DAY, ("00:00", "24:00"), &[]);
        let business = |c| Counting::Business(c);
        #[rustfmt::skip]
        let rows: &[(&str, Counting, &str, &str, &str)] = &[
            // name, counting, start, target, due
            ("within hours", business(&shanghai),
             "2026-03-02T10:00:00+08:00", "4h", "2026-03-02T14:00:00+08:00"),
            ("ends exactly at closing", business(&shanghai),
             "2026-03-02T10:00:00+08:00", "8h", "2026-03-02T18:00:00+08:00"),
            ("overnight", business(&shanghai),
             "2026-03-02T16:00:00+08:00", "4h", "2026-03-03T11:00:00+08:00"),
            ("opened before hours", business(&shanghai),
             "2026-03-02T07:30:00+08:00", "30m", "2026-03-02T09:30:00+08:00"),
            ("opened after hours", business(&shanghai),
             "2026-03-02T20:00:00+08:00", "1h", "2026-03-03T10:00:00+08:00"),
            ("weekend", business(&shanghai),
             "2026-03-06T17:00:00+08:00", "2h", "2026-03-09T10:00:00+08:00"),
            ("opened on a saturday", business(&shanghai),
             "2026-03-07T11:00:00+08:00", "1h", "2026-03-09T10:00:00+08:00"),
            ("multi-day", business(&shanghai),
             "2026-03-02T09:00:00+08:00", "3d", "2026-03-11T18:00:00+08:00"),
            ("holidays: national day week", business(&shanghai),
             "2026-09-30T17:00:00+08:00", "2h", "2026-10-06T10:00:00+08:00"),
            ("shanghai has no DST: wall time", Counting::Wall,
             "2026-03-07T12:00:00+08:00", "24h", "2026-03-08T12:00:00+08:00"),
            // America/New_York springs forward on 2026-03-08 (EST -> EDT)
            // and falls back on 2026-11-01 (EDT -> EST).
            ("NY business hours across spring forward", business(&ny),
             "2026-03-06T16:00:00-05:00", "2h", "2026-03-09T10:00:00-04:00"),
            ("NY business hours across fall back", business(&ny),
             "2026-10-30T16:00:00-04:00", "2h", "2026-11-02T10:00:00-05:00"),
            ("NY 24x7: the spring-forward day has 23 hours", business(&ny_24x7),
             "2026-03-07T12:00:00-05:00", "24h", "2026-03-08T13:00:00-04:00"),
            ("NY 24x7: the fall-back day has 25 hours", business(&ny_24x7),
             "2026-10-31T12:00:00-04:00", "24h", "2026-11-01T11:00:00-05:00"),
            ("NY night shift loses the skipped hour", business(&ny_night),
             "2026-03-08T01:00:00-05:00", "2h", "2026-03-08T04:00:00-04:00"),
            ("NY night shift gains the repeated hour", business(&ny_night),
             "2026-11-01T01:00:00-04:00", "3h", "2026-11-01T03:00:00-05:00"),
            ("NY wall time across spring forward", Counting::Wall,
             "2026-03-07T12:00:00-05:00", "24h", "2026-03-08T13:00:00-04:00"),
            // Europe/Berlin: CET -> CEST on 2026-03-29, back on 2026-10-25.
            ("Berlin business hours across spring forward", business(&berlin),
             "2026-03-27T16:00:00+01:00", "2h", "2026-03-30T10:00:00+02:00"),
            ("Berlin business hours across fall back", business(&berlin),
             "2026-10-23T16:30:00+02:00", "1h", "2026-10-26T09:30:00+01:00"),
            ("Berlin 24x7 on the 23-hour day", business(&berlin_24x7),
             "2026-03-29T00:00:00+01:00", "24h", "2026-03-30T01:00:00+02:00"),
            ("Berlin wall time across fall back", Counting::Wall,
             "2026-10-24T12:00:00+02:00", "1d", "2026-10-25T11:00:00+01:00"),
        ];
        for (name, counting, start, target, due) in rows {
            let start = ts(start);
            let got = counting.add(start, dur(target));
            assert_eq!(got, Some(ts(due)), "{name}: {start} + {target}");
            // And counting back from the due time gives the target.
            assert_eq!(
                counting.between(start, ts(due)),
                dur(target),
                "{name}: between"
            );
        }
    }

    #[test]
    fn between_counts_only_open_time() {
        let c = cal(
            "Asia/Shanghai",
            WEEKDAYS,
            ("09:00", "18:00"),
            &["2026-10-01"],
        );
        let b = Counting::Business(&c);
        #[rustfmt::skip]
        let rows = [
            ("2026-03-06T17:00:00+08:00", "2026-03-09T10:00:00+08:00", "2h"),
            ("2026-03-07T00:00:00+08:00", "2026-03-08T23:59:00+08:00", "0s"),
            ("2026-09-30T18:00:00+08:00", "2026-10-02T09:00:00+08:00", "0s"),
            ("2026-03-02T00:00:00+08:00", "2026-03-09T00:00:00+08:00", "45h"),
        ];
        for (from, to, want) in rows {
            let want = if want == "0s" {
                SignedDuration::ZERO
            } else {
                dur(want)
            };
            assert_eq!(b.between(ts(from), ts(to)), want, "{from}..{to}");
        }
        assert_eq!(
            b.between(
                ts("2026-03-09T10:00:00+08:00"),
                ts("2026-03-06T17:00:00+08:00")
            ),
            SignedDuration::ZERO
        );
    }

    #[test]
    fn nonexistent_opening_time_follows_compatible_disambiguation() {
        // 02:30 does not exist in New York on 2026-03-08: it becomes 03:30 EDT.
        let c = cal("America/New_York", EVERY_DAY, ("02:30", "05:00"), &[]);
        let (open, close) = open_interval(&c, "2026-03-08".parse().unwrap()).unwrap();
        assert_eq!(open, ts("2026-03-08T03:30:00-04:00"));
        assert_eq!(close, ts("2026-03-08T05:00:00-04:00"));
        assert_eq!(
            "2026-03-08".parse::<Date>().unwrap().weekday(),
            Weekday::Sunday
        );
    }

    #[test]
    fn closed_calendar_never_reaches_the_target() {
        let c = cal("UTC", &[], ("09:00", "17:00"), &[]);
        assert_eq!(
            Counting::Business(&c).add(ts("2026-03-02T00:00:00Z"), dur("1h")),
            None
        );
    }
}
