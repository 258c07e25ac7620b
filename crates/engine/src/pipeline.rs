//! Wiring of the file-mode pipeline: threads, bounded channels, in-order routing.

use std::io;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use clearhouse_domain::parse::guard_event_time;
use clearhouse_domain::{parse, too_large, Calendar, Policy};
use clearhouse_ingest::RawBatch;
use crossbeam_channel::{bounded, Receiver, Sender};
use jiff::{SignedDuration, Timestamp};

use crate::presize::Presize;
use crate::router::{part_of, route, PartBatch, RouterOutput};
use crate::sequencer::{sequence, ParsedBatch};
use crate::shard::{run_shard, ShardBatch, ShardOutput};
use crate::{merge_windows, ClosedWindow, EngineConfig, EngineResult};

/// Failures that stop a run (bad input records never do: they become rejects).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The source could not be read.
    #[error("reading input failed")]
    Input(#[source] io::Error),
}

/// Nets a whole finite input and closes every window at the end (file mode).
pub fn net_all<I>(
    input: I,
    calendar: &Calendar,
    policy: Arc<Policy>,
    config: &EngineConfig,
    progress: &AtomicU64,
) -> Result<EngineResult, EngineError>
where
    I: Iterator<Item = io::Result<RawBatch>> + Send,
{
    assert!(config.shards > 0 && config.parse_threads > 0 && config.queue_batches > 0, "engine sizes must be positive");
    // As many routers as shards: the id space and the merchants are split the same number of ways.
    let routers = config.shards;
    let (raw_tx, raw_rx) = bounded::<(u64, RawBatch)>(config.queue_batches);
    let (parsed_tx, parsed_rx) = bounded::<ParsedBatch>(config.queue_batches);
    let (part_txs, part_rxs): (Vec<_>, Vec<_>) =
        (0..routers).map(|_| bounded::<PartBatch>(config.queue_batches)).unzip();
    let (shard_links, shard_inputs) = mesh(routers, config.shards, config.queue_batches);
    std::thread::scope(|scope| {
        for _ in 0..config.parse_threads {
            let (rx, tx) = (raw_rx.clone(), parsed_tx.clone());
            let now = config.now;
            scope.spawn(move || parse_worker(rx, tx, now, routers));
        }
        drop((raw_rx, parsed_tx));
        let shards: Vec<_> = shard_inputs
            .into_iter()
            .map(|inputs| {
                let policy = Arc::clone(&policy);
                let presize = Presize::new(config.input_bytes);
                scope.spawn(move || run_shard(inputs, (calendar, policy), presize))
            })
            .collect();
        let routers: Vec<_> = part_rxs
            .into_iter()
            .zip(shard_links)
            .map(|(rx, links)| {
                let presize = Presize::new(config.input_bytes);
                scope.spawn(move || route(rx, links, presize))
            })
            .collect();
        let sequencer = scope.spawn(move || sequence(parsed_rx, part_txs, progress));
        let read_error = feed(input, raw_tx);
        let last_position = join(sequencer);
        let routed: Vec<RouterOutput> = routers.into_iter().map(join).collect();
        let outputs: Vec<ShardOutput> = shards.into_iter().map(join).collect();
        match read_error {
            Some(e) => Err(EngineError::Input(e)),
            None => Ok(assemble(routed, outputs, last_position, calendar)),
        }
    })
}

/// The channels between routers and shards: every router talks to every shard. Returns the
/// senders per router and the receivers per shard (in router order).
#[allow(clippy::type_complexity)]
fn mesh(
    routers: usize,
    shards: usize,
    capacity: usize,
) -> (Vec<Vec<Sender<ShardBatch>>>, Vec<Vec<Receiver<ShardBatch>>>) {
    let mut links: Vec<Vec<Sender<ShardBatch>>> = (0..routers).map(|_| Vec::new()).collect();
    let mut inputs: Vec<Vec<Receiver<ShardBatch>>> = (0..shards).map(|_| Vec::new()).collect();
    for router in &mut links {
        for shard in &mut inputs {
            let (tx, rx) = bounded::<ShardBatch>(capacity);
            router.push(tx);
            shard.push(rx);
        }
    }
    (links, inputs)
}

/// A stage's result; a stage that panicked (a broken invariant) stops the run with its panic.
fn join<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
    handle.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// Sends source batches to the parse workers; returns the read error that stopped it, if any.
fn feed<I: Iterator<Item = io::Result<RawBatch>>>(input: I, tx: Sender<(u64, RawBatch)>) -> Option<io::Error> {
    for (index, batch) in input.enumerate() {
        match batch {
            Ok(batch) => {
                if tx.send((index as u64, batch)).is_err() {
                    return None;
                }
            }
            Err(e) => return Some(e),
        }
    }
    None
}

/// Parses each batch and splits its messages by router part (`routers` parts).
fn parse_worker(
    rx: Receiver<(u64, RawBatch)>,
    tx: Sender<ParsedBatch>,
    now: Option<(Timestamp, SignedDuration)>,
    routers: usize,
) {
    for (index, raw) in rx {
        // Sized for an even split and a little more: a parsed message is about 300 bytes, and a
        // part grown by doubling copied each one about twice more.
        let share = raw.records.len() / routers;
        let mut parts: Vec<Vec<(u32, clearhouse_domain::Parsed)>> =
            (0..routers).map(|_| Vec::with_capacity(share + share / 16 + 8)).collect();
        for (i, r) in raw.records.iter().enumerate() {
            let parsed = match (raw.oversized(r), now) {
                (Some(o), _) => too_large(o.len, &o.sha256),
                (None, None) => parse(raw.payload(r)),
                (None, Some((now, skew))) => guard_event_time(parse(raw.payload(r)), now, skew, "the run's --now"),
            };
            parts[part_of(&parsed, r.position, routers)].push((i as u32, parsed));
        }
        if tx.send(ParsedBatch { index, raw: Arc::new(raw), parts }).is_err() {
            return;
        }
    }
}

fn assemble(
    routed: Vec<RouterOutput>,
    outputs: Vec<ShardOutput>,
    last_position: u64,
    calendar: &Calendar,
) -> EngineResult {
    let (mut rejects, mut duplicates, mut stats) = (Vec::new(), Vec::new(), clearhouse_domain::Stats::default());
    for router in routed {
        stats.add(&router.stats);
        rejects.extend(router.rejects);
        duplicates.extend(router.duplicates);
    }
    let mut parts = Vec::with_capacity(outputs.len());
    for output in outputs {
        stats.add(&output.stats);
        rejects.extend(output.rejects);
        parts.push(output.windows);
    }
    rejects.sort_by_key(|r| r.position);
    duplicates.sort_by_key(|d| d.position);
    let windows = merge_windows(parts)
        .into_iter()
        .map(|(id, batches)| ClosedWindow { window: calendar.window(id), batches })
        .collect::<Vec<_>>();
    let accepted: u64 = windows.iter().flat_map(|w| &w.batches).map(|b| b.details.len() as u64).sum();
    assert_eq!(accepted, stats.accepted, "accepted count differs from netted details");
    assert!(stats.balances(), "inputs not accounted for: {stats:?}");
    assert_eq!(rejects.len() as u64, stats.rejected_total());
    assert_eq!(duplicates.len() as u64, stats.duplicates);
    EngineResult { windows, rejects, duplicates, stats, last_position }
}
