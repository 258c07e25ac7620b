//! One netting shard: a `Netter` fed in input order, plus the rejects it produced.

use std::sync::Arc;

use clearhouse_domain::{Calendar, Instruction, Netter, Placement, Policy, SettledBatch, Window, WindowId};
use clearhouse_ingest::RawBatch;
use crossbeam_channel::Receiver;

use clearhouse_domain::{RejectRecord, Stats};

/// Work for one shard: instructions (with their record index in `raw`) of its merchants.
pub(crate) struct ShardBatch {
    pub(crate) raw: Arc<RawBatch>,
    pub(crate) items: Vec<(u32, Instruction)>,
}

/// What a shard hands back when its input ends.
pub(crate) struct ShardOutput {
    pub(crate) windows: Vec<(WindowId, Vec<SettledBatch>)>,
    pub(crate) rejects: Vec<RejectRecord>,
    pub(crate) stats: Stats,
}

/// Nets everything received, then closes every window (file mode: pure event time). `inputs`
/// has one channel per router; each sends one message per source batch, in input order.
pub(crate) fn run_shard(inputs: Vec<Receiver<ShardBatch>>, calendar: &Calendar, policy: Arc<Policy>) -> ShardOutput {
    let mut netter = Netter::new(policy);
    let mut rejects = Vec::new();
    let mut stats = Stats::default();
    let mut window_cache: Option<Window> = None;
    while let Some(batch) = next_batch(&inputs) {
        for (index, instruction) in batch.items {
            let record = batch.raw.records[index as usize];
            let window = match window_cache {
                Some(w) if w.contains(instruction.event_time) => w,
                _ => *window_cache.insert(calendar.window_of(instruction.event_time)),
            };
            let id = instruction.id.clone();
            let place = Placement::of(calendar, window, None);
            match netter.apply(record.position, instruction, place) {
                Ok(()) => stats.accepted += 1,
                Err(reject) => {
                    stats.reject(reject.reason);
                    rejects.push(RejectRecord::new(record.position, Some(id), reject, batch.raw.payload(&record)));
                }
            }
        }
    }
    let mut windows = Vec::new();
    while let Some(closed) = netter.close_earliest() {
        windows.push(closed);
    }
    ShardOutput { windows, rejects, stats }
}

/// The next source batch's instructions for this shard, from every router, merged back into
/// input order; `None` once the routers are done (they all end after the same batch, unless one
/// panicked, and that panic is what the run reports).
fn next_batch(inputs: &[Receiver<ShardBatch>]) -> Option<ShardBatch> {
    let mut parts = inputs.iter().map(|rx| rx.recv().ok());
    let mut merged = parts.next()??;
    for part in parts {
        let part = part?;
        assert!(Arc::ptr_eq(&part.raw, &merged.raw), "routers out of step");
        merged.items.extend(part.items);
    }
    if inputs.len() > 1 {
        merged.items.sort_unstable_by_key(|(index, _)| *index);
    }
    Some(merged)
}
