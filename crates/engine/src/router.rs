//! The router: the one sequential stage. It restores source order, applies the global
//! idempotency index, records what is decided before netting (rejects without a valid
//! instruction, duplicates, conflicts) and hands each instruction to its merchant's shard.

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use clearhouse_domain::{Instruction, Parsed, Reject, RejectReason};
use clearhouse_ingest::{RawBatch, RawRecord};
use compact_str::CompactString;
use crossbeam_channel::{Receiver, Sender};

use crate::dedupe::{IdIndex, Seen};
use crate::records::{DuplicateRecord, RejectRecord, Stats};
use crate::shard::ShardBatch;

/// File mode keeps every id until the end of the run (no history horizon), so the event time
/// the index keeps its entries by is irrelevant there.
const FILE_MODE_TIME: i64 = 0;

/// A source batch after parsing, tagged with its position in the source.
pub(crate) struct ParsedBatch {
    pub(crate) index: u64,
    pub(crate) raw: Arc<RawBatch>,
    pub(crate) parsed: Vec<Parsed>,
}

/// What the router decided without netting.
#[derive(Default)]
pub(crate) struct RouterOutput {
    pub(crate) rejects: Vec<RejectRecord>,
    pub(crate) duplicates: Vec<DuplicateRecord>,
    pub(crate) stats: Stats,
    pub(crate) last_position: u64,
}

struct Router {
    shards: Vec<Sender<ShardBatch>>,
    index: IdIndex,
    hasher: foldhash::fast::FixedState,
    out: RouterOutput,
}

/// Routes every batch from `rx` in source order; returns when the parse workers are done.
pub(crate) fn route(rx: Receiver<ParsedBatch>, shards: Vec<Sender<ShardBatch>>, progress: &AtomicU64) -> RouterOutput {
    let mut router = Router {
        shards,
        index: IdIndex::default(),
        hasher: foldhash::fast::FixedState::with_seed(0x5eed),
        out: RouterOutput::default(),
    };
    let mut reorder: BTreeMap<u64, ParsedBatch> = BTreeMap::new();
    let mut next = 0u64;
    for batch in rx {
        reorder.insert(batch.index, batch);
        while let Some(batch) = reorder.remove(&next) {
            next += 1;
            let records = batch.raw.records.len() as u64;
            router.route_batch(batch);
            progress.fetch_add(records, Ordering::Relaxed);
        }
    }
    assert!(reorder.is_empty(), "parse workers skipped batch {next}");
    router.out
}

impl Router {
    fn route_batch(&mut self, batch: ParsedBatch) {
        let mut per_shard: Vec<Vec<(u32, Instruction)>> = (0..self.shards.len()).map(|_| Vec::new()).collect();
        for (i, parsed) in batch.parsed.into_iter().enumerate() {
            let record = batch.raw.records[i];
            if let Some(instruction) = self.classify(&batch.raw, record, parsed) {
                let shard = self.hasher.hash_one(instruction.merchant_id.as_str()) as usize % self.shards.len();
                per_shard[shard].push((i as u32, instruction));
            }
        }
        for (shard, items) in per_shard.into_iter().enumerate().filter(|(_, items)| !items.is_empty()) {
            let work = ShardBatch { raw: Arc::clone(&batch.raw), items };
            self.shards[shard].send(work).expect("netting shard stopped early");
        }
    }

    /// Records the outcome of one message; returns the instruction when it goes on to netting.
    fn classify(&mut self, raw: &RawBatch, record: RawRecord, parsed: Parsed) -> Option<Instruction> {
        self.out.stats.input += 1;
        self.out.last_position = record.position;
        let (id, fingerprint, outcome) = match parsed {
            Parsed::Valid { instruction, fingerprint } => (instruction.id.clone(), fingerprint, Ok(instruction)),
            Parsed::Invalid { identity: Some(identity), reject } => (identity.id, identity.fingerprint, Err(reject)),
            Parsed::Invalid { identity: None, reject } => {
                self.reject(raw, record, None, reject);
                return None;
            }
        };
        match (self.index.observe(&id, fingerprint, record.position, FILE_MODE_TIME), outcome) {
            (Seen::New, Ok(instruction)) => return Some(instruction),
            (Seen::New, Err(reject)) => self.reject(raw, record, Some(id), reject),
            (Seen::Duplicate(first_position), _) => {
                self.out.stats.duplicates += 1;
                self.out.duplicates.push(DuplicateRecord { position: record.position, id, first_position });
            }
            (Seen::Conflict(first), _) => {
                let message = format!("id {id} was first delivered at position {first} with different content");
                self.reject(raw, record, Some(id), Reject::field(RejectReason::DuplicateConflict, "id", message));
            }
        }
        None
    }

    fn reject(&mut self, raw: &RawBatch, record: RawRecord, id: Option<CompactString>, reject: Reject) {
        self.out.stats.reject(reject.reason);
        self.out.rejects.push(RejectRecord::new(record.position, id, reject, raw.payload(&record)));
    }
}
