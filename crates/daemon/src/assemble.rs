//! The window assembler: when every partition of the input topic has sealed a window, it merges
//! their parts into the window's files and publishes its credits and its window-closed event.
//!
//! Any instance may assemble; an exclusive lock on `<state>/<topic>/assembler.lock` makes it one
//! at a time. Each step is idempotent: the files are deterministic and the store refuses
//! different content, and a publication records the credits topic's end offsets before its first
//! message, so after a crash it reads back what already reached the topic and sends only the rest.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clearhouse_domain::{SettledBatch, WindowId};
use clearhouse_engine::stream::{seal_of, Seal, SealedPart};
use clearhouse_formats::events::{credit_messages, window_message};
use clearhouse_formats::{window_files, DirStore, Fences, Manifest, OutputStore, WindowMeta};
use clearhouse_kafka::TopicWriter;
use crossbeam_channel::Receiver;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::readback::{end_offsets, messages_since, reader};
use crate::state_dir::StateDir;
use crate::{telemetry, DaemonError, Settings};

const TIMEOUT: Duration = Duration::from_secs(30);
/// Most windows published in one round (bounds what a round holds in memory).
const MAX_WINDOWS_PER_ROUND: usize = 64;

/// The manifest fences of a window from each partition's seal of it, in partition order.
pub(crate) fn fences(topic: &str, seals: &[Seal]) -> Fences {
    let input = |p: usize| format!("{topic}/{p}");
    Fences {
        positions: seals.iter().enumerate().map(|(p, s)| (input(p), s.fence)).collect(),
        sealed_before: seals.iter().enumerate().map(|(p, s)| (input(p), s.closed_before.to_string())).collect(),
    }
}

pub(crate) struct Assembler {
    settings: Arc<Settings>,
    state: StateDir,
    store: DirStore,
    client: BaseConsumer,
    writer: TopicWriter,
    /// When this instance first found each pending window sealed by every partition.
    sealed_at: HashMap<WindowId, Instant>,
}

impl Assembler {
    pub(crate) fn new(settings: Arc<Settings>, state: StateDir) -> Result<Assembler, DaemonError> {
        let store = DirStore::create(&settings.out_dir)?;
        let client = reader(&settings, "assembler")?;
        let writer = TopicWriter::new(&settings.kafka, &settings.credits_topic)?;
        Ok(Assembler { settings, state, store, client, writer, sealed_at: HashMap::new() })
    }

    /// Assembles whenever woken (or every second) until `shutdown`, then once more.
    pub(crate) fn run(mut self, wake: Receiver<()>, shutdown: &AtomicBool) {
        loop {
            let stopping = shutdown.load(Ordering::Relaxed);
            if let Err(e) = self.pass() {
                tracing::error!(error = crate::error_chain(&e), "window assembly failed; will retry");
            }
            if stopping {
                return;
            }
            let _ = wake.recv_timeout(Duration::from_secs(1));
        }
    }

    /// Emits every window that all partitions have sealed and that was not emitted yet: writes
    /// each window's files, then publishes the sealed windows together, [`MAX_WINDOWS_PER_ROUND`]
    /// at a time (one read-back, one end-offset fetch and one flush per topic per round, instead
    /// of per window: a backlog of a hundred windows went out at one a second before).
    fn pass(&mut self) -> Result<(), DaemonError> {
        let lock = self.state.assembler_lock()?;
        if lock.try_lock().is_err() {
            // Another instance assembles and reports what is pending; this one has nothing.
            telemetry::pending_windows(0, None);
            self.sealed_at.clear();
            return Ok(());
        }
        let topic = self.settings.input_topic.clone();
        let metadata = self.client.fetch_metadata(Some(&topic), TIMEOUT)?;
        let partitions = metadata.topics().first().map_or(0, |t| t.partitions().len()) as i32;
        let mut progress = Vec::new();
        for p in 0..partitions {
            match self.state.progress(p)? {
                Some(pr) => progress.push(pr),
                None => return Ok(()),
            }
        }
        let mut pending = Vec::new();
        for window in self.state.windows_with_parts()? {
            if self.state.emitted(window)?.read("window.done")?.is_some() {
                continue;
            }
            pending.push(window);
        }
        telemetry::pending_windows(pending.len(), pending.first().map(|w| w.end()));
        let mut round = Vec::new();
        for window in pending {
            let seals: Option<Vec<Seal>> = progress.iter().map(|pr| seal_of(&pr.seals, window)).collect();
            let Some(seals) = seals else { continue };
            self.sealed_at.entry(window).or_insert_with(Instant::now);
            let Some(mut batches) = self.parts(window, &seals)? else { continue };
            clearhouse_engine::sort_batches(&mut batches);
            let fences = fences(&topic, &seals);
            round.push(self.write_files(window, &batches, fences)?);
            if round.len() == MAX_WINDOWS_PER_ROUND {
                self.publish(std::mem::take(&mut round))?;
            }
        }
        if !round.is_empty() {
            self.publish(round)?;
        }
        drop(lock);
        Ok(())
    }

    /// The batches of `window` from every partition's part ([`match_parts`]); a mismatch is
    /// reported (log line and `clearhouse_assembly_errors_total`) and the window is not emitted.
    fn parts(&self, window: WindowId, seals: &[Seal]) -> Result<Option<Vec<SettledBatch>>, DaemonError> {
        match match_parts(seals, |p| self.state.part(window, p))? {
            Ok(batches) => Ok(Some(batches)),
            Err((partition, fence, problem)) => {
                telemetry::assembly_error(&window.to_string(), partition, fence, &problem);
                Ok(None)
            }
        }
    }

    /// Writes the window's files (deterministic; the store refuses other content under a name
    /// already written) and returns what is to be published for it.
    fn write_files(
        &mut self,
        window: WindowId,
        batches: &[SettledBatch],
        fences: Fences,
    ) -> Result<Ready, DaemonError> {
        let settings = Arc::clone(&self.settings);
        let meta = WindowMeta::new(&settings.calendar, &settings.calendar.window(window));
        let files = window_files(&meta, batches, fences, &settings.debtor);
        let manifest_bytes = &files.last().expect("a manifest").bytes;
        let manifest: Manifest = serde_json::from_slice(manifest_bytes).expect("own manifest parses");
        for file in &files {
            self.store.put(&file.name, &file.bytes)?;
        }
        let credits = credit_messages(&meta, batches);
        let event = window_message(&manifest, credits.len());
        Ok(Ready { window, batches: batches.len(), credits, event })
    }

    /// Publishes a round of windows: every window's credits, then (once they are all
    /// acknowledged) every window's event.
    fn publish(&mut self, mut round: Vec<Ready>) -> Result<(), DaemonError> {
        self.skip_published_before_this_state(&mut round)?;
        let settings = Arc::clone(&self.settings);
        let credits: Vec<_> = round.iter().map(|r| (r.window, r.credits.as_slice())).collect();
        let published = self.publish_once("credits", &settings.credits_topic, &credits)?;
        let events: Vec<_> = round.iter().map(|r| (r.window, std::slice::from_ref(&r.event))).collect();
        self.publish_once("window", &settings.windows_topic, &events)?;
        for (ready, published) in round.iter().zip(published) {
            let due = settings.calendar.window(ready.window).end + settings.grace;
            let latency = settings.clock.now().duration_since(due).try_into().unwrap_or(Duration::ZERO);
            let since_sealed = self.sealed_at.remove(&ready.window).map(|t| t.elapsed());
            let id = ready.window.to_string();
            telemetry::window_emitted(&id, ready.batches, ready.credits.len(), published, latency, since_sealed);
        }
        Ok(())
    }

    /// A window never started here whose window-closed event is already on the windows topic was
    /// published by an earlier state directory (lost, or replaced by a restore): publishing it
    /// again would pay its payees twice, so it is marked done and dropped from the round. The
    /// windows topic holds one message per window, so reading it once per round is cheap.
    fn skip_published_before_this_state(&mut self, round: &mut Vec<Ready>) -> Result<(), DaemonError> {
        let mut unstarted = HashSet::new();
        for ready in round.iter() {
            let dir = self.state.emitted(ready.window)?;
            if dir.read("credits.start")?.is_none() && dir.read("window.done")?.is_none() {
                unstarted.insert(ready.window);
            }
        }
        if unstarted.is_empty() {
            return Ok(());
        }
        let topic = &self.settings.windows_topic;
        let events = messages_since(&self.client, topic, &BTreeMap::new(), TIMEOUT)?;
        let on_topic: HashSet<String> = events.into_iter().map(|(key, _)| key).collect();
        let mut kept = Vec::with_capacity(round.len());
        for ready in round.drain(..) {
            let window = ready.window;
            if !unstarted.contains(&window) || !on_topic.contains(&window.to_string()) {
                kept.push(ready);
                continue;
            }
            tracing::warn!(%window, "already on the windows topic, published before this state directory: not publishing again");
            let dir = self.state.emitted(window)?;
            dir.replace("credits.done", b"")?;
            dir.replace("window.done", b"")?;
            self.sealed_at.remove(&window);
        }
        *round = kept;
        Ok(())
    }

    /// Publishes each window's `messages` to `topic` once; returns how many of each window's
    /// were sent by this call.
    ///
    /// Per window, `<name>.start` records the topic's end offsets before its first message is
    /// sent and `<name>.done` that every message was acknowledged. A window started but not done
    /// (a crash in between) has its messages read back from its recorded start, and only those
    /// not on the topic are sent. One round shares one end-offset fetch (the offsets before any
    /// message of the round), one read-back (from the earliest start of its resumed windows;
    /// keys are unique per window, so reading more finds nothing wrong) and one flush.
    fn publish_once(
        &mut self,
        name: &str,
        topic: &str,
        windows: &[(WindowId, &[Message])],
    ) -> Result<Vec<usize>, DaemonError> {
        let (done, start_name) = (format!("{name}.done"), format!("{name}.start"));
        let mut todo = Vec::new();
        let mut resumed: Vec<BTreeMap<i32, i64>> = Vec::new();
        for (i, (window, _)) in windows.iter().enumerate() {
            let dir = self.state.emitted(*window)?;
            if dir.read(&done)?.is_some() {
                continue;
            }
            let start = match dir.read(&start_name)? {
                Some(bytes) => Some(
                    serde_json::from_slice(&bytes)
                        .map_err(|e| DaemonError::State(format!("{}: {e}", dir.path().join(&start_name).display())))?,
                ),
                None => None,
            };
            resumed.extend(start.clone());
            todo.push((i, dir, start.is_none()));
        }
        let mut sent = vec![0; windows.len()];
        if todo.is_empty() {
            return Ok(sent);
        }
        let present: HashSet<String> = match earliest(&resumed) {
            Some(from) => {
                messages_since(&self.client, topic, &from, TIMEOUT)?.into_iter().map(|(key, _)| key).collect()
            }
            None => HashSet::new(),
        };
        if todo.iter().any(|(_, _, fresh)| *fresh) {
            let start = serde_json::to_vec(&end_offsets(&self.client, topic, TIMEOUT)?).expect("offsets");
            for (_, dir, _) in todo.iter().filter(|(_, _, fresh)| *fresh) {
                dir.replace(&start_name, &start)?;
            }
        }
        for (i, _, _) in &todo {
            let (window, messages) = windows[*i];
            for (key, payload) in messages.iter().filter(|(key, _)| !present.contains(key)) {
                self.writer.send_to(topic, key.as_bytes(), payload)?;
                sent[*i] += 1;
            }
            if sent[*i] < messages.len() {
                let already = messages.len() - sent[*i];
                tracing::warn!(%window, topic, already, sent = sent[*i], "resumed an interrupted publication");
            }
        }
        self.writer.flush(TIMEOUT)?;
        for (_, dir, _) in &todo {
            dir.replace(&done, b"")?;
        }
        Ok(sent)
    }
}

/// A message to publish: key and payload.
type Message = (String, Vec<u8>);

/// What is published for one window.
struct Ready {
    window: WindowId,
    batches: usize,
    credits: Vec<(String, Vec<u8>)>,
    event: (String, Vec<u8>),
}

/// Per partition, the earliest of the recorded start offsets (a partition one of them does not
/// name is read from the beginning); `None` when there are none.
fn earliest(starts: &[BTreeMap<i32, i64>]) -> Option<BTreeMap<i32, i64>> {
    let partitions: std::collections::BTreeSet<i32> = starts.iter().flat_map(|s| s.keys().copied()).collect();
    (!starts.is_empty()).then(|| {
        partitions
            .into_iter()
            .map(|p| (p, starts.iter().map(|s| s.get(&p).copied().unwrap_or(0)).min().unwrap_or(0)))
            .collect()
    })
}

/// A partition's part of a window that does not match the seal its checkpoint recorded:
/// `(partition, recorded fence, what is wrong)`.
type Mismatch = (i32, u64, String);

/// Every partition's batches of a window. A partition writes its part of W (with its fence)
/// before the checkpoint that records W's seal, so a part at another fence than the recorded one
/// is damaged state, and the window must not be emitted without or with the wrong batches. No
/// part at all means the partition never had an instruction in W (it cannot know the windows of
/// other partitions, so it writes nothing for them).
fn match_parts<E>(
    seals: &[Seal],
    mut part_of: impl FnMut(i32) -> Result<Option<SealedPart>, E>,
) -> Result<Result<Vec<SettledBatch>, Mismatch>, E> {
    let mut batches = Vec::new();
    for (p, seal) in seals.iter().enumerate() {
        let p = p as i32;
        match part_of(p)? {
            Some(part) if part.fence == seal.fence => batches.extend(part.batches),
            Some(part) => return Ok(Err((p, seal.fence, format!("its part has fence {}", part.fence)))),
            None => {}
        }
    }
    Ok(Ok(batches))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_part_at_another_fence_is_a_mismatch_never_a_silent_skip() {
        let window: WindowId = "20261121T1500Z".parse().expect("id");
        let closed_before = window.end();
        let seals = [Seal { closed_before, fence: 10 }, Seal { closed_before, fence: 20 }];
        let part = |fence| Some(SealedPart { window, fence, batches: Vec::new() });
        let all = match_parts::<()>(&seals, |p| Ok(part(if p == 0 { 10 } else { 20 }))).expect("read");
        assert_eq!(all, Ok(Vec::new()));
        let stale = match_parts::<()>(&seals, |p| Ok(part(if p == 0 { 10 } else { 19 }))).expect("read");
        assert_eq!(stale, Err((1, 20, "its part has fence 19".to_owned())));
        let quiet = match_parts::<()>(&seals, |p| Ok(if p == 0 { part(10) } else { None })).expect("read");
        assert_eq!(quiet, Ok(Vec::new()), "a partition with nothing in the window wrote no part");
    }
}
