//! A hash map keyed by 128-bit hashes, split into 64 or more tables by the key's top bits, so
//! that growing it copies a 64th of it at a time.
//!
//! Why: the id index and the refund history hold millions of entries, and a hash table that
//! doubles allocates its new table while the old one is still alive. At one million lines,
//! `net`'s heap peaked while the two routers' id indexes doubled at once: 154 MB for 77 MB of
//! live entries (docs/benchmarks.md). Split 64 ways, the tables still double, but one at a time,
//! and the transient is a 64th of the index.
//!
//! A table's size is a power of two, so a map sized for `n` entries is 44-87% full depending on
//! where `n` falls between two powers. When the final size is known in advance
//! ([`SlicedMap::reserve_total`]), the map is split into as many tables (64 to 128) as make
//! tables of one power-of-two size about 78% full at that size, whatever it is.
//!
//! It serializes as one map, so a checkpoint does not depend on the split.
//!
//! A key is held as two `u64`s: a `u128` is 16-byte aligned, which rounded every bucket up to a
//! multiple of 16 bytes (a 40-byte original's bucket took 64).

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fmt;

use foldhash::fast::RandomState;
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Tables a map starts with, and the fewest it is laid out in.
const SLICES: usize = 64;

/// The most entries a table of `buckets` (a power of two, at least 8) holds before it grows:
/// seven eighths of them (the load limit of `std`'s tables, hashbrown's).
const fn table_room(buckets: usize) -> usize {
    buckets / 8 * 7
}

/// A map from 128-bit hashes (uniform in every bit) to `V`.
#[derive(Clone)]
pub struct SlicedMap<V> {
    slices: Box<[HashMap<SplitKey, V, RandomState>]>,
    len: usize,
}

/// A 128-bit key as two `u64`s (8-byte aligned): how the tables hold their keys, and how a
/// record that refers to another table's entry holds that key (`netting/refund_record.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SplitKey([u64; 2]);

impl std::hash::Hash for SplitKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Keys are hashes already, uniform in every bit: one word of both halves will do.
        state.write_u64(self.0[0] ^ self.0[1]);
    }
}

impl SplitKey {
    /// `key`, split.
    pub(crate) fn of(key: u128) -> SplitKey {
        SplitKey([key as u64, (key >> 64) as u64])
    }

    /// The key it holds.
    pub(crate) fn get(self) -> u128 {
        u128::from(self.0[0]) | (u128::from(self.0[1]) << 64)
    }
}

impl<V> Default for SlicedMap<V> {
    fn default() -> Self {
        SlicedMap { slices: (0..SLICES).map(|_| HashMap::default()).collect(), len: 0 }
    }
}

/// The table of `key` among `slices`: the key's top 64 bits scaled to the table count, so each
/// table takes an equal share of the key space (at 64 tables, the key's top six bits).
#[inline]
fn slice_of(key: u128, slices: usize) -> usize {
    ((u128::from((key >> 64) as u64) * slices as u128) >> 64) as usize
}

impl<V> SlicedMap<V> {
    #[inline]
    fn slice(&self, key: u128) -> &HashMap<SplitKey, V, RandomState> {
        &self.slices[slice_of(key, self.slices.len())]
    }

    #[inline]
    fn slice_mut(&mut self, key: u128) -> &mut HashMap<SplitKey, V, RandomState> {
        let slices = self.slices.len();
        &mut self.slices[slice_of(key, slices)]
    }

    /// The value at `key`.
    #[inline]
    pub fn get(&self, key: &u128) -> Option<&V> {
        self.slice(*key).get(&SplitKey::of(*key))
    }

    /// The value at `key`, to change.
    #[inline]
    pub fn get_mut(&mut self, key: &u128) -> Option<&mut V> {
        self.slice_mut(*key).get_mut(&SplitKey::of(*key))
    }

    /// Sets `key` to `value`; returns the value it replaces.
    #[inline]
    pub fn insert(&mut self, key: u128, value: V) -> Option<V> {
        let previous = self.slice_mut(key).insert(SplitKey::of(key), value);
        self.len += usize::from(previous.is_none());
        previous
    }

    /// The value at `key`, after inserting `value` there when there was none; says whether it
    /// did (one probe where `get` then `insert` take two).
    #[inline]
    pub fn get_or_insert(&mut self, key: u128, value: V) -> (&mut V, bool) {
        let slice = slice_of(key, self.slices.len());
        match self.slices[slice].entry(SplitKey::of(key)) {
            Entry::Occupied(entry) => (entry.into_mut(), false),
            Entry::Vacant(entry) => {
                self.len += 1;
                (entry.insert(value), true)
            }
        }
    }

    /// Looks `keys` up and drops the answers: lookups that do not depend on each other, which
    /// the processor keeps in flight together, so that their entries are in cache when the
    /// keys are then used one by one. A table of millions of entries misses the cache on
    /// nearly every lookup, and one at a time, each waits for memory in turn.
    pub fn warm(&self, keys: impl Iterator<Item = u128>) {
        let found = keys.filter(|key| self.get(key).is_some()).count();
        std::hint::black_box(found);
    }

    /// Makes room for about `total` entries in all, expected when the map is full grown, so
    /// that growing to that many allocates and copies nothing more. The map is laid out again
    /// for it: as many tables ([`Layout`]) as make them about 78% full at `total`, with room
    /// for an eighth more before any grows, and the entries it holds moved there. Nothing
    /// happens when it already has that room, or when the allocator refuses a table: the
    /// tables then grow as entries come, as without it.
    pub fn reserve_total(&mut self, total: usize) {
        let Some(layout) = Layout::for_total(total) else { return };
        if layout.room() <= self.capacity() {
            return;
        }
        let mut slices = Vec::with_capacity(layout.slices);
        for _ in 0..layout.slices {
            let mut table = HashMap::default();
            if table.try_reserve(layout.per_slice).is_err() {
                return;
            }
            slices.push(table);
        }
        let old = std::mem::replace(&mut self.slices, slices.into_boxed_slice());
        for table in old.into_vec() {
            for (key, value) in table {
                self.slice_mut(key.get()).insert(key, value);
            }
        }
    }

    /// Entries the tables hold room for without growing.
    pub fn capacity(&self) -> usize {
        self.slices.iter().map(HashMap::capacity).sum()
    }

    /// Removes `key`; returns its value.
    #[inline]
    pub fn remove(&mut self, key: &u128) -> Option<V> {
        let removed = self.slice_mut(*key).remove(&SplitKey::of(*key));
        self.len -= usize::from(removed.is_some());
        removed
    }

    /// Keeps only the entries `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(&u128, &mut V) -> bool) {
        for slice in self.slices.iter_mut() {
            slice.retain(|key, value| keep(&key.get(), value));
        }
        self.len = self.slices.iter().map(HashMap::len).sum();
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (u128, &V)> + '_ {
        self.slices.iter().flat_map(|slice| slice.iter().map(|(key, value)| (key.get(), value)))
    }

    /// Every value, in no particular order.
    pub fn values(&self) -> impl Iterator<Item = &V> + '_ {
        self.slices.iter().flat_map(|slice| slice.values())
    }
}

/// How many tables a map is split into, and the entries each has room for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    slices: usize,
    per_slice: usize,
}

impl Layout {
    /// The layout for `total` entries with an eighth more to spare: the largest power-of-two
    /// table size that 64 tables do not outgrow, and as many tables of it as the entries need
    /// (64 to 128, so each ends at 44-88% of its buckets; at `total` itself, about 78%).
    /// `None` when 64 tables of 8 buckets hold it.
    fn for_total(total: usize) -> Option<Layout> {
        let want = total.checked_add(total / 8)?;
        let mut buckets = 8usize;
        while table_room(buckets.checked_mul(2)?).checked_mul(SLICES)? <= want {
            buckets *= 2;
        }
        let per_slice = table_room(buckets);
        (want > table_room(8) * SLICES).then(|| Layout { slices: want.div_ceil(per_slice), per_slice })
    }

    /// Entries the layout holds before any table grows.
    fn room(self) -> usize {
        self.slices * self.per_slice
    }
}

impl<V: fmt::Debug> fmt::Debug for SlicedMap<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<V: Serialize> Serialize for SlicedMap<V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len))?;
        for (key, value) in self.iter() {
            map.serialize_entry(&key, value)?;
        }
        map.end()
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for SlicedMap<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<SlicedMap<V>, D::Error> {
        struct Entries<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for Entries<V> {
            type Value = SlicedMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map from 128-bit keys")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<SlicedMap<V>, A::Error> {
                let mut map = SlicedMap::default();
                while let Some((key, value)) = access.next_entry::<u128, V>()? {
                    if map.insert(key, value).is_some() {
                        return Err(serde::de::Error::custom(format!("key {key:032x} twice")));
                    }
                }
                Ok(map)
            }
        }
        deserializer.deserialize_map(Entries(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_one_map_and_serializes_as_one() {
        let keys: Vec<u128> = (0..1000u128).map(|i| xxhash_rust::xxh3::xxh3_128(&i.to_le_bytes())).collect();
        let mut sliced = SlicedMap::default();
        let mut plain: HashMap<u128, u64> = HashMap::new();
        for (i, &key) in keys.iter().enumerate() {
            assert_eq!(sliced.insert(key, i as u64), plain.insert(key, i as u64));
        }
        assert_eq!(sliced.insert(keys[0], 7), plain.insert(keys[0], 7));
        assert_eq!(sliced.remove(&keys[1]), plain.remove(&keys[1]));
        assert_eq!(sliced.remove(&keys[1]), None);
        *sliced.get_mut(&keys[2]).expect("present") += 1;
        *plain.get_mut(&keys[2]).expect("present") += 1;
        let (value, inserted) = sliced.get_or_insert(keys[3], 99);
        assert_eq!((*value, inserted), (3, false), "present: left as it is");
        let (value, inserted) = sliced.get_or_insert(keys[1], 11);
        assert_eq!((*value, inserted), (11, true), "absent: inserted");
        plain.insert(keys[1], 11);
        sliced.warm(keys.iter().copied());
        let before = sliced.capacity();
        sliced.reserve_total(64 * 1000);
        assert!(sliced.capacity() >= 64 * 1000 && sliced.capacity() > before, "room for 1000 a table");
        sliced.reserve_total(10);
        assert!(sliced.capacity() >= 64 * 1000, "a smaller reservation shrinks nothing");
        sliced.retain(|_, v| *v % 3 != 0);
        plain.retain(|_, v| *v % 3 != 0);
        assert_eq!(sliced.len(), plain.len());
        assert!(keys.iter().all(|k| sliced.get(k) == plain.get(k)));
        assert!(sliced.slices.iter().all(|s| !s.is_empty()), "1000 uniform keys reach all 64 tables");
        let bytes = postcard::to_stdvec(&sliced).expect("encode");
        let back: HashMap<u128, u64> = postcard::from_bytes(&bytes).expect("decode as a plain map");
        assert_eq!(back, plain);
        let again: SlicedMap<u64> =
            postcard::from_bytes(&postcard::to_stdvec(&plain).expect("encode")).expect("decode");
        assert_eq!(again.len(), plain.len());
        assert!(keys.iter().all(|k| again.get(k) == plain.get(k)));
    }

    #[test]
    fn a_layout_fills_its_tables_to_about_78_percent_at_any_size() {
        assert_eq!(Layout::for_total(0), None);
        assert_eq!(Layout::for_total(398), None, "448 entries with an eighth to spare fit 64 tables of 8");
        assert_eq!(Layout::for_total(usize::MAX), None, "an absurd size is no layout");
        for total in [500, 1000, 64_000, 1 << 20, 2_500_000, 3_000_000, 123_456_789] {
            let layout = Layout::for_total(total).expect("larger than the default");
            let buckets = layout.per_slice / 7 * 8;
            assert!(buckets.is_power_of_two() && (SLICES..=2 * SLICES).contains(&layout.slices), "{layout:?}");
            assert!(layout.room() >= total + total / 8, "room for an eighth more: {layout:?}");
            let load = total as f64 / (layout.slices * buckets) as f64;
            assert!((0.76..=0.78).contains(&load), "{total} entries fill {load:.3} of {layout:?}");
        }
    }

    #[test]
    fn laying_out_again_keeps_every_entry_and_the_room_it_promised() {
        let keys: Vec<u128> = (0..5000u128).map(|i| xxhash_rust::xxh3::xxh3_128(&i.to_le_bytes())).collect();
        let mut sliced = SlicedMap::default();
        for (i, &key) in keys.iter().take(1000).enumerate() {
            sliced.insert(key, i);
        }
        sliced.reserve_total(100_000);
        let layout = Layout::for_total(100_000).expect("a layout");
        assert_eq!(sliced.slices.len(), layout.slices);
        assert!(sliced.capacity() >= layout.room());
        assert_eq!(sliced.len(), 1000);
        assert!(keys.iter().take(1000).enumerate().all(|(i, k)| sliced.get(k) == Some(&i)));
        for (i, &key) in keys.iter().enumerate().skip(1000) {
            assert_eq!(sliced.insert(key, i), None);
        }
        assert_eq!(sliced.remove(&keys[4999]), Some(4999));
        assert_eq!(sliced.len(), 4999);
        let capacity = sliced.capacity();
        sliced.reserve_total(1000);
        assert_eq!(sliced.capacity(), capacity, "a smaller size changes nothing");
        let bytes = postcard::to_stdvec(&sliced).expect("encode");
        let back: SlicedMap<usize> = postcard::from_bytes(&bytes).expect("decode");
        assert_eq!(back.slices.len(), SLICES, "a checkpoint does not depend on the layout");
        assert!(keys.iter().take(4999).enumerate().all(|(i, k)| back.get(k) == Some(&i)));
    }

    #[test]
    fn a_key_twice_in_a_checkpoint_is_an_error() {
        let json = "{\"5\":1,\"5\":2}";
        assert!(serde_json::from_str::<SlicedMap<u64>>(json).is_err());
        assert_eq!(serde_json::from_str::<SlicedMap<u64>>("{\"5\":1}").expect("one key").get(&5), Some(&1));
    }
}
