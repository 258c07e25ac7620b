//! The EndToEndIds a file's check has seen.
//!
//! Why: both pre-publish checks (the clearing file's reader and the credit file's scan) prove
//! that ids are unique or count the distinct ones, and a window has about one id per refund. As
//! `String`s in a `BTreeSet`, each id was an allocation and a few string comparisons; inline in
//! a hash set ([`IdSet`]) it is a 36-byte copy and one probe. The clearing reader counts the
//! distinct ids of one batch at a time, a set that stays in cache. The credit file's scan
//! proves a whole file's ids distinct, millions at five million lines, and a set that size
//! missed the cache on every probe (8% of the encoding at 5 M lines, docs/benchmarks.md): it
//! lists them ([`UniqueIds`]) and sorts the list once at the end.

use std::collections::HashSet;

use xxhash_rust::xxh3::xxh3_128;

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

/// A file's EndToEndIds, all to be distinct: each one's 128-bit hash appended as it comes,
/// the list sorted once at the end and neighbours compared. A repeated id always repeats its
/// hash, so no repeat goes unseen; two distinct ids would pass for one only if their xxh3-128
/// hashes collided (about 2^-128 per pair), and that would stop a file, never publish a wrong
/// one.
#[derive(Default)]
pub(crate) struct UniqueIds {
    hashes: Vec<u128>,
}

impl UniqueIds {
    /// An empty list with room for `ids`.
    pub(crate) fn with_capacity(ids: usize) -> UniqueIds {
        UniqueIds { hashes: Vec::with_capacity(ids) }
    }

    /// Adds `id`; `false` when it is empty or longer than [`MAX_ID_BYTES`] (no file may hold it).
    pub(crate) fn push(&mut self, id: &[u8]) -> bool {
        let fits = !id.is_empty() && id.len() <= MAX_ID_BYTES;
        if fits {
            self.hashes.push(xxh3_128(id));
        }
        fits
    }

    /// Number of ids added.
    pub(crate) fn len(&self) -> usize {
        self.hashes.len()
    }

    /// Whether every id added is distinct; empties the list.
    pub(crate) fn all_distinct(&mut self) -> bool {
        self.hashes.sort_unstable();
        let distinct = self.hashes.windows(2).all(|pair| pair[0] != pair[1]);
        self.hashes.clear();
        distinct
    }
}

/// `ids` sorted by their 128-bit hash (ties by the ids themselves), without repeats: two such
/// lists are equal exactly when the sets of ids are, and sorting 16-byte keys costs a fraction
/// of comparing millions of strings that share their first 15 bytes (a window's ids), which is
/// what `verify`'s `BTreeSet`s of them did. The hash only orders: every id is still compared
/// whole, so no crafted collision can make two different sets look alike.
pub(crate) fn sorted_distinct<'a>(ids: impl Iterator<Item = &'a str>) -> Vec<(u128, &'a str)> {
    let mut keyed = sorted_by_hash(ids);
    keyed.dedup();
    keyed
}

/// An id that `ids` holds more than once (the smallest by hash when there are several), found
/// the same way.
pub(crate) fn first_repeated<'a>(ids: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    sorted_by_hash(ids).windows(2).find(|pair| pair[0] == pair[1]).map(|pair| pair[0].1)
}

/// `ids`, each with its hash, sorted by hash and then by the id.
fn sorted_by_hash<'a>(ids: impl Iterator<Item = &'a str>) -> Vec<(u128, &'a str)> {
    let mut keyed: Vec<(u128, &str)> = ids.map(|id| (xxh3_128(id.as_bytes()), id)).collect();
    keyed.sort_unstable();
    keyed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_lists_compare_as_sets_and_find_a_repeat() {
        let a = sorted_distinct(["x", "y", "x", "z"].into_iter());
        let b = sorted_distinct(["z", "y", "x"].into_iter());
        assert_eq!(a, b, "the same set, in any order and with repeats");
        assert_eq!(a.len(), 3);
        assert_ne!(a, sorted_distinct(["z", "y"].into_iter()));
        assert_ne!(a, sorted_distinct(["z", "y", "w"].into_iter()));
        assert_eq!(first_repeated(["a", "b", "c"].into_iter()), None);
        assert_eq!(first_repeated(["a", "b", "c", "b"].into_iter()), Some("b"));
        assert_eq!(first_repeated(std::iter::empty()), None);
    }

    #[test]
    fn unique_ids_see_every_repeat_and_refuse_what_no_file_may_hold() {
        let mut ids = UniqueIds::with_capacity(4);
        assert!(ids.push(b"20250301T1600ZRb") && ids.push(b"20250301T1600ZRa"));
        assert!(!ids.push(b"") && !ids.push(&[b'x'; 36]));
        assert!(ids.push(&[b'x'; 35]));
        assert_eq!(ids.len(), 3);
        assert!(ids.all_distinct());
        assert_eq!(ids.len(), 0, "emptied");
        assert!(ids.all_distinct(), "none is distinct");
        for id in [&b"a"[..], b"b", b"c", b"b"] {
            ids.push(id);
        }
        assert!(!ids.all_distinct(), "b twice, apart");
    }

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
