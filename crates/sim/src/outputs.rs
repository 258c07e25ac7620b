//! The credits and windows topics as the window assembler sees them, behind the daemon's
//! `Topics` interface, with faults at every read-back, send and flush (the assembler's state
//! and output directories are the daemon's own, on the simulated disk).
//!
//! A broker models what librdkafka does with a queue of messages: `send` only queues; a flush
//! that succeeds lands them all; a flush that fails (a broker outage longer than the timeout)
//! lands some of them, in order, and purges the rest, as `TopicWriter::flush` does; a lost
//! acknowledgement lands them all and still fails; a process that dies mid-flush leaves what
//! was already on the wire landed and the rest lost.

use std::collections::BTreeMap;

use clearhouse_daemon::assemble::{Message, Topics};
use clearhouse_daemon::DaemonError;
use clearhouse_formats::{OutputStore, PutOutcome, StoreError};
use rand::Rng;

use crate::world::{lock, Fault, SimIo, Step, World};

/// Partitions of the credits topic (the windows topic has one).
const CREDIT_PARTITIONS: usize = 3;

fn broker_error(step: Step) -> DaemonError {
    DaemonError::State(format!("simulated broker fault at {step:?}"))
}

/// One process's producer and reader on the simulated broker.
#[derive(Debug)]
pub struct SimTopics {
    io: SimIo,
    /// The input topic and its partitions.
    input: (String, i32),
    /// Messages sent and not yet flushed: topic, key, payload.
    queue: Vec<(String, String, Vec<u8>)>,
}

impl SimTopics {
    /// A producer and reader on `io`'s broker; `input` names the instruction topic and its
    /// partition count.
    pub fn new(io: SimIo, input: (String, i32)) -> SimTopics {
        SimTopics { io, input, queue: Vec::new() }
    }

    /// The process died: what was on the wire (a random prefix of the queue) lands.
    pub fn die(&mut self) {
        let queue = std::mem::take(&mut self.queue);
        let mut world = lock(&self.io.world);
        let landed = world.draw(queue.len() + 1);
        queue.into_iter().take(landed).for_each(|m| world.append(m));
    }
}

impl World {
    /// Appends a message to its topic, in the partition its key hashes to.
    pub(crate) fn append(&mut self, (topic, key, payload): (String, String, Vec<u8>)) {
        let partitions = if topic.ends_with("credits") { CREDIT_PARTITIONS } else { 1 };
        let log = self.topics.entry(topic).or_insert_with(|| vec![Vec::new(); partitions]);
        let p = (xxhash_rust::xxh3::xxh3_64(key.as_bytes()) % partitions as u64) as usize;
        log[p].push((key, payload));
    }

    /// Every message (key, payload) on the output topic whose name ends with `suffix`.
    pub(crate) fn messages(&self, suffix: &str) -> impl Iterator<Item = &(String, Vec<u8>)> + use<'_> {
        let suffix = suffix.to_owned();
        let topics = self.topics.iter().filter(move |(name, _)| name.ends_with(&suffix));
        topics.flat_map(|(_, partitions)| partitions.iter().flatten())
    }

    /// How many messages the output topic whose name ends with `suffix` holds.
    pub fn published(&self, suffix: &str) -> usize {
        self.messages(suffix).count()
    }

    /// A number in `0..n` from the fault stream.
    pub(crate) fn draw(&mut self, n: usize) -> usize {
        self.rng.random_range(0..n.max(1))
    }
}

impl Topics for SimTopics {
    fn partitions(&mut self, topic: &str) -> Result<i32, DaemonError> {
        Ok(if topic == self.input.0 { self.input.1 } else { 1 })
    }

    fn end_offsets(&mut self, topic: &str) -> Result<BTreeMap<i32, i64>, DaemonError> {
        let mut world = self.io.step();
        if world.fault(Step::ReadTopic).is_some() {
            return Err(broker_error(Step::ReadTopic));
        }
        let log = world.topics.get(topic).map(Vec::as_slice).unwrap_or_default();
        Ok(log.iter().enumerate().map(|(p, messages)| (p as i32, messages.len() as i64)).collect())
    }

    fn messages_since(&mut self, topic: &str, start: &BTreeMap<i32, i64>) -> Result<Vec<Message>, DaemonError> {
        let mut world = self.io.step();
        if world.fault(Step::ReadTopic).is_some() {
            return Err(broker_error(Step::ReadTopic));
        }
        let log = world.topics.get(topic).map(Vec::as_slice).unwrap_or_default();
        let mut out = Vec::new();
        for (p, messages) in log.iter().enumerate() {
            let from = start.get(&(p as i32)).copied().unwrap_or(0).max(0) as usize;
            out.extend(messages.iter().skip(from).cloned());
        }
        Ok(out)
    }

    fn send(&mut self, topic: &str, key: &str, payload: &[u8]) -> Result<(), DaemonError> {
        if self.io.step().fault(Step::Send).is_some() {
            return Err(broker_error(Step::Send));
        }
        self.queue.push((topic.to_owned(), key.to_owned(), payload.to_vec()));
        Ok(())
    }

    fn flush(&mut self) -> Result<(), DaemonError> {
        let queue = std::mem::take(&mut self.queue);
        let mut world = self.io.step();
        let fault = world.fault(Step::Flush);
        let landed = match fault {
            None | Some(Fault::CrashAfter | Fault::AckLost) => queue.len(),
            Some(Fault::CrashBefore | Fault::Error) => world.draw(queue.len() + 1),
        };
        queue.into_iter().take(landed).for_each(|m| world.append(m));
        fault.map_or(Ok(()), |_| Err(broker_error(Step::Flush)))
    }
}

/// The output directory as `verify` reads it, after a run.
pub(crate) struct FilesView(pub(crate) BTreeMap<String, Vec<u8>>);

impl OutputStore for FilesView {
    fn put(&self, name: &str, _: &[u8]) -> Result<PutOutcome, StoreError> {
        Err(StoreError::Conflict { path: name.into() })
    }

    fn get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.0.get(name).cloned())
    }

    fn list(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.0.keys().cloned().collect())
    }

    fn remove_temps(&self) -> Result<usize, StoreError> {
        Err(StoreError::Conflict { path: "the output directory after a run is read-only".into() })
    }
}
