//! Group commit: many writers, one fsync.
//!
//! Each writer takes a ticket after its batch is applied, then waits until a
//! flush that started after its ticket has finished. The first waiter to
//! find no flush running becomes the leader and flushes for everyone
//! written so far; the rest sleep on a condition variable and usually find
//! their ticket covered when they wake.

use std::sync::{Condvar, Mutex};

pub(super) struct GroupCommit {
    db: sled::Db,
    /// Written/flushed counters. A `std::sync::Mutex` because it guards a few
    /// integers and is never held during the flush itself.
    state: Mutex<State>,
    flushed: Condvar,
}

#[derive(Default)]
struct State {
    /// Tickets handed out: one per acknowledged-on-flush write.
    written: u64,
    /// Every ticket up to this one is on disk.
    durable: u64,
    /// A leader is flushing right now.
    flushing: bool,
    /// The last flush failed; the error is returned to its waiters.
    failed: Option<String>,
}

impl GroupCommit {
    pub(super) fn new(db: sled::Db) -> GroupCommit {
        GroupCommit {
            db,
            state: Mutex::new(State::default()),
            flushed: Condvar::new(),
        }
    }

    /// Takes a ticket for a write that has just been applied.
    pub(super) fn written(&self) -> u64 {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.written += 1;
        st.written
    }

    /// Blocks until the write behind `ticket` is on disk.
    pub(super) fn wait(&self, ticket: u64) -> Result<(), sled::Error> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if st.durable >= ticket {
                return Ok(());
            }
            if !st.flushing {
                st.flushing = true;
                let target = st.written;
                drop(st);
                let result = self.db.flush();
                st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                st.flushing = false;
                match result {
                    Ok(_) => {
                        st.durable = st.durable.max(target);
                        st.failed = None;
                    }
                    Err(e) => {
                        st.failed = Some(e.to_string());
                        self.flushed.notify_all();
                        return Err(e);
                    }
                }
                self.flushed.notify_all();
                continue;
            }
            st = self.flushed.wait(st).unwrap_or_else(|e| e.into_inner());
            if let Some(err) = &st.failed
                && st.durable < ticket
                && !st.flushing
            {
                return Err(sled::Error::Io(std::io::Error::other(format!(
                    "flush failed: {err}"
                ))));
            }
        }
    }
}
