//! The durable state directory: per-partition checkpoints and progress, sealed window parts,
//! and the markers of what was already emitted.
//!
//! ```text
//! <state_dir>/<topic>/p<N>/checkpoint.bin   netting state + next offset (replaced atomically)
//! <state_dir>/<topic>/p<N>/progress.json    seals, next offset and counts (read by the assembler)
//! <state_dir>/<topic>/parts/<W>/p<N>.bin     partition N's batches of window W, with its fence
//! <state_dir>/<topic>/emitted/<W>/*          what was already published for window W
//! ```
//!
//! Every file goes through [`clearhouse_storage::Dir`]: written to an exclusive random temporary
//! name, fsynced, renamed and its directory fsynced, so a crash leaves either the old or the new
//! content, and a link planted anywhere in the tree is refused rather than followed. A checkpoint
//! carries a length and an xxh3 checksum: a torn or foreign file is an error, never silently an
//! empty state.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clearhouse_storage::{Dir, StorageError};

use clearhouse_domain::WindowId;
use clearhouse_engine::stream::{PartitionState, Seal, SealedPart, StateView};
use clearhouse_engine::Stats;
use serde::{Deserialize, Serialize};

/// v2: captures remember their amount and event time (refunds are held to them).
const MAGIC: &[u8; 8] = b"CHCKPT02";

/// A state file is unreadable or cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// I/O failed, or something other than a state file holds its name.
    #[error("state directory")]
    Storage(#[from] StorageError),
    /// The content is damaged or of another version.
    #[error("state file {path} is damaged: {problem}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

/// What the assembler needs to know about a partition, written after each checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Progress {
    /// Partition number.
    pub partition: i32,
    /// Next offset reflected in the checkpoint.
    pub next_offset: u64,
    /// Seal history.
    pub seals: Vec<Seal>,
    /// Cumulative counts.
    pub stats: Stats,
    /// Accepted late instructions.
    pub late: u64,
    /// Instructions in open windows.
    pub open_instructions: u64,
}

/// The state directory of one input topic.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: Dir,
}

/// Temporary files younger than this may belong to another live instance sharing the directory.
const STALE_TEMP: Duration = Duration::from_secs(600);

impl StateDir {
    /// Opens (creating) `<base>/<topic>`.
    pub fn open(base: &Path, topic: &str) -> Result<StateDir, StateError> {
        let root = Dir::create(base)?.sub(topic)?;
        Ok(StateDir { root })
    }

    /// The topic's directory.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The file whose exclusive lock makes one instance the assembler (and `replay --emit`).
    pub fn assembler_lock(&self) -> Result<std::fs::File, StateError> {
        Ok(self.root.lock_file("assembler.lock")?)
    }

    fn partition_dir(&self, partition: i32) -> Result<Dir, StateError> {
        Ok(self.root.sub(&format!("p{partition}"))?)
    }

    /// The directory of markers for `window`: what was already published.
    pub fn emitted(&self, window: WindowId) -> Result<Dir, StateError> {
        Ok(self.root.sub("emitted")?.sub(&window.to_string())?)
    }

    /// Loads a partition's checkpoint; `None` when it never had one. Clears stale temporary
    /// files a killed owner of the partition left.
    pub fn load(&self, partition: i32) -> Result<Option<PartitionState>, StateError> {
        let dir = self.partition_dir(partition)?;
        dir.remove_temps(STALE_TEMP)?;
        let path = dir.path().join("checkpoint.bin");
        let Some(bytes) = dir.read("checkpoint.bin")? else { return Ok(None) };
        let corrupt = |problem: &str| StateError::Corrupt { path: path.clone(), problem: problem.to_owned() };
        if bytes.len() < 32 || &bytes[..8] != MAGIC {
            return Err(corrupt("not a clearhouse checkpoint (v2)"));
        }
        let len = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")) as usize;
        let sum = u128::from_le_bytes(bytes[16..32].try_into().expect("16 bytes"));
        let body = &bytes[32..];
        if body.len() != len || xxhash_rust::xxh3::xxh3_128(body) != sum {
            return Err(corrupt("length or checksum mismatch"));
        }
        postcard::from_bytes(body).map(Some).map_err(|e| corrupt(&e.to_string()))
    }

    /// Saves a checkpoint, then the progress record that announces it.
    pub fn save(&self, partition: i32, view: &StateView<'_>, open_instructions: u64) -> Result<(), StateError> {
        let dir = self.partition_dir(partition)?;
        let body = postcard::to_stdvec(view).map_err(|e| StateError::Corrupt {
            path: dir.path().to_owned(),
            problem: format!("cannot encode checkpoint: {e}"),
        })?;
        let mut bytes = Vec::with_capacity(body.len() + 32);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&(body.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&xxhash_rust::xxh3::xxh3_128(&body).to_le_bytes());
        bytes.extend_from_slice(&body);
        dir.replace("checkpoint.bin", &bytes)?;
        let progress = Progress {
            partition,
            next_offset: view.next_offset,
            seals: view.seals.to_vec(),
            stats: view.stats.clone(),
            late: view.late,
            open_instructions,
        };
        let json = serde_json::to_vec_pretty(&progress).expect("serialize progress");
        Ok(dir.replace("progress.json", &json)?)
    }

    /// The last progress record of `partition`.
    pub fn progress(&self, partition: i32) -> Result<Option<Progress>, StateError> {
        let dir = self.partition_dir(partition)?;
        let path = dir.path().join("progress.json");
        let Some(bytes) = dir.read("progress.json")? else { return Ok(None) };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| StateError::Corrupt { path, problem: e.to_string() })
    }

    fn parts_dir(&self, window: WindowId) -> Result<Dir, StateError> {
        Ok(self.root.sub("parts")?.sub(&window.to_string())?)
    }

    /// Saves a sealed part (replacing one left by a run that crashed before its checkpoint).
    pub fn save_part(&self, partition: i32, part: &SealedPart) -> Result<(), StateError> {
        let (dir, name) = (self.parts_dir(part.window)?, format!("p{partition}.bin"));
        let bytes = postcard::to_stdvec(part).map_err(|e| StateError::Corrupt {
            path: dir.path().join(&name),
            problem: format!("cannot encode part: {e}"),
        })?;
        Ok(dir.replace(&name, &bytes)?)
    }

    /// Partition `partition`'s part of `window`, if it wrote one.
    pub fn part(&self, window: WindowId, partition: i32) -> Result<Option<SealedPart>, StateError> {
        let (dir, name) = (self.parts_dir(window)?, format!("p{partition}.bin"));
        let path = dir.path().join(&name);
        let Some(bytes) = dir.read(&name)? else { return Ok(None) };
        postcard::from_bytes(&bytes).map(Some).map_err(|e| StateError::Corrupt { path, problem: e.to_string() })
    }

    /// Windows some partition wrote a part for, oldest first.
    pub fn windows_with_parts(&self) -> Result<Vec<WindowId>, StateError> {
        let dir = self.root.sub("parts")?;
        let mut windows: Vec<WindowId> = dir
            .entries()?
            .into_iter()
            .filter(|(_, kind)| *kind == "directory")
            .filter_map(|(name, _)| name.parse().ok())
            .collect();
        windows.sort();
        Ok(windows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_checkpoint_is_an_error_not_an_empty_state() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = StateDir::open(tmp.path(), "topic").expect("open");
        assert!(dir.load(0).expect("load").is_none());
        let p0 = dir.partition_dir(0).expect("p0");
        p0.replace("checkpoint.bin", b"CHCKPT02 but then garbage that is long enough").expect("write");
        let err = dir.load(0).expect_err("damaged");
        assert!(err.to_string().contains("damaged"), "{err}");
    }
}
