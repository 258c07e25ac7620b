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
    while let Some(parts) = next_parts(&inputs) {
        let raw = Arc::clone(&parts[0].raw);
        for (index, instruction) in in_input_order(parts) {
            let record = raw.records[index as usize];
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
                    rejects.push(RejectRecord::new(record.position, Some(id), reject, raw.payload(&record)));
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

/// The parts' instructions merged back into input order, each moved once. An instruction is
/// about 250 bytes: concatenating the parts and sorting them moved each one a dozen times,
/// which showed in profiles as a tenth of all copying.
fn in_input_order(parts: Vec<ShardBatch>) -> impl Iterator<Item = (u32, Instruction)> {
    let mut heads: Vec<std::vec::IntoIter<(u32, Instruction)>> =
        parts.into_iter().map(|p| p.items.into_iter()).collect();
    std::iter::from_fn(move || {
        let (_, part) = heads.iter().enumerate().filter_map(|(p, h)| Some((h.as_slice().first()?.0, p))).min()?;
        heads[part].next()
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
            clearhouse_domain::Parsed::Valid { instruction, .. } => instruction,
            other => panic!("not valid: {other:?}"),
        }
        };
        let part = |indexes: &[u32]| ShardBatch {
            raw: Arc::clone(&raw),
            items: indexes.iter().map(|&i| (i, instruction(&format!("c-{i}")))).collect(),
        };
        let merged: Vec<(u32, String)> =
            in_input_order(vec![part(&[0, 3, 4, 9]), part(&[]), part(&[1, 2, 7]), part(&[5, 6, 8])])
                .map(|(i, ins)| (i, ins.id.to_string()))
                .collect();
        let expected: Vec<(u32, String)> = (0..10).map(|i| (i, format!("c-{i}"))).collect();
        assert_eq!(merged, expected);
    }
}
