//! Multi-key writes, atomic across a crash.
//!
//! sled's own `apply_batch` rolls its log buffer twice per batch (before and
//! after the batch's manifest), and each roll hands a separate `pwrite` +
//! `sync_file_range` to its I/O threads. At three batches per ticket that
//! was ~2.6 disk writes, ~36 KB written and most of the process's kernel
//! time per ticket. Single-key writes do not roll the buffer, so a batch
//! here is written as plain inserts, made atomic by a record of the whole
//! batch written first:
//!
//! 1. insert `w<n>` holding every write of the batch;
//! 2. apply the writes one by one;
//! 3. remove `w<n>`.
//!
//! sled recovers a prefix of its log, so after a crash either `w<n>` is
//! gone (and with it every write before its removal is on disk), or it is
//! there and [`recover`] applies it again at open — writes are idempotent.
//! Writes 1–3 run under one lock, so the order of batches in the log is
//! the order they were applied in and a replay never puts an older value
//! over a newer one. Readers can see a batch half applied; the store's
//! read-modify-writes are serialized by its own locks, and a reader meets
//! at worst a value one write behind, as with any concurrent write.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use sled::IVec;

use super::StoreError;

/// Key prefix of a batch record.
const PREFIX: u8 = b'w';

/// Writes to apply together.
#[derive(Default, Debug)]
pub(super) struct Batch {
    writes: Vec<(IVec, Option<IVec>)>,
}

impl Batch {
    pub(super) fn insert(&mut self, key: impl Into<IVec>, value: impl Into<IVec>) {
        self.writes.push((key.into(), Some(value.into())));
    }

    pub(super) fn remove(&mut self, key: impl Into<IVec>) {
        self.writes.push((key.into(), None));
    }
}

/// Applies batches to one sled tree (see the module docs).
pub(super) struct Writer {
    db: sled::Db,
    next: AtomicU64,
    /// Held while one batch is recorded, applied and its record removed. A
    /// `std::sync::Mutex`: in-memory sled writes only, never a flush.
    lock: Mutex<()>,
}

impl Writer {
    /// Applies batches left by a crash, then returns the writer.
    pub(super) fn open(db: &sled::Db) -> Result<Writer, StoreError> {
        let replayed = recover(db)?;
        if replayed > 0 {
            tracing::info!(
                batches = replayed,
                "store: re-applied writes cut short by a crash"
            );
        }
        Ok(Writer {
            db: db.clone(),
            next: AtomicU64::new(0),
            lock: Mutex::new(()),
        })
    }

    /// Applies `batch` atomically (durable at the next flush).
    pub(super) fn apply(&self, batch: Batch) -> Result<(), StoreError> {
        // One write is atomic by itself.
        if batch.writes.len() <= 1 {
            return self.apply_in_order(batch);
        }
        let record = encode(&batch.writes);
        let _held = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let key = record_key(self.next.fetch_add(1, Ordering::Relaxed));
        self.db.insert(key, record)?;
        for w in &batch.writes {
            apply_one(&self.db, w)?;
        }
        self.db.remove(key)?;
        Ok(())
    }
}

impl Writer {
    /// Applies `batch` in order without a record, for a batch where every
    /// prefix of its writes is a state the store can restart from (see
    /// [`Store::delivered`](super::Store::delivered): the records of a
    /// delivery first, the outbox entry's removal last, so a crash in
    /// between sends the message again, as a crash before it would).
    pub(super) fn apply_in_order(&self, batch: Batch) -> Result<(), StoreError> {
        let _held = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        for w in &batch.writes {
            apply_one(&self.db, w)?;
        }
        Ok(())
    }
}

fn apply_one(db: &sled::Db, (key, value): &(IVec, Option<IVec>)) -> Result<(), StoreError> {
    match value {
        Some(v) => db.insert(key, v.clone())?,
        None => db.remove(key)?,
    };
    Ok(())
}

fn record_key(n: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = PREFIX;
    k[1..].copy_from_slice(&n.to_be_bytes());
    k
}

/// `u32 count`, then per write `u32 key len, key, u8 kind, [u32 len, value]`.
fn encode(writes: &[(IVec, Option<IVec>)]) -> Vec<u8> {
    let size = writes
        .iter()
        .map(|(k, v)| 9 + k.len() + v.as_ref().map_or(0, |v| 4 + v.len()))
        .sum::<usize>();
    let mut out = Vec::with_capacity(4 + size);
    out.extend_from_slice(&(writes.len() as u32).to_be_bytes());
    for (k, v) in writes {
        out.extend_from_slice(&(k.len() as u32).to_be_bytes());
        out.extend_from_slice(k);
        match v {
            Some(v) => {
                out.push(1);
                out.extend_from_slice(&(v.len() as u32).to_be_bytes());
                out.extend_from_slice(v);
            }
            None => out.push(0),
        }
    }
    out
}

fn decode(mut b: &[u8]) -> Option<Vec<(IVec, Option<IVec>)>> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if b.len() < n {
            return None;
        }
        let (head, tail) = b.split_at(n);
        *b = tail;
        Some(head)
    }
    fn len(b: &mut &[u8]) -> Option<usize> {
        Some(u32::from_be_bytes(take(b, 4)?.try_into().ok()?) as usize)
    }
    let n = len(&mut b)?;
    let mut writes = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        let kl = len(&mut b)?;
        let key = IVec::from(take(&mut b, kl)?);
        let value = match take(&mut b, 1)?[0] {
            0 => None,
            1 => {
                let vl = len(&mut b)?;
                Some(IVec::from(take(&mut b, vl)?))
            }
            _ => return None,
        };
        writes.push((key, value));
    }
    b.is_empty().then_some(writes)
}

/// Re-applies, in order, every batch whose record outlived a crash, removes
/// the records and flushes. Returns how many there were.
pub(super) fn recover(db: &sled::Db) -> Result<usize, StoreError> {
    let mut n = 0;
    for kv in db.scan_prefix([PREFIX]) {
        let (key, record) = kv?;
        let writes = decode(&record).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "batch record {} does not parse, so a write interrupted by a \
                 crash cannot be completed; restore the data dir from a backup",
                hex::encode(&key)
            ))
        })?;
        for w in &writes {
            apply_one(db, w)?;
        }
        db.remove(&key)?;
        n += 1;
    }
    if n > 0 {
        db.flush()?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_damage_is_refused() {
        let writes = vec![
            (IVec::from(&b"c1"[..]), Some(IVec::from(&b"{}"[..]))),
            (IVec::from(&b"o7"[..]), None),
            (IVec::from(&b""[..]), Some(IVec::from(&b""[..]))),
        ];
        let rec = encode(&writes);
        assert_eq!(decode(&rec).unwrap(), writes);
        assert!(decode(&rec[..rec.len() - 1]).is_none());
        let mut longer = rec.clone();
        longer.push(0);
        assert!(decode(&longer).is_none());
    }

    #[test]
    fn a_record_left_by_a_crash_is_applied_at_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            db.insert(b"c1", &b"old"[..]).unwrap();
            db.insert(b"o1", &b"queued"[..]).unwrap();
            // A crash after the record and the first write only.
            let writes = vec![
                (IVec::from(&b"c1"[..]), Some(IVec::from(&b"new"[..]))),
                (IVec::from(&b"o1"[..]), None),
                (IVec::from(&b"e1"[..]), Some(IVec::from(&b"event"[..]))),
            ];
            db.insert(record_key(3), encode(&writes)).unwrap();
            apply_one(&db, &writes[0]).unwrap();
            db.flush().unwrap();
        }
        let db = super::super::open_sled(&sled::Config::new().path(dir.path())).unwrap();
        let w = Writer::open(&db).unwrap();
        assert_eq!(db.get(b"c1").unwrap().unwrap(), &b"new"[..]);
        assert_eq!(db.get(b"o1").unwrap(), None);
        assert_eq!(db.get(b"e1").unwrap().unwrap(), &b"event"[..]);
        assert_eq!(db.scan_prefix([PREFIX]).count(), 0);
        // New batches leave no record behind.
        let mut b = Batch::default();
        b.insert(&b"c2"[..], &b"x"[..]);
        b.remove(&b"c1"[..]);
        w.apply(b).unwrap();
        assert_eq!(db.get(b"c1").unwrap(), None);
        assert_eq!(db.scan_prefix([PREFIX]).count(), 0);
    }

    #[test]
    fn a_damaged_record_refuses_the_store_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            db.insert(record_key(0), &b"\0\0\0\x02garbage"[..]).unwrap();
            db.flush().unwrap();
        }
        let err = super::super::Store::open(dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("batch record 770000000000000000 does not parse")
                && err.contains("restore the data dir from a backup"),
            "{err}"
        );
        // Nothing was changed: the record is still there for inspection.
        let db = super::super::open_sled(&sled::Config::new().path(dir.path())).unwrap();
        assert_eq!(db.scan_prefix([PREFIX]).count(), 1);
    }
}
