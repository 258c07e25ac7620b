//! The window assembler: when every partition of the input topic has sealed a window, it merges
//! their parts into the window's files and publishes its credits and its window-closed event.
//!
//! Any instance may assemble; an exclusive lock on `<state>/<topic>/assembler.lock` makes it one
//! at a time. Each step is idempotent: the files are deterministic and the store refuses
//! different content, and a publication records the credits topic's end offsets before its first
//! message, so after a crash it reads back what already reached the topic and sends only the rest.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

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
}

impl Assembler {
    pub(crate) fn new(settings: Arc<Settings>, state: StateDir) -> Result<Assembler, DaemonError> {
        let store = DirStore::create(&settings.out_dir)?;
        let client = reader(&settings, "assembler")?;
        let writer = TopicWriter::new(&settings.kafka, &settings.credits_topic)?;
        Ok(Assembler { settings, state, store, client, writer })
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

    /// Emits every window that all partitions have sealed and that was not emitted yet.
    fn pass(&mut self) -> Result<(), DaemonError> {
        let lock = self.state.assembler_lock()?;
        if lock.try_lock().is_err() {
            // Another instance assembles and reports what is pending; this one has nothing.
            telemetry::pending_windows(0, None);
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
        for window in pending {
            let seals: Option<Vec<Seal>> = progress.iter().map(|pr| seal_of(&pr.seals, window)).collect();
            let Some(seals) = seals else { continue };
            let Some(mut batches) = self.parts(window, &seals)? else { continue };
            clearhouse_engine::sort_batches(&mut batches);
            let fences = fences(&topic, &seals);
            self.emit(window, &batches, fences)?;
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

    fn emit(&mut self, window: WindowId, batches: &[SettledBatch], fences: Fences) -> Result<(), DaemonError> {
        let settings = Arc::clone(&self.settings);
        let meta = WindowMeta::new(&settings.calendar, &settings.calendar.window(window));
        let files = window_files(&meta, batches, fences, &settings.debtor);
        let manifest_bytes = &files.last().expect("a manifest").bytes;
        let manifest: Manifest = serde_json::from_slice(manifest_bytes).expect("own manifest parses");
        for file in &files {
            self.store.put(&file.name, &file.bytes)?;
        }
        let credits = credit_messages(&meta, batches);
        if self.published_before_this_state(window)? {
            return Ok(());
        }
        let published = self.publish_once(window, "credits", &settings.credits_topic, &credits)?;
        let event = window_message(&manifest, credits.len());
        self.publish_once(window, "window", &settings.windows_topic, std::slice::from_ref(&event))?;
        let due = settings.calendar.window(window).end + settings.grace;
        let latency = settings.clock.now().duration_since(due).try_into().unwrap_or(Duration::ZERO);
        telemetry::window_emitted(&window.to_string(), batches.len(), credits.len(), published, latency);
        Ok(())
    }

    /// A window never started here whose window-closed event is already on the windows topic was
    /// published by an earlier state directory (lost, or replaced by a restore): publishing it
    /// again would pay its payees twice, so it is marked done instead. The windows topic holds
    /// one message per window, so reading it is cheap.
    fn published_before_this_state(&mut self, window: WindowId) -> Result<bool, DaemonError> {
        let dir = self.state.emitted(window)?;
        if dir.read("credits.start")?.is_some() || dir.read("window.done")?.is_some() {
            return Ok(false);
        }
        let topic = &self.settings.windows_topic;
        let id = window.to_string();
        let events = messages_since(&self.client, topic, &BTreeMap::new(), TIMEOUT)?;
        if !events.iter().any(|(key, _)| *key == id) {
            return Ok(false);
        }
        tracing::warn!(%window, "already on the windows topic, published before this state directory: not publishing again");
        dir.replace("credits.done", b"")?;
        dir.replace("window.done", b"")?;
        Ok(true)
    }

    /// Publishes `messages` to `topic` once: returns how many were sent by this call.
    fn publish_once(
        &mut self,
        window: WindowId,
        name: &str,
        topic: &str,
        messages: &[(String, Vec<u8>)],
    ) -> Result<usize, DaemonError> {
        let dir = self.state.emitted(window)?;
        let (done, start_name) = (format!("{name}.done"), format!("{name}.start"));
        if dir.read(&done)?.is_some() {
            return Ok(0);
        }
        let present = match dir.read(&start_name)? {
            Some(bytes) => {
                let start: BTreeMap<i32, i64> = serde_json::from_slice(&bytes)
                    .map_err(|e| DaemonError::State(format!("{}: {e}", dir.path().join(&start_name).display())))?;
                messages_since(&self.client, topic, &start, TIMEOUT)?.into_iter().map(|(key, _)| key).collect()
            }
            None => {
                let start = end_offsets(&self.client, topic, TIMEOUT)?;
                dir.replace(&start_name, &serde_json::to_vec(&start).expect("offsets"))?;
                HashSet::new()
            }
        };
        let mut sent = 0;
        for (key, payload) in messages.iter().filter(|(key, _)| !present.contains(key)) {
            self.writer.send_to(topic, key.as_bytes(), payload)?;
            sent += 1;
        }
        self.writer.flush(TIMEOUT)?;
        if !present.is_empty() {
            tracing::warn!(%window, topic, already = present.len(), sent, "resumed an interrupted publication");
        }
        dir.replace(&done, b"")?;
        Ok(sent)
    }
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
