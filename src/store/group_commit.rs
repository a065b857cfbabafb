//! Group commit: many writers, one flush.
//!
//! Writers apply their sled batch, take a ticket, and wait until the ticket
//! is durable. One flusher thread flushes whenever anything new was written,
//! covering every write made before the flush started, so concurrent writers
//! share flushes and durable throughput grows with their number instead of
//! being capped at the disk's flush rate.
//!
//! Waiting works from blocking code ([`Durable::wait`]) and from async code
//! ([`Durable::wait_async`], which parks no thread), so the webhook can
//! acknowledge a ticket only once it is on disk without tying up a thread
//! per request.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use tokio::sync::watch;

pub(super) struct GroupCommit {
    inner: Arc<Inner>,
    flusher: Option<JoinHandle<()>>,
}

struct Inner {
    db: sled::Db,
    /// Counters and flags. A `std::sync::Mutex`: held for a few integer
    /// updates, never during the flush itself.
    state: Mutex<State>,
    /// Wakes the flusher (new writes, stop) and blocking waiters (flushed).
    changed: Condvar,
    /// The highest durable ticket, for async waiters.
    durable_tx: watch::Sender<u64>,
}

#[derive(Default)]
struct State {
    /// Tickets handed out: one per write waiting to be acknowledged.
    written: u64,
    /// Every ticket up to this one is on disk.
    durable: u64,
    /// The last flush failed; waiters get this error until one succeeds.
    failed: Option<String>,
    stop: bool,
}

/// A write that becomes acknowledged once it is on disk.
#[derive(Clone)]
pub struct Durable {
    inner: Arc<Inner>,
    ticket: u64,
}

impl std::fmt::Debug for Durable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Durable({})", self.ticket)
    }
}

impl Durable {
    /// Blocks until the write is on disk.
    pub fn wait(&self) -> Result<(), sled::Error> {
        let mut st = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if st.durable >= self.ticket {
                return Ok(());
            }
            if let Some(err) = &st.failed {
                return Err(io_error(err));
            }
            st = self
                .inner
                .changed
                .wait(st)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Waits, without blocking a thread, until the write is on disk.
    pub async fn wait_async(&self) -> Result<(), sled::Error> {
        let mut rx = self.inner.durable_tx.subscribe();
        let ticket = self.ticket;
        loop {
            if *rx.borrow_and_update() >= ticket {
                return Ok(());
            }
            if let Some(err) = &self
                .inner
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .failed
            {
                return Err(io_error(err));
            }
            if rx.changed().await.is_err() {
                return Err(io_error(
                    "the store was closed before the write was flushed",
                ));
            }
        }
    }
}

fn io_error(msg: &str) -> sled::Error {
    sled::Error::Io(std::io::Error::other(format!("flush failed: {msg}")))
}

impl GroupCommit {
    pub(super) fn new(db: sled::Db) -> GroupCommit {
        let (durable_tx, _) = watch::channel(0);
        let inner = Arc::new(Inner {
            db,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            durable_tx,
        });
        let worker = inner.clone();
        let flusher = std::thread::Builder::new()
            .name("caseroom-flush".into())
            .spawn(move || flush_loop(&worker))
            .expect("spawning the flush thread");
        GroupCommit {
            inner,
            flusher: Some(flusher),
        }
    }

    /// Takes a ticket for a write that has just been applied.
    pub(super) fn written(&self) -> Durable {
        let mut st = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        st.written += 1;
        let ticket = st.written;
        drop(st);
        self.inner.changed.notify_all();
        Durable {
            inner: self.inner.clone(),
            ticket,
        }
    }
}

impl GroupCommit {
    /// A ticket covering every write whose ticket was already taken,
    /// without asking for a new flush (resolves at once when those are on
    /// disk already).
    pub(super) fn covering(&self) -> Durable {
        let ticket = self
            .inner
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .written;
        Durable {
            inner: self.inner.clone(),
            ticket,
        }
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        self.inner
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .stop = true;
        self.inner.changed.notify_all();
        if let Some(t) = self.flusher.take() {
            let _ = t.join();
        }
    }
}

/// How long the flusher waits before a flush while writers keep coming,
/// so one flush covers more of them. Each sled flush seals a log buffer and
/// hands its write to sled's I/O threads (a `pwrite`, a `sync_file_range`
/// and a wake-up of every idle I/O thread): flushing back to back under
/// load cost more CPU than the tickets themselves. With 32 connections a
/// millisecond's wait took durable tickets/s from ~2,500 to ~3,600 and
/// bytes written per ticket from ~50 KB to ~22 KB (`benches/loadgen.rs`);
/// a lone writer never waits (see `busy`).
const LINGER: std::time::Duration = std::time::Duration::from_millis(1);

fn flush_loop(inner: &Inner) {
    // Writes arrived while the last flush ran: others are writing too.
    let mut busy = false;
    loop {
        let target = {
            let mut st = inner.state.lock().unwrap_or_else(|e| e.into_inner());
            while st.written == st.durable && !st.stop {
                st = inner.changed.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            if st.written == st.durable && st.stop {
                return;
            }
            st.written
        };
        let target = if busy {
            std::thread::sleep(LINGER);
            let st = inner.state.lock().unwrap_or_else(|e| e.into_inner());
            st.written.max(target)
        } else {
            target
        };
        let result = inner.db.flush();
        let mut st = inner.state.lock().unwrap_or_else(|e| e.into_inner());
        busy = st.written > target;
        match result {
            Ok(_) => {
                st.durable = st.durable.max(target);
                st.failed = None;
                inner.durable_tx.send_replace(st.durable);
            }
            Err(e) => {
                tracing::error!("store flush failed: {e}");
                st.failed = Some(e.to_string());
                drop(st);
                inner.changed.notify_all();
                // Do not spin on a failing disk.
                std::thread::sleep(std::time::Duration::from_millis(100));
                continue;
            }
        }
        drop(st);
        inner.changed.notify_all();
    }
}
