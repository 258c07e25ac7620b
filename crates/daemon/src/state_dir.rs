//! The durable state directory: per-partition checkpoints and progress, sealed window parts,
//! and the markers of what was already emitted.
//!
//! ```text
//! <state_dir>/<topic>/p<N>/checkpoint.bin   progress (seals, next offset, counts) in its head,
//!                                            then the netting state (replaced atomically)
//! <state_dir>/<topic>/p<N>/progress.json    a readable copy of the head, for people and tools
//! <state_dir>/<topic>/parts/<W>/p<N>.bin     partition N's batches of window W, with its fence
//! <state_dir>/<topic>/emitted/<W>/*          what was already published for window W
//! ```
//!
//! Every file goes through [`clearhouse_storage::Dir`]: written to an exclusive random temporary
//! name, fsynced, renamed and its directory fsynced, so a crash leaves either the old or the new
//! content, and a link planted anywhere in the tree is refused rather than followed. A checkpoint
//! carries a length and an xxh3 checksum: a torn or foreign file is an error, never silently an
//! empty state.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::Arc;

use clearhouse_storage::{Dir, Fs, OsFs, StorageError};

use clearhouse_domain::Stats;
use clearhouse_domain::WindowId;
use clearhouse_engine::stream::{PartitionState, Seal, SealedPart, StateView};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// v7: open windows keep fixed-size details and a string arena (`netting/stored.rs`).
/// v6: merchants nothing refers to are forgotten with the history (free handles).
/// v5: amounts in minor units, batches and refunds keyed by merchant handles.
/// v4: ids, captures, originals and refunds remember the event time they are forgotten by
/// (the history horizon).
/// v3: the progress record sits in the checkpoint's head, so one rename makes both durable
/// (v2: captures remember their amount and event time, so refunds are held to them).
const MAGIC: &[u8; 8] = b"CHCKPT07";
/// Magic, progress length and checksum, body length and checksum.
const HEAD: usize = 8 + 8 + 16 + 8 + 16;
/// A progress record larger than this is damage, not a record (seal history is bounded).
const MAX_PROGRESS: u64 = 64 << 20;

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

/// The fixed head of a checkpoint file.
struct Head {
    path: PathBuf,
    progress_len: u64,
    progress_sum: u128,
    body_len: u64,
    body_sum: u128,
}

impl Head {
    fn parse(bytes: &[u8], path: &Path) -> Result<Head, StateError> {
        let corrupt = |problem: &str| StateError::Corrupt { path: path.to_owned(), problem: problem.to_owned() };
        if bytes.len() < HEAD || &bytes[..8] != MAGIC {
            return Err(corrupt("not a clearhouse checkpoint (v6)"));
        }
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let u128_at = |at: usize| u128::from_le_bytes(bytes[at..at + 16].try_into().expect("16 bytes"));
        let head = Head {
            path: path.to_owned(),
            progress_len: u64_at(8),
            progress_sum: u128_at(16),
            body_len: u64_at(32),
            body_sum: u128_at(40),
        };
        if head.progress_len > MAX_PROGRESS {
            return Err(corrupt("progress record length out of range"));
        }
        Ok(head)
    }

    fn body_start(&self) -> usize {
        HEAD + self.progress_len as usize
    }

    fn corrupt(&self, problem: &str) -> StateError {
        StateError::Corrupt { path: self.path.clone(), problem: problem.to_owned() }
    }
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
        StateDir::open_on(Arc::new(OsFs), base, topic)
    }

    /// Opens (creating) `<base>/<topic>` on `fs` (the simulator's disk, in `clearhouse-sim`).
    pub fn open_on(fs: Arc<dyn Fs>, base: &Path, topic: &str) -> Result<StateDir, StateError> {
        let root = Dir::create_on(fs, base)?.sub(topic)?;
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
        // The last owner may have renamed its checkpoint in and died before the fsync.
        dir.make_durable()?;
        let path = dir.path().join("checkpoint.bin");
        let Some(bytes) = dir.read("checkpoint.bin")? else { return Ok(None) };
        decode_checkpoint(&bytes, &path).map(Some)
    }

    /// Removes, durably, the partition's parts of windows ending after `closed_before` (all of
    /// them when `None`): what a partition's new owner does before it seals them again.
    pub fn discard_parts_after(&self, partition: i32, closed_before: Option<Timestamp>) -> Result<(), StateError> {
        for window in self.windows_with_parts()? {
            if closed_before.is_none_or(|c| window.end() > c) {
                self.parts_dir(window)?.remove(&format!("p{partition}.bin"))?;
            }
        }
        Ok(())
    }

    /// Saves a checkpoint with its progress record in one atomic replace, then a readable copy
    /// of the progress.
    pub fn save(&self, partition: i32, view: &StateView<'_>, open_instructions: u64) -> Result<(), StateError> {
        let dir = self.partition_dir(partition)?;
        let bytes = encode_checkpoint(partition, view, open_instructions)?;
        let json_len = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")) as usize;
        dir.replace("checkpoint.bin", &bytes)?;
        Ok(dir.replace("progress.json", &bytes[HEAD..HEAD + json_len])?)
    }

    /// The progress of `partition`'s last checkpoint, read from the checkpoint's head only.
    /// The partition's directory is fsynced first: its owner, another process, may have died
    /// between renaming the checkpoint in and fsyncing, and a seal the assembler acts on must
    /// survive a power loss.
    pub fn progress(&self, partition: i32) -> Result<Option<Progress>, StateError> {
        let dir = self.partition_dir(partition)?;
        dir.make_durable()?;
        let path = dir.path().join("checkpoint.bin");
        let Some(mut file) = dir.reader("checkpoint.bin")? else { return Ok(None) };
        let io = |source| StateError::Storage(clearhouse_storage::StorageError::Io { path: path.clone(), source });
        let mut start = vec![0; HEAD];
        file.read_exact(&mut start).map_err(io)?;
        let json_len = Head::parse(&start, &path)?.progress_len as usize;
        start.resize(HEAD + json_len, 0);
        file.read_exact(&mut start[HEAD..]).map_err(io)?;
        decode_progress(&start, &path).map(Some)
    }

    fn parts_dir(&self, window: WindowId) -> Result<Dir, StateError> {
        Ok(self.root.sub("parts")?.sub(&window.to_string())?)
    }

    /// Saves a sealed part (replacing one left by a run that crashed before its checkpoint).
    pub fn save_part(&self, partition: i32, part: &SealedPart) -> Result<(), StateError> {
        let (dir, name) = (self.parts_dir(part.window)?, format!("p{partition}.bin"));
        Ok(dir.replace(&name, &encode_part(part)?)?)
    }

    /// Partition `partition`'s part of `window`, if it wrote one.
    pub fn part(&self, window: WindowId, partition: i32) -> Result<Option<SealedPart>, StateError> {
        let (dir, name) = (self.parts_dir(window)?, format!("p{partition}.bin"));
        let path = dir.path().join(&name);
        let Some(bytes) = dir.read(&name)? else { return Ok(None) };
        decode_part(&bytes, &path).map(Some)
    }

    /// Windows some partition wrote a part for, oldest first. A window's directory without a
    /// part in it (a crash between making it and writing the part, or a new owner discarding
    /// the only part) is not one: emitting it would publish an empty window `replay` never
    /// makes (found by `clearhouse-sim`).
    pub fn windows_with_parts(&self) -> Result<Vec<WindowId>, StateError> {
        let dir = self.root.sub("parts")?;
        let mut windows = Vec::new();
        for (name, kind) in dir.entries()? {
            let Ok(window) = name.parse::<WindowId>() else { continue };
            if kind == "directory"
                && dir.sub(&name)?.entries()?.iter().any(|(file, _)| partition_of_part(file).is_some())
            {
                windows.push(window);
            }
        }
        windows.sort();
        Ok(windows)
    }
}

/// The partition whose directory is named `name` (`p<N>`), if it is one.
pub fn partition_of_dir(name: &str) -> Option<i32> {
    let number = name.strip_prefix('p')?;
    let digits = !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit());
    digits.then(|| number.parse().ok()).flatten()
}

/// The partition whose part of a window is the file named `name` (`p<N>.bin`), if it is one.
pub fn partition_of_part(name: &str) -> Option<i32> {
    partition_of_dir(name.strip_suffix(".bin")?)
}

/// A checkpoint's bytes: magic, lengths and checksums, the progress record (JSON, what the
/// assembler reads without decoding the state), then the state (postcard). The codec is apart
/// from the directory so the simulator (`clearhouse-sim`) stores exactly these bytes.
///
/// The state is encoded straight into the checkpoint's one buffer, sized first: a checkpoint
/// holds every open instruction (about 210 bytes each), and encoding the state into a buffer of
/// its own that doubled as it grew, then copying it, held up to three times its size at once
/// (docs/benchmarks.md, the daemon's memory per open instruction).
pub fn encode_checkpoint(partition: i32, view: &StateView<'_>, open_instructions: u64) -> Result<Vec<u8>, StateError> {
    let cannot = |e: postcard::Error| StateError::Corrupt {
        path: PathBuf::from(format!("checkpoint of partition {partition}")),
        problem: format!("cannot encode checkpoint: {e}"),
    };
    // `experimental` in postcard's API (its size flavor), pinned by Cargo.lock like every crate.
    let body_len = postcard::experimental::serialized_size(view).map_err(cannot)?;
    let progress = Progress {
        partition,
        next_offset: view.next_offset,
        seals: view.seals.to_vec(),
        stats: view.stats.clone(),
        late: view.late,
        open_instructions,
    };
    let json = serde_json::to_vec_pretty(&progress).expect("serialize progress");
    let mut bytes = Vec::with_capacity(HEAD + json.len() + body_len);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&(json.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&xxhash_rust::xxh3::xxh3_128(&json).to_le_bytes());
    bytes.extend_from_slice(&(body_len as u64).to_le_bytes());
    let body_sum = bytes.len();
    bytes.extend_from_slice(&[0; 16]);
    bytes.extend_from_slice(&json);
    let body = bytes.len();
    let mut bytes = postcard::to_extend(view, bytes).map_err(cannot)?;
    assert_eq!(bytes.len() - body, body_len, "checkpoint of partition {partition}: the state's size as measured");
    let sum = xxhash_rust::xxh3::xxh3_128(&bytes[body..]);
    bytes[body_sum..body_sum + 16].copy_from_slice(&sum.to_le_bytes());
    Ok(bytes)
}

/// The state in a checkpoint's bytes (read from `path`), checked against its lengths and
/// checksums: damage is an error, never an empty state.
pub fn decode_checkpoint(bytes: &[u8], path: impl AsRef<Path>) -> Result<PartitionState, StateError> {
    let head = Head::parse(bytes, path.as_ref())?;
    let body = head.body_start();
    let body =
        bytes.get(body..).filter(|b| b.len() as u64 == head.body_len).ok_or_else(|| head.corrupt("length mismatch"))?;
    if xxhash_rust::xxh3::xxh3_128(body) != head.body_sum {
        return Err(head.corrupt("checksum mismatch"));
    }
    postcard::from_bytes(body).map_err(|e| head.corrupt(&e.to_string()))
}

/// The progress record at the start of a checkpoint's bytes (its head and progress are enough;
/// the state after them is not read), checked against its checksum.
pub fn decode_progress(bytes: &[u8], path: impl AsRef<Path>) -> Result<Progress, StateError> {
    let head = Head::parse(bytes, path.as_ref())?;
    let json = bytes.get(HEAD..head.body_start()).ok_or_else(|| head.corrupt("length mismatch"))?;
    if xxhash_rust::xxh3::xxh3_128(json) != head.progress_sum {
        return Err(head.corrupt("progress checksum mismatch"));
    }
    serde_json::from_slice(json).map_err(|e| head.corrupt(&e.to_string()))
}

/// A sealed part's bytes.
pub fn encode_part(part: &SealedPart) -> Result<Vec<u8>, StateError> {
    postcard::to_stdvec(part).map_err(|e| StateError::Corrupt {
        path: PathBuf::from(format!("part of window {}", part.window)),
        problem: format!("cannot encode part: {e}"),
    })
}

/// The sealed part in `bytes` (read from `path`).
pub fn decode_part(bytes: &[u8], path: impl AsRef<Path>) -> Result<SealedPart, StateError> {
    postcard::from_bytes(bytes)
        .map_err(|e| StateError::Corrupt { path: path.as_ref().to_owned(), problem: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_encoded_in_one_buffer_is_the_bytes_it_always_was() {
        use clearhouse_domain::{Calendar, Policy, Schedule};
        use clearhouse_engine::stream::{Horizons, Message, Partition};
        let schedule = Schedule::from_config(None, Some(3600)).expect("schedule");
        let calendar = Calendar::new("UTC", schedule, 1, []).expect("calendar");
        let horizons = Horizons {
            grace: jiff::SignedDuration::from_hours(1),
            history_margin: jiff::SignedDuration::from_hours(24),
        };
        let mut partition =
            Partition::new(Arc::new(calendar), Arc::new(Policy::default()), horizons, Default::default());
        for i in 0..300u64 {
            let (merchant, minute) = (i % 7, i % 60);
            let payload = if i % 3 == 0 {
                format!(
                    r#"{{"id":"C{i}","type":"capture","merchant_id":"M{merchant}","amount":"{i}.25","currency":"EUR","event_time":"2026-11-21T10:{minute:02}:00Z"}}"#
                )
            } else {
                format!(
                    r#"{{"id":"R{i}","type":"refund","merchant_id":"M{merchant}","amount":"1.00","currency":"EUR","event_time":"2026-11-21T10:{minute:02}:00Z","original_transaction_id":"T{i}","original_amount":"2.00","original_time":"2026-11-20T00:00:00Z","payee":{{"name":"Payee {i}","account":"1234{i}","bank":"BANKCODE"}}}}"#
                )
            };
            let message = Message { offset: i, key: None, timestamp: None, payload: payload.as_bytes() };
            assert!(partition.apply(message).is_some());
        }
        let view = partition.checkpoint();
        let bytes = encode_checkpoint(3, &view, 300).expect("encode");
        // What it was encoded as before: the state in a buffer of its own, then copied.
        let body = postcard::to_stdvec(&view).expect("body");
        let json_len = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")) as usize;
        let json = &bytes[HEAD..HEAD + json_len];
        let mut before = MAGIC.to_vec();
        before.extend_from_slice(&(json.len() as u64).to_le_bytes());
        before.extend_from_slice(&xxhash_rust::xxh3::xxh3_128(json).to_le_bytes());
        before.extend_from_slice(&(body.len() as u64).to_le_bytes());
        before.extend_from_slice(&xxhash_rust::xxh3::xxh3_128(&body).to_le_bytes());
        before.extend_from_slice(json);
        before.extend_from_slice(&body);
        assert!(body.len() > 300 * 40, "the state holds the captures and refunds");
        assert_eq!(bytes, before);
        assert!(decode_checkpoint(&bytes, "checkpoint.bin").is_ok());
    }

    #[test]
    fn a_damaged_checkpoint_is_an_error_not_an_empty_state() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = StateDir::open(tmp.path(), "topic").expect("open");
        assert!(dir.load(0).expect("load").is_none());
        let p0 = dir.partition_dir(0).expect("p0");
        p0.replace("checkpoint.bin", b"CHCKPT07 but then garbage that is long enough for a head").expect("write");
        let err = dir.load(0).expect_err("damaged");
        assert!(err.to_string().contains("damaged"), "{err}");
    }

    #[test]
    fn only_the_partitions_parts_of_windows_its_checkpoint_has_not_sealed_are_discarded() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = StateDir::open(tmp.path(), "topic").expect("open");
        let windows: Vec<WindowId> =
            ["20261121T1000Z", "20261121T1100Z", "20261121T1200Z"].iter().map(|w| w.parse().expect("id")).collect();
        for &window in &windows {
            for partition in [0, 1] {
                dir.save_part(partition, &SealedPart { window, fence: 7, batches: Vec::new() }).expect("part");
            }
        }
        // Partition 0's checkpoint sealed the windows ending by 10:00: its parts of the windows
        // ending at 11:00 and 12:00 are a crashed owner's; partition 1's are none of its business.
        dir.discard_parts_after(0, Some(windows[0].end())).expect("discard");
        let kept = |p: i32| windows.iter().map(|&w| dir.part(w, p).expect("read").is_some()).collect::<Vec<_>>();
        assert_eq!(kept(0), [true, false, false]);
        assert_eq!(kept(1), [true, true, true]);
        dir.discard_parts_after(1, None).expect("no checkpoint: every part goes");
        assert_eq!(kept(1), [false, false, false]);
        assert_eq!(dir.windows_with_parts().expect("list"), windows[..1], "a directory emptied is no window");
        dir.parts_dir(windows[2]).expect("made").sub("p1.bin.d").expect("not a part either");
        assert_eq!(dir.windows_with_parts().expect("list"), windows[..1]);
    }
}
