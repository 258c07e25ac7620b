//! The netting engine: a pipeline of bounded stages.
//!
//! ```text
//! source ──RawBatch──▶ parse workers (N, stateless, split by id) ──▶ sequencer (1: reorder, per
//!        batch) ──▶ routers (S: id index of their ids, send by merchant) ──▶ netting shards (S,
//!        one Netter each, merge the routers' parts by position) ──▶ closed windows
//! ```
//!
//! Parsing is the expensive, stateless part, so it fans out. The sequencer restores input order;
//! each router applies the idempotency index to its part of the id space in that order, which is
//! what makes "first delivery wins" and "the same id with other content is a conflict"
//! independent of thread timing, without one thread touching every message. Each merchant lives
//! in exactly one shard and reaches it in input order, so batches do not depend on the shard
//! count. Every channel is bounded: a slow stage stalls the ones before it instead of buffering
//! without limit.

mod dedupe;
mod pipeline;
mod presize;
mod router;
mod sequencer;
mod shard;
pub mod stream;

use std::collections::BTreeMap;

use clearhouse_domain::{DuplicateRecord, RejectRecord, SettledBatch, Stats, Window};

pub use dedupe::{IdIndex, IdKey, KeptBy, Seen};
pub use pipeline::{net_all, EngineError};
pub use stream::{Outcome, Partition, PartitionState, Seal, SealedPart};

/// Engine sizing. Limits are in batches (a batch is one source block, about 1 MiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineConfig {
    /// Netting shards (threads); merchants are spread over them by hash.
    pub shards: usize,
    /// Parse worker threads.
    pub parse_threads: usize,
    /// Capacity of each stage's queue, in batches.
    pub queue_batches: usize,
    /// The run's stated `now` with the allowed skew: an event time later than `now + skew` is
    /// `event_time_in_future`. `None` (the default) checks nothing.
    pub now: Option<(jiff::Timestamp, jiff::SignedDuration)>,
    /// Size of the input in bytes, when known (a file): the routers and shards then size their
    /// tables for all of it once they have read a 32nd of it (`presize.rs`). `None` (the
    /// default): the tables grow as entries come.
    pub input_bytes: Option<u64>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        EngineConfig { shards: cores, parse_threads: cores, queue_batches: 4, now: None, input_bytes: None }
    }
}

/// A closed window with its batches, sorted by merchant then currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedWindow {
    /// The window.
    pub window: Window,
    /// Its batches.
    pub batches: Vec<SettledBatch>,
}

/// Everything a run produced, in deterministic order.
#[derive(Debug, Default)]
pub struct EngineResult {
    /// Closed windows, oldest first.
    pub windows: Vec<ClosedWindow>,
    /// Rejected inputs in source order.
    pub rejects: Vec<RejectRecord>,
    /// Duplicate deliveries in source order.
    pub duplicates: Vec<DuplicateRecord>,
    /// Outcome counts.
    pub stats: Stats,
    /// Source position of the last message read (0 when none).
    pub last_position: u64,
}

fn merge_windows(
    parts: Vec<Vec<(clearhouse_domain::WindowId, Vec<SettledBatch>)>>,
) -> BTreeMap<clearhouse_domain::WindowId, Vec<SettledBatch>> {
    let mut windows: BTreeMap<_, Vec<SettledBatch>> = BTreeMap::new();
    for (id, batches) in parts.into_iter().flatten() {
        windows.entry(id).or_default().extend(batches);
    }
    windows.values_mut().for_each(|batches| sort_batches(batches));
    windows
}

/// Puts one window's batches from several shards or partitions in file order (merchant, then
/// currency), asserting that no merchant's batch came from two of them.
pub fn sort_batches(batches: &mut [SettledBatch]) {
    batches.sort_by(|a, b| (&a.merchant_id, a.currency).cmp(&(&b.merchant_id, b.currency)));
    let distinct = batches.windows(2).all(|p| (&p[0].merchant_id, p[0].currency) != (&p[1].merchant_id, p[1].currency));
    assert!(distinct, "a merchant's batch came from two shards or partitions");
}
