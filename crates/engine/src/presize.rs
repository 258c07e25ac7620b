//! Sizing the routers' and shards' tables for the whole input, once, in file mode.
//!
//! Why: the id index and the history tables hold millions of entries, and a hash table that
//! grows by doubling writes every entry again at each step and touches fresh pages for each new
//! table. At 5 M lines, the growth of those tables was 65% of all page faults of a `net` run
//! (docs/benchmarks.md). A file's size is known before it is read, so once a stage has seen a
//! small part of it, it can tell how large its tables will get and make room for them once.
//!
//! The guess is linear: a table that holds `n` entries after a fraction `f` of the bytes will
//! hold about `n / f`. The tables are laid out for that many, an eighth more to spare
//! (`SlicedMap::reserve_total`): a guess that is too low only lets them grow the rest of the way
//! as they did before, one too high leaves them emptier. Nothing else depends on it: what is
//! netted, and every output byte, is the same with or without it.

use clearhouse_ingest::RawBatch;

/// The part of the input (1 / this) a stage sees before it sizes its tables.
const SAMPLE_PARTS: u64 = 32;

/// One stage's view of how far through the input it is, until it has sized its tables.
pub(crate) struct Presize {
    /// Bytes of the whole input; `None` when unknown, or once the tables are sized.
    total: Option<u64>,
    seen: u64,
}

/// What a table of `len` entries after the sample is expected to need at the end of input.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Growth {
    total: u64,
    seen: u64,
}

impl Presize {
    /// A stage reading an input of `total` bytes, when known.
    pub(crate) fn new(total: Option<u64>) -> Presize {
        Presize { total: total.filter(|&t| t > 0), seen: 0 }
    }

    /// Counts `batch`; the first time the stage has seen its sample of the input, returns how
    /// its tables should grow (once, never again).
    pub(crate) fn observe(&mut self, batch: &RawBatch) -> Option<Growth> {
        let total = self.total?;
        self.seen = self.seen.saturating_add(batch.source_bytes());
        if self.seen.saturating_mul(SAMPLE_PARTS) < total || self.seen >= total {
            return None;
        }
        self.total = None;
        Some(Growth { total, seen: self.seen })
    }
}

impl Growth {
    /// Entries expected at the end of input in a table holding `len` now: `len` scaled from
    /// the bytes seen to the whole input.
    pub(crate) fn expected(self, len: usize) -> usize {
        let scaled = (len as u128).saturating_mul(u128::from(self.total)) / u128::from(self.seen);
        usize::try_from(scaled).unwrap_or(usize::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clearhouse_ingest::RawRecord;

    fn batch(lines: usize, len: u32) -> RawBatch {
        let records = (0..lines).map(|i| RawRecord { position: i as u64 + 1, start: 0, len, oversized: 0 }).collect();
        RawBatch { bytes: Vec::new(), records, oversized: Vec::new() }
    }

    #[test]
    fn sizes_once_after_a_32nd_of_the_input_scaled_to_all_of_it() {
        // 99-byte lines and their newlines: 100 bytes each, 32,000 lines in all.
        let mut presize = Presize::new(Some(3_200_000));
        assert!(presize.observe(&batch(999, 99)).is_none(), "999 lines are less than a 32nd");
        let growth = presize.observe(&batch(1, 99)).expect("1,000 lines are a 32nd");
        assert_eq!(growth.expected(400), 400 * 32);
        assert!(presize.observe(&batch(1000, 99)).is_none(), "once");
    }

    #[test]
    fn unknown_or_empty_input_sizes_nothing() {
        assert!(Presize::new(None).observe(&batch(1000, 99)).is_none());
        assert!(Presize::new(Some(0)).observe(&batch(1000, 99)).is_none());
        let mut all_at_once = Presize::new(Some(100));
        assert!(all_at_once.observe(&batch(1, 99)).is_none(), "the whole input seen: no growth to come");
    }

    #[test]
    fn an_absurd_guess_saturates_instead_of_overflowing() {
        let growth = Growth { total: u64::MAX, seen: 1 };
        assert_eq!(growth.expected(0), 0);
        assert!(growth.expected(usize::MAX) > 0);
    }
}
