//! One netting shard: a `Netter` fed in input order, plus the rejects it produced.

use std::sync::Arc;

use clearhouse_domain::{Calendar, Instruction, Netter, Parsed, Placement, Policy, SettledBatch, Window, WindowId};
use clearhouse_ingest::RawBatch;
use crossbeam_channel::Receiver;

use crate::presize::Presize;

use clearhouse_domain::{RejectRecord, Stats};

/// Work for one shard from one router: of the router's messages (each with its record index
/// in `raw`, in input order), the ones that are valid first deliveries of this shard's
/// merchants, by their index in `items`.
pub(crate) struct ShardBatch {
    pub(crate) raw: Arc<RawBatch>,
    pub(crate) items: Arc<Vec<(u32, Parsed)>>,
    pub(crate) picked: Vec<u32>,
}

impl ShardBatch {
    /// The `n`-th picked message: its record index and instruction.
    fn pick(&self, n: usize) -> Option<(u32, &Instruction)> {
        let (record, parsed) = &self.items[*self.picked.get(n)? as usize];
        match parsed {
            Parsed::Valid { instruction, .. } => Some((*record, instruction)),
            Parsed::Invalid { .. } => unreachable!("a router picks only valid messages for netting"),
        }
    }
}

/// What a shard hands back when its input ends.
pub(crate) struct ShardOutput {
    pub(crate) windows: Vec<(WindowId, Vec<SettledBatch>)>,
    pub(crate) rejects: Vec<RejectRecord>,
    pub(crate) stats: Stats,
}

/// Nets everything received, then closes every window (file mode: pure event time). `inputs`
/// has one channel per router; each sends one message per source batch, in input order. With
/// `presize`, the history tables are sized for the whole input once a part of it is netted.
pub(crate) fn run_shard(
    inputs: Vec<Receiver<ShardBatch>>,
    (calendar, policy): (&Calendar, Arc<Policy>),
    mut presize: Presize,
) -> ShardOutput {
    let mut netter = Netter::new(policy);
    let mut rejects = Vec::new();
    let mut stats = Stats::default();
    let mut window_cache: Option<Window> = None;
    while let Some(parts) = next_parts(&inputs) {
        let raw = Arc::clone(&parts[0].raw);
        let placed = in_input_order(&parts).map(|(index, instruction)| {
            let window = match window_cache {
                Some(w) if w.contains(instruction.event_time) => w,
                _ => *window_cache.insert(calendar.window_of(instruction.event_time)),
            };
            let record = raw.records[index as usize];
            (record.position, instruction, Placement::of(calendar, window, None), record)
        });
        netter.apply_all(placed, |record, instruction, result| match result {
            Ok(()) => stats.accepted += 1,
            Err(reject) => {
                stats.reject(reject.reason);
                let id = Some(instruction.id.clone());
                rejects.push(RejectRecord::new(record.position, id, reject, raw.payload(&record)));
            }
        });
        if let Some(growth) = presize.observe(&raw) {
            netter.reserve_history(|len| growth.expected(len));
        }
    }
    let mut windows = Vec::new();
    while let Some(closed) = netter.close_earliest() {
        windows.push(closed);
    }
    ShardOutput { windows, rejects, stats }
}

/// The next source batch's instructions for this shard: one part from every router, each in
/// input order; `None` once the routers are done (they all end after the same batch, unless
/// one panicked, and that panic is what the run reports).
fn next_parts(inputs: &[Receiver<ShardBatch>]) -> Option<Vec<ShardBatch>> {
    let mut parts: Vec<ShardBatch> = Vec::with_capacity(inputs.len());
    for rx in inputs {
        let part = rx.recv().ok()?;
        if let Some(first) = parts.first() {
            assert!(Arc::ptr_eq(&part.raw, &first.raw), "routers out of step");
        }
        parts.push(part);
    }
    (!parts.is_empty()).then_some(parts)
}

/// The parts' instructions merged back into input order, borrowed where the parse put them.
/// An instruction is about 250 bytes; moving each into a shard's queue and out again showed
/// in profiles as a tenth of all copying.
fn in_input_order(parts: &[ShardBatch]) -> impl Iterator<Item = (u32, &Instruction)> {
    let mut next = vec![0usize; parts.len()];
    std::iter::from_fn(move || {
        let (record, p) = parts.iter().enumerate().filter_map(|(p, part)| Some((part.pick(next[p])?.0, p))).min()?;
        let picked = parts[p].pick(next[p]);
        next[p] += 1;
        debug_assert_eq!(picked.map(|(r, _)| r), Some(record));
        picked
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_merge_back_into_input_order() {
        let raw = Arc::new(RawBatch::default());
        let instruction = |id: &str| {
            match clearhouse_domain::parse(
            format!(r#"{{"type":"capture","id":"{id}","merchant_id":"m","amount":"1.00","currency":"USD","event_time":"2026-11-21T10:00:00Z"}}"#).as_bytes(),
        ) {
            valid @ clearhouse_domain::Parsed::Valid { .. } => valid,
            other => panic!("not valid: {other:?}"),
        }
        };
        // Each part also holds a message not picked for this shard (record 100 + i).
        let part = |indexes: &[u32]| {
            let mut items: Vec<(u32, Parsed)> = Vec::new();
            let mut picked = Vec::new();
            for &i in indexes {
                items.push((100 + i, instruction(&format!("other-{i}"))));
                picked.push(items.len() as u32);
                items.push((i, instruction(&format!("c-{i}"))));
            }
            ShardBatch { raw: Arc::clone(&raw), items: Arc::new(items), picked }
        };
        let parts = [part(&[0, 3, 4, 9]), part(&[]), part(&[1, 2, 7]), part(&[5, 6, 8])];
        let merged: Vec<(u32, String)> = in_input_order(&parts).map(|(i, ins)| (i, ins.id.to_string())).collect();
        let expected: Vec<(u32, String)> = (0..10).map(|i| (i, format!("c-{i}"))).collect();
        assert_eq!(merged, expected);
    }
}
