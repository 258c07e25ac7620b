//! `clearhouse replay`: re-drives the instruction topic through the same per-partition engine
//! as `run` and writes the windows again, into a directory of their own.
//!
//! A window's content depends on where each partition sealed it, and `run` may seal on the wall
//! clock, which a replay cannot see. So the replay reads the original manifests: for every
//! partition, each window's fence (the first offset not in it) and where that seal closed
//! windows up to (`sealed_before`), and applies those seals at the same offsets; seals made by
//! event time happen again by themselves. Each partition is read from its beginning, because
//! the netting state a window starts from (refund history, carried debt, de-duplication) is
//! built from everything before it. Windows the original never closed are sealed by event time
//! only, and said to be. Nothing is committed, nothing is published, and the live output and
//! state are only read.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use clearhouse_domain::{SettledBatch, WindowId};
use clearhouse_engine::stream::{seal_of, Message, Seal, SealedPart};
use clearhouse_formats::events::credit_messages;
use clearhouse_formats::{encode_window, DirStore, OutputStore, WindowMeta};
use jiff::Timestamp;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};

use crate::assemble::fences;
use crate::readback::reader;
use crate::{DaemonError, Settings};

mod original;
mod partition;

use original::recorded;
pub use original::{original_seals, recorded_in, Original, OriginalSeals, Recorded};
pub use partition::{PartitionReplay, Replayed};

const TIMEOUT: Duration = Duration::from_secs(10);

/// Where a replay range starts or ends on each partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bound {
    /// An offset, the same on every partition.
    Offset(i64),
    /// Offsets of some partitions; the others are not bounded (a `from` bound selects no window
    /// through them, a `to` bound reads them to their end).
    Offsets(BTreeMap<i32, i64>),
    /// The first offset at or after this instant (the broker's message timestamps).
    Time(Timestamp),
}

/// What to replay.
#[derive(Debug, Clone)]
pub struct ReplayRequest {
    /// Where the fences and seals of the original run come from.
    pub original: Original,
    /// Where the regenerated windows go.
    pub out: PathBuf,
    /// Only windows holding data at or after this bound on some partition.
    pub from: Option<Bound>,
    /// Read each partition up to this bound (exclusive); the high watermark without it.
    pub to: Option<Bound>,
    /// Keep each window's credit messages, for `replay --emit`.
    pub keep_credits: bool,
}

/// One regenerated window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayedWindow {
    /// Window id.
    pub window: WindowId,
    /// Batches in it.
    pub batches: usize,
    /// True when its seals came from an original manifest, false for event time only.
    pub from_manifest: bool,
    /// Its credit messages (key, payload), when the request keeps them.
    pub credits: Vec<(String, Vec<u8>)>,
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Messages read, over all partitions.
    pub messages: u64,
    /// Windows written, oldest first.
    pub windows: Vec<ReplayedWindow>,
    /// Windows with data that did not close within the range, on some partition.
    pub open: Vec<WindowId>,
}

/// Resolves `bound` on every partition to an offset, `None` where it does not bound it.
fn offsets(
    consumer: &BaseConsumer,
    topic: &str,
    partitions: i32,
    bound: &Bound,
) -> Result<Vec<Option<i64>>, DaemonError> {
    match bound {
        Bound::Offset(o) => Ok(vec![Some(*o); partitions as usize]),
        Bound::Offsets(map) => Ok((0..partitions).map(|p| map.get(&p).copied()).collect()),
        Bound::Time(t) => {
            let mut tpl = TopicPartitionList::new();
            for p in 0..partitions {
                tpl.add_partition_offset(topic, p, Offset::Offset(t.as_millisecond()))?;
            }
            let found = consumer.offsets_for_times(tpl, TIMEOUT)?;
            (0..partitions)
                .map(|p| match found.find_partition(topic, p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => Ok(Some(o)),
                    // No message at or after the instant: the partition's end.
                    _ => Ok(Some(consumer.fetch_watermarks(topic, p, TIMEOUT)?.1)),
                })
                .collect()
        }
    }
}

/// Replays the topic of `settings` as `request` says; see the module docs.
pub fn replay(settings: &Settings, request: &ReplayRequest) -> Result<ReplayReport, DaemonError> {
    let consumer = reader(settings, "replay")?;
    let topic = &settings.input_topic;
    let metadata = consumer.fetch_metadata(Some(topic), TIMEOUT)?;
    let partitions = metadata.topics().first().map_or(0, |t| t.partitions().len()) as i32;
    if partitions == 0 {
        return Err(DaemonError::State(format!("topic {topic} has no partitions")));
    }
    let to = match &request.to {
        Some(bound) => offsets(&consumer, topic, partitions, bound)?,
        None => vec![None; partitions as usize],
    };
    let ends = (0..partitions)
        .map(|p| match to[p as usize] {
            Some(end) => Ok(end),
            None => Ok(consumer.fetch_watermarks(topic, p, TIMEOUT)?.1),
        })
        .collect::<Result<Vec<i64>, DaemonError>>()?;
    let starts: Option<Vec<i64>> = match &request.from {
        Some(bound) => {
            Some(offsets(&consumer, topic, partitions, bound)?.into_iter().map(|o| o.unwrap_or(i64::MAX)).collect())
        }
        None => None,
    };
    let manifests = recorded(settings, &request.original, &consumer)?;
    let seals = original_seals(settings, &manifests, partitions);
    let mut replayed = Vec::new();
    for p in 0..partitions {
        replayed.push(replay_partition(&consumer, settings, p, ends[p as usize], &seals[p as usize])?);
    }
    let store = DirStore::create(&request.out)?;
    let wanted = |window_seals: &[Seal]| {
        starts.as_ref().is_none_or(|s| window_seals.iter().zip(s).any(|(seal, &from)| seal.fence as i64 > from))
    };
    write_windows(settings, &store, &replayed, &manifests, wanted, request.keep_credits)
}

/// Writes every window the replayed partitions all sealed and `wanted` selects (by its seals,
/// in partition order) into `store`; windows some partition did not seal are reported open.
/// A file that exists with other bytes is an error, never replaced.
pub fn write_windows(
    settings: &Settings,
    store: &dyn OutputStore,
    replayed: &[Replayed],
    recorded: &Recorded,
    wanted: impl Fn(&[Seal]) -> bool,
    keep_credits: bool,
) -> Result<ReplayReport, DaemonError> {
    let mut report = ReplayReport { messages: replayed.iter().map(|r| r.read).sum(), ..ReplayReport::default() };
    let parts: Vec<&[SealedPart]> = replayed.iter().map(|r| r.parts.as_slice()).collect();
    let windows: BTreeSet<WindowId> = parts.iter().copied().flatten().map(|part| part.window).collect();
    for window in windows {
        let Some(window_seals) = replayed.iter().map(|r| seal_of(&r.seals, window)).collect::<Option<Vec<Seal>>>()
        else {
            report.open.push(window);
            continue;
        };
        if !wanted(&window_seals) {
            continue;
        }
        let batches = window_batches(&parts, window);
        let credits = write_window(settings, store, window, &batches, &window_seals, keep_credits)?;
        let from_manifest = recorded.contains_key(&window);
        report.windows.push(ReplayedWindow { window, batches: batches.len(), from_manifest, credits });
    }
    Ok(report)
}

/// Every partition's batches of `window`, in file order.
fn window_batches(parts: &[&[SealedPart]], window: WindowId) -> Vec<SettledBatch> {
    let mut batches: Vec<SettledBatch> = Vec::new();
    for partition_parts in parts {
        let of_window = partition_parts.iter().filter(|part| part.window == window);
        batches.extend(of_window.flat_map(|part| part.batches.clone()));
    }
    clearhouse_engine::sort_batches(&mut batches);
    batches
}

/// Writes a window's files into `store` (refusing, as an error, to replace a file with other
/// bytes); returns its credit messages when `keep_credits`.
fn write_window(
    settings: &Settings,
    store: &dyn OutputStore,
    window: WindowId,
    batches: &[SettledBatch],
    seals: &[Seal],
    keep_credits: bool,
) -> Result<Vec<(String, Vec<u8>)>, DaemonError> {
    let meta = WindowMeta::new(&settings.calendar, &settings.calendar.window(window));
    let fences = fences(&settings.input_topic, seals);
    let (files, _) = encode_window(&meta, batches, fences, (&settings.debtor, &|| store.draft()))?;
    for file in files {
        store.publish_draft(&file.name, file.draft)?;
    }
    Ok(if keep_credits { credit_messages(&meta, batches) } else { Vec::new() })
}

/// Reads partition `p` from its beginning to `end`, sealing at the original seals.
fn replay_partition(
    consumer: &BaseConsumer,
    settings: &Settings,
    p: i32,
    end: i64,
    seals: &OriginalSeals,
) -> Result<Replayed, DaemonError> {
    let topic = &settings.input_topic;
    let (low, _) = consumer.fetch_watermarks(topic, p, TIMEOUT)?;
    let mut replay = PartitionReplay::new(settings, seals);
    if low < end {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, p, Offset::Offset(low))?;
        consumer.assign(&tpl)?;
        let mut next = low;
        while next < end {
            let Some(message) = consumer.poll(TIMEOUT) else {
                return Err(DaemonError::State(format!("{topic}/{p}: no message at offset {next} within {TIMEOUT:?}")));
            };
            let message = message?;
            let offset = message.offset();
            if offset >= end {
                break;
            }
            replay.message(Message {
                offset: offset as u64,
                key: message.key(),
                timestamp: crate::record_time(message.timestamp()),
                payload: message.payload().unwrap_or_default(),
            });
            next = offset + 1;
        }
    }
    Ok(replay.finish(end.max(0) as u64))
}
