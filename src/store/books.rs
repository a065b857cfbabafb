//! Keeping the totals and the open-case index in step with the writes (see
//! [`super::tally`] for what they hold and how they survive a crash).
//!
//! | prefix | key          | value                                          |
//! |--------|--------------|------------------------------------------------|
//! | `y`    | case number  | the case's contribution at the last checkpoint |
//! |        |              | (JSON; empty: the case did not exist then)     |
//! | `r`    | case number  | its settled SLA runs, in stores from before    |
//! |        |              | schema 5 (since, they follow the projection:   |
//! |        |              | see [`super::write_case`]); removed at the     |
//! |        |              | case's next change                             |
//! | `m`    | `tally`      | the totals at the last checkpoint (JSON)       |

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLockReadGuard};
use std::time::{Duration, Instant};

use super::batch::Batch;
use super::tally::{
    Contribution, OpenCase, Settler, SlaOutcome, Tally, decode_outcomes, open_case_from,
};
use super::{Shared, Store, StoreError, decode_u64, from_json, status_key, to_json};
use crate::case::{Case, CaseId, Event, Status};

pub(super) const META_TALLY: &[u8] = b"mtally";
/// The next case whose SLA runs are still to be judged for the totals
/// (stores from before schema 3; removed when done).
const META_SLA_BACKFILL: &[u8] = b"msla_backfill";
/// Cases judged per batch by the backfill (it holds the case write lock
/// for one batch: a few milliseconds).
const BACKFILL_CHUNK: u64 = 64;

/// How often the totals are checkpointed, at most.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// The totals and the open cases, in memory.
#[derive(Default)]
pub(super) struct Books {
    tally: Tally,
    open: HashMap<CaseId, OpenCase>,
    /// Cases changed since the last checkpoint (each has a `y` key).
    dirty: HashSet<u64>,
    last_checkpoint: Option<Instant>,
}

/// One write's changes to the books, applied once its batch is. Holds the
/// gate shared, so a checkpoint never falls between the batch and the
/// change to the totals.
pub(super) struct Ledger<'a> {
    _gate: RwLockReadGuard<'a, ()>,
    changes: Vec<Change>,
}

struct Change {
    id: CaseId,
    before: Option<Contribution>,
    after: Contribution,
    open: Option<OpenCase>,
}

impl Books {
    fn apply(&mut self, changes: Vec<Change>) {
        for c in changes {
            self.tally.change(c.before.as_ref(), &c.after);
            match c.open {
                Some(o) => {
                    self.open.insert(c.id, o);
                }
                None => {
                    self.open.remove(&c.id);
                }
            }
            self.dirty.insert(c.id.0);
        }
    }
}

impl Store {
    /// Starts a write that changes cases; pass it to [`Store::write_case`]
    /// and, once the batch is applied, to [`Store::settle`] — before the
    /// case's write lock is released.
    pub(super) fn ledger(&self) -> Ledger<'_> {
        Ledger {
            _gate: self.shared.gate.read().unwrap_or_else(|e| e.into_inner()),
            changes: Vec::new(),
        }
    }

    /// Adds a case's new projection to `batch`, moves its index entries
    /// from `before`, and notes the change to the totals in `ledger`.
    /// `new_events` are the events this write adds (all of them for a new
    /// case); the settler judges the whole history with them. (Deliveries,
    /// which change no SLA run, are not case writes: see
    /// [`Store::delivered`](super::Store::delivered).)
    pub(super) fn write_case(
        &self,
        ledger: &mut Ledger<'_>,
        batch: &mut Batch,
        before: Option<&Case>,
        case: &Case,
        new_events: &[Event],
    ) -> Result<(), StoreError> {
        let id = case.id;
        let (before_sla, legacy) = match before {
            Some(_) => self.sla_outcomes(id)?,
            None => (Vec::new(), false),
        };
        let after_sla = match self.settler() {
            Some(settle) => {
                let mut all = match before {
                    Some(_) => self.events(id)?,
                    None => Vec::new(),
                };
                all.extend(new_events.iter().cloned());
                settle(id, &all)
            }
            _ => before_sla.clone(),
        };
        write_with_runs(batch, before, case, &after_sla, legacy)?;
        let before = before.map(|b| Contribution::of(b, before_sla));
        let after = Contribution::of(case, after_sla);
        if !self.books().dirty.contains(&id.0) {
            let at_checkpoint = match &before {
                Some(c) => to_json(c)?,
                None => Vec::new(),
            };
            batch.insert(journal_key(id), at_checkpoint);
        }
        ledger.changes.push(Change {
            id,
            before,
            after,
            open: case.status.is_open().then(|| OpenCase::of(case)),
        });
        Ok(())
    }

    /// Applies a ledger whose batch was applied; checkpoints when the last
    /// checkpoint is [`CHECKPOINT_EVERY`] old and no other write is under
    /// way (one writer a second pays for it, a few milliseconds; callers
    /// may hold the case write lock, so this never waits for the gate).
    pub(super) fn settle(&self, ledger: Ledger<'_>) {
        let Ledger { _gate, changes } = ledger;
        let due = {
            let mut books = self.books();
            books.apply(changes);
            books
                .last_checkpoint
                .is_none_or(|t| t.elapsed() >= CHECKPOINT_EVERY)
        };
        drop(_gate);
        if due && !self.shared.checkpointing.swap(true, Ordering::AcqRel) {
            if let Err(e) = self.shared.checkpoint(false) {
                tracing::warn!("checkpointing the stats totals: {e}");
            }
            self.shared.checkpointing.store(false, Ordering::Release);
        }
    }
}

impl Shared {
    /// Writes the totals and forgets the journal of the cases changed since
    /// the last checkpoint, in one batch. Not flushed: if a crash loses it,
    /// it loses the writes after it too (sled keeps a prefix of its log),
    /// and the previous checkpoint with its journal still adds up.
    /// `wait`: wait for writes under way; otherwise skip when there are.
    pub(super) fn checkpoint(&self, wait: bool) -> Result<(), StoreError> {
        let _gate = if wait {
            self.gate.write().unwrap_or_else(|e| e.into_inner())
        } else {
            match self.gate.try_write() {
                Ok(g) => g,
                Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => return Ok(()),
            }
        };
        let books = || self.books.lock().unwrap_or_else(|e| e.into_inner());
        let (tally, ids) = {
            let mut books = books();
            books.last_checkpoint = Some(Instant::now());
            if books.dirty.is_empty() {
                return Ok(());
            }
            (to_json(&books.tally)?, std::mem::take(&mut books.dirty))
        };
        let mut batch = Batch::default();
        batch.insert(META_TALLY, tally);
        for id in &ids {
            batch.remove(journal_key(CaseId(*id)));
        }
        if let Err(e) = self.writer.apply(batch) {
            books().dirty.extend(ids);
            return Err(e);
        }
        Ok(())
    }
}

impl Store {
    /// The totals over every case, for `stats`.
    pub fn tally(&self) -> Tally {
        self.books().tally.clone()
    }

    /// Number of cases in a status, from the totals (a metrics scrape reads
    /// no index).
    pub fn count_status(&self, status: Status) -> Result<usize, StoreError> {
        Ok(self
            .books()
            .tally
            .by_status
            .get(&status)
            .copied()
            .unwrap_or(0) as usize)
    }

    /// Every open case, in no particular order, for `queue`.
    pub fn open_cases(&self) -> Vec<OpenCase> {
        self.books().open.values().cloned().collect()
    }

    /// How many events an open case has, from the index (`None` for a
    /// case that is not open): tells whether something planned from its
    /// history is still current without reading it.
    pub fn open_case_event_count(&self, id: CaseId) -> Option<u32> {
        self.books().open.get(&id).map(|o| o.events)
    }

    /// The open cases among `ids`, from the index.
    pub fn open_cases_among(
        &self,
        ids: &std::collections::BTreeSet<CaseId>,
    ) -> std::collections::BTreeMap<CaseId, OpenCase> {
        let books = self.books();
        ids.iter()
            .filter_map(|id| books.open.get(id).map(|o| (*id, o.clone())))
            .collect()
    }

    /// Sets how SLA runs are judged (the SLA engine's settings). Cases
    /// written before it is set count no SLA runs until their next change,
    /// except in a store upgraded from schema 2: its older cases are judged
    /// once, in the background ([`Store::sla_backfill`]).
    pub fn set_settler(&self, settler: Arc<Settler>) {
        *self
            .shared
            .settler
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(settler);
        if self.sla_backfill().is_some() && !self.shared.backfilling.swap(true, Ordering::AcqRel) {
            let store = self.clone();
            let spawned = std::thread::Builder::new()
                .name("sla-backfill".into())
                .spawn(move || {
                    if let Err(e) = store.backfill() {
                        tracing::warn!("judging older cases' SLA runs for stats: {e}");
                    }
                    store.shared.backfilling.store(false, Ordering::Release);
                });
            if let Err(e) = spawned {
                tracing::warn!("cannot start judging older cases' SLA runs: {e}");
            }
        }
    }

    /// While older cases' SLA runs are still being judged: how many of the
    /// cases are done, and how many there are.
    pub fn sla_backfill(&self) -> Option<(u64, u64)> {
        let total = self.case_count();
        match self.db().get(META_SLA_BACKFILL).ok().flatten() {
            Some(v) => Some((decode_u64(&v).ok()?.saturating_sub(1), total)),
            // The last chunk's totals are applied just after its mark goes.
            None if self.shared.backfilling.load(Ordering::Acquire) => Some((total, total)),
            None => None,
        }
    }

    /// Judges the SLA runs of every case from the backfill mark on, a chunk
    /// at a time, each chunk with its mark in one batch (a restart goes on
    /// where it stopped). Stops when the store is the last one holding it.
    fn backfill(&self) -> Result<(), StoreError> {
        let Some(settle) = self.settler() else {
            return Ok(());
        };
        let started = Instant::now();
        let total = self.case_count();
        while let Some(v) = self.db().get(META_SLA_BACKFILL)? {
            let done = decode_u64(&v)?.saturating_sub(1);
            if Arc::strong_count(&self.shared) == 1 {
                return Ok(());
            }
            let from = done + 1;
            let to = (from + BACKFILL_CHUNK).min(total + 1);
            let guard = self.shared.write.lock().unwrap_or_else(|e| e.into_inner());
            let mut batch = Batch::default();
            let mut ledger = self.ledger();
            for n in from..to {
                let id = CaseId(n);
                let Some(case) = self.stored_case(id)? else {
                    continue;
                };
                let outcomes = settle(id, &self.events(id)?);
                let (before, legacy) = self.sla_outcomes(id)?;
                if outcomes == before {
                    continue;
                }
                write_with_runs(&mut batch, Some(&case), &case, &outcomes, legacy)?;
                let before = Contribution::of(&case, before);
                if !self.books().dirty.contains(&id.0) {
                    batch.insert(journal_key(id), to_json(&before)?);
                }
                ledger.changes.push(Change {
                    id,
                    before: Some(before),
                    after: Contribution::of(&case, outcomes),
                    open: case.status.is_open().then(|| OpenCase::of(&case)),
                });
            }
            if to > total {
                batch.remove(META_SLA_BACKFILL);
            } else {
                batch.insert(META_SLA_BACKFILL, &to.to_be_bytes());
            }
            self.shared.writer.apply(batch)?;
            self.settle(ledger);
            drop(guard);
            if to > total {
                tracing::info!(
                    cases = total,
                    secs = started.elapsed().as_secs(),
                    "older cases' SLA runs judged for stats"
                );
            } else if from / 100_000 != to / 100_000 {
                tracing::info!(
                    done = to - 1,
                    of = total,
                    "judging older cases' SLA runs for stats"
                );
            }
        }
        Ok(())
    }

    fn settler(&self) -> Option<Arc<Settler>> {
        self.shared
            .settler
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A case's settled SLA runs, and whether they come from an `r` key.
    fn sla_outcomes(&self, id: CaseId) -> Result<(Vec<SlaOutcome>, bool), StoreError> {
        read_outcomes(self.db(), id, self.shared.legacy_runs)
    }

    fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        self.shared.books.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Reads the books at open: the last checkpoint corrected by the journal,
/// and the open cases from the status index. A store from before schema 3
/// has no checkpoint: its totals are counted once from every projection.
pub(super) fn load(db: &sled::Db, legacy: bool) -> Result<Books, StoreError> {
    let mut books = Books::default();
    let stored = |id: CaseId| -> Result<Option<Case>, StoreError> {
        db.get(super::case_key(id))?
            .map(|v| super::decode_projection(&v))
            .transpose()
    };
    let outcomes = |id: CaseId| Ok::<_, StoreError>(read_outcomes(db, id, legacy)?.0);
    match db.get(META_TALLY)? {
        Some(v) => {
            books.tally = from_json(&v)?;
            for kv in db.scan_prefix(b"y") {
                let (k, v) = kv?;
                let id = CaseId(decode_u64(&k[1..])?);
                if !v.is_empty() {
                    books.tally.add(&from_json::<Contribution>(&v)?, -1);
                }
                if let Some(case) = stored(id)? {
                    books.tally.add(&Contribution::of(&case, outcomes(id)?), 1);
                }
                books.dirty.insert(id.0);
            }
        }
        None => {
            let mut n = 0u64;
            for kv in db.scan_prefix(b"c") {
                let case = super::decode_projection(&kv?.1)?;
                books
                    .tally
                    .add(&Contribution::of(&case, outcomes(case.id)?), 1);
                n += 1;
                if n.is_multiple_of(100_000) {
                    tracing::info!(cases = n, "counting cases for stats");
                }
            }
            // Makes the first checkpoint write it.
            books.dirty.insert(0);
            if n > 0 {
                db.insert(META_SLA_BACKFILL, &1u64.to_be_bytes())?;
            }
        }
    }
    for status in Status::ALL.into_iter().filter(|s| s.is_open()) {
        for kv in db.scan_prefix(status_key(status, CaseId(0)).split_at(2).0) {
            let (k, v) = kv?;
            let id = CaseId(decode_u64(&k[k.len() - 8..])?);
            let open = match open_case_from(id, status, &v) {
                Some(o) => o,
                None => match stored(id)? {
                    Some(case) => OpenCase::of(&case),
                    None => continue,
                },
            };
            books.open.insert(id, open);
        }
    }
    Ok(books)
}

fn journal_key(id: CaseId) -> Vec<u8> {
    let mut k = vec![b'y'];
    k.extend_from_slice(&id.0.to_be_bytes());
    k
}

/// A case's settled SLA runs as stored, after its projection, or in an
/// `r` key when the store still has them (`legacy`, schema 4 and before);
/// and whether they came from one. Damaged bytes count as none, with a
/// warning: they are derived data, and refusing them would block every
/// change to the case.
fn read_outcomes(
    db: &sled::Db,
    id: CaseId,
    legacy: bool,
) -> Result<(Vec<SlaOutcome>, bool), StoreError> {
    let decode = |v: &[u8]| {
        decode_outcomes(v).unwrap_or_else(|| {
            tracing::warn!(case = %id, "unreadable SLA results; judged again at its next change");
            Vec::new()
        })
    };
    if let Some(v) = db.get(super::case_key(id))?
        && let (_, Some(runs)) = super::split_projection(&v)
    {
        return Ok((decode(runs), false));
    }
    if legacy && let Some(v) = db.get(outcome_key(id))? {
        return Ok((decode(&v), true));
    }
    Ok((Vec::new(), false))
}

/// Writes the projection with its settled SLA runs ([`super::write_case`])
/// and drops the `r` key the runs came from in a store from before schema 5.
fn write_with_runs(
    batch: &mut Batch,
    before: Option<&Case>,
    case: &Case,
    runs: &[SlaOutcome],
    legacy: bool,
) -> Result<(), StoreError> {
    super::write_case(batch, before, case, runs)?;
    if legacy {
        batch.remove(outcome_key(case.id));
    }
    Ok(())
}

fn outcome_key(id: CaseId) -> Vec<u8> {
    let mut k = vec![b'r'];
    k.extend_from_slice(&id.0.to_be_bytes());
    k
}
