//! The sequencer: the one stage that sees batches one after another. Parse workers finish
//! batches in any order; the sequencer puts them back in input order and hands each router its
//! part. Its work per batch is a reorder-buffer insert and one send per router, whatever the
//! number of messages in it: everything per message happens in parallel stages.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use clearhouse_domain::Parsed;
use clearhouse_ingest::RawBatch;
use crossbeam_channel::{Receiver, Sender};

use crate::router::PartBatch;

/// A source batch after parsing: its position in the source, and its messages split by router
/// part (each part in input order, with each message's index in `raw`).
pub(crate) struct ParsedBatch {
    pub(crate) index: u64,
    pub(crate) raw: Arc<RawBatch>,
    pub(crate) parts: Vec<Vec<(u32, Parsed)>>,
}

/// Forwards every batch from `rx` to the routers in input order; returns the source position of
/// the last message (0 when none) once the parse workers are done, or early when a router has
/// stopped (only a panic stops one, and that panic is what the run reports).
pub(crate) fn sequence(rx: Receiver<ParsedBatch>, routers: Vec<Sender<PartBatch>>, progress: &AtomicU64) -> u64 {
    let mut reorder: BTreeMap<u64, ParsedBatch> = BTreeMap::new();
    let mut next = 0u64;
    let mut last_position = 0;
    for batch in rx {
        reorder.insert(batch.index, batch);
        while let Some(batch) = reorder.remove(&next) {
            next += 1;
            assert_eq!(batch.parts.len(), routers.len(), "a batch split for another number of routers");
            let records = batch.raw.records.len() as u64;
            last_position = batch.raw.records.last().map_or(last_position, |r| r.position);
            for (items, router) in batch.parts.into_iter().zip(&routers) {
                let part = PartBatch { raw: Arc::clone(&batch.raw), items };
                if router.send(part).is_err() {
                    return last_position;
                }
            }
            progress.fetch_add(records, Ordering::Relaxed);
        }
    }
    assert!(reorder.is_empty(), "parse workers skipped batch {next}");
    last_position
}
