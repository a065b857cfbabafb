//! The time the core runs on.
//!
//! Everything that stamps or schedules (case events, SLA deadlines, alert
//! escalation) asks a [`Clock`] instead of the system, so tests can run a
//! scenario that spans hours exactly and instantly: a [`Clock::manual`]
//! clock only moves when the test moves it, and whoever sleeps on it wakes
//! the moment it passes their deadline.

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tokio::sync::watch;

/// Longest single sleep on the system clock, in milliseconds.
const MAX_SLEEP_MS: i128 = 60_000;

/// A source of "now" that can be slept on. Cheap to clone; clones share the
/// same time.
#[derive(Clone)]
pub struct Clock {
    inner: Arc<Inner>,
}

enum Inner {
    System,
    /// The current time, in a watch channel so sleepers wake when it moves.
    Manual(watch::Sender<Timestamp>),
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &*self.inner {
            Inner::System => f.write_str("Clock::System"),
            Inner::Manual(tx) => write!(f, "Clock::Manual({})", *tx.borrow()),
        }
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::system()
    }
}

impl Clock {
    /// The real time.
    pub fn system() -> Clock {
        Clock {
            inner: Arc::new(Inner::System),
        }
    }

    /// A clock standing still at `start` until [`advance`](Clock::advance)d.
    pub fn manual(start: Timestamp) -> Clock {
        Clock {
            inner: Arc::new(Inner::Manual(watch::Sender::new(start))),
        }
    }

    pub fn is_manual(&self) -> bool {
        matches!(*self.inner, Inner::Manual(_))
    }

    pub fn now(&self) -> Timestamp {
        match &*self.inner {
            Inner::System => Timestamp::now(),
            Inner::Manual(tx) => *tx.borrow(),
        }
    }

    /// Moves a manual clock forward by `d` (ignored on the system clock,
    /// which nobody can move).
    pub fn advance(&self, d: SignedDuration) {
        if let Inner::Manual(tx) = &*self.inner {
            tx.send_modify(|t| *t = t.checked_add(d).unwrap_or(*t));
        } else {
            tracing::warn!("the system clock cannot be advanced");
        }
    }

    /// Sets a manual clock to `t` (ignored on the system clock).
    pub fn set(&self, t: Timestamp) {
        if let Inner::Manual(tx) = &*self.inner {
            tx.send_replace(t);
        }
    }

    /// Returns once the clock reads `t` or later.
    pub async fn sleep_until(&self, t: Timestamp) {
        match &*self.inner {
            Inner::System => loop {
                let left = t.duration_since(Timestamp::now());
                if left <= SignedDuration::ZERO {
                    return;
                }
                // Tokio sleeps on the monotonic clock while deadlines are
                // wall times: sleeping at most a minute before looking at
                // the wall clock again bounds the error when it is adjusted
                // (NTP). Rounded up to the next millisecond so we never
                // wake a hair early and spin.
                let ms = left.as_millis().clamp(0, MAX_SLEEP_MS) as u64 + 1;
                tokio::time::sleep(Duration::from_millis(ms)).await;
            },
            Inner::Manual(tx) => {
                let mut rx = tx.subscribe();
                // The sender lives as long as `self`, so this never errs.
                let _ = rx.wait_for(|now| *now >= t).await;
            }
        }
    }

    /// Returns when a manual clock is moved; never for the system clock.
    /// The scheduler uses it to re-check its timers after a test moves time.
    pub async fn changed(&self) {
        match &*self.inner {
            Inner::System => std::future::pending().await,
            Inner::Manual(tx) => {
                let mut rx = tx.subscribe();
                rx.mark_unchanged();
                let _ = rx.changed().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_clock_wakes_sleepers_when_moved() {
        let start: Timestamp = "2026-03-02T01:00:00Z".parse().unwrap();
        let clock = Clock::manual(start);
        let due = start + SignedDuration::from_mins(10);
        let sleeper = tokio::spawn({
            let clock = clock.clone();
            async move {
                clock.sleep_until(due).await;
                clock.now()
            }
        });
        tokio::task::yield_now().await;
        clock.advance(SignedDuration::from_mins(5));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.advance(SignedDuration::from_mins(5));
        assert_eq!(sleeper.await.unwrap(), due);
    }

    #[tokio::test]
    async fn system_clock_sleeps_until_a_wall_time() {
        let clock = Clock::system();
        let due = Timestamp::now() + SignedDuration::from_millis(30);
        clock.sleep_until(due).await;
        assert!(Timestamp::now() >= due);
    }
}
