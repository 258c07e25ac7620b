//! What a run's outputs are held to: `clearhouse replay`'s own code (`PartitionReplay`,
//! `write_windows`) fed the simulated log and the seals the run recorded in its manifests.
//!
//! A run's seals depend on the wall clock of its idle ticks, and a crash before a checkpoint
//! loses a seal that the restarted owner then makes at another offset. So no fault-free run
//! can be the reference for the windows; a replay of what the run recorded is. That is the
//! promise ops rely on after an outage: replaying the topic gives the same files.

use std::collections::BTreeMap;

use clearhouse_daemon::replay::{original_seals, recorded_in, write_windows, OriginalSeals, PartitionReplay, Replayed};
use clearhouse_daemon::state_dir::encode_part;
use clearhouse_daemon::Settings;
use clearhouse_domain::WindowId;
use clearhouse_engine::stream::Message;
use clearhouse_formats::events::window_message;
use clearhouse_formats::{Manifest, MemStore};

use crate::outputs::FilesView;
use crate::workload::Log;
use crate::world::World;

/// Where a replay takes a run's seals from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SealSource {
    /// The seal history in the run's final checkpoints: every seal its final state went
    /// through, so the replay makes the same decisions.
    Durable,
    /// The run's manifests, as `clearhouse replay` reads them: only the seals of windows that
    /// had data.
    Manifests,
}

/// The replay's parts, files and messages.
pub(crate) struct Expected {
    /// Parts by window and partition, as the daemon's codec writes them.
    pub(crate) parts: BTreeMap<(WindowId, i32), Vec<u8>>,
    /// Window files by name.
    pub(crate) files: BTreeMap<String, Vec<u8>>,
    /// Credits by EndToEndId.
    pub(crate) credits: BTreeMap<String, Vec<u8>>,
    /// Window events by window id.
    pub(crate) events: BTreeMap<String, Vec<u8>>,
}

/// Replays `log` with the seals of `run`: those its final checkpoints recorded (`Durable`), or
/// those its manifests recorded (`Manifests`, what `clearhouse replay` applies).
pub(crate) fn replay(settings: &Settings, log: &Log, run: &World, seals: SealSource) -> Result<Expected, String> {
    let recorded = recorded_in(&FilesView(run.files())).map_err(|e| format!("reading the run's manifests: {e}"))?;
    let seals = match seals {
        SealSource::Manifests => original_seals(settings, &recorded, log.len() as i32),
        SealSource::Durable => {
            let states = run.checkpoints().map_err(|e| format!("checkpoint does not load: {e}"))?;
            (0..log.len() as i32)
                .map(|p| states.get(&p).map(|s| s.seals.iter().map(|s| (s.fence, s.closed_before)).collect()))
                .collect::<Option<Vec<OriginalSeals>>>()
                .ok_or("a partition has no final checkpoint")?
        }
    };
    let mut replayed: Vec<Replayed> = Vec::new();
    for (messages, seals) in log.iter().zip(&seals) {
        let mut replay = PartitionReplay::new(settings, seals);
        for (offset, (key, payload)) in messages.iter().enumerate() {
            replay.message(Message { offset: offset as u64, key: Some(key), timestamp: None, payload });
        }
        replayed.push(replay.finish(messages.len() as u64));
    }
    let mut parts = BTreeMap::new();
    for (p, r) in replayed.iter().enumerate() {
        for part in &r.parts {
            let bytes = encode_part(part).map_err(|e| format!("encoding a replayed part: {e}"))?;
            parts.insert((part.window, p as i32), bytes);
        }
    }
    let store = MemStore::default();
    let report = write_windows(settings, &store, &replayed, &recorded, |_| true, true)
        .map_err(|e| format!("writing the replayed windows: {e}"))?;
    if !report.open.is_empty() {
        return Err(format!("the replay left windows open: {:?}", report.open));
    }
    let files = store.into_files();
    let mut credits = BTreeMap::new();
    let mut events = BTreeMap::new();
    for window in &report.windows {
        credits.extend(window.credits.iter().cloned());
        let manifest = &files[&format!("manifest-{}.json", window.window)];
        let manifest: Manifest = serde_json::from_slice(manifest).map_err(|e| format!("replayed manifest: {e}"))?;
        let (key, payload) = window_message(&manifest, window.credits.len());
        events.insert(key, payload);
    }
    Ok(Expected { parts, files, credits, events })
}
