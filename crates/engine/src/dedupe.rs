//! Global idempotency index: ids are unique across merchants, so this runs before sharding,
//! in input order, which makes "first delivery wins" the same at any shard count.

use std::collections::HashMap;

use clearhouse_domain::Fingerprint;
use compact_str::CompactString;
use foldhash::fast::RandomState;

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
struct Entry {
    fingerprint: [u64; 2],
    position: u64,
}

/// Remembers every id with the fingerprint of its first delivery, plus the fingerprints of
/// conflicting deliveries (rare), so re-delivering a conflict is a duplicate too.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct IdIndex {
    first: HashMap<CompactString, Entry, RandomState>,
    conflicts: HashMap<(CompactString, [u64; 2]), u64, RandomState>,
}

fn split(fp: Fingerprint) -> [u64; 2] {
    [(fp >> 64) as u64, fp as u64]
}

impl IdIndex {
    /// Records a delivery at `position` and classifies it.
    pub fn observe(&mut self, id: &CompactString, fingerprint: Fingerprint, position: u64) -> Seen {
        let fingerprint = split(fingerprint);
        match self.first.get(id) {
            None => {
                self.first.insert(id.clone(), Entry { fingerprint, position });
                Seen::New
            }
            Some(entry) if entry.fingerprint == fingerprint => Seen::Duplicate(entry.position),
            Some(entry) => {
                let first = entry.position;
                match self.conflicts.get(&(id.clone(), fingerprint)) {
                    Some(&earlier) => Seen::Duplicate(earlier),
                    None => {
                        self.conflicts.insert((id.clone(), fingerprint), position);
                        Seen::Conflict(first)
                    }
                }
            }
        }
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
        index.observe(&CompactString::from(id), fp, position)
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
    }
}
