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
//! Every file is written to a temporary name, fsynced, renamed and its directory fsynced, so a
//! crash leaves either the old or the new content. A checkpoint carries a length and an xxh3
//! checksum: a torn or foreign file is an error, never silently an empty state.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clearhouse_domain::WindowId;
use clearhouse_engine::stream::{PartitionState, Seal, SealedPart, StateView};
use clearhouse_engine::Stats;
use serde::{Deserialize, Serialize};

/// v2: captures remember their amount and event time (refunds are held to them).
const MAGIC: &[u8; 8] = b"CHCKPT02";

/// A state file is unreadable or cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// I/O failed.
    #[error("state file {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
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
    root: PathBuf,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StateError + '_ {
    move |source| StateError::Io { path: path.to_owned(), source }
}

impl StateDir {
    /// Opens (creating) `<base>/<topic>`.
    pub fn open(base: &Path, topic: &str) -> Result<StateDir, StateError> {
        let root = base.join(topic);
        fs::create_dir_all(&root).map_err(io_err(&root))?;
        Ok(StateDir { root })
    }

    /// The topic's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn partition_dir(&self, partition: i32) -> PathBuf {
        self.root.join(format!("p{partition}"))
    }

    /// The directory of markers for `window`.
    pub fn emitted_dir(&self, window: WindowId) -> PathBuf {
        self.root.join("emitted").join(window.to_string())
    }

    /// Loads a partition's checkpoint; `None` when it never had one.
    pub fn load(&self, partition: i32) -> Result<Option<PartitionState>, StateError> {
        let path = self.partition_dir(partition).join("checkpoint.bin");
        let Some(bytes) = read_if_present(&path)? else { return Ok(None) };
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
        let dir = self.partition_dir(partition);
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let body = postcard::to_stdvec(view).map_err(|e| StateError::Corrupt {
            path: dir.clone(),
            problem: format!("cannot encode checkpoint: {e}"),
        })?;
        let mut bytes = Vec::with_capacity(body.len() + 32);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&(body.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&xxhash_rust::xxh3::xxh3_128(&body).to_le_bytes());
        bytes.extend_from_slice(&body);
        write_atomic(&dir.join("checkpoint.bin"), &bytes)?;
        let progress = Progress {
            partition,
            next_offset: view.next_offset,
            seals: view.seals.to_vec(),
            stats: view.stats.clone(),
            late: view.late,
            open_instructions,
        };
        let json = serde_json::to_vec_pretty(&progress).expect("serialize progress");
        write_atomic(&dir.join("progress.json"), &json)
    }

    /// The last progress record of `partition`.
    pub fn progress(&self, partition: i32) -> Result<Option<Progress>, StateError> {
        let path = self.partition_dir(partition).join("progress.json");
        let Some(bytes) = read_if_present(&path)? else { return Ok(None) };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| StateError::Corrupt { path, problem: e.to_string() })
    }

    fn part_path(&self, window: WindowId, partition: i32) -> PathBuf {
        self.root.join("parts").join(window.to_string()).join(format!("p{partition}.bin"))
    }

    /// Saves a sealed part (replacing one left by a run that crashed before its checkpoint).
    pub fn save_part(&self, partition: i32, part: &SealedPart) -> Result<(), StateError> {
        let path = self.part_path(part.window, partition);
        let bytes = postcard::to_stdvec(part)
            .map_err(|e| StateError::Corrupt { path: path.clone(), problem: format!("cannot encode part: {e}") })?;
        write_atomic(&path, &bytes)
    }

    /// Partition `partition`'s part of `window`, if it wrote one.
    pub fn part(&self, window: WindowId, partition: i32) -> Result<Option<SealedPart>, StateError> {
        let path = self.part_path(window, partition);
        let Some(bytes) = read_if_present(&path)? else { return Ok(None) };
        postcard::from_bytes(&bytes).map(Some).map_err(|e| StateError::Corrupt { path, problem: e.to_string() })
    }

    /// Windows some partition wrote a part for, oldest first.
    pub fn windows_with_parts(&self) -> Result<Vec<WindowId>, StateError> {
        let dir = self.root.join("parts");
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&dir)(e)),
        };
        let mut windows = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err(&dir))?;
            if let Some(id) = entry.file_name().to_str().and_then(|n| n.parse::<WindowId>().ok()) {
                windows.push(id);
            }
        }
        windows.sort();
        Ok(windows)
    }
}

/// The content of `path`, or `None` when it does not exist.
fn read_if_present(path: &Path) -> Result<Option<Vec<u8>>, StateError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Writes `bytes` to `path` atomically and durably (temporary file, fsync, rename, fsync dir).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let dir = path.parent().expect("state files live in a directory");
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("state");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mut file = File::create(&tmp).map_err(io_err(&tmp))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(io_err(&tmp))?;
    drop(file);
    fs::rename(&tmp, path).map_err(io_err(path))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_checkpoint_is_an_error_not_an_empty_state() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = StateDir::open(tmp.path(), "topic").expect("open");
        assert!(dir.load(0).expect("load").is_none());
        let path = dir.partition_dir(0).join("checkpoint.bin");
        write_atomic(&path, b"CHCKPT01 but then garbage that is long enough").expect("write");
        let err = dir.load(0).expect_err("damaged");
        assert!(err.to_string().contains("damaged"), "{err}");
    }
}
