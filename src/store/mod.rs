//! The case store: the only module that talks to sled.
//!
//! Everything lives in one sled tree under one-byte key prefixes, so that a
//! change to a case, its new event and every index entry it touches are
//! written by one atomic batch ([`batch`]): a crash never leaves a torn case.
//!
//! | prefix | key                              | value                   |
//! |--------|----------------------------------|-------------------------|
//! | `c`    | case number (u64 BE)             | case projection (JSON), |
//! |        |                                  | without the body (v2);  |
//! |        |                                  | then 0 and its settled  |
//! |        |                                  | SLA runs (v5)           |
//! | `e`    | case number, first event seq     | events (JSON array), see|
//! |        | (u32 BE)                         | [`history`]             |
//! | `x`    | external ticket id               | case number             |
//! | `s`    | status code, case number         | number of events (u32   |
//! |        | (open cases only, v5)            | BE; empty before v2),   |
//! |        |                                  | priority, opened at,    |
//! |        |                                  | assignee (v3)           |
//! | `a`    | assignee, 0xFF, case number      | empty (assignee index;  |
//! |        |                                  | open cases only, v5)    |
//! | `d`    | due time (ms, biased), case      | empty (SLA due index)   |
//! | `t`    | case number                      | SLA plan of an open case|
//! | `h`    | hash of text+label               | learned example (JSON)  |
//! | `k`    | adapter key                      | adapter state (bytes);  |
//! |        | `delivered:<case>/<outbox no.>`  | what was posted (JSON)  |
//! | `o`    | outbox sequence number (u64 BE)  | outgoing message (JSON) |
//! | `f`    | outbox sequence number           | undeliverable message   |
//! | `q`    | outbound sequence number         | helpdesk event to POST  |
//! | `g`    | outbound sequence number         | event set aside         |
//! | `m`    | name                             | schema, next case no.   |
//! | `y` `r`| case number                      | see [`books`]           |
//! | `w`    | batch number                     | a batch being applied,  |
//! |        |                                  | see [`batch`]           |
//!
//! `stats` and `queue` read totals and an open-case index kept in step
//! with every write ([`tally`], [`books`]), not the cases themselves.
//!
//! The customer's text is stored once, in the `opened` event: the case
//! projection is rewritten on every change, so it leaves the body out and
//! [`Store::case`] fills it in from the first event (schema 2; schema 1
//! projections still hold it and are read as they are). A delivery to chat
//! is recorded beside the case ([`Store::deliveries`]), not as a change of
//! it.
//!
//! Durability: a write is acknowledged only after sled has flushed it to
//! disk. Concurrent writers share flushes ([`GroupCommit`]): while one
//! flush runs, later writers queue, and the next flush covers all of them,
//! so durable throughput grows with the number of writers instead of being
//! capped at the disk's fsync rate.

mod batch;
mod books;
mod group_commit;
mod history;
pub mod tally;

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::case::{Case, CaseId, Event, EventKind, NewCase, Status, TransitionError};
use crate::message::{Action, Outgoing};
use crate::outbound::Queued;
use batch::{Batch, Writer};
pub use group_commit::Durable;
use group_commit::GroupCommit;
pub use tally::{OpenCase, Settler, SlaOutcome, Tally};

/// The page cache sled gets unless `[store] cache_mb` says otherwise, in
/// MiB. Intake writes and reads back only recent cases, so a small cache
/// serves it; the process stays small however large the store grows.
pub const DEFAULT_CACHE_MB: u64 = 64;
/// [`DEFAULT_CACHE_MB`] in bytes.
pub const DEFAULT_CACHE_BYTES: u64 = DEFAULT_CACHE_MB << 20;

/// The schema this build writes. Bump it and add a step to [`migrate`] when
/// the on-disk layout changes.
pub const SCHEMA_VERSION: u32 = 5;

const META_SCHEMA: &[u8] = b"mschema";
const META_NEXT_CASE: &[u8] = b"mnext_case";
const META_INSTANCE: &[u8] = b"minstance";
const META_NEXT_OUTBOX: &[u8] = b"mnext_outbox";
const META_NEXT_OUTBOUND: &[u8] = b"mnext_outbound";

/// Errors from the store. Callers branch on `Transition`, `NotFound` and
/// `Duplicate`; the rest are operational failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
    #[error("{0}")]
    Transition(#[from] TransitionError),
    #[error("no case {0}")]
    NotFound(CaseId),
    #[error("the data dir holds corrupt data: {0}")]
    Corrupt(String),
    #[error(
        "the data dir was written by a newer caseroom (schema {found}, this build understands up to {SCHEMA_VERSION})"
    )]
    TooNew { found: u32 },
    #[error("cannot open the data dir {path}: {source}")]
    Open { path: String, source: sled::Error },
    #[error(
        "the data dir {path} is in use by another caseroom process; stop it first, or give this one its own --data-dir"
    )]
    Locked { path: String },
}

/// The result of [`Store::open_case`].
#[derive(Debug, Clone)]
pub struct Opened {
    pub case: Case,
    /// False when a case with the same external id already existed; then
    /// `case` is that existing case and nothing was written.
    pub created: bool,
    /// The events written (none when the case existed).
    pub events: Vec<Event>,
}

/// A message the bot posted to chat about a case ([`Store::deliveries`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub at: Timestamp,
    pub platform: String,
    pub room: String,
    pub message_id: String,
    /// `root`, `thread`, `alert`...
    pub what: String,
}

/// Which cases [`Store::cases`] lists.
#[derive(Debug, Clone, Default)]
pub struct CaseFilter {
    pub status: Option<Status>,
    pub assignee: Option<String>,
    /// Only open cases (not resolved or closed).
    pub open_only: bool,
}

/// A labelled example learned with `caseroom learn` or from resolved cases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryItem {
    pub text: String,
    pub label: String,
}

/// A part of an export to write with [`Store::import_chunk`].
#[derive(Debug, Default)]
pub struct ImportChunk {
    /// Exported case projections with their full histories.
    pub cases: Vec<(Case, Vec<Event>)>,
    pub history: Vec<HistoryItem>,
    /// Chat links (see [`Store::iter_case_links`]).
    pub links: Vec<(String, Vec<u8>)>,
}

impl ImportChunk {
    /// Records held (cases and their events, examples, links), to size chunks.
    pub fn len(&self) -> usize {
        self.cases.iter().map(|(_, e)| 1 + e.len()).sum::<usize>()
            + self.history.len()
            + self.links.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A handle to the store; cheap to clone and share between tasks.
#[derive(Clone)]
pub struct Store {
    shared: std::sync::Arc<Shared>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

struct Shared {
    db: sled::Db,
    /// The totals for `stats` and the open cases for `queue`. A
    /// `std::sync::Mutex`: held for in-memory updates only.
    books: Mutex<books::Books>,
    /// Held shared by a write from the moment it looks at the books until
    /// its changes to them are applied, and exclusively by a checkpoint, so
    /// a checkpoint never sees a write's batch without its totals.
    gate: std::sync::RwLock<()>,
    /// A checkpoint is being written (only one at a time).
    checkpointing: std::sync::atomic::AtomicBool,
    /// Older cases' SLA runs are being judged (see `Store::set_settler`).
    backfilling: std::sync::atomic::AtomicBool,
    /// Judges SLA runs for the totals (see [`Store::set_settler`]).
    settler: std::sync::RwLock<Option<std::sync::Arc<Settler>>>,
    /// External ticket ids being opened right now (see `Store::claim`). A
    /// `std::sync::Mutex`: held for a lookup and an insert, never during I/O
    /// waits.
    claims: Mutex<std::collections::HashSet<String>>,
    /// Serializes read-modify-write of cases. A `std::sync::Mutex` (not a
    /// Tokio one) because it is held only for an in-memory check plus one
    /// sled batch, never across an `.await` or a flush.
    write: Mutex<()>,
    /// The next case number; persisted in every batch that opens a case.
    next_case: AtomicU64,
    /// The next outbox sequence number (one past the highest ever used).
    next_outbox: AtomicU64,
    /// Outbox numbers below this one are reserved in the store
    /// (`mnext_outbox`): numbers are persisted a block at a time, not once
    /// per message. A `std::sync::Mutex`: held while raising the persisted
    /// mark (an in-memory sled write, no flush).
    outbox_reserved: Mutex<u64>,
    /// Messages queued since the dispatcher last looked, handed over in
    /// memory so a wake does not scan the outbox (see
    /// [`Store::take_fresh_outbox`]). Kept from the start, so none written
    /// while the dispatcher starts can slip between its first scan and the
    /// hand-over; bounded by [`FRESH_MAX`] when nobody takes them. A
    /// `std::sync::Mutex`: held for a push or a swap.
    fresh: Mutex<Fresh>,
    /// The next outbound (helpdesk event) number.
    next_outbound: AtomicU64,
    /// The helpdesk event types to queue (`[outbound] events`); empty when
    /// outbound events are off. Set once at start.
    outbound_types: std::sync::RwLock<Vec<String>>,
    /// A random id for this data dir, so transaction ids derived from outbox
    /// numbers never repeat across data dirs on one chat account.
    instance: String,
    commit: GroupCommit,
    /// Applies multi-key writes atomically (see [`batch`]).
    writer: Writer,
    /// The store has settled SLA runs in `r` keys, from before schema 5
    /// (see [`books`]); read only then.
    legacy_runs: bool,
    /// The data dir, so adapters can keep their own files next to ours
    /// (the Matrix crypto store).
    dir: std::path::PathBuf,
}

impl Store {
    /// Opens (or creates) the store in `dir`, migrating an older schema,
    /// with the default page cache ([`DEFAULT_CACHE_MB`]).
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Store::open_with_cache(dir, DEFAULT_CACHE_BYTES)
    }

    /// Opens the store with a page cache of `cache_bytes`. `import` uses a
    /// small one: it writes once and reads nothing back.
    ///
    /// The data dir holds the chat session and customer text, so it is made
    /// private to this user: the dir 0700, the files in it 0600 (sled
    /// creates them with the process umask; files it adds later sit in the
    /// private dir).
    pub fn open_with_cache(dir: &Path, cache_bytes: u64) -> Result<Store, StoreError> {
        let open_err = |source: std::io::Error| StoreError::Open {
            path: dir.display().to_string(),
            source: sled::Error::Io(source),
        };
        create_private_dir(dir).map_err(open_err)?;
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .flush_every_ms(Some(1000));
        let db = open_sled(&config).map_err(|source| match source {
            sled::Error::Io(e) if is_lock_error(&e) => StoreError::Locked {
                path: dir.display().to_string(),
            },
            source => StoreError::Open {
                path: dir.display().to_string(),
                source,
            },
        })?;
        make_private(dir).map_err(open_err)?;
        let writer = Writer::open(&db)?;
        migrate(&db)?;
        let last_case = match db.scan_prefix(b"c").next_back() {
            Some(kv) => decode_u64(&kv?.0[1..])?,
            None => 0,
        };
        let next_case = match db.get(META_NEXT_CASE)? {
            Some(v) => decode_u64(&v)?,
            None => 1,
        }
        .max(last_case + 1);
        let next_outbox = match db.get(META_NEXT_OUTBOX)? {
            Some(v) => decode_u64(&v)?,
            None => 1,
        };
        let next_outbound = match db.get(META_NEXT_OUTBOUND)? {
            Some(v) => decode_u64(&v)?,
            None => 1,
        };
        let instance = match db.get(META_INSTANCE)? {
            Some(v) => String::from_utf8_lossy(&v).into_owned(),
            None => {
                let mut h = Sha256::new();
                h.update(Timestamp::now().as_nanosecond().to_be_bytes());
                h.update(std::process::id().to_be_bytes());
                h.update(dir.display().to_string().as_bytes());
                let id = hex::encode(&h.finalize()[..6]);
                db.insert(META_INSTANCE, id.as_bytes())?;
                db.flush()?;
                id
            }
        };
        // Settled SLA runs still in keys of their own (schema 4 and before).
        let legacy_runs = db.scan_prefix(b"r").next().is_some();
        let books = books::load(&db, legacy_runs)?;
        Ok(Store {
            shared: std::sync::Arc::new(Shared {
                books: Mutex::new(books),
                gate: std::sync::RwLock::new(()),
                checkpointing: std::sync::atomic::AtomicBool::new(false),
                backfilling: std::sync::atomic::AtomicBool::new(false),
                settler: std::sync::RwLock::new(None),
                outbox_reserved: Mutex::new(next_outbox),
                fresh: Mutex::new(Fresh::default()),
                commit: GroupCommit::new(db.clone()),
                writer,
                db,
                write: Mutex::new(()),
                claims: Mutex::new(std::collections::HashSet::new()),
                next_case: AtomicU64::new(next_case),
                next_outbox: AtomicU64::new(next_outbox),
                next_outbound: AtomicU64::new(next_outbound),
                outbound_types: std::sync::RwLock::new(Vec::new()),
                instance,
                legacy_runs,
                dir: dir.to_owned(),
            }),
        })
    }

    /// The data dir this store lives in.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    fn db(&self) -> &sled::Db {
        &self.shared.db
    }

    /// True when the store holds no cases and no learned history.
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.db().scan_prefix(b"c").next().is_none()
            && self.db().scan_prefix(b"h").next().is_none())
    }

    /// Number of cases ever opened.
    pub fn case_count(&self) -> u64 {
        self.shared.next_case.load(Ordering::Relaxed) - 1
    }

    /// Opens a case, or returns the existing one when its external id was
    /// seen before. Durable when it returns.
    pub fn open_case(
        &self,
        new: NewCase,
        actor: &str,
        at: Timestamp,
    ) -> Result<Opened, StoreError> {
        self.open_case_with(new, actor, at, None, |_| (Vec::new(), Vec::new()))
    }

    /// Appends an event to a case's history after checking it against the
    /// lifecycle. Durable when it returns; on error nothing is written.
    pub fn append(
        &self,
        id: CaseId,
        actor: &str,
        kind: EventKind,
        reason: Option<String>,
        at: Timestamp,
    ) -> Result<(Case, Event), StoreError> {
        let guard = self.shared.write.lock().unwrap_or_else(|e| e.into_inner());
        let before = self.stored_case(id)?.ok_or(StoreError::NotFound(id))?;
        let mut case = before.clone();
        let event = Event {
            seq: before.events,
            at,
            actor: actor.to_owned(),
            kind: redact_kind(kind),
            reason,
        };
        case.apply(&event)?;
        let mut batch = Batch::default();
        let mut ledger = self.ledger();
        self.write_case(
            &mut ledger,
            &mut batch,
            Some(&before),
            &case,
            std::slice::from_ref(&event),
        )?;
        let last = history::last_chunk(self.db(), id, before.events)?;
        history::append(
            &mut batch,
            id,
            before.events,
            last,
            std::slice::from_ref(&event),
        )?;
        self.queue_outbound(&mut batch, &case, &event)?;
        self.shared.writer.apply(batch)?;
        self.settle(ledger);
        let ticket = self.shared.commit.written();
        drop(guard);
        ticket.wait()?;
        let case = self.with_body(case)?;
        Ok((case, event))
    }

    /// Opens a case (or finds the existing one for its external id) and, in
    /// the same atomic write, appends `then`'s events and queues its
    /// messages. `then` runs only when the case is new. `seen` marks a chat
    /// event as handled in the same write.
    pub fn open_case_with(
        &self,
        new: NewCase,
        actor: &str,
        at: Timestamp,
        seen: Option<&str>,
        then: impl FnOnce(&Case) -> (Vec<EventKind>, Vec<Outgoing>),
    ) -> Result<Opened, StoreError> {
        let (opened, durable) = self.open_case_deferred(new, actor, at, seen, then)?;
        if let Some(d) = durable {
            d.wait()?;
        }
        Ok(opened)
    }

    /// [`Store::open_case_with`] that returns before the flush: the case is
    /// acknowledged only once the returned [`Durable`] resolves (`None` when
    /// nothing was written). Lets async callers wait without a thread.
    pub fn open_case_deferred(
        &self,
        new: NewCase,
        actor: &str,
        at: Timestamp,
        seen: Option<&str>,
        then: impl FnOnce(&Case) -> (Vec<EventKind>, Vec<Outgoing>),
    ) -> Result<(Opened, Option<Durable>), StoreError> {
        let new = redact_new(new);
        let Some(claim) = self.claim(&new.external_id)? else {
            let existing = self.case_by_external(&new.external_id)?.ok_or_else(|| {
                StoreError::Corrupt(format!("ticket {} vanished", new.external_id))
            })?;
            if let Some(key) = seen {
                self.put_state(&seen_key(key), b"1")?;
            }
            return Ok((
                Opened {
                    case: existing,
                    created: false,
                    events: Vec::new(),
                },
                None,
            ));
        };
        let id = claim.id;
        let opened = Event {
            seq: 0,
            at,
            actor: actor.to_owned(),
            kind: EventKind::Opened(new),
            reason: None,
        };
        let mut case = Case::open(id, &opened).map_err(StoreError::Corrupt)?;
        let first = case.clone();
        let (kinds, outbox) = then(&case);
        let mut batch = Batch::default();
        let mut written = vec![opened];
        for kind in kinds {
            let ev = Event {
                seq: case.events,
                at,
                actor: actor.to_owned(),
                kind: redact_kind(kind),
                reason: None,
            };
            case.apply(&ev)?;
            self.queue_outbound(&mut batch, &case, &ev)?;
            written.push(ev);
        }
        history::append(&mut batch, id, 0, None, &written)?;
        batch.insert(ext_key(&first.external_id), &id.0.to_be_bytes());
        let mut ledger = self.ledger();
        self.write_case(&mut ledger, &mut batch, None, &case, &written)?;
        let fresh = self.queue(&mut batch, outbox)?;
        if let Some(key) = seen {
            batch.insert(state_key(&seen_key(key)), b"1".as_slice());
        }
        // No `mnext_case` write per case: at open the next number is one
        // past the highest case key, which this batch writes.
        self.shared.writer.apply(batch)?;
        self.settle(ledger);
        let ticket = self.shared.commit.written();
        self.publish(fresh);
        drop(claim);
        Ok((
            Opened {
                case,
                created: true,
                events: written,
            },
            Some(ticket),
        ))
    }

    /// Reserves a case number for a new external ticket id, or `None` when a
    /// case for it exists. Opening cases holds no global lock: a short lock
    /// on the set of tickets being opened makes duplicates wait for the
    /// first one's write instead, so concurrent tickets open in parallel.
    fn claim(&self, external_id: &str) -> Result<Option<Claim<'_>>, StoreError> {
        loop {
            {
                let mut claims = self.shared.claims.lock().unwrap_or_else(|e| e.into_inner());
                if self.db().contains_key(ext_key(external_id))? {
                    return Ok(None);
                }
                if !claims.contains(external_id) {
                    claims.insert(external_id.to_owned());
                    let id = CaseId(self.shared.next_case.fetch_add(1, Ordering::Relaxed));
                    return Ok(Some(Claim {
                        store: self,
                        external_id: external_id.to_owned(),
                        id,
                    }));
                }
            }
            // The same ticket is being opened by another request right now;
            // its write lands within microseconds.
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    }

    /// Writes or removes one key (ordered with the batches, see [`batch`]).
    fn put(
        &self,
        key: impl Into<sled::IVec>,
        value: Option<impl Into<sled::IVec>>,
    ) -> Result<(), StoreError> {
        let mut batch = Batch::default();
        match value {
            Some(v) => batch.insert(key, v),
            None => batch.remove(key),
        }
        self.shared.writer.apply(batch)
    }

    /// Raises a counter in the meta keys to at least `value`. Counters only
    /// grow, even when batches that raise them land out of order.
    fn raise(&self, key: &[u8], value: u64) -> Result<(), StoreError> {
        self.db().fetch_and_update(key, |old| {
            let cur = old.and_then(|v| decode_u64(v).ok()).unwrap_or(0);
            Some(cur.max(value).to_be_bytes().to_vec())
        })?;
        Ok(())
    }

    /// Appends events to one case and queues messages, atomically: if any
    /// event is illegal nothing is written. `seen` marks a chat event as
    /// handled in the same write, so a restart never handles it twice.
    pub fn commit(
        &self,
        id: Option<CaseId>,
        actor: &str,
        at: Timestamp,
        events: Vec<(EventKind, Option<String>)>,
        outbox: Vec<Outgoing>,
        seen: Option<&str>,
    ) -> Result<Option<Case>, StoreError> {
        let guard = self.shared.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut batch = Batch::default();
        let mut ledger = self.ledger();
        let mut after = None;
        if let Some(id) = id {
            let before = self.stored_case(id)?.ok_or(StoreError::NotFound(id))?;
            let mut case = before.clone();
            let mut written = Vec::with_capacity(events.len());
            for (kind, reason) in events {
                let ev = Event {
                    seq: case.events,
                    at,
                    actor: actor.to_owned(),
                    kind: redact_kind(kind),
                    reason,
                };
                case.apply(&ev)?;
                self.queue_outbound(&mut batch, &case, &ev)?;
                written.push(ev);
            }
            if case.events != before.events {
                let last = history::last_chunk(self.db(), id, before.events)?;
                history::append(&mut batch, id, before.events, last, &written)?;
                self.write_case(&mut ledger, &mut batch, Some(&before), &case, &written)?;
            }
            after = Some(case);
        }
        let fresh = self.queue(&mut batch, outbox)?;
        if let Some(key) = seen {
            batch.insert(state_key(&seen_key(key)), b"1".as_slice());
        }
        self.shared.writer.apply(batch)?;
        self.settle(ledger);
        let ticket = self.shared.commit.written();
        self.publish(fresh);
        drop(guard);
        ticket.wait()?;
        after.map(|c| self.with_body(c)).transpose()
    }

    /// Adds `outbox` to `batch` under fresh numbers; returns the messages
    /// to [`Store::publish`] once the batch is applied.
    fn queue(
        &self,
        batch: &mut Batch,
        outbox: Vec<Outgoing>,
    ) -> Result<Vec<(u64, Outgoing)>, StoreError> {
        if outbox.is_empty() {
            return Ok(Vec::new());
        }
        // Batches from concurrent writers may land out of number order; the
        // dispatcher copes, and the persisted mark only grows, so a number
        // (and the transaction id derived from it) is never reused.
        let n = outbox.len() as u64;
        let first = self.shared.next_outbox.fetch_add(n, Ordering::Relaxed);
        self.reserve_outbox(first + n)?;
        let now = Timestamp::now();
        let mut fresh = Vec::with_capacity(n as usize);
        for (i, mut msg) in outbox.into_iter().enumerate() {
            msg.queued_at.get_or_insert(now);
            // Outbound text is checked again here, whatever built it.
            if let std::borrow::Cow::Owned(clean) = crate::redact::redact(&msg.text) {
                msg.text = clean;
            }
            let seq = first + i as u64;
            batch.insert(outbox_key(b'o', seq), to_json(&msg)?);
            fresh.push((seq, msg));
        }
        Ok(fresh)
    }

    /// Makes sure every outbox number below `end` is covered by the
    /// persisted mark, raising it a block ahead when it is not. The mark is
    /// written to sled before the batch that uses the numbers, so a crash
    /// that keeps the batch keeps the mark too (sled recovers a prefix of
    /// its log); a crash may skip numbers, never reuse one.
    fn reserve_outbox(&self, end: u64) -> Result<(), StoreError> {
        let mut reserved = self
            .shared
            .outbox_reserved
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if end > *reserved {
            let mark = end + OUTBOX_BLOCK;
            self.raise(META_NEXT_OUTBOX, mark)?;
            *reserved = mark;
        }
        Ok(())
    }

    /// Hands messages just written to the outbox to the dispatcher.
    fn publish(&self, msgs: Vec<(u64, Outgoing)>) {
        if msgs.is_empty() {
            return;
        }
        let mut f = self.shared.fresh.lock().unwrap_or_else(|e| e.into_inner());
        if f.msgs.len() + msgs.len() > FRESH_MAX {
            // Nobody is taking them fast enough (or there is no dispatcher):
            // drop the list and let the dispatcher scan the store instead.
            f.msgs = Vec::new();
            f.overflowed = true;
        } else {
            f.msgs.extend(msgs);
        }
    }

    /// Messages written to the outbox since the last call (in any order),
    /// published after their write took its flush ticket, so
    /// [`Store::covering`] taken after this call covers them,
    /// or `None` when some were not kept (too many piled up): then scan
    /// the outbox with [`Store::outbox_seqs_from`]. Only the dispatcher
    /// calls this.
    pub fn take_fresh_outbox(&self) -> Option<Vec<(u64, Outgoing)>> {
        let mut f = self.shared.fresh.lock().unwrap_or_else(|e| e.into_inner());
        let msgs = std::mem::take(&mut f.msgs);
        if std::mem::take(&mut f.overflowed) {
            return None;
        }
        Some(msgs)
    }

    /// Queues the helpdesk event for `ev` (if it is one) in `batch`.
    fn queue_outbound(&self, batch: &mut Batch, case: &Case, ev: &Event) -> Result<(), StoreError> {
        let types = self
            .shared
            .outbound_types
            .read()
            .unwrap_or_else(|e| e.into_inner());
        if types.is_empty() {
            return Ok(());
        }
        let Some(q) = crate::outbound::event_for(&self.shared.instance, case, ev, &types) else {
            return Ok(());
        };
        let seq = self.shared.next_outbound.fetch_add(1, Ordering::Relaxed);
        batch.insert(outbox_key(b'q', seq), to_json(&q)?);
        self.raise(META_NEXT_OUTBOUND, seq + 1)?;
        Ok(())
    }

    /// Turns on queuing of helpdesk events of these types (`[outbound]`).
    pub fn set_outbound_events(&self, types: Vec<String>) {
        *self
            .shared
            .outbound_types
            .write()
            .unwrap_or_else(|e| e.into_inner()) = types;
    }

    /// Helpdesk events waiting to be delivered with numbers from `from` on,
    /// oldest first.
    pub fn outbound_from(&self, from: u64) -> Result<Vec<(u64, Queued)>, StoreError> {
        self.db()
            .range(outbox_key(b'q', from)..outbox_key(b'q', u64::MAX))
            .map(|kv| {
                let (k, v) = kv?;
                Ok((decode_u64(&k[1..])?, from_json(&v)?))
            })
            .collect()
    }

    /// Records a failed try of event `seq` (still pending).
    pub fn outbound_update(&self, seq: u64, q: &Queued) -> Result<(), StoreError> {
        let key = outbox_key(b'q', seq);
        // Only if still pending: a concurrent `retry` or set-aside wins.
        if self.db().contains_key(&key)? {
            self.put(key, Some(to_json(q)?))?;
        }
        Ok(())
    }

    /// Event `seq` was accepted by the helpdesk: removed, and `out` (the
    /// thread's confirmation of a reply) queued, in one write.
    pub fn outbound_done(&self, seq: u64, out: Vec<Outgoing>) -> Result<Durable, StoreError> {
        let mut batch = Batch::default();
        batch.remove(outbox_key(b'q', seq));
        let fresh = self.queue(&mut batch, out)?;
        self.shared.writer.apply(batch)?;
        let ticket = self.shared.commit.written();
        self.publish(fresh);
        Ok(ticket)
    }

    /// Event `seq` gave up: set aside for `caseroom outbound retry`, and
    /// `out` queued, in one write.
    pub fn outbound_set_aside(
        &self,
        seq: u64,
        q: &Queued,
        out: Vec<Outgoing>,
    ) -> Result<Durable, StoreError> {
        let mut batch = Batch::default();
        batch.remove(outbox_key(b'q', seq));
        batch.insert(outbox_key(b'g', seq), to_json(q)?);
        let fresh = self.queue(&mut batch, out)?;
        self.shared.writer.apply(batch)?;
        let ticket = self.shared.commit.written();
        self.publish(fresh);
        Ok(ticket)
    }

    /// Events set aside after too many tries, oldest first.
    pub fn outbound_failed(&self) -> Result<Vec<(u64, Queued)>, StoreError> {
        self.db()
            .scan_prefix(b"g")
            .map(|kv| {
                let (k, v) = kv?;
                Ok((decode_u64(&k[1..])?, from_json(&v)?))
            })
            .collect()
    }

    /// Puts events set aside back in the queue with a fresh count of tries:
    /// the one numbered `seq` (or with that event id), or all. Returns how
    /// many. Durable when it returns.
    pub fn outbound_retry(&self, which: Option<&str>) -> Result<usize, StoreError> {
        let mut batch = Batch::default();
        let mut n = 0;
        for (seq, mut q) in self.outbound_failed()? {
            if which.is_some_and(|w| w != seq.to_string() && w != q.event.id) {
                continue;
            }
            q.attempts = 0;
            q.last_error = None;
            q.told_pending = false;
            batch.remove(outbox_key(b'g', seq));
            batch.insert(outbox_key(b'q', seq), to_json(&q)?);
            n += 1;
        }
        self.shared.writer.apply(batch)?;
        self.shared.commit.written().wait()?;
        Ok(n)
    }

    /// Whether a chat event was already handled.
    pub fn seen(&self, event_id: &str) -> Result<bool, StoreError> {
        Ok(self.db().contains_key(state_key(&seen_key(event_id)))?)
    }

    /// Messages waiting to be delivered, oldest first.
    pub fn pending_outbox(&self) -> Result<Vec<(u64, Outgoing)>, StoreError> {
        self.db()
            .scan_prefix(b"o")
            .map(|kv| {
                let (k, v) = kv?;
                Ok((decode_u64(&k[1..])?, from_json(&v)?))
            })
            .collect()
    }

    /// Numbers of the messages waiting in the outbox from `from` on, in
    /// order (keys only, nothing parsed).
    pub fn outbox_seqs_from(&self, from: u64) -> Result<Vec<u64>, StoreError> {
        self.db()
            .range(outbox_key(b'o', from)..outbox_key(b'o', u64::MAX))
            .keys()
            .map(|k| decode_u64(&k?[1..]))
            .collect()
    }

    /// One waiting outbox message.
    pub fn outbox_message(&self, seq: u64) -> Result<Option<Outgoing>, StoreError> {
        self.db()
            .get(outbox_key(b'o', seq))?
            .map(|v| from_json(&v))
            .transpose()
    }

    /// Transaction id for delivering outbox message `seq`: stable across
    /// retries and restarts, unique per data dir.
    pub fn txn_id(&self, seq: u64) -> String {
        format!("caseroom-{}-{seq}", self.shared.instance)
    }

    /// Records a delivered message: remembers its platform id under
    /// `record_as`, maps a case's root message to the case, notes the
    /// delivery with the case ([`Store::deliveries`]) and removes it from
    /// the outbox, in that order (a crash part-way sends it again, as a
    /// crash before the delivery was recorded would). The case itself is
    /// not rewritten: a delivery changes nothing about it (older versions
    /// appended a `posted` event, rewriting the case and its index entry
    /// twice per ticket). The record is durable
    /// once the returned [`Durable`] resolves.
    pub fn delivered(
        &self,
        seq: u64,
        msg: &Outgoing,
        platform: &str,
        message_id: &str,
        at: Timestamp,
    ) -> Result<Durable, StoreError> {
        let mut batch = Batch::default();
        if let Some(key) = &msg.record_as {
            batch.insert(state_key(&format!("posted:{key}")), message_id.as_bytes());
        }
        if !msg.actions.is_empty() {
            batch.insert(
                state_key(&actions_key(&msg.room, message_id)),
                to_json(&msg.actions)?,
            );
        }
        if let Some(id) = msg.case {
            if msg.what == "root" {
                batch.insert(
                    state_key(&thread_key(&msg.room, message_id)),
                    &id.0.to_be_bytes(),
                );
            }
            let record = Delivery {
                at,
                platform: platform.into(),
                room: msg.room.clone(),
                message_id: message_id.into(),
                what: msg.what.clone(),
            };
            batch.insert(delivery_key(id, seq), to_json(&record)?);
        }
        // Last: until the removal is on disk the message counts as not
        // sent, and any prefix of these writes is safe to restart from.
        batch.remove(outbox_key(b'o', seq));
        self.shared.writer.apply_in_order(batch)?;
        Ok(self.shared.commit.written())
    }

    /// What the bot posted to chat about a case, oldest first (deliveries
    /// recorded by older versions are `posted` events in its history).
    pub fn deliveries(&self, id: CaseId) -> Result<Vec<Delivery>, StoreError> {
        self.db()
            .scan_prefix(state_key(&format!("{DELIVERED}{}/", id.0)))
            .map(|kv| from_json(&kv?.1))
            .collect()
    }

    /// Sets aside a message that can never be delivered, so its room's queue
    /// moves on; it stays in the store for inspection.
    pub fn undeliverable(&self, seq: u64, msg: &Outgoing, reason: &str) -> Result<(), StoreError> {
        let mut batch = Batch::default();
        batch.remove(outbox_key(b'o', seq));
        let record = serde_json::json!({"message": msg, "reason": reason});
        batch.insert(outbox_key(b'f', seq), to_json(&record)?);
        self.shared.writer.apply(batch)?;
        self.shared.commit.written().wait()?;
        Ok(())
    }

    /// Removes outbox messages that went out (or were superseded) and need
    /// no other record: coalesced card edits. Not waited for: after a crash
    /// an edit is at worst sent again, showing the same state.
    pub fn outbox_done(&self, seqs: &[u64]) -> Result<(), StoreError> {
        let mut batch = Batch::default();
        for seq in seqs {
            batch.remove(outbox_key(b'o', *seq));
        }
        self.shared.writer.apply(batch)?;
        Ok(())
    }

    /// The actions the bot's message `message_id` in `room` carried when
    /// it was posted (for reactions standing in for clicks).
    pub fn actions_on(&self, room: &str, message_id: &str) -> Result<Vec<Action>, StoreError> {
        self.get_state(&actions_key(room, message_id))?
            .map(|v| from_json(&v))
            .transpose()
            .map(Option::unwrap_or_default)
    }

    /// The platform id of a message sent with `record_as = key`.
    pub fn posted(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .get_state(&format!("posted:{key}"))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// The case whose thread has this root message.
    pub fn case_for_thread(&self, room: &str, root: &str) -> Result<Option<CaseId>, StoreError> {
        self.get_state(&thread_key(room, root))?
            .map(|v| Ok(CaseId(decode_u64(&v)?)))
            .transpose()
    }

    /// The case's current state.
    pub fn case(&self, id: CaseId) -> Result<Option<Case>, StoreError> {
        self.stored_case(id)?.map(|c| self.with_body(c)).transpose()
    }

    /// The projection as stored: since schema 2 without the body. For
    /// read-modify-write, which writes it back without the body anyway.
    fn stored_case(&self, id: CaseId) -> Result<Option<Case>, StoreError> {
        self.db()
            .get(case_key(id))?
            .map(|v| decode_projection(&v))
            .transpose()
    }

    /// Fills in the body from the case's `opened` event, where it is
    /// stored (a schema 1 projection still holds it).
    fn with_body(&self, mut case: Case) -> Result<Case, StoreError> {
        if !case.body.is_empty() {
            return Ok(case);
        }
        if let Some(v) = self.db().get(history::first_key(case.id))?
            && let EventKind::Opened(new) = history::decode_first(&v)?.kind
        {
            case.body = new.body;
        }
        Ok(case)
    }

    /// The case's full history, oldest first.
    pub fn events(&self, id: CaseId) -> Result<Vec<Event>, StoreError> {
        let mut events = Vec::new();
        for kv in self.db().scan_prefix(history::prefix(id)) {
            events.extend(history::decode(&kv?.1)?);
        }
        Ok(events)
    }

    /// The case opened for an external ticket id, if any.
    pub fn case_by_external(&self, external_id: &str) -> Result<Option<Case>, StoreError> {
        match self.db().get(ext_key(external_id))? {
            Some(v) => self.case(CaseId(decode_u64(&v)?)),
            None => Ok(None),
        }
    }

    /// Cases matching `filter`, by case number. Uses the status or assignee
    /// index when the filter asks only for open cases (only those are
    /// indexed); otherwise reads every case.
    pub fn cases(&self, filter: &CaseFilter) -> Result<Vec<Case>, StoreError> {
        let only_open = filter.open_only || filter.status.is_some_and(|s| s.is_open());
        let ids: Box<dyn Iterator<Item = Result<CaseId, StoreError>>> =
            match (&filter.assignee, filter.status) {
                (Some(a), _) if only_open => {
                    let mut p = vec![b'a'];
                    p.extend_from_slice(a.as_bytes());
                    p.push(0xFF);
                    Box::new(self.index_ids(p))
                }
                (None, Some(s)) if only_open => Box::new(self.index_ids(vec![b's', s.code()])),
                (None, None) if only_open => Box::new(
                    Status::ALL
                        .into_iter()
                        .filter(|s| s.is_open())
                        .flat_map(|s| self.index_ids(vec![b's', s.code()]))
                        .collect::<Vec<_>>()
                        .into_iter(),
                ),
                _ => Box::new(self.db().scan_prefix(b"c").map(|kv| {
                    let (k, _) = kv?;
                    Ok(CaseId(decode_u64(&k[1..])?))
                })),
            };
        let mut out = Vec::new();
        for id in ids {
            let id = id?;
            let Some(case) = self.case(id)? else { continue };
            if filter.status.is_some_and(|s| s != case.status)
                || filter.open_only && !case.status.is_open()
                || filter
                    .assignee
                    .as_ref()
                    .is_some_and(|a| case.assignee.as_ref() != Some(a))
            {
                continue;
            }
            out.push(case);
        }
        out.sort_by_key(|c| c.id);
        Ok(out)
    }

    /// Every case by case number, read one at a time (for `export`: memory
    /// stays flat however many cases there are).
    pub fn iter_cases(&self) -> impl Iterator<Item = Result<Case, StoreError>> + '_ {
        self.db()
            .scan_prefix(b"c")
            .map(|kv| self.with_body(decode_projection(&kv?.1)?))
    }

    /// Every learned example, one at a time.
    pub fn iter_history(&self) -> impl Iterator<Item = Result<HistoryItem, StoreError>> + '_ {
        self.db().scan_prefix(b"h").map(|kv| from_json(&kv?.1))
    }

    /// The state that ties cases to chat (which message is a case's thread
    /// root, which platform id a sent message got, what was posted about a
    /// case), for export. Sessions, sync tokens and handled-event markers
    /// are left out: they hold secrets or belong to one deployment's chat
    /// account.
    pub fn iter_case_links(
        &self,
    ) -> impl Iterator<Item = Result<(String, Vec<u8>), StoreError>> + '_ {
        ["thread:", "posted:", DELIVERED]
            .into_iter()
            .flat_map(|prefix| {
                self.db().scan_prefix(state_key(prefix)).map(|kv| {
                    let (k, v) = kv?;
                    Ok((String::from_utf8_lossy(&k[1..]).into_owned(), v.to_vec()))
                })
            })
    }

    fn index_ids(&self, prefix: Vec<u8>) -> impl Iterator<Item = Result<CaseId, StoreError>> + '_ {
        self.db().scan_prefix(prefix).map(|kv| {
            let (k, _) = kv?;
            Ok(CaseId(decode_u64(&k[k.len() - 8..])?))
        })
    }

    /// Records when a case's next SLA deadline is due (`None` clears it).
    pub fn set_due(
        &self,
        id: CaseId,
        old: Option<Timestamp>,
        new: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        let mut batch = Batch::default();
        if let Some(t) = old {
            batch.remove(due_key(t, id));
        }
        if let Some(t) = new {
            batch.insert(due_key(t, id), &[]);
        }
        self.shared.writer.apply(batch)?;
        self.shared.commit.written().wait()?;
        Ok(())
    }

    /// Every open case with its number of events, by case number, from the
    /// status index: no projection is read. The number is `None` for an
    /// entry written before schema 2.
    pub fn open_case_events(&self) -> Result<Vec<(CaseId, Option<u32>)>, StoreError> {
        let mut out = Vec::new();
        for status in Status::ALL.into_iter().filter(|s| s.is_open()) {
            for kv in self.db().scan_prefix([b's', status.code()]) {
                let (k, v) = kv?;
                let id = CaseId(decode_u64(&k[k.len() - 8..])?);
                let n = v
                    .get(..4)
                    .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                out.push((id, n));
            }
        }
        out.sort_unstable_by_key(|(id, _)| *id);
        Ok(out)
    }

    /// Records the SLA engine's plan for a case (`None` removes it). Not
    /// waited for: a plan lost in a crash, or older than the case's
    /// history, is recomputed from the history at start.
    pub fn put_sla_plan(&self, id: CaseId, plan: Option<&[u8]>) -> Result<(), StoreError> {
        let key = sla_plan_key(id);
        self.put(key, plan)
    }

    /// Every persisted SLA plan (see [`Store::put_sla_plan`]).
    pub fn sla_plans(&self) -> impl Iterator<Item = Result<(CaseId, Vec<u8>), StoreError>> + '_ {
        self.db().scan_prefix(b"t").map(|kv| {
            let (k, v) = kv?;
            Ok((CaseId(decode_u64(&k[1..])?), v.to_vec()))
        })
    }

    /// Deadlines due at or before `t`, earliest first.
    pub fn due_before(&self, t: Timestamp) -> Result<Vec<(Timestamp, CaseId)>, StoreError> {
        let end = due_key(t, CaseId(u64::MAX));
        self.db()
            .range(b"d".to_vec()..=end)
            .map(|kv| {
                let (k, _) = kv?;
                let ms = (decode_u64(&k[1..9])? ^ (1 << 63)) as i64;
                let at = Timestamp::from_millisecond(ms)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                Ok((at, CaseId(decode_u64(&k[9..17])?)))
            })
            .collect()
    }

    /// Adds labelled examples; ones already present are skipped. Returns
    /// how many were new.
    pub fn add_history<'a>(
        &self,
        items: impl IntoIterator<Item = &'a HistoryItem>,
    ) -> Result<usize, StoreError> {
        let _guard = self.shared.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut batch = Batch::default();
        let mut added = 0;
        let mut seen = std::collections::HashSet::new();
        for item in items {
            let key = history_key(item);
            if !seen.insert(key.clone()) || self.db().contains_key(&key)? {
                continue;
            }
            batch.insert(key, to_json(item)?);
            added += 1;
        }
        self.shared.writer.apply(batch)?;
        self.shared.commit.written().wait()?;
        Ok(added)
    }

    /// Every learned example.
    pub fn history(&self) -> Result<Vec<HistoryItem>, StoreError> {
        self.db()
            .scan_prefix(b"h")
            .map(|kv| from_json(&kv?.1))
            .collect()
    }

    /// Adapter state (sync tokens, sessions, processed message ids).
    pub fn get_state(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db().get(state_key(key))?.map(|v| v.to_vec()))
    }

    /// Durably stores adapter state.
    pub fn put_state(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.put(state_key(key), Some(value))?;
        self.shared.commit.written().wait()?;
        Ok(())
    }

    /// Keeps a chat event an adapter has received but the bot has not yet
    /// handled, so one acknowledged to the platform survives a crash. Wait
    /// on the returned [`Durable`] before acknowledging. Keys sort in
    /// arrival order.
    ///
    /// Kept payloads hold what people wrote in chat, so like case text they
    /// are redacted here: every string of a JSON payload (or the whole
    /// payload as text) loses its card numbers, CVVs, passwords and codes.
    pub fn inbox_put(&self, key: &str, value: &[u8]) -> Result<Durable, StoreError> {
        let clean: std::borrow::Cow<'_, [u8]> = match serde_json::from_slice(value) {
            Ok(mut json) => {
                if crate::redact::redact_json(&mut json) {
                    to_json(&json)?.into()
                } else {
                    value.into()
                }
            }
            Err(_) => match crate::redact::redact(&String::from_utf8_lossy(value)) {
                std::borrow::Cow::Owned(s) => s.into_bytes().into(),
                std::borrow::Cow::Borrowed(_) => value.into(),
            },
        };
        self.put(state_key(&format!("inbox:{key}")), Some(clean.as_ref()))?;
        Ok(self.shared.commit.written())
    }

    /// The unhandled events kept under `prefix`, oldest first.
    pub fn inbox(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let full = state_key(&format!("inbox:{prefix}"));
        let skip = state_key("inbox:").len();
        self.db()
            .scan_prefix(&full)
            .map(|kv| {
                let (k, v) = kv?;
                Ok((String::from_utf8_lossy(&k[skip..]).into_owned(), v.to_vec()))
            })
            .collect()
    }

    /// Forgets a kept event once it is handled (the handled marker makes a
    /// replay harmless, so this needs no flush of its own).
    pub fn inbox_remove(&self, key: &str) -> Result<(), StoreError> {
        self.put(state_key(&format!("inbox:{key}")), None::<&[u8]>)
    }

    /// Restores cases from their full histories (used by `import`). Each
    /// case is rebuilt by replaying its events, so a history that breaks the
    /// lifecycle is refused. Written in one batch and flushed once.
    pub fn import_cases(&self, cases: Vec<(CaseId, Vec<Event>)>) -> Result<usize, StoreError> {
        let _guard = self.shared.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut batch = Batch::default();
        let mut ledger = self.ledger();
        let mut next = self.shared.next_case.load(Ordering::Relaxed);
        let n = cases.len();
        for (id, events) in cases {
            let case = Case::replay(id, &events).map_err(StoreError::Corrupt)?;
            if self.db().contains_key(case_key(id))? {
                return Err(StoreError::Corrupt(format!("{id} already exists")));
            }
            batch.insert(ext_key(&case.external_id), &id.0.to_be_bytes());
            self.write_case(&mut ledger, &mut batch, None, &case, &events)?;
            history::append(&mut batch, id, 0, None, &events)?;
            next = next.max(id.0 + 1);
        }
        self.raise(META_NEXT_CASE, next)?;
        self.shared.writer.apply(batch)?;
        self.settle(ledger);
        self.shared.next_case.fetch_max(next, Ordering::Relaxed);
        self.shared.commit.written().wait()?;
        Ok(n)
    }

    /// Writes one chunk of an import in one batch, without waiting for a
    /// flush: `import` writes into a fresh data dir and calls
    /// [`Store::flush`] once at the end, before the dir becomes the real one.
    ///
    /// Each case is rebuilt by replaying its events and must equal the
    /// exported projection, so a damaged export is refused. A case number
    /// that is already taken is refused too.
    pub fn import_chunk(&self, chunk: ImportChunk) -> Result<(), StoreError> {
        let _guard = self.shared.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut batch = Batch::default();
        let mut ledger = self.ledger();
        let mut next = self.shared.next_case.load(Ordering::Relaxed);
        for (exported, events) in &chunk.cases {
            let id = exported.id;
            let case = Case::replay(id, events).map_err(StoreError::Corrupt)?;
            if &case != exported {
                return Err(StoreError::Corrupt(format!(
                    "{id} does not match its own history; the export is damaged"
                )));
            }
            if self.db().contains_key(case_key(id))? {
                return Err(StoreError::Corrupt(format!("{id} already exists")));
            }
            batch.insert(ext_key(&case.external_id), &id.0.to_be_bytes());
            self.write_case(&mut ledger, &mut batch, None, &case, events)?;
            history::append(&mut batch, id, 0, None, events)?;
            next = next.max(id.0 + 1);
        }
        for item in &chunk.history {
            batch.insert(history_key(item), to_json(item)?);
        }
        for (key, value) in &chunk.links {
            batch.insert(state_key(key), value.as_slice());
        }
        self.raise(META_NEXT_CASE, next)?;
        self.shared.writer.apply(batch)?;
        self.settle(ledger);
        self.shared.next_case.fetch_max(next, Ordering::Relaxed);
        Ok(())
    }

    /// Resolves once every write that has taken its flush ticket is on
    /// disk; unlike [`Store::barrier`] it asks for no new flush. Covers the
    /// messages [`Store::take_fresh_outbox`] returned before it was called.
    pub fn covering(&self) -> Durable {
        self.shared.commit.covering()
    }

    /// Resolves once everything written so far is on disk.
    pub fn barrier(&self) -> Durable {
        self.shared.commit.written()
    }

    /// Flushes everything to disk (used at shutdown).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.shared.checkpoint(true)?;
        self.db().flush()?;
        Ok(())
    }
}

/// Outbox numbers reserved in the store at a time.
const OUTBOX_BLOCK: u64 = 4096;
/// Most messages kept for the dispatcher before it must scan instead.
const FRESH_MAX: usize = 16_384;

/// Messages written to the outbox that the dispatcher has not taken yet.
#[derive(Default)]
struct Fresh {
    msgs: Vec<(u64, Outgoing)>,
    /// Some were dropped: the dispatcher must scan the store.
    overflowed: bool,
}

impl Drop for Shared {
    /// The last handle is gone: the totals are checkpointed so the next
    /// start has no journal to read.
    fn drop(&mut self) {
        if let Err(e) = self.checkpoint(true) {
            tracing::warn!("checkpointing the stats totals at close: {e}");
        }
    }
}

/// A reserved case number; releases the reservation when dropped.
struct Claim<'a> {
    store: &'a Store,
    external_id: String,
    id: CaseId,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut claims = self
            .store
            .shared
            .claims
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        claims.remove(&self.external_id);
    }
}

/// Customer text never reaches disk in clear: card numbers, CVVs,
/// passwords and one-time codes are redacted here, whatever the caller did.
fn redact_new(mut new: NewCase) -> NewCase {
    new.body = crate::redact::redact(&new.body).into_owned();
    new.subject = crate::redact::redact(&new.subject).into_owned();
    new
}

fn redact_kind(kind: EventKind) -> EventKind {
    use crate::redact::redact;
    match kind {
        EventKind::Note { text } => EventKind::Note {
            text: redact(&text).into_owned(),
        },
        EventKind::AgentMessage { text } => EventKind::AgentMessage {
            text: redact(&text).into_owned(),
        },
        EventKind::CustomerMessage { text } => EventKind::CustomerMessage {
            text: redact(&text).into_owned(),
        },
        EventKind::Reply { text } => EventKind::Reply {
            text: redact(&text).into_owned(),
        },
        other => other,
    }
}

/// Writes a case projection with its settled SLA runs and moves its index
/// entries from `before` (the books' side is [`Store::write_case`]).
///
/// Only open cases are indexed by status and assignee (schema 5): the
/// resolved and closed ones, nine in ten of a large store, would
/// otherwise hold two of every five keys, and sled keeps a table entry in
/// memory for every page of keys. A closed case written before schema 5
/// may still have its entries; they are removed at its next change and
/// ignored until then.
fn write_case(
    batch: &mut Batch,
    before: Option<&Case>,
    case: &Case,
    runs: &[SlaOutcome],
) -> Result<(), StoreError> {
    // Index entries that stay the same are not rewritten, except the
    // status entry: it carries the number of events, which tells the SLA
    // engine whether a persisted plan is current.
    let open = case.status.is_open();
    let indexed_before = before.is_some_and(|b| b.status.is_open());
    let assignee_same = before.is_some_and(|b| b.assignee == case.assignee);
    if let Some(b) = before {
        if b.status != case.status || !open {
            batch.remove(status_key(b.status, b.id));
        }
        if let (Some(a), false) = (&b.assignee, assignee_same && open) {
            batch.remove(assignee_key(a, b.id));
        }
    }
    if open {
        batch.insert(status_key(case.status, case.id), tally::status_value(case));
        if let (Some(a), false) = (&case.assignee, assignee_same && indexed_before) {
            batch.insert(assignee_key(a, case.id), &[]);
        }
    }
    // The body lives in the `opened` event (see the module docs).
    let stored = Case {
        body: String::new(),
        ..case.clone()
    };
    let mut value = to_json(&stored)?;
    if !runs.is_empty() {
        value.push(0);
        value.extend_from_slice(&tally::encode_outcomes(runs));
    }
    batch.insert(case_key(case.id), value);
    Ok(())
}

/// Splits a stored projection into the case's JSON and, when it has any,
/// its settled SLA runs ([`tally::encode_outcomes`]) after a 0 byte. JSON
/// never holds a raw 0 byte, so the split is unambiguous; a projection
/// written before schema 5 is JSON alone (its runs have an `r` key).
fn split_projection(v: &[u8]) -> (&[u8], Option<&[u8]>) {
    match v.iter().position(|&b| b == 0) {
        Some(i) => (&v[..i], Some(&v[i + 1..])),
        None => (v, None),
    }
}

/// The case in a stored projection (see [`split_projection`]).
fn decode_projection(v: &[u8]) -> Result<Case, StoreError> {
    from_json(split_projection(v).0)
}

/// Creates `dir` (and missing parents) with mode 0700 where it is new.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
}

/// Makes the data dir 0700 and everything in it 0600 (dirs 0700).
#[cfg(unix)]
fn make_private(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let set = |p: &Path, mode: u32| -> std::io::Result<()> {
        let meta = std::fs::symlink_metadata(p)?;
        if meta.file_type().is_symlink() || meta.permissions().mode() & 0o777 == mode {
            return Ok(());
        }
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
    };
    set(dir, 0o700)?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            make_private(&path)?;
        } else {
            set(&path, 0o600)?;
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn make_private(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}

/// Brings an older store up to [`SCHEMA_VERSION`], one version per step.
/// How long opening waits for the data dir's lock.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Opens sled, waiting up to [`LOCK_WAIT`] for the directory lock: sled's
/// I/O threads hold it for a moment after the last handle of a store is
/// dropped (a restart within one process), and a process that is stopping
/// releases it when it exits.
fn open_sled(config: &sled::Config) -> sled::Result<sled::Db> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match config.open() {
            Err(sled::Error::Io(e))
                if is_lock_error(&e) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

fn is_lock_error(e: &std::io::Error) -> bool {
    e.to_string().contains("could not acquire lock")
}

fn migrate(db: &sled::Db) -> Result<(), StoreError> {
    let found = match db.get(META_SCHEMA)? {
        Some(v) => decode_u64(&v)? as u32,
        None if db.is_empty() => SCHEMA_VERSION,
        // Data without a version predates versioning: treat it as 1.
        None => 1,
    };
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew { found });
    }
    for from in found..SCHEMA_VERSION {
        tracing::info!(from, to = from + 1, "migrating store schema");
        match from {
            // 1 -> 2: projections stop holding the body. Old ones keep it
            // and are read as they are; each is rewritten without it at
            // its next change. Nothing to do now, but a schema 1 build
            // must not open a schema 2 store (it would show no bodies).
            1 => {}
            // 2 -> 3: totals for `stats` and the open-case index. The
            // totals are counted from every projection when the store has
            // no checkpoint ([`books::load`]); status entries get the
            // queue's fields at their next write. A schema 2 build would
            // write without keeping the totals, so it must not open this.
            2 => {}
            // 3 -> 4: a case's events are stored in chunks ([`history`]).
            // Old cases keep their one-event keys, which are read as they
            // are; a schema 3 build would not read the chunks.
            3 => {}
            // 4 -> 5: only open cases are indexed by status and assignee,
            // and a case's settled SLA runs follow its projection instead
            // of having an `r` key ([`write_case`]). Older cases keep their
            // entries until their next change (an export and import
            // rewrites them all); a schema 4 build would misread both.
            4 => {}
            _ => unreachable!("no step from schema {from}"),
        }
    }
    if db.get(META_SCHEMA)?.is_none() || found != SCHEMA_VERSION {
        db.insert(META_SCHEMA, &(SCHEMA_VERSION as u64).to_be_bytes())?;
        db.flush()?;
    }
    Ok(())
}

fn case_key(id: CaseId) -> Vec<u8> {
    let mut k = vec![b'c'];
    k.extend_from_slice(&id.0.to_be_bytes());
    k
}

fn sla_plan_key(id: CaseId) -> Vec<u8> {
    let mut k = vec![b't'];
    k.extend_from_slice(&id.0.to_be_bytes());
    k
}

fn ext_key(ext: &str) -> Vec<u8> {
    let mut k = vec![b'x'];
    k.extend_from_slice(ext.as_bytes());
    k
}

fn status_key(s: Status, id: CaseId) -> Vec<u8> {
    let mut k = vec![b's', s.code()];
    k.extend_from_slice(&id.0.to_be_bytes());
    k
}

fn assignee_key(a: &str, id: CaseId) -> Vec<u8> {
    let mut k = vec![b'a'];
    k.extend_from_slice(a.as_bytes());
    k.push(0xFF);
    k.extend_from_slice(&id.0.to_be_bytes());
    k
}

/// Due times sort as unsigned bytes: flip the sign bit of the millisecond.
fn due_key(t: Timestamp, id: CaseId) -> Vec<u8> {
    let mut k = vec![b'd'];
    k.extend_from_slice(&((t.as_millisecond() as u64) ^ (1 << 63)).to_be_bytes());
    k.extend_from_slice(&id.0.to_be_bytes());
    k
}

fn history_key(item: &HistoryItem) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(item.text.trim().as_bytes());
    h.update([0]);
    h.update(item.label.as_bytes());
    let mut k = vec![b'h'];
    k.extend_from_slice(&h.finalize()[..16]);
    k
}

fn state_key(key: &str) -> Vec<u8> {
    let mut k = vec![b'k'];
    k.extend_from_slice(key.as_bytes());
    k
}

fn seen_key(event_id: &str) -> String {
    format!("seen:{event_id}")
}

fn actions_key(room: &str, message_id: &str) -> String {
    format!("actions:{room}:{message_id}")
}

/// A delivery record: under the adapter-state prefix, so it is exported and
/// imported with the other chat links; the outbox number orders a case's.
fn delivery_key(id: CaseId, seq: u64) -> Vec<u8> {
    state_key(&format!("{DELIVERED}{}/{seq:020}", id.0))
}

const DELIVERED: &str = "delivered:";

fn thread_key(room: &str, root: &str) -> String {
    format!("thread:{room}:{root}")
}

fn outbox_key(prefix: u8, seq: u64) -> Vec<u8> {
    let mut k = vec![prefix];
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn decode_u64(v: &[u8]) -> Result<u64, StoreError> {
    let arr: [u8; 8] = v
        .get(..8)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| StoreError::Corrupt(format!("expected 8 bytes, found {}", v.len())))?;
    Ok(u64::from_be_bytes(arr))
}

fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn from_json<T: for<'de> Deserialize<'de>>(v: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::{Channel, Customer, Priority};

    fn new_case(ext: &str) -> NewCase {
        case_with_body(ext, "转账一直显示处理中")
    }

    /// A new case from the webhook with `body`, for the store's tests.
    pub(in crate::store) fn case_with_body(ext: &str, body: &str) -> NewCase {
        NewCase {
            external_id: ext.into(),
            subject: "subject".into(),
            body: body.into(),
            customer: Customer::default(),
            channel: Channel::Email,
            priority: Priority::P2,
            tags: Vec::new(),
        }
    }

    /// A schema 1 data dir (projections holding the body, empty status
    /// index values, no version mark for 2) opens, reads its bodies, and
    /// is marked schema 2; its first change writes the projection without
    /// the body and the event count into the status entry.
    #[test]
    fn a_schema_2_store_gets_its_totals_and_older_sla_runs_counted() {
        let dir = tempfile::tempdir().unwrap();
        let at = Timestamp::now();
        {
            let store = Store::open(dir.path()).unwrap();
            for i in 0..150 {
                let id = store
                    .open_case(new_case(&format!("ZD-{i}")), "t", at)
                    .unwrap()
                    .case
                    .id;
                if i % 3 == 0 {
                    let note = EventKind::Note { text: "n".into() };
                    store.append(id, "t", note, None, at).unwrap();
                }
            }
            // Make it what schema 2 left: no totals, no journal.
            store.flush().unwrap();
            let db = store.db();
            db.remove(books::META_TALLY).unwrap();
            for kv in db.scan_prefix(b"y") {
                db.remove(kv.unwrap().0).unwrap();
            }
            db.insert(META_SCHEMA, &2u64.to_be_bytes()).unwrap();
            db.flush().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let t = store.tally();
        assert_eq!((t.cases(), t.by_status[&Status::New]), (150, 150));
        assert!(t.sla.is_empty());
        assert_eq!(store.sla_backfill(), Some((0, 150)));
        // The cases with a note "met" their target.
        store.set_settler(std::sync::Arc::new(|_, events: &[Event]| {
            vec![SlaOutcome {
                target: "resolution".into(),
                priority: crate::case::Priority::P2,
                met: events.len() > 1,
            }]
        }));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while store.sla_backfill().is_some() {
            assert!(std::time::Instant::now() < deadline, "backfill stuck");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let key = ("resolution".to_string(), crate::case::Priority::P2);
        assert_eq!(store.tally().sla[&key], (50, 150));
        // Counted once: a restart neither loses nor repeats it.
        let before = store.tally();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.tally(), before);
        assert_eq!(store.sla_backfill(), None);
    }

    /// Keys under `prefix`, for the layout tests.
    fn keys(store: &Store, prefix: &[u8]) -> Vec<Vec<u8>> {
        store
            .db()
            .scan_prefix(prefix)
            .map(|kv| kv.unwrap().0.to_vec())
            .collect()
    }

    /// Resolved and closed cases keep no index entries and their SLA runs
    /// ride on the projection (schema 5): listing by a closed status or an
    /// assignee still finds them, reopening indexes them again, and the
    /// totals count their runs across a restart.
    #[test]
    fn only_open_cases_are_indexed_and_runs_follow_the_projection() {
        let dir = tempfile::tempdir().unwrap();
        let at = Timestamp::now();
        let store = Store::open(dir.path()).unwrap();
        store.set_settler(std::sync::Arc::new(|_, events: &[Event]| {
            vec![SlaOutcome {
                target: "resolution".into(),
                priority: Priority::P2,
                met: events.len() < 4,
            }]
        }));
        let assign = |id| {
            let kind = EventKind::Assigned {
                assignee: "@ana".into(),
            };
            store.append(id, "lead", kind, None, at).unwrap();
        };
        let resolve = |id| {
            let kind = EventKind::Resolved { playbook: None };
            store.append(id, "@ana", kind, None, at).unwrap();
        };
        let mut ids = Vec::new();
        for i in 0..3 {
            let id = store
                .open_case(new_case(&format!("ZD-{i}")), "t", at)
                .unwrap()
                .case
                .id;
            assign(id);
            ids.push(id);
        }
        resolve(ids[0]);
        resolve(ids[1]);
        store
            .append(ids[1], "@ana", EventKind::Closed, None, at)
            .unwrap();
        // Only the open case is indexed; no case has an `r` key.
        assert_eq!(
            keys(&store, b"s"),
            vec![status_key(Status::Assigned, ids[2])]
        );
        assert_eq!(keys(&store, b"a"), vec![assignee_key("@ana", ids[2])]);
        assert!(keys(&store, b"r").is_empty());
        let list = |filter: CaseFilter| -> Vec<CaseId> {
            store.cases(&filter).unwrap().iter().map(|c| c.id).collect()
        };
        let by = |status| CaseFilter {
            status: Some(status),
            ..CaseFilter::default()
        };
        assert_eq!(list(by(Status::Resolved)), vec![ids[0]]);
        assert_eq!(list(by(Status::Closed)), vec![ids[1]]);
        assert_eq!(list(by(Status::Assigned)), vec![ids[2]]);
        let ana = CaseFilter {
            assignee: Some("@ana".into()),
            ..CaseFilter::default()
        };
        assert_eq!(list(ana.clone()), ids);
        let ana_open = CaseFilter {
            open_only: true,
            ..ana
        };
        assert_eq!(list(ana_open.clone()), vec![ids[2]]);
        // The resolved case's body and runs are read back from the one key.
        let case = store.case(ids[0]).unwrap().unwrap();
        assert_eq!(case.body, "转账一直显示处理中");
        let key = ("resolution".to_string(), Priority::P2);
        let runs = store.tally().sla[&key];
        // Reopened with the same assignee: indexed again, still listed.
        store
            .append(ids[0], "@ana", EventKind::Reopened, None, at)
            .unwrap();
        assert_eq!(list(ana_open), vec![ids[0], ids[2]]);
        assert_eq!(
            keys(&store, b"s").len() + keys(&store, b"a").len(),
            4,
            "two open cases, each with a status and an assignee entry"
        );
        let before = store.tally();
        assert_ne!(
            before.sla[&key], runs,
            "the reopened case's run was judged again"
        );
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.tally(), before);
        assert_eq!(store.open_cases().len(), 2);
    }

    /// A schema 4 store (closed cases indexed, settled runs in `r` keys)
    /// opens as schema 5: its counts and lists are unchanged, and a closed
    /// case's next change drops its old keys.
    #[test]
    fn a_schema_4_store_keeps_its_runs_and_sheds_old_keys_at_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let at = Timestamp::now();
        let key = ("resolution".to_string(), Priority::P2);
        let runs = vec![SlaOutcome {
            target: "resolution".into(),
            priority: Priority::P2,
            met: false,
        }];
        let (id, tally) = {
            let store = Store::open(dir.path()).unwrap();
            let id = store.open_case(new_case("ZD-1"), "t", at).unwrap().case.id;
            let kind = EventKind::Assigned {
                assignee: "@ana".into(),
            };
            store.append(id, "lead", kind, None, at).unwrap();
            let kind = EventKind::Resolved { playbook: None };
            store.append(id, "@ana", kind, None, at).unwrap();
            let case = store.stored_case(id).unwrap().unwrap();
            let mut tally = store.tally();
            drop(store);
            // What schema 4 wrote for it: the entries of a resolved case,
            // its runs under `r`, the totals counting them.
            let db = sled::open(dir.path()).unwrap();
            db.insert(status_key(Status::Resolved, id), tally::status_value(&case))
                .unwrap();
            db.insert(assignee_key("@ana", id), &[]).unwrap();
            let mut r = vec![b'r'];
            r.extend_from_slice(&id.0.to_be_bytes());
            db.insert(r, tally::encode_outcomes(&runs)).unwrap();
            tally.add(&tally::Contribution::of(&case, runs.clone()), 1);
            tally.add(&tally::Contribution::of(&case, Vec::new()), -1);
            db.insert(books::META_TALLY, to_json(&tally).unwrap())
                .unwrap();
            db.insert(META_SCHEMA, &4u64.to_be_bytes()).unwrap();
            db.flush().unwrap();
            (id, tally)
        };
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.tally(), tally);
        assert_eq!(tally.sla[&key], (0, 1));
        let resolved = CaseFilter {
            status: Some(Status::Resolved),
            ..CaseFilter::default()
        };
        assert_eq!(store.cases(&resolved).unwrap().len(), 1);
        assert!(store.open_cases().is_empty());
        // A note on the resolved case: its runs move onto the projection
        // (no settler yet, so they are kept as they were), its entries go.
        let note = EventKind::Note { text: "n".into() };
        store.append(id, "@ana", note, None, at).unwrap();
        assert!(keys(&store, b"r").is_empty());
        assert!(keys(&store, b"s").is_empty());
        assert!(keys(&store, b"a").is_empty());
        assert_eq!(store.tally().sla[&key], (0, 1));
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.tally().sla[&key], (0, 1));
        assert_eq!(store.cases(&resolved).unwrap().len(), 1);
    }

    #[test]
    fn a_schema_1_store_opens_and_keeps_its_bodies() {
        let dir = tempfile::tempdir().unwrap();
        let at = Timestamp::now();
        {
            let store = Store::open(dir.path()).unwrap();
            let opened = store.open_case(new_case("ZD-1"), "t", at).unwrap();
            let id = opened.case.id;
            // Rewrite it the way schema 1 stored it.
            let db = store.db();
            db.insert(case_key(id), to_json(&opened.case).unwrap())
                .unwrap();
            db.insert(status_key(opened.case.status, id), &[]).unwrap();
            db.insert(META_SCHEMA, &1u64.to_be_bytes()).unwrap();
            store.flush().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            decode_u64(&store.db().get(META_SCHEMA).unwrap().unwrap()).unwrap(),
            u64::from(SCHEMA_VERSION)
        );
        let case = store.case(CaseId(1)).unwrap().unwrap();
        assert_eq!(case.body, "转账一直显示处理中");
        assert_eq!(store.open_case_events().unwrap(), vec![(CaseId(1), None)]);
        store
            .append(
                CaseId(1),
                "t",
                EventKind::Note { text: "n".into() },
                None,
                at,
            )
            .unwrap();
        let stored = store.stored_case(CaseId(1)).unwrap().unwrap();
        assert!(stored.body.is_empty());
        assert_eq!(store.case(CaseId(1)).unwrap().unwrap().body, case.body);
        assert_eq!(
            store.open_case_events().unwrap(),
            vec![(CaseId(1), Some(stored.events))]
        );
        // A newer schema is refused, not misread.
        drop(store);
        {
            let db = sled::open(dir.path()).unwrap();
            db.insert(META_SCHEMA, &u64::from(SCHEMA_VERSION + 1).to_be_bytes())
                .unwrap();
            db.flush().unwrap();
        }
        assert!(matches!(
            Store::open(dir.path()),
            Err(StoreError::TooNew { .. })
        ));
    }
}
