//! The window assembler: when every partition of the input topic has sealed a window, it merges
//! their parts into the window's files and publishes its credits and its window-closed event.
//!
//! Any instance may assemble; an exclusive lock on `<state>/<topic>/assembler.lock` makes it one
//! at a time. Each step is idempotent: the files are deterministic and the store refuses
//! different content, and a publication records the credits topic's end offsets before its first
//! message, so after a crash it reads back what already reached the topic and sends only the rest.
//! `replay --emit` publishes restored windows through the same [`Assembly::publish`].
//!
//! The decisions ([`Assembly`]) run against [`Topics`], [`AssemblyState`] and an `OutputStore`
//! (`io.rs`), so `clearhouse-sim` drives this code with its fault injector.

mod io;
mod publish;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clearhouse_domain::{SettledBatch, WindowId};
use clearhouse_engine::stream::{seal_of, Seal, SealedPart};
use clearhouse_formats::events::{credit_messages, window_message};
use clearhouse_formats::{encode_window, DirStore, Fences, Manifest, OutputStore, WindowMeta};
use clearhouse_storage::OsFs;
use crossbeam_channel::Receiver;

use crate::state_dir::StateDir;
use crate::{telemetry, DaemonError, Settings};
pub use io::{AssemblyState, KafkaTopics, Message, Topics};

/// Most windows published in one round (bounds what a round holds in memory).
pub(crate) const MAX_WINDOWS_PER_ROUND: usize = 64;

/// The manifest fences of a window from each partition's seal of it, in partition order.
pub(crate) fn fences(topic: &str, seals: &[Seal]) -> Fences {
    let input = |p: usize| format!("{topic}/{p}");
    Fences {
        positions: seals.iter().enumerate().map(|(p, s)| (input(p), s.fence)).collect(),
        sealed_before: seals.iter().enumerate().map(|(p, s)| (input(p), s.closed_before.to_string())).collect(),
    }
}

/// The daemon's assembler thread: [`Assembly`] on the state directory, rdkafka and the output
/// directory, under the assembler lock.
pub(crate) struct Assembler {
    state: StateDir,
    assembly: Assembly<StateDir, KafkaTopics, DirStore>,
}

impl Assembler {
    pub(crate) fn new(settings: Arc<Settings>, state: StateDir) -> Result<Assembler, DaemonError> {
        let store = DirStore::shared_on(Arc::new(OsFs), &settings.out_dir)?;
        let topics = KafkaTopics::connect(&settings, "assembler")?;
        let assembly = Assembly::new(settings, state.clone(), topics, store);
        Ok(Assembler { state, assembly })
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

    fn pass(&mut self) -> Result<(), DaemonError> {
        let lock = self.state.assembler_lock()?;
        if lock.try_lock().is_err() {
            // Another instance assembles and reports what is pending; this one has nothing.
            telemetry::pending_windows(0, None);
            self.assembly.sealed_at.clear();
            self.assembly.written.clear();
            self.assembly.sweep_temps = true;
            return Ok(());
        }
        self.assembly.pass()
    }
}

/// Which windows a publication reads the topics back for before sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadBack {
    /// Windows it recorded a start for: a window this state directory never began publishing
    /// has nothing on the topics (the assembler).
    Started,
    /// Every window, from the beginning of the topics: an earlier state directory may have
    /// published part of it (`replay --emit`).
    All,
}

/// What one window's publication sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    /// Credits sent by this publication (the others were on the topic already).
    pub credits: usize,
    /// Whether it sent the window-closed event.
    pub event: bool,
}

/// What is published for one window.
#[derive(Debug, Clone)]
pub struct Ready {
    /// The window.
    pub window: WindowId,
    /// Its batches.
    pub batches: usize,
    /// Its credit messages.
    pub credits: Vec<Message>,
    /// Its window-closed event.
    pub event: Message,
}

impl Ready {
    /// What `batches` publish for `window`, whose manifest is `manifest`.
    pub fn new(meta: &WindowMeta, batches: &[SettledBatch], manifest: &Manifest) -> Ready {
        let credits = credit_messages(meta, batches);
        let event = window_message(manifest, credits.len());
        Ready { window: meta.id, batches: batches.len(), credits, event }
    }
}

/// Window assembly and publication, over their I/O (see the module docs).
pub struct Assembly<S, T, O> {
    settings: Arc<Settings>,
    state: S,
    topics: T,
    store: O,
    /// When this instance first found each pending window sealed by every partition.
    sealed_at: HashMap<WindowId, Instant>,
    /// What this process wrote the files of and has not published yet: a pass after a failed
    /// publication (a broker outage) publishes it again without encoding the window again.
    written: HashMap<WindowId, Arc<Ready>>,
    /// Whether the next pass first removes the temporary files interrupted writes left in the
    /// output directory: on the first pass, and after a failed one or one without the lock.
    sweep_temps: bool,
}

impl<S: AssemblyState, T: Topics, O: OutputStore> Assembly<S, T, O> {
    /// Assembly of the windows in `state` into `store` and `topics`.
    pub fn new(settings: Arc<Settings>, state: S, topics: T, store: O) -> Assembly<S, T, O> {
        let (sealed_at, written) = (HashMap::new(), HashMap::new());
        Assembly { settings, state, topics, store, sealed_at, written, sweep_temps: true }
    }

    /// The topics (the simulator reaches its in-memory broker through them).
    pub fn topics_mut(&mut self) -> &mut T {
        &mut self.topics
    }

    /// Emits every window that all partitions have sealed and that was not emitted yet: writes
    /// each window's files, then publishes the sealed windows together, [`MAX_WINDOWS_PER_ROUND`]
    /// at a time (one read-back, one end-offset fetch and one flush per topic per round, instead
    /// of per window: a backlog of a hundred windows went out at one a second before).
    ///
    /// Only one instance may pass at a time (the daemon holds the assembler lock): a pass
    /// may remove the output directory's temporary files first.
    pub fn pass(&mut self) -> Result<(), DaemonError> {
        if std::mem::take(&mut self.sweep_temps) {
            self.store.remove_temps().inspect_err(|_| self.sweep_temps = true)?;
        }
        self.emit_sealed().inspect_err(|_| self.sweep_temps = true)
    }

    fn emit_sealed(&mut self) -> Result<(), DaemonError> {
        let topic = self.settings.input_topic.clone();
        let partitions = self.topics.partitions(&topic)?;
        let mut progress = Vec::new();
        for p in 0..partitions {
            match self.state.progress(p)? {
                Some(pr) => progress.push(pr),
                None => return Ok(()),
            }
        }
        let mut pending = Vec::new();
        for window in self.state.windows_with_parts()? {
            if self.state.marker(window, "window.done")?.is_none() {
                pending.push(window);
            }
        }
        telemetry::pending_windows(pending.len(), pending.first().map(|w| w.end()));
        self.written.retain(|window, _| pending.contains(window));
        let mut round = Vec::new();
        for window in pending {
            let seals: Option<Vec<Seal>> = progress.iter().map(|pr| seal_of(&pr.seals, window)).collect();
            let Some(seals) = seals else { continue };
            self.sealed_at.entry(window).or_insert_with(Instant::now);
            let ready = match self.written.get(&window) {
                Some(ready) => Arc::clone(ready),
                None => {
                    let Some(mut batches) = self.parts(window, &seals)? else { continue };
                    clearhouse_engine::sort_batches(&mut batches);
                    let ready = Arc::new(self.write_files(window, &batches, fences(&topic, &seals))?);
                    self.written.insert(window, Arc::clone(&ready));
                    ready
                }
            };
            round.push(ready);
            if round.len() == MAX_WINDOWS_PER_ROUND {
                self.publish_round(std::mem::take(&mut round))?;
            }
        }
        if !round.is_empty() {
            self.publish_round(round)?;
        }
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
        let store = &self.store;
        let (files, manifest) = encode_window(&meta, batches, fences, (&settings.debtor, &|| store.draft()))?;
        for file in files {
            store.publish_draft(&file.name, file.draft)?;
        }
        Ok(Ready::new(&meta, batches, &manifest))
    }

    /// Publishes a round the assembler wrote the files of, and reports each window emitted.
    fn publish_round(&mut self, round: Vec<Arc<Ready>>) -> Result<(), DaemonError> {
        let refs: Vec<&Ready> = round.iter().map(|r| &**r).collect();
        let sent = self.publish(&refs, ReadBack::Started)?;
        let settings = Arc::clone(&self.settings);
        for (ready, sent) in round.iter().zip(sent) {
            self.written.remove(&ready.window);
            let due = settings.calendar.window(ready.window).end + settings.grace;
            let latency = settings.clock.now().duration_since(due).try_into().unwrap_or(Duration::ZERO);
            let since_sealed = self.sealed_at.remove(&ready.window).map(|t| t.elapsed());
            let id = ready.window.to_string();
            telemetry::window_emitted(&id, ready.batches, ready.credits.len(), sent.credits, latency, since_sealed);
        }
        Ok(())
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
