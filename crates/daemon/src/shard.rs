//! A netting shard: one thread owning the partitions assigned to it, fed in offset order
//! through a bounded queue. Data and control (assign, revoke, idle ticks, checkpoints) share the
//! queue, so a checkpoint or a revoke always reflects exactly the messages queued before it.
//!
//! The shard never waits on the consumer thread: its reports are `try_send`, and a dropped
//! report only delays an offset commit (the checkpoint, not the commit, is what a new owner
//! resumes from).
//!
//! Its I/O goes through two small interfaces, [`PartitionStore`] (the state directory) and
//! [`LetterSink`] (the dead-letter topic), and [`Shard::handle`] takes one command at a time:
//! that is the seam the simulator (`clearhouse-sim`) drives the same code through, with its
//! own store, topic and fault schedule.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clearhouse_domain::RejectRecord;
use clearhouse_engine::stream::{Message, Outcome, Partition, PartitionState, SealedPart, StateView};
use clearhouse_formats::events::reject_message;
use clearhouse_kafka::TopicWriter;
use crossbeam_channel::{Receiver, Sender};
use jiff::Timestamp;

use crate::state_dir::{StateDir, StateError};
use crate::{telemetry, Settings};

/// Where a shard keeps what must outlive it.
pub trait PartitionStore {
    /// The partition's last checkpoint, if it has one.
    fn load(&self, partition: i32) -> Result<Option<PartitionState>, StateError>;
    /// Replaces the partition's checkpoint, atomically.
    fn save(&self, partition: i32, view: &StateView<'_>, open_instructions: u64) -> Result<(), StateError>;
    /// Writes (or replaces) the partition's part of a sealed window, atomically.
    fn save_part(&self, partition: i32, part: &SealedPart) -> Result<(), StateError>;
    /// Removes, durably, the partition's parts of windows ending after `closed_before` (all
    /// of them when `None`).
    fn discard_parts_after(&self, partition: i32, closed_before: Option<Timestamp>) -> Result<(), StateError>;
}

impl PartitionStore for StateDir {
    fn load(&self, partition: i32) -> Result<Option<PartitionState>, StateError> {
        StateDir::load(self, partition)
    }

    fn save(&self, partition: i32, view: &StateView<'_>, open_instructions: u64) -> Result<(), StateError> {
        StateDir::save(self, partition, view, open_instructions)
    }

    fn save_part(&self, partition: i32, part: &SealedPart) -> Result<(), StateError> {
        StateDir::save_part(self, partition, part)
    }

    fn discard_parts_after(&self, partition: i32, closed_before: Option<Timestamp>) -> Result<(), StateError> {
        StateDir::discard_parts_after(self, partition, closed_before)
    }
}

/// Where dead letters go.
pub trait LetterSink {
    /// Publishes `letters` to `topic`; true once the broker acknowledged every one.
    fn publish(&mut self, topic: &str, letters: &[(String, Vec<u8>)]) -> bool;
}

impl LetterSink for TopicWriter {
    fn publish(&mut self, topic: &str, letters: &[(String, Vec<u8>)]) -> bool {
        publish(self, topic, letters)
    }
}

/// One message of the instruction topic.
#[derive(Debug)]
pub struct Msg {
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: u64,
    /// Its key.
    pub key: Option<Vec<u8>>,
    /// The record's timestamp.
    pub timestamp: Option<Timestamp>,
    /// Its value.
    pub payload: Vec<u8>,
}

/// Work for a shard.
pub enum Command {
    /// Messages in offset order per partition.
    Records(Vec<Msg>),
    /// The partition has no backlog at this wall-clock instant.
    Idle {
        /// The partition.
        partition: i32,
        /// The wall-clock instant.
        now: Timestamp,
    },
    /// Persist every partition that changed.
    Checkpoint,
    /// Take the partition from its checkpoint; replies with the offset to resume from.
    Assign {
        /// The partition.
        partition: i32,
        /// Where the resume offset (or the load error) goes.
        reply: Sender<Result<Option<u64>, String>>,
    },
    /// Checkpoint and release the partition; replies with the offset to commit: its next
    /// offset, or none when its dead letters could not be published.
    Revoke {
        /// The partition.
        partition: i32,
        /// Where the offset to commit goes.
        reply: Sender<Option<u64>>,
    },
}

/// A checkpoint became durable: offsets below `next_offset` may be committed.
#[derive(Debug, Clone, Copy)]
pub struct Durable {
    /// The partition.
    pub partition: i32,
    /// Offsets below this are reflected in its durable checkpoint.
    pub next_offset: u64,
}

/// State could not be persisted: the process must stop before any offset moves past it.
#[derive(Debug)]
pub struct Failure {
    /// What was being written.
    pub what: &'static str,
    /// Why it failed.
    pub error: StateError,
}

struct Slot {
    partition: Partition,
    dirty: bool,
    rejects: Vec<RejectRecord>,
}

/// One shard: the partitions assigned to it, and where it persists them.
pub struct Shard<S: PartitionStore = StateDir, L: LetterSink = TopicWriter> {
    settings: Arc<Settings>,
    state: S,
    slots: BTreeMap<i32, Slot>,
    reports: Sender<Durable>,
    wake_assembler: Sender<()>,
    dlq: L,
    /// `CLEARHOUSE_INJECT_PANIC=<partition>:<offset>`: panic when applying that message.
    inject_panic: Option<(i32, u64)>,
    /// `CLEARHOUSE_INJECT_CRASH=after-checkpoint`: abort right after saving a checkpoint that
    /// holds unpublished dead letters.
    inject_crash_after_checkpoint: bool,
}

/// The fault-injection hook of the failure tests (docs/operations.md): a shard that reaches the
/// named message panics, as a bug would. Read once; unset in production.
fn injected_panic() -> Option<(i32, u64)> {
    let spec = std::env::var("CLEARHOUSE_INJECT_PANIC").ok()?;
    let (partition, offset) = spec.split_once(':')?;
    Some((partition.parse().ok()?, offset.parse().ok()?))
}

impl Shard {
    /// The daemon's shard, with the failure tests' fault hooks read from the environment.
    pub(crate) fn with_test_hooks(mut self) -> Shard {
        self.inject_panic = injected_panic();
        self.inject_crash_after_checkpoint =
            std::env::var("CLEARHOUSE_INJECT_CRASH").is_ok_and(|v| v == "after-checkpoint");
        self
    }

    /// Runs until the queue closes. A failure to persist state stops the process: continuing
    /// would commit offsets the state does not reflect.
    pub(crate) fn run(mut self, input: Receiver<Command>) {
        for command in input {
            if let Err(failure) = self.handle(command) {
                fatal(failure.what, &failure.error);
            }
        }
    }
}

impl<S: PartitionStore, L: LetterSink> Shard<S, L> {
    /// A shard with no partitions, persisting to `state` and publishing dead letters to `dlq`;
    /// durable checkpoints are reported to `reports`, sealed windows to `wake_assembler`.
    pub fn new(
        settings: Arc<Settings>,
        state: S,
        reports: Sender<Durable>,
        wake_assembler: Sender<()>,
        dlq: L,
    ) -> Shard<S, L> {
        Shard {
            settings,
            state,
            slots: BTreeMap::new(),
            reports,
            wake_assembler,
            dlq,
            inject_panic: None,
            inject_crash_after_checkpoint: false,
        }
    }

    /// Carries out one command. An error means state could not be persisted, and the process
    /// must stop (the daemon exits; the simulator counts it a crash).
    pub fn handle(&mut self, command: Command) -> Result<(), Failure> {
        {
            match command {
                Command::Records(messages) => self.apply(messages),
                Command::Idle { partition, now } => {
                    // A new horizon is a seal the assembler must see even when it closed no
                    // window here (a partition without messages seals by the wall clock alone),
                    // or every window would wait for this partition forever.
                    let moved = self.slots.get_mut(&partition).is_some_and(|slot| {
                        let before = slot.partition.seals().last().copied();
                        slot.partition.idle(now);
                        slot.partition.seals().last().copied() != before
                    });
                    if moved {
                        self.persist(partition)?;
                    }
                }
                Command::Checkpoint => {
                    let dirty: Vec<i32> = self.slots.iter().filter(|(_, s)| s.dirty).map(|(p, _)| *p).collect();
                    for p in dirty {
                        self.persist(p)?;
                    }
                }
                Command::Assign { partition, reply } => {
                    let _ = reply.send(self.assign(partition));
                }
                Command::Revoke { partition, reply } => {
                    let next = if self.slots.contains_key(&partition) {
                        self.persist(partition)?;
                        // Dead letters whose publication failed are in the checkpoint, for the
                        // next owner to send; no offset past them is committed until then.
                        let released = self.slots.remove(&partition);
                        released.filter(|s| s.partition.dead_letters().is_empty()).map(|s| s.partition.next_offset())
                    } else {
                        None
                    };
                    let _ = reply.send(next);
                }
            }
            let sealed: Vec<i32> =
                self.slots.iter().filter(|(_, s)| s.partition.has_sealed()).map(|(p, _)| *p).collect();
            for p in sealed {
                self.persist(p)?;
            }
            Ok(())
        }
    }

    /// Takes `partition` over from its checkpoint. The parts a crashed owner wrote for windows
    /// its checkpoint had not sealed yet are removed first: this owner seals those windows
    /// again, maybe at other offsets, maybe with nothing of its own in a window the crashed one
    /// had a part of, and then no part may be there (the assembler reads a missing part as
    /// "nothing in it"). Found by `clearhouse-sim` with idle ticks ahead of the data.
    fn assign(&mut self, partition: i32) -> Result<Option<u64>, String> {
        let state = self.state.load(partition).map_err(|e| crate::error_chain(&e))?;
        let closed_before = state.as_ref().and_then(|s| s.seals.last()).map(|s| s.closed_before);
        self.state.discard_parts_after(partition, closed_before).map_err(|e| crate::error_chain(&e))?;
        let resume = state.as_ref().map(|s| s.next_offset);
        let settings = &self.settings;
        let p = Partition::new(
            Arc::clone(&settings.calendar),
            Arc::clone(&settings.policy),
            settings.horizons(),
            state.unwrap_or_default(),
        );
        tracing::info!(
            partition,
            resume_offset = resume,
            open_instructions = p.open_instructions(),
            "partition assigned"
        );
        // Dead letters a previous owner saved but may not have published go out at the next
        // checkpoint.
        let dirty = resume.is_none() || !p.dead_letters().is_empty();
        self.slots.insert(partition, Slot { partition: p, dirty, rejects: Vec::new() });
        Ok(resume)
    }

    fn apply(&mut self, messages: Vec<Msg>) {
        let (mut consumed, mut accepted, mut duplicates, mut late) = (0, 0, 0, 0);
        for msg in messages {
            if self.inject_panic == Some((msg.partition, msg.offset)) {
                panic!("injected fault at partition {} offset {}", msg.partition, msg.offset);
            }
            let Some(slot) = self.slots.get_mut(&msg.partition) else { continue };
            let message = Message {
                offset: msg.offset,
                key: msg.key.as_deref(),
                timestamp: msg.timestamp,
                payload: &msg.payload,
            };
            let Some(outcome) = slot.partition.apply(message) else { continue };
            slot.dirty = true;
            consumed += 1;
            match outcome {
                Outcome::Accepted { late: is_late } => {
                    accepted += 1;
                    late += u64::from(is_late);
                }
                Outcome::Duplicate(_) => duplicates += 1,
                Outcome::Rejected(record) => {
                    telemetry::rejected(msg.partition, msg.offset, record.reject.reason);
                    slot.rejects.push(record);
                }
            }
        }
        telemetry::netted(consumed, accepted, duplicates, late);
    }

    /// Writes sealed parts, then the checkpoint (with the dead letters of its rejects), then
    /// publishes those dead letters and, once the broker acknowledged them, reports the
    /// checkpoint so its offsets may be committed.
    fn persist(&mut self, partition: i32) -> Result<(), Failure> {
        let Some(slot) = self.slots.get_mut(&partition) else { return Ok(()) };
        let started = Instant::now();
        // Written before the checkpoint that records the seal: the assembler can then tell a
        // part at another fence for damage.
        for part in slot.partition.take_sealed() {
            let saved = self.state.save_part(partition, &part);
            saved.map_err(|error| Failure { what: "cannot save a window part", error })?;
        }
        let topic = &self.settings.input_topic;
        let letters: Vec<_> = slot.rejects.drain(..).map(|r| reject_message(topic, partition, &r)).collect();
        slot.partition.queue_dead_letters(letters);
        let open = slot.partition.open_instructions() as u64;
        let open_windows = slot.partition.open_windows();
        let saved = self.state.save(partition, &slot.partition.checkpoint(), open);
        saved.map_err(|error| Failure { what: "cannot save a checkpoint", error })?;
        slot.dirty = false;
        let next_offset = slot.partition.next_offset();
        telemetry::checkpointed(&telemetry::Checkpointed {
            partition,
            next_offset,
            open_windows,
            open_instructions: open,
            oldest_open_end: slot.partition.oldest_open_window().map(|w| w.end()),
            took: started.elapsed(),
        });
        let _ = self.wake_assembler.try_send(());
        if self.inject_crash_after_checkpoint && !slot.partition.dead_letters().is_empty() {
            tracing::warn!(partition, "injected crash after a checkpoint with unpublished dead letters");
            std::process::abort();
        }
        if self.dlq.publish(&self.settings.dlq_topic, slot.partition.dead_letters()) {
            slot.partition.dead_letters_published();
            let _ = self.reports.try_send(Durable { partition, next_offset });
        } else {
            // Kept in the checkpoint and in memory: sent again at the next checkpoint (or by the
            // next owner), and no offset past them is committed until then.
            slot.dirty = true;
        }
        Ok(())
    }
}

/// Publishes dead letters and waits for the broker's acknowledgement of every one.
fn publish(dlq: &mut TopicWriter, topic: &str, letters: &[(String, Vec<u8>)]) -> bool {
    if letters.is_empty() {
        return true;
    }
    for (key, payload) in letters {
        if let Err(e) = dlq.send_to(topic, key.as_bytes(), payload) {
            telemetry::kafka_error(&e);
            return false;
        }
    }
    match dlq.flush(Duration::from_secs(30)) {
        Ok(_) => true,
        Err(e) => {
            telemetry::kafka_error(&e);
            false
        }
    }
}

/// State that cannot be persisted must stop the process before any offset moves past it.
fn fatal(what: &str, error: &dyn std::error::Error) -> ! {
    tracing::error!(error = crate::error_chain(error), "{what}; stopping");
    std::process::exit(70);
}
