//! A netting shard: one thread owning the partitions assigned to it, fed in offset order
//! through a bounded queue. Data and control (assign, revoke, idle ticks, checkpoints) share the
//! queue, so a checkpoint or a revoke always reflects exactly the messages queued before it.
//!
//! The shard never waits on the consumer thread: its reports are `try_send`, and a dropped
//! report only delays an offset commit (the checkpoint, not the commit, is what a new owner
//! resumes from).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clearhouse_domain::RejectRecord;
use clearhouse_engine::stream::{Message, Outcome, Partition};
use clearhouse_formats::events::reject_message;
use clearhouse_kafka::TopicWriter;
use crossbeam_channel::{Receiver, Sender};
use jiff::Timestamp;

use crate::state_dir::StateDir;
use crate::{telemetry, Settings};

/// One message of the instruction topic.
#[derive(Debug)]
pub(crate) struct Msg {
    pub(crate) partition: i32,
    pub(crate) offset: u64,
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) timestamp: Option<Timestamp>,
    pub(crate) payload: Vec<u8>,
}

/// Work for a shard.
pub(crate) enum Command {
    /// Messages in offset order per partition.
    Records(Vec<Msg>),
    /// The partition has no backlog at this wall-clock instant.
    Idle { partition: i32, now: Timestamp },
    /// Persist every partition that changed.
    Checkpoint,
    /// Take the partition from its checkpoint; replies with the offset to resume from.
    Assign { partition: i32, reply: Sender<Result<Option<u64>, String>> },
    /// Checkpoint and release the partition; replies with its next offset.
    Revoke { partition: i32, reply: Sender<Option<u64>> },
}

/// A checkpoint became durable: offsets below `next_offset` may be committed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Durable {
    pub(crate) partition: i32,
    pub(crate) next_offset: u64,
}

struct Slot {
    partition: Partition,
    dirty: bool,
    rejects: Vec<RejectRecord>,
}

pub(crate) struct Shard {
    settings: Arc<Settings>,
    state: StateDir,
    slots: BTreeMap<i32, Slot>,
    reports: Sender<Durable>,
    wake_assembler: Sender<()>,
    dlq: TopicWriter,
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
    pub(crate) fn new(
        settings: Arc<Settings>,
        state: StateDir,
        reports: Sender<Durable>,
        wake_assembler: Sender<()>,
        dlq: TopicWriter,
    ) -> Shard {
        let inject_panic = injected_panic();
        let inject_crash_after_checkpoint =
            std::env::var("CLEARHOUSE_INJECT_CRASH").is_ok_and(|v| v == "after-checkpoint");
        Shard {
            settings,
            state,
            slots: BTreeMap::new(),
            reports,
            wake_assembler,
            dlq,
            inject_panic,
            inject_crash_after_checkpoint,
        }
    }

    /// Runs until the queue closes. A failure to persist state stops the process: continuing
    /// would commit offsets the state does not reflect.
    pub(crate) fn run(mut self, input: Receiver<Command>) {
        for command in input {
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
                        self.persist(partition);
                    }
                }
                Command::Checkpoint => {
                    let dirty: Vec<i32> = self.slots.iter().filter(|(_, s)| s.dirty).map(|(p, _)| *p).collect();
                    dirty.into_iter().for_each(|p| self.persist(p));
                }
                Command::Assign { partition, reply } => {
                    let _ = reply.send(self.assign(partition));
                }
                Command::Revoke { partition, reply } => {
                    let next = self.slots.contains_key(&partition).then(|| {
                        self.persist(partition);
                        self.slots.remove(&partition).map(|s| s.partition.next_offset()).unwrap_or(0)
                    });
                    let _ = reply.send(next);
                }
            }
            let sealed: Vec<i32> =
                self.slots.iter().filter(|(_, s)| s.partition.has_sealed()).map(|(p, _)| *p).collect();
            sealed.into_iter().for_each(|p| self.persist(p));
        }
    }

    fn assign(&mut self, partition: i32) -> Result<Option<u64>, String> {
        let state = self.state.load(partition).map_err(|e| crate::error_chain(&e))?;
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
    fn persist(&mut self, partition: i32) {
        let Some(slot) = self.slots.get_mut(&partition) else { return };
        let started = Instant::now();
        // Written before the checkpoint that records the seal: the assembler can then tell a
        // part at another fence for damage.
        for part in slot.partition.take_sealed() {
            self.state.save_part(partition, &part).unwrap_or_else(|e| fatal("cannot save a window part", &e));
        }
        let topic = &self.settings.input_topic;
        let letters: Vec<_> = slot.rejects.drain(..).map(|r| reject_message(topic, partition, &r)).collect();
        slot.partition.queue_dead_letters(letters);
        let open = slot.partition.open_instructions() as u64;
        let open_windows = slot.partition.open_windows();
        let saved = self.state.save(partition, &slot.partition.checkpoint(), open);
        saved.unwrap_or_else(|e| fatal("cannot save a checkpoint", &e));
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
        if publish(&mut self.dlq, &self.settings.dlq_topic, slot.partition.dead_letters()) {
            slot.partition.dead_letters_published();
            let _ = self.reports.try_send(Durable { partition, next_offset });
        } else {
            // Kept in the checkpoint and in memory: sent again at the next checkpoint (or by the
            // next owner), and no offset past them is committed until then.
            slot.dirty = true;
        }
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
