//! Global idempotency index: ids are unique across merchants, so this runs before sharding,
//! in input order, which makes "first delivery wins" the same at any shard count.
//!
//! [`IdIndex::decide`] is the one decision table for what happens to a parsed message before
//! netting; the file-mode router and the daemon's partitions both use it, so a message gets the
//! same outcome in `net`, `run` and `replay`.

use std::collections::HashMap;

use clearhouse_domain::{DuplicateRecord, Fingerprint, Instruction, Parsed, Reject, RejectReason, SlicedMap};
use compact_str::CompactString;
use foldhash::fast::RandomState;
use xxhash_rust::xxh3::xxh3_128;

/// What the index says about a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// First delivery of this id.
    New,
    /// Same content as an earlier delivery (at that position).
    Duplicate(u64),
    /// Same id, content never seen before: a conflict.
    Conflict(u64),
}

#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct Entry<T> {
    fingerprint: [u64; 2],
    position: u64,
    /// What the entry is kept by: see [`IdIndex::expire`].
    time: T,
}

/// What an index entry is kept by. The daemon forgets ids by event time, so its entries keep
/// the delivery's event time (`i64`, Unix seconds). File mode keeps every id to the end of the
/// run and its entries keep nothing (`()`): 8 bytes less for each of millions of entries.
pub trait KeptBy: Copy + std::fmt::Debug {
    /// What is kept of a delivery of event time `time` (Unix seconds).
    fn of(time: i64) -> Self;
    /// Whether an entry keeping this survives forgetting what is before `before`.
    fn kept(self, before: i64) -> bool;
}

impl KeptBy for i64 {
    fn of(time: i64) -> i64 {
        time
    }

    fn kept(self, before: i64) -> bool {
        self >= before
    }
}

impl KeptBy for () {
    fn of(_: i64) {}

    fn kept(self, _: i64) -> bool {
        true
    }
}

/// Remembers every id with the fingerprint of its first delivery, plus the fingerprints of
/// conflicting deliveries (rare), so re-delivering a conflict is a duplicate too. `T` is what
/// its entries are kept by ([`KeptBy`]): event times in the daemon, which checkpoints it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct IdIndex<T = i64> {
    first: SlicedMap<Entry<T>>,
    conflicts: HashMap<(u128, [u64; 2]), (u64, T), RandomState>,
}

// With the 16-byte key, a bucket of 48 bytes in the daemon and 40 in file mode.
const _: () = assert!(std::mem::size_of::<Entry<i64>>() == 32 && std::mem::size_of::<Entry<()>>() == 24);

impl<T> Default for IdIndex<T> {
    fn default() -> Self {
        IdIndex { first: SlicedMap::default(), conflicts: HashMap::default() }
    }
}

/// An id as the index keys it: its 128-bit hash (16 bytes, no string kept). Two ids collide
/// with probability about 2^-128 per pair (docs/decisions.md). Built once per delivery by
/// whoever both warms the index with it and then judges the delivery (the file-mode routers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdKey(u128);

impl IdKey {
    /// The key of `id`.
    pub fn of(id: &str) -> IdKey {
        IdKey(xxh3_128(id.as_bytes()))
    }
}

fn split(fp: Fingerprint) -> [u64; 2] {
    [(fp >> 64) as u64, fp as u64]
}

/// What becomes of a parsed message before netting: `I` is the instruction netted, owned or
/// borrowed from the message.
#[derive(Debug)]
pub enum Decision<I = Instruction> {
    /// The first delivery of a valid instruction: it goes on to netting.
    Net(I),
    /// Refused before netting (invalid, or a conflicting re-delivery), with its id when known.
    Reject(Option<CompactString>, Reject),
    /// An identical re-delivery.
    Duplicate(DuplicateRecord),
}

/// Where a message was delivered, as its reject messages name it.
#[derive(Debug, Clone, Copy)]
pub struct Delivery {
    /// Source position: the file line, or the partition offset.
    pub position: u64,
    /// What a position is called in messages: "position" or "offset".
    pub unit: &'static str,
    /// The time (Unix seconds) the index keeps the delivery by (see [`IdIndex::expire`]).
    pub time: i64,
}

impl<T: KeptBy> IdIndex<T> {
    /// Records a delivery at `position`, of event time `time` (Unix seconds; what expiry goes
    /// by), and classifies it.
    pub fn observe(&mut self, id: &CompactString, fingerprint: Fingerprint, position: u64, time: i64) -> Seen {
        self.observe_keyed(IdKey::of(id), fingerprint, position, time)
    }

    /// [`IdIndex::observe`] with the id's key already built.
    fn observe_keyed(&mut self, IdKey(key): IdKey, fingerprint: Fingerprint, position: u64, time: i64) -> Seen {
        let fingerprint = split(fingerprint);
        let time = T::of(time);
        match self.first.get_or_insert(key, Entry { fingerprint, position, time }) {
            (_, true) => Seen::New,
            (entry, false) if entry.fingerprint == fingerprint => Seen::Duplicate(entry.position),
            (entry, false) => {
                let first = entry.position;
                match self.conflicts.get(&(key, fingerprint)) {
                    Some(&(earlier, _)) => Seen::Duplicate(earlier),
                    None => {
                        self.conflicts.insert((key, fingerprint), (position, time));
                        Seen::Conflict(first)
                    }
                }
            }
        }
    }

    /// Brings the entries of `keys` into cache with lookups that overlap (see
    /// `SlicedMap::warm`), before their deliveries are judged one by one.
    pub fn warm(&self, keys: impl Iterator<Item = IdKey>) {
        self.first.warm(keys.map(|IdKey(key)| key));
    }

    /// Decides what becomes of `parsed`, delivered at `at`: a valid first delivery is netted; an
    /// invalid one is rejected (and its id, when it has one, remembered, so re-delivering it is
    /// a duplicate); an identical re-delivery is a duplicate; the same id with new content is a
    /// `duplicate_conflict`.
    pub fn decide(&mut self, parsed: Parsed, at: Delivery) -> Decision {
        match self.judge(&parsed, at) {
            Decision::Net(_) => {}
            Decision::Reject(id, reject) => return Decision::Reject(id, reject),
            Decision::Duplicate(duplicate) => return Decision::Duplicate(duplicate),
        }
        match parsed {
            Parsed::Valid { instruction, .. } => Decision::Net(instruction),
            Parsed::Invalid { .. } => unreachable!("only a valid message is netted"),
        }
    }

    /// [`IdIndex::decide`] on a message that stays where it is: what is netted is borrowed
    /// from it (file mode's routers hand the shards their messages in place, never moving an
    /// instruction).
    pub fn judge<'a>(&mut self, parsed: &'a Parsed, at: Delivery) -> Decision<&'a Instruction> {
        self.judge_keyed(parsed, parsed.id().map(IdKey::of), at)
    }

    /// [`IdIndex::judge`] with the key of the message's id (`None` when it has no id) already
    /// built, by [`IdKey::of`]: what the file-mode routers, which warm the index with the keys
    /// first, use to build each key once.
    pub fn judge_keyed<'a>(
        &mut self,
        parsed: &'a Parsed,
        key: Option<IdKey>,
        at: Delivery,
    ) -> Decision<&'a Instruction> {
        let (id, fingerprint, outcome) = match parsed {
            Parsed::Valid { instruction, fingerprint } => (&instruction.id, *fingerprint, Ok(instruction)),
            Parsed::Invalid { identity: Some(identity), reject } => (&identity.id, identity.fingerprint, Err(reject)),
            Parsed::Invalid { identity: None, reject } => return Decision::Reject(None, reject.clone()),
        };
        let key = key.unwrap_or_else(|| IdKey::of(id));
        debug_assert_eq!(key, IdKey::of(id), "the key is the id's");
        match (self.observe_keyed(key, fingerprint, at.position, at.time), outcome) {
            (Seen::New, Ok(instruction)) => Decision::Net(instruction),
            (Seen::New, Err(reject)) => Decision::Reject(Some(id.clone()), reject.clone()),
            (Seen::Duplicate(first_position), _) => {
                Decision::Duplicate(DuplicateRecord { position: at.position, id: id.clone(), first_position })
            }
            (Seen::Conflict(first), _) => {
                let message = format!("id {id} was first delivered at {} {first} with different content", at.unit);
                Decision::Reject(Some(id.clone()), Reject::field(RejectReason::DuplicateConflict, "id", message))
            }
        }
    }

    /// Forgets the deliveries of event time before `before` (Unix seconds). The daemon calls it
    /// as its history horizon advances, and refuses instructions older than the horizon before
    /// they reach the index, so a forgotten id cannot come back as new with its old content.
    pub fn expire(&mut self, before: i64) {
        self.first.retain(|_, e| e.time.kept(before));
        self.conflicts.retain(|_, (_, time)| time.kept(before));
    }

    /// Makes room for `total` ids in all (see `SlicedMap::reserve_total`).
    pub fn reserve(&mut self, total: usize) {
        self.first.reserve_total(total);
    }

    /// Number of distinct ids seen.
    pub fn len(&self) -> usize {
        self.first.len()
    }

    /// True when no id was seen.
    pub fn is_empty(&self) -> bool {
        self.first.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(index: &mut IdIndex, id: &str, fp: u128, position: u64) -> Seen {
        index.observe(&CompactString::from(id), fp, position, position as i64)
    }

    #[test]
    fn classifies_deliveries() {
        let mut index = IdIndex::default();
        assert_eq!(seen(&mut index, "a", 1, 1), Seen::New);
        assert_eq!(seen(&mut index, "a", 1, 2), Seen::Duplicate(1));
        assert_eq!(seen(&mut index, "a", 2, 3), Seen::Conflict(1));
        assert_eq!(seen(&mut index, "a", 2, 4), Seen::Duplicate(3), "a re-delivered conflict is a duplicate");
        assert_eq!(seen(&mut index, "a", 3, 5), Seen::Conflict(1));
        assert_eq!(seen(&mut index, "b", 2, 6), Seen::New);
        assert_eq!(index.len(), 2);
        index.expire(6);
        assert_eq!(index.len(), 1, "a (seen at 1) forgotten, b (seen at 6) kept");
        assert_eq!(seen(&mut index, "b", 2, 7), Seen::Duplicate(6));
        assert_eq!(seen(&mut index, "a", 2, 8), Seen::New, "forgotten ids and their conflicts");
    }

    #[test]
    fn an_index_that_keeps_no_time_classifies_alike_and_forgets_nothing() {
        let mut index: IdIndex<()> = IdIndex::default();
        let mut seen = |id: &str, fp: u128, position: u64| index.observe(&CompactString::from(id), fp, position, 0);
        assert_eq!(seen("a", 1, 1), Seen::New);
        assert_eq!(seen("a", 1, 2), Seen::Duplicate(1));
        assert_eq!(seen("a", 2, 3), Seen::Conflict(1));
        assert_eq!(seen("a", 2, 4), Seen::Duplicate(3));
        index.expire(i64::MAX);
        assert_eq!(index.len(), 1);
        assert_eq!(index.observe(&CompactString::from("a"), 2, 5, 0), Seen::Duplicate(3), "the conflict is kept too");
    }
}
