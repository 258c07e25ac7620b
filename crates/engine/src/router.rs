//! The routers: de-duplication partitioned by id, then hand-over to the merchant's shard.
//!
//! Ids are unique across merchants, so duplicate detection needs every delivery of an id in
//! input order, and netting needs every instruction of a merchant in input order. The two
//! partitionings differ, so the work is split in two ranks. The parse workers put each message
//! in its id's part (a hash of the id); the sequencer (`sequencer.rs`) restores input order and
//! hands part `p` of every batch to router `p`, which owns the id index of its part of the id
//! space and decides first delivery, duplicate or conflict for its messages; each router then
//! sends every shard that shard's instructions of the batch (possibly none). A shard takes one
//! message per router per batch and merges them by position, so it sees its merchants'
//! instructions in input order whatever the number of routers, shards or threads.

use std::hash::BuildHasher;
use std::sync::Arc;

use clearhouse_domain::{DuplicateRecord, Instruction, Parsed, Reject, RejectRecord, Stats};
use clearhouse_ingest::{RawBatch, RawRecord};
use compact_str::CompactString;
use crossbeam_channel::{Receiver, Sender};
use xxhash_rust::xxh3::xxh3_64;

use crate::dedupe::{Decision, Delivery, IdIndex, IdKey};
use crate::presize::Presize;
use crate::shard::ShardBatch;

/// File mode keeps every id until the end of the run (no history horizon): its index keeps no
/// event time (`IdIndex<()>`), so the time a delivery states to it is never read.
const FILE_MODE_TIME: i64 = 0;

/// Ids whose index entries are brought into cache together before they are observed one by
/// one (`IdIndex::warm`).
const WARM_IDS: usize = 32;

/// One router's share of a source batch: the messages whose id falls in its part, with their
/// index in `raw`, in input order.
pub(crate) struct PartBatch {
    pub(crate) raw: Arc<RawBatch>,
    pub(crate) items: Vec<(u32, Parsed)>,
}

/// The router part of a message: by its id when it has one (a message without a readable id is
/// never a duplicate, so any part will do: its position's).
pub(crate) fn part_of(parsed: &Parsed, position: u64, parts: usize) -> usize {
    let id = match parsed {
        Parsed::Valid { instruction, .. } => Some(instruction.id.as_str()),
        Parsed::Invalid { identity, .. } => identity.as_ref().map(|i| i.id.as_str()),
    };
    let hash = id.map_or(position, |id| xxh3_64(id.as_bytes()));
    (hash % parts as u64) as usize
}

/// What a router decided without netting.
#[derive(Default)]
pub(crate) struct RouterOutput {
    pub(crate) rejects: Vec<RejectRecord>,
    pub(crate) duplicates: Vec<DuplicateRecord>,
    pub(crate) stats: Stats,
}

struct Router {
    shards: Vec<Sender<ShardBatch>>,
    index: IdIndex<()>,
    hasher: foldhash::fast::FixedState,
    out: RouterOutput,
}

/// Routes every batch of one id part, in input order, until the sequencer is done (or a shard
/// has stopped: only a panic stops one early, and that panic is what the run reports).
/// With `presize`, the id index is sized for the whole input once a part of it is routed.
pub(crate) fn route(rx: Receiver<PartBatch>, shards: Vec<Sender<ShardBatch>>, mut presize: Presize) -> RouterOutput {
    let mut router = Router {
        shards,
        index: IdIndex::default(),
        hasher: foldhash::fast::FixedState::with_seed(0x5eed),
        out: RouterOutput::default(),
    };
    for batch in rx {
        let growth = presize.observe(&batch.raw);
        let routed = router.route_batch(batch);
        if let Some(growth) = growth {
            router.index.reserve(growth.expected(router.index.len()));
        }
        if !routed {
            break;
        }
    }
    router.out
}

impl Router {
    /// Routes one batch; false when a shard has stopped.
    fn route_batch(&mut self, batch: PartBatch) -> bool {
        let mut per_shard: Vec<Vec<u32>> = (0..self.shards.len()).map(|_| Vec::new()).collect();
        let mut keys = [None; WARM_IDS];
        for (chunk, items) in batch.items.chunks(WARM_IDS).enumerate() {
            for (key, (_, parsed)) in keys.iter_mut().zip(items) {
                *key = parsed.id().map(IdKey::of);
            }
            self.index.warm(keys[..items.len()].iter().flatten().copied());
            for (k, ((i, parsed), key)) in items.iter().zip(keys).enumerate() {
                let record = batch.raw.records[*i as usize];
                if let Some(instruction) = self.classify(&batch.raw, record, (parsed, key)) {
                    let shard = self.hasher.hash_one(instruction.merchant_id.as_str()) as usize % self.shards.len();
                    per_shard[shard].push((chunk * WARM_IDS + k) as u32);
                }
            }
        }
        // Every shard hears from every router for every batch, instructions or not: that is
        // how it knows it has all of a batch before netting it. The messages stay where the
        // parse put them; each shard is told which of them are its own.
        let items = Arc::new(batch.items);
        per_shard.into_iter().zip(&self.shards).all(|(picked, shard)| {
            let work = ShardBatch { raw: Arc::clone(&batch.raw), items: Arc::clone(&items), picked };
            shard.send(work).is_ok()
        })
    }

    /// Records the outcome of one message (with its id's key); returns the instruction when it
    /// goes on to netting.
    fn classify<'a>(
        &mut self,
        raw: &RawBatch,
        record: RawRecord,
        (parsed, key): (&'a Parsed, Option<IdKey>),
    ) -> Option<&'a Instruction> {
        self.out.stats.input += 1;
        let at = Delivery { position: record.position, unit: "position", time: FILE_MODE_TIME };
        match self.index.judge_keyed(parsed, key, at) {
            Decision::Net(instruction) => return Some(instruction),
            Decision::Reject(id, reject) => self.reject(raw, record, id, reject),
            Decision::Duplicate(duplicate) => {
                self.out.stats.duplicates += 1;
                self.out.duplicates.push(duplicate);
            }
        }
        None
    }

    fn reject(&mut self, raw: &RawBatch, record: RawRecord, id: Option<CompactString>, reject: Reject) {
        self.out.stats.reject(reject.reason);
        self.out.rejects.push(RejectRecord::new(record.position, id, reject, raw.payload(&record)));
    }
}
