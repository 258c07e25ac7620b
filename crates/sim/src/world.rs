//! The simulated world outside a process: the disk holding the state and output directories
//! (`disk.rs`, which the daemon's own `StateDir` and `DirStore` run on through `simfs.rs`), the
//! dead-letter topic, and (for the assembler, `outputs.rs`) the credits and windows topics, with
//! the fault injector that decides, at every I/O step, whether the step fails, lands and then
//! the process dies, or dies before it, and whether the death is a power loss.
//!
//! Checkpoints and parts are the bytes the daemon's own codec made, read back with its own
//! decoder, so a checkpoint that does not load is a finding, not a modelling gap.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};

use clearhouse_daemon::shard::{Durable, LetterSink};
use clearhouse_daemon::state_dir::{decode_part, StateError};
use clearhouse_domain::WindowId;
use clearhouse_engine::stream::SealedPart;
use crossbeam_channel::Receiver;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::disk::Disk;
use crate::simfs::STATE_DIR;

/// An I/O step, as the fault injector and the coverage count see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    /// A file-system call of the state or output directory, on a kind of file.
    Fs(FsOp, Site),
    /// Publishing dead letters and waiting for their acknowledgement.
    PublishDeadLetters,
    /// Reading an output topic's end offsets or messages back (assembler).
    ReadTopic,
    /// Queuing a credit or window event in the producer (assembler).
    Send,
    /// Flushing credits or window events and waiting for their acknowledgement (assembler).
    Flush,
}

/// A file-system call (`clearhouse_storage::Fs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FsOp {
    /// What a name is.
    Stat,
    /// Creating a directory.
    Mkdir,
    /// Listing a directory.
    List,
    /// Reading a file.
    Read,
    /// Creating and writing a temporary file (a full disk fails it).
    Write,
    /// Fsyncing a file.
    SyncFile,
    /// Renaming a temporary file into place.
    Rename,
    /// Removing a file.
    Remove,
    /// Fsyncing a directory.
    SyncDir,
}

/// What a file-system call touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Site {
    /// A partition's checkpoint and progress copy (`p<N>/`).
    Partition,
    /// Sealed window parts (`parts/`).
    Part,
    /// Publication markers (`emitted/`).
    Marker,
    /// The output directory.
    Output,
    /// The directories above them.
    Tree,
}

/// What the injector does to one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// The process dies before the step reaches the disk or the broker (one time in two the
    /// machine loses power with it).
    CrashBefore,
    /// The step lands, then the process dies before it learns so.
    CrashAfter,
    /// The step fails (disk full, broker error) and the process lives on with the error.
    Error,
    /// The broker stored the messages but the acknowledgement was lost (publications only).
    AckLost,
}

/// An output topic: per partition, its messages (key, payload) in offset order.
pub type TopicLog = Vec<Vec<(String, Vec<u8>)>>;

/// Everything that outlives a process: the state directory and the dead-letter topic, plus the
/// injector's plan and what it did.
#[derive(Debug)]
pub struct World {
    /// The disk of the state and output directories.
    pub(crate) disk: Disk,
    /// `<state dir>/<input topic>`.
    pub(crate) state_root: PathBuf,
    /// Every dead letter the topic holds, in publication order (duplicates included).
    pub dead_letters: Vec<(String, Vec<u8>)>,
    /// Their keys.
    dead_letter_keys: std::collections::BTreeSet<String>,
    pub(crate) rng: ChaCha8Rng,
    /// Faults per thousand file-system and broker steps (0: none).
    fault_permille: (u32, u32),
    /// Set when a step crashed the process: the driver discards the instance.
    pub crashed: bool,
    /// Set when the crash was a power loss: the driver discards every instance.
    pub power_lost: bool,
    /// A power loss to apply once the step that crashed has landed.
    power_loss_due: bool,
    /// Power losses injected.
    pub power_losses: u64,
    /// Faults injected, per step and kind: the coverage of the run.
    pub injected: BTreeMap<(Step, Fault), u64>,
    /// Part writes whose content differed from an earlier write of the same part, after a
    /// durable checkpoint recorded the part's seal.
    pub rewritten_parts: Vec<(WindowId, i32)>,
    /// The schedule as it happened: every fault, crash, restart and rebalance, in order.
    pub events: Vec<String>,
    /// Invariants broken during the run (checked as it goes, reported after it).
    pub violations: Vec<String>,
    /// The input topic and, per partition, the offsets the reference run rejected: every one
    /// below a committed offset must already be on the dead-letter topic.
    expected_rejects: (String, BTreeMap<i32, Vec<u64>>),
    steps: u64,
    /// The output topics: per topic, per partition, every message in offset order.
    pub topics: BTreeMap<String, TopicLog>,
}

impl World {
    /// An empty world whose faults are drawn from `rng`, `fault_permille` per thousand
    /// file-system and broker steps.
    pub fn new(rng: ChaCha8Rng, fault_permille: (u32, u32)) -> World {
        World {
            disk: Disk::new(),
            state_root: PathBuf::from(STATE_DIR),
            dead_letters: Vec::new(),
            dead_letter_keys: std::collections::BTreeSet::new(),
            rng,
            fault_permille,
            crashed: false,
            power_lost: false,
            power_loss_due: false,
            power_losses: 0,
            injected: BTreeMap::new(),
            rewritten_parts: Vec::new(),
            events: Vec::new(),
            violations: Vec::new(),
            expected_rejects: (String::new(), BTreeMap::new()),
            steps: 0,
            topics: BTreeMap::new(),
        }
    }

    /// What commits are held to: the reference run's rejects on `topic`.
    pub fn expect_rejects(&mut self, topic: &str, rejected: BTreeMap<i32, Vec<u64>>) {
        self.expected_rejects = (topic.to_owned(), rejected);
    }

    /// Where the state of the input `topic` lives.
    pub fn set_topic(&mut self, topic: &str) {
        self.state_root = Path::new(STATE_DIR).join(topic);
    }

    /// The consumer commits `report`'s offset. It must be covered by the partition's durable
    /// checkpoint, and every reject below it must be on the dead-letter topic already, or a
    /// crash now would lose them: the next owner resumes from the checkpoint, and nothing
    /// re-sends a letter the checkpoint no longer holds.
    pub fn commit(&mut self, report: Durable) {
        let p = report.partition;
        let durable = self.checkpoint_offset(p);
        if durable.is_none_or(|d| d < report.next_offset) {
            let problem =
                format!("partition {p}: offset {} committed past its checkpoint {durable:?}", report.next_offset);
            self.violations.push(problem);
        }
        let (topic, rejected) = &self.expected_rejects;
        let below = rejected.get(&p).into_iter().flatten().filter(|&&o| o < report.next_offset);
        let first_missing = below.map(|o| format!("{topic}/{p}/{o}")).find(|key| !self.has_dead_letter(key));
        if let Some(key) = first_missing {
            let problem =
                format!("partition {p}: offset {} committed before reject {key} was published", report.next_offset);
            self.violations.push(problem);
        }
    }

    /// Records a scheduled event (crash, restart, rebalance) in the schedule.
    pub fn note(&mut self, event: String) {
        self.events.push(format!("io step {}: {event}", self.steps));
    }

    /// Stops injecting faults (the final drain of a run).
    pub fn calm(&mut self) {
        self.fault_permille = (0, 0);
    }

    /// The fault for the next `step`, if any.
    pub(crate) fn fault(&mut self, step: Step) -> Option<Fault> {
        self.steps += 1;
        if self.crashed {
            // A dead process takes no more steps; the shard is discarded after this call.
            return Some(Fault::CrashBefore);
        }
        let permille = if matches!(step, Step::Fs(..)) { self.fault_permille.0 } else { self.fault_permille.1 };
        if permille == 0 || self.rng.random_range(0..1000) >= permille {
            return None;
        }
        let kinds: &[Fault] = match step {
            Step::ReadTopic | Step::Send => &[Fault::Error],
            Step::Fs(FsOp::Stat | FsOp::List | FsOp::Read, _) => &[Fault::CrashBefore, Fault::Error],
            Step::Fs(..) => &[Fault::CrashBefore, Fault::CrashAfter, Fault::Error],
            Step::PublishDeadLetters | Step::Flush => {
                &[Fault::CrashBefore, Fault::CrashAfter, Fault::Error, Fault::AckLost]
            }
        };
        let fault = kinds[self.rng.random_range(0..kinds.len())];
        *self.injected.entry((step, fault)).or_default() += 1;
        self.note(format!("{fault:?} at {step:?}"));
        if matches!(fault, Fault::CrashBefore | Fault::CrashAfter) {
            self.crashed = true;
            if self.rng.random_range(0..2) == 0 {
                self.power_loss_due = true;
                if !(matches!(step, Step::Fs(..)) && fault == Fault::CrashAfter) {
                    self.settle();
                }
            }
        }
        Some(fault)
    }

    /// Applies a power loss drawn by the step just taken, once the step has landed.
    pub(crate) fn settle(&mut self) {
        if std::mem::take(&mut self.power_loss_due) {
            self.disk.power_loss(&mut self.rng, false);
            self.power_lost = true;
            self.power_losses += 1;
            self.note("the machine loses power".to_owned());
        }
    }

    /// The machine loses power once the run is over, losing everything not yet durable: what
    /// is checked afterwards is what survives any crash.
    pub fn final_power_loss(&mut self) {
        self.disk.power_loss(&mut self.rng, true);
    }

    /// Whether the dead-letter topic holds a letter with this key.
    pub fn has_dead_letter(&self, key: &str) -> bool {
        self.dead_letter_keys.contains(key)
    }

    fn store_dead_letters(&mut self, letters: &[(String, Vec<u8>)]) {
        self.dead_letters.extend_from_slice(letters);
        self.dead_letter_keys.extend(letters.iter().map(|(key, _)| key.clone()));
    }

    /// The offsets rejected per partition, from the dead-letter keys (`topic/partition/offset`).
    pub fn rejected(&self) -> BTreeMap<i32, Vec<u64>> {
        let mut out: BTreeMap<i32, Vec<u64>> = BTreeMap::new();
        for (key, _) in &self.dead_letters {
            let mut parts = key.rsplitn(3, '/');
            let offset = parts.next().and_then(|o| o.parse().ok());
            let partition = parts.next().and_then(|p| p.parse().ok());
            if let (Some(offset), Some(partition)) = (offset, partition) {
                out.entry(partition).or_default().push(offset);
            }
        }
        out
    }
}

/// The world as every simulated process shares it. Only one process runs at a time; the lock
/// is what lets the daemon's `Fs` (which must be `Send + Sync`) reach it.
pub type Shared = Arc<Mutex<World>>;

/// The world, for one step. Taking it twice at once is a bug of the simulator, reported as
/// such rather than as a hang.
pub fn lock(world: &Shared) -> MutexGuard<'_, World> {
    match world.try_lock() {
        Ok(guard) => guard,
        Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        Err(TryLockError::WouldBlock) => panic!("the simulated world was locked twice"),
    }
}

/// A process's handle on the shared world, and on its shard's durable-checkpoint reports: before each I/O step the consumer commits whatever the
/// shard reported so far, as the daemon's consumer thread may at any instant.
#[derive(Debug, Clone)]
pub struct SimIo {
    /// The world.
    pub world: Shared,
    /// The shard's reports.
    pub reports: Receiver<Durable>,
}

impl SimIo {
    /// Commits the reports so far, then hands out the world for one I/O step.
    pub(crate) fn step(&self) -> MutexGuard<'_, World> {
        let mut world = lock(&self.world);
        for report in self.reports.try_iter() {
            world.commit(report);
        }
        world
    }
}

impl LetterSink for SimIo {
    fn publish(&mut self, _topic: &str, letters: &[(String, Vec<u8>)]) -> bool {
        if letters.is_empty() {
            return true;
        }
        let mut world = self.step();
        match world.fault(Step::PublishDeadLetters) {
            Some(Fault::CrashBefore | Fault::Error) => false,
            Some(Fault::CrashAfter | Fault::AckLost) => {
                world.store_dead_letters(letters);
                false
            }
            None => {
                world.store_dead_letters(letters);
                true
            }
        }
    }
}

/// Decodes a part written by the daemon's codec.
pub fn part_of(bytes: &[u8]) -> Result<SealedPart, StateError> {
    decode_part(bytes, "sim")
}
