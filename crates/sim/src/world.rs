//! The simulated world outside a process: the state directory, the dead-letter topic, and
//! (for the assembler, `outputs.rs`) the output directory, publication markers and output
//! topics, with the fault injector that decides, at every I/O step, whether the step fails,
//! lands and then the process dies, or dies before it.
//!
//! The store keeps checkpoints and parts as the bytes the daemon's own codec makes
//! (`state_dir::encode_checkpoint`, `encode_part`), so a checkpoint that does not load back is a
//! finding, not a modelling gap. A write is atomic, as the state directory's
//! write-temp-fsync-rename-fsync makes it on a real disk: after a crash a file holds its old
//! content or its new one. What happens inside that sequence is `clearhouse-storage`'s concern
//! and is not simulated here (docs/exactly-once.md).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use clearhouse_daemon::shard::{Durable, LetterSink, PartitionStore};
use clearhouse_daemon::state_dir::{
    decode_checkpoint, decode_part, decode_progress, encode_checkpoint, encode_part, StateError,
};
use clearhouse_domain::WindowId;
use clearhouse_engine::stream::{seal_of, PartitionState, SealedPart, StateView};
use crossbeam_channel::Receiver;
use jiff::Timestamp;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// An I/O step the daemon's shard takes, as the fault injector and the coverage count see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    /// Loading a partition's checkpoint on assignment.
    LoadCheckpoint,
    /// Removing the parts a crashed owner wrote for windows its checkpoint had not sealed.
    DiscardParts,
    /// Writing a sealed window part.
    SavePart,
    /// Writing a checkpoint.
    SaveCheckpoint,
    /// Publishing dead letters and waiting for their acknowledgement.
    PublishDeadLetters,
    /// Writing a window file into the output directory (assembler).
    WriteFile,
    /// Writing a publication marker into the state directory (assembler).
    Mark,
    /// Reading an output topic's end offsets or messages back (assembler).
    ReadTopic,
    /// Queuing a credit or window event in the producer (assembler).
    Send,
    /// Flushing credits or window events and waiting for their acknowledgement (assembler).
    Flush,
}

/// What the injector does to one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// The process dies before the step reaches the disk or the broker.
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
    checkpoints: BTreeMap<i32, Vec<u8>>,
    parts: BTreeMap<(WindowId, i32), Vec<u8>>,
    /// Every dead letter the topic holds, in publication order (duplicates included).
    pub dead_letters: Vec<(String, Vec<u8>)>,
    /// Their keys.
    dead_letter_keys: std::collections::BTreeSet<String>,
    pub(crate) rng: ChaCha8Rng,
    /// Faults per thousand I/O steps (0: none).
    fault_permille: u32,
    /// Set when a step crashed the process: the driver discards the instance.
    pub crashed: bool,
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
    /// The output directory: window files by name.
    pub files: BTreeMap<String, Vec<u8>>,
    /// Publication markers in the state directory, by window and name.
    pub(crate) markers: BTreeMap<(WindowId, String), Vec<u8>>,
    /// The output topics: per topic, per partition, every message in offset order.
    pub topics: BTreeMap<String, TopicLog>,
}

impl World {
    /// An empty world whose faults are drawn from `rng`, `fault_permille` per thousand steps.
    pub fn new(rng: ChaCha8Rng, fault_permille: u32) -> World {
        World {
            checkpoints: BTreeMap::new(),
            parts: BTreeMap::new(),
            dead_letters: Vec::new(),
            dead_letter_keys: std::collections::BTreeSet::new(),
            rng,
            fault_permille,
            crashed: false,
            injected: BTreeMap::new(),
            rewritten_parts: Vec::new(),
            events: Vec::new(),
            violations: Vec::new(),
            expected_rejects: (String::new(), BTreeMap::new()),
            steps: 0,
            files: BTreeMap::new(),
            markers: BTreeMap::new(),
            topics: BTreeMap::new(),
        }
    }

    /// What commits are held to: the reference run's rejects on `topic`.
    pub fn expect_rejects(&mut self, topic: &str, rejected: BTreeMap<i32, Vec<u64>>) {
        self.expected_rejects = (topic.to_owned(), rejected);
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
        self.fault_permille = 0;
    }

    /// The fault for the next `step`, if any.
    pub(crate) fn fault(&mut self, step: Step) -> Option<Fault> {
        self.steps += 1;
        if self.crashed {
            // A dead process takes no more steps; the shard is discarded after this call.
            return Some(Fault::CrashBefore);
        }
        if self.fault_permille == 0 || self.rng.random_range(0..1000) >= self.fault_permille {
            return None;
        }
        let kinds: &[Fault] = match step {
            Step::LoadCheckpoint | Step::ReadTopic | Step::Send => &[Fault::Error],
            Step::PublishDeadLetters | Step::Flush => {
                &[Fault::CrashBefore, Fault::CrashAfter, Fault::Error, Fault::AckLost]
            }
            Step::DiscardParts | Step::SavePart | Step::SaveCheckpoint | Step::WriteFile | Step::Mark => {
                &[Fault::CrashBefore, Fault::CrashAfter, Fault::Error]
            }
        };
        let fault = kinds[self.rng.random_range(0..kinds.len())];
        *self.injected.entry((step, fault)).or_default() += 1;
        self.note(format!("{fault:?} at {step:?}"));
        if matches!(fault, Fault::CrashBefore | Fault::CrashAfter) {
            self.crashed = true;
        }
        Some(fault)
    }

    /// The checkpoints, decoded: every one must load.
    pub fn checkpoints(&self) -> Result<BTreeMap<i32, PartitionState>, StateError> {
        self.checkpoints.iter().map(|(p, bytes)| Ok((*p, decode_checkpoint(bytes, "sim")?))).collect()
    }

    /// A partition's checkpoint as written.
    pub(crate) fn checkpoint_bytes(&self, partition: i32) -> Option<&[u8]> {
        self.checkpoints.get(&partition).map(Vec::as_slice)
    }

    /// The next offset of the partition's durable checkpoint, if it has one.
    pub fn checkpoint_offset(&self, partition: i32) -> Option<u64> {
        let bytes = self.checkpoints.get(&partition)?;
        decode_progress(bytes, "sim").ok().map(|progress| progress.next_offset)
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

    /// The window parts, as written.
    pub fn parts(&self) -> &BTreeMap<(WindowId, i32), Vec<u8>> {
        &self.parts
    }

    /// Stores a part. Rewriting one with other bytes is legitimate while no durable checkpoint
    /// records the seal that made it (the seal was lost with a crash, and the restarted owner
    /// sealed the window at another offset); once one does, the assembler may have used it, so
    /// it must never change again.
    fn store_part(&mut self, window: WindowId, partition: i32, bytes: Vec<u8>) {
        if self.parts.get(&(window, partition)).is_some_and(|old| *old != bytes) {
            let progress = self.checkpoints.get(&partition).and_then(|c| decode_progress(c, "sim").ok());
            if progress.is_some_and(|pr| seal_of(&pr.seals, window).is_some()) {
                self.rewritten_parts.push((window, partition));
            }
        }
        self.parts.insert((window, partition), bytes);
    }
}

/// The simulated I/O error a failed or crashed step returns to the shard.
pub(crate) fn io_error(step: Step) -> StateError {
    let source = std::io::Error::other(format!("simulated fault at {step:?}"));
    StateError::Storage(clearhouse_storage::StorageError::Io { path: "sim".into(), source })
}

/// A shard's handle on the shared world (one process at a time uses it, so a `RefCell`), and
/// on its durable-checkpoint reports: before each I/O step the consumer commits whatever the
/// shard reported so far, as the daemon's consumer thread may at any instant.
#[derive(Debug, Clone)]
pub struct SimIo {
    /// The world.
    pub world: Rc<RefCell<World>>,
    /// The shard's reports.
    pub reports: Receiver<Durable>,
}

impl SimIo {
    /// Commits the reports so far, then hands out the world for one I/O step.
    pub(crate) fn step(&self) -> std::cell::RefMut<'_, World> {
        let mut world = self.world.borrow_mut();
        for report in self.reports.try_iter() {
            world.commit(report);
        }
        world
    }
}

impl PartitionStore for SimIo {
    fn load(&self, partition: i32) -> Result<Option<PartitionState>, StateError> {
        let mut world = self.step();
        if world.fault(Step::LoadCheckpoint).is_some() {
            return Err(io_error(Step::LoadCheckpoint));
        }
        world.checkpoints.get(&partition).map(|bytes| decode_checkpoint(bytes, "sim")).transpose()
    }

    fn discard_parts_after(&self, partition: i32, closed_before: Option<Timestamp>) -> Result<(), StateError> {
        let mut world = self.step();
        match world.fault(Step::DiscardParts) {
            Some(Fault::CrashBefore | Fault::Error | Fault::AckLost) => Err(io_error(Step::DiscardParts)),
            fault => {
                let kept =
                    |(window, p): &(WindowId, i32)| *p != partition || closed_before.is_some_and(|c| window.end() <= c);
                world.parts.retain(|key, _| kept(key));
                fault.map_or(Ok(()), |_| Err(io_error(Step::DiscardParts)))
            }
        }
    }

    fn save(&self, partition: i32, view: &StateView<'_>, open_instructions: u64) -> Result<(), StateError> {
        let bytes = encode_checkpoint(partition, view, open_instructions)?;
        let mut world = self.step();
        match world.fault(Step::SaveCheckpoint) {
            Some(Fault::CrashBefore | Fault::Error | Fault::AckLost) => Err(io_error(Step::SaveCheckpoint)),
            Some(Fault::CrashAfter) => {
                world.checkpoints.insert(partition, bytes);
                Err(io_error(Step::SaveCheckpoint))
            }
            None => {
                world.checkpoints.insert(partition, bytes);
                Ok(())
            }
        }
    }

    fn save_part(&self, partition: i32, part: &SealedPart) -> Result<(), StateError> {
        let bytes = encode_part(part)?;
        let mut world = self.step();
        match world.fault(Step::SavePart) {
            Some(Fault::CrashBefore | Fault::Error | Fault::AckLost) => Err(io_error(Step::SavePart)),
            Some(Fault::CrashAfter) => {
                world.store_part(part.window, partition, bytes);
                Err(io_error(Step::SavePart))
            }
            None => {
                world.store_part(part.window, partition, bytes);
                Ok(())
            }
        }
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
