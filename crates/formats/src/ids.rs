//! The set of EndToEndIds a file's check has seen, each held inline.
//!
//! Why: both pre-publish checks (the clearing file's reader and the credit file's scan) prove
//! that ids are unique or count the distinct ones, and a window has about one id per refund. As
//! `String`s in a `BTreeSet`, each id was an allocation and a few string comparisons; inline in
//! a hash set it is a 36-byte copy and one probe.

use std::collections::HashSet;

/// The longest EndToEndId ISO 20022 allows, and the length of every id Clearhouse makes.
pub(crate) const MAX_ID_BYTES: usize = 35;

/// An id of 1 to [`MAX_ID_BYTES`] bytes.
#[derive(PartialEq, Eq, Hash)]
struct Id {
    len: u8,
    bytes: [u8; MAX_ID_BYTES],
}

impl Id {
    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// Distinct EndToEndIds.
#[derive(Default)]
pub(crate) struct IdSet {
    // foldhash, randomly seeded, as in every other hot-path table (std's SipHash showed in
    // profiles).
    ids: HashSet<Id, foldhash::fast::RandomState>,
}

impl IdSet {
    /// An empty set with room for `ids` (a file's check knows how many transfers it will see).
    pub(crate) fn with_capacity(ids: usize) -> IdSet {
        IdSet { ids: HashSet::with_capacity_and_hasher(ids, foldhash::fast::RandomState::default()) }
    }

    /// Adds `id`: `Some(true)` when it is new, `Some(false)` when it was there, `None` when it
    /// is empty or longer than [`MAX_ID_BYTES`] (no set holds it).
    pub(crate) fn insert(&mut self, id: &[u8]) -> Option<bool> {
        if id.is_empty() || id.len() > MAX_ID_BYTES {
            return None;
        }
        let mut inline = Id { len: id.len() as u8, bytes: [0; MAX_ID_BYTES] };
        inline.bytes[..id.len()].copy_from_slice(id);
        Some(self.ids.insert(inline))
    }

    /// Number of distinct ids.
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    /// The ids as strings, in byte order (what a `BTreeSet<String>` of them would give), or
    /// none unless `keep`; the set is emptied either way, its table kept. Ids inserted from
    /// `str`s come back unchanged.
    pub(crate) fn drain_sorted(&mut self, keep: bool) -> Vec<String> {
        if !keep {
            self.ids.clear();
            return Vec::new();
        }
        let mut ids: Vec<String> =
            self.ids.drain().map(|id| String::from_utf8_lossy(id.as_bytes()).into_owned()).collect();
        ids.sort_unstable();
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_distinct_ids_and_refuses_what_no_file_may_hold() {
        let mut set = IdSet::default();
        assert_eq!(set.insert(b"20250301T1600ZRb"), Some(true));
        assert_eq!(set.insert(b"20250301T1600ZRa"), Some(true));
        assert_eq!(set.insert(b"20250301T1600ZRb"), Some(false));
        assert_eq!(set.insert(b""), None);
        assert_eq!(set.insert(&[b'x'; 36]), None);
        assert_eq!(set.insert(&[b'x'; 35]), Some(true));
        assert_eq!(set.len(), 3);
        let sorted = set.drain_sorted(true);
        assert_eq!(sorted, ["20250301T1600ZRa", "20250301T1600ZRb", &"x".repeat(35)]);
        assert_eq!(set.len(), 0);
        set.insert(b"a");
        assert!(set.drain_sorted(false).is_empty());
        assert_eq!(set.len(), 0);
    }
}
