//! A case's history on disk: its events in chunks, each chunk one key.
//!
//! | prefix | key                               | value                     |
//! |--------|-----------------------------------|---------------------------|
//! | `e`    | case number, first event seq (u32 | the chunk's events (JSON  |
//! |        | BE)                               | array, oldest first)      |
//!
//! sled keeps a few hundred bytes of bookkeeping in memory for every page
//! of its tree, read at start, and a page holds at most 16 keys; a million
//! resolved cases with one key per event (schema 3) took ~230 MB of that.
//! A chunk holds up to [`CHUNK_EVENTS`] events or [`CHUNK_BYTES`] of JSON,
//! so a case's whole history is usually one key. A new event is appended
//! to the last chunk while it has room (the chunk is rewritten, under the
//! case write lock), else starts a chunk keyed by its own seq.
//!
//! Stores written before schema 4 hold one event per key, a JSON object;
//! both forms are read, and a case keeps its old keys, new events going
//! into chunks after them.

use sled::IVec;

use super::batch::Batch;
use super::{StoreError, from_json, to_json};
use crate::case::{CaseId, Event};

/// Most events in one chunk.
pub(super) const CHUNK_EVENTS: u32 = 32;
/// A chunk this large takes no more events (a long reply may still make
/// one chunk larger).
pub(super) const CHUNK_BYTES: usize = 8 * 1024;

/// The key prefix of `id`'s history.
pub(super) fn prefix(id: CaseId) -> Vec<u8> {
    let mut k = vec![b'e'];
    k.extend_from_slice(&id.0.to_be_bytes());
    k
}

fn chunk_key(id: CaseId, first_seq: u32) -> Vec<u8> {
    let mut k = prefix(id);
    k.extend_from_slice(&first_seq.to_be_bytes());
    k
}

/// The events of one stored value: a chunk or a single event (schema 3).
pub(super) fn decode(v: &[u8]) -> Result<Vec<Event>, StoreError> {
    if v.first() == Some(&b'[') {
        from_json(v)
    } else {
        Ok(vec![from_json(v)?])
    }
}

/// The first event of a stored value, without reading the rest.
pub(super) fn decode_first(v: &[u8]) -> Result<Event, StoreError> {
    use serde::Deserialize;
    match v.first() {
        Some(b'[') => {
            let mut de = serde_json::Deserializer::from_slice(&v[1..]);
            Event::deserialize(&mut de).map_err(|e| StoreError::Corrupt(e.to_string()))
        }
        _ => from_json(v),
    }
}

/// Adds `events` (consecutive, the first one numbered `next_seq`, i.e. the
/// case's event count before them) to `batch`. `last` is the case's last
/// stored key and value, if any ([`last_chunk`]): the events go into it
/// while it has room.
pub(super) fn append(
    batch: &mut Batch,
    id: CaseId,
    next_seq: u32,
    last: Option<(IVec, IVec)>,
    events: &[Event],
) -> Result<(), StoreError> {
    let mut events = events;
    if let Some((key, value)) = last
        && value.first() == Some(&b'[')
        && value.len() < CHUNK_BYTES
    {
        let first_seq = seq_of(&key)?;
        let room = CHUNK_EVENTS.saturating_sub(next_seq.saturating_sub(first_seq)) as usize;
        if room > 0 {
            let (now, rest) = events.split_at(room.min(events.len()));
            // `[a,b]` + c = `[a,b,c]`: the chunk is extended, not parsed.
            let mut v = value[..value.len() - 1].to_vec();
            for ev in now {
                v.push(b',');
                v.extend_from_slice(&to_json(ev)?);
            }
            v.push(b']');
            batch.insert(key, v);
            events = rest;
        }
    }
    for chunk in events.chunks(CHUNK_EVENTS as usize) {
        batch.insert(chunk_key(id, chunk[0].seq), to_json(&chunk)?);
    }
    Ok(())
}

/// The last stored key and value of `id`'s history, which has `events`
/// events.
pub(super) fn last_chunk(
    db: &sled::Db,
    id: CaseId,
    events: u32,
) -> Result<Option<(IVec, IVec)>, StoreError> {
    // Most cases have one chunk: while the first is open (fewer events
    // than a chunk holds and under its size) no other can exist, and a
    // point read is much cheaper than sled's reverse scan.
    let first = first_key(id);
    if events < CHUNK_EVENTS
        && let Some(v) = db.get(&first)?
        && v.first() == Some(&b'[')
        && v.len() < CHUNK_BYTES
    {
        return Ok(Some((IVec::from(first), v)));
    }
    Ok(db.scan_prefix(prefix(id)).next_back().transpose()?)
}

fn seq_of(key: &[u8]) -> Result<u32, StoreError> {
    key.get(9..13)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_be_bytes)
        .ok_or_else(|| StoreError::Corrupt(format!("event key of {} bytes", key.len())))
}

/// The key of the chunk (or, before schema 4, the event) that holds a
/// case's `opened` event.
pub(super) fn first_key(id: CaseId) -> Vec<u8> {
    chunk_key(id, 0)
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;

    use super::*;
    use crate::case::{EventKind, NewCase};
    use crate::store::tests::case_with_body;
    use crate::store::{META_SCHEMA, Store};

    fn new_case(ext: &str) -> NewCase {
        case_with_body(ext, "card 4111 1111 1111 1111 declined")
    }

    fn keys(store: &Store, id: CaseId) -> Vec<u32> {
        store
            .db()
            .scan_prefix(prefix(id))
            .map(|kv| seq_of(&kv.unwrap().0).unwrap())
            .collect()
    }

    fn note(i: usize) -> EventKind {
        EventKind::Note {
            text: format!("note {i}"),
        }
    }

    /// A history grows in chunks of at most CHUNK_EVENTS events (a large
    /// reply closes its chunk early), reads back whole and in order, and
    /// survives a reopen.
    #[test]
    fn events_are_stored_in_chunks_and_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let at = Timestamp::now();
        let store = Store::open(dir.path()).unwrap();
        let id = store.open_case(new_case("ZD-1"), "t", at).unwrap().case.id;
        assert_eq!(keys(&store, id), [0], "the opened case is one key");
        for i in 1..40 {
            store.append(id, "t", note(i), None, at).unwrap();
        }
        assert_eq!(keys(&store, id), [0, 32]);
        // Several events in one write may straddle a chunk's end.
        let many = (40..70).map(|i| (note(i), None)).collect();
        store
            .commit(Some(id), "t", at, many, Vec::new(), None)
            .unwrap();
        assert_eq!(keys(&store, id), [0, 32, 64]);
        let long = EventKind::Note {
            text: "x".repeat(CHUNK_BYTES),
        };
        store.append(id, "t", long, None, at).unwrap();
        store.append(id, "t", note(71), None, at).unwrap();
        assert_eq!(keys(&store, id), [0, 32, 64, 71]);
        drop(store);

        let store = Store::open(dir.path()).unwrap();
        let events = store.events(id).unwrap();
        assert_eq!(events.len(), 72);
        assert!(events.iter().enumerate().all(|(i, e)| e.seq as usize == i));
        assert!(matches!(&events[1].kind, EventKind::Note { text } if text == "note 1"));
        assert!(matches!(&events[71].kind, EventKind::Note { text } if text == "note 71"));
        let case = store.case(id).unwrap().unwrap();
        assert_eq!(case.events, 72);
        assert!(case.body.contains("[card ****1111]"), "{}", case.body);
    }

    /// A first chunk closed by its size sends later events to the next
    /// one, also while the case has fewer events than a chunk holds.
    #[test]
    fn a_large_first_chunk_is_not_extended() {
        let dir = tempfile::tempdir().unwrap();
        let at = Timestamp::now();
        let store = Store::open(dir.path()).unwrap();
        let id = store.open_case(new_case("ZD-1"), "t", at).unwrap().case.id;
        let long = EventKind::Note {
            text: "x".repeat(CHUNK_BYTES),
        };
        store.append(id, "t", long, None, at).unwrap();
        for i in 3..6 {
            store.append(id, "t", note(i), None, at).unwrap();
        }
        assert_eq!(keys(&store, id), [0, 2]);
        let seqs: Vec<u32> = store.events(id).unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [0, 1, 2, 3, 4]);
    }

    /// A schema 3 store keeps one event per key: it opens as schema 4, its
    /// cases read as before, and their new events go into a chunk after
    /// the old keys.
    #[test]
    fn one_event_keys_of_schema_3_are_read_and_extended() {
        let dir = tempfile::tempdir().unwrap();
        let at = Timestamp::now();
        let id = {
            let store = Store::open(dir.path()).unwrap();
            let id = store.open_case(new_case("ZD-1"), "t", at).unwrap().case.id;
            store.append(id, "t", note(1), None, at).unwrap();
            // Rewrite the history the way schema 3 stored it.
            let events = store.events(id).unwrap();
            let db = store.db();
            for kv in db.scan_prefix(prefix(id)) {
                db.remove(kv.unwrap().0).unwrap();
            }
            for ev in &events {
                db.insert(chunk_key(id, ev.seq), to_json(ev).unwrap())
                    .unwrap();
            }
            db.insert(META_SCHEMA, &3u64.to_be_bytes()).unwrap();
            db.flush().unwrap();
            id
        };
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(keys(&store, id), [0, 1]);
        let case = store.case(id).unwrap().unwrap();
        assert!(case.body.contains("[card ****1111]"), "{}", case.body);
        store.append(id, "t", note(2), None, at).unwrap();
        store.append(id, "t", note(3), None, at).unwrap();
        assert_eq!(keys(&store, id), [0, 1, 2]);
        let texts: Vec<_> = store
            .events(id)
            .unwrap()
            .into_iter()
            .map(|e| (e.seq, matches!(e.kind, EventKind::Opened(_))))
            .collect();
        assert_eq!(texts, [(0, true), (1, false), (2, false), (3, false)]);
        let schema = store.db().get(META_SCHEMA).unwrap().unwrap();
        assert_eq!(
            schema.as_ref(),
            u64::from(super::super::SCHEMA_VERSION).to_be_bytes()
        );
    }
}
