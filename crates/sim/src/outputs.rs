//! The simulated world the window assembler sees: the output directory, the publication
//! markers and the credits and windows topics, behind the same interfaces the daemon's
//! assembler uses (`AssemblyState`, `OutputStore`, `Topics`), with faults at every write, read
//! back and flush.
//!
//! A broker models what librdkafka does with a queue of messages: `send` only queues; a flush
//! that succeeds lands them all; a flush that fails (a broker outage longer than the timeout)
//! lands some of them, in order, and purges the rest, as `TopicWriter::flush` does; a lost
//! acknowledgement lands them all and still fails; a process that dies mid-flush leaves what
//! was already on the wire landed and the rest lost.

use std::collections::BTreeMap;

use clearhouse_daemon::assemble::{AssemblyState, Message, Topics};
use clearhouse_daemon::state_dir::{decode_part, decode_progress, StateError};
use clearhouse_daemon::{DaemonError, Progress};
use clearhouse_domain::WindowId;
use clearhouse_engine::stream::SealedPart;
use clearhouse_formats::{OutputStore, PutOutcome, StoreError};
use rand::Rng;

use crate::world::{io_error, Fault, SimIo, Step, World};

/// Partitions of the credits topic (the windows topic has one).
const CREDIT_PARTITIONS: usize = 3;

impl AssemblyState for SimIo {
    fn progress(&self, partition: i32) -> Result<Option<Progress>, StateError> {
        let world = self.world.borrow();
        world.checkpoint_bytes(partition).map(|bytes| decode_progress(bytes, "sim")).transpose()
    }

    fn windows_with_parts(&self) -> Result<Vec<WindowId>, StateError> {
        let mut windows: Vec<WindowId> = self.world.borrow().parts().keys().map(|(w, _)| *w).collect();
        windows.dedup();
        Ok(windows)
    }

    fn part(&self, window: WindowId, partition: i32) -> Result<Option<SealedPart>, StateError> {
        let world = self.world.borrow();
        world.parts().get(&(window, partition)).map(|bytes| decode_part(bytes, "sim")).transpose()
    }

    fn marker(&self, window: WindowId, name: &str) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.world.borrow().markers.get(&(window, name.to_owned())).cloned())
    }

    fn mark(&self, window: WindowId, name: &str, bytes: &[u8]) -> Result<(), StateError> {
        let mut world = self.step();
        let fault = world.fault(Step::Mark);
        if matches!(fault, None | Some(Fault::CrashAfter)) {
            world.markers.insert((window, name.to_owned()), bytes.to_vec());
        }
        fault.map_or(Ok(()), |_| Err(io_error(Step::Mark)))
    }
}

impl OutputStore for SimIo {
    fn put(&self, name: &str, bytes: &[u8]) -> Result<PutOutcome, StoreError> {
        let mut world = self.step();
        let conflict = || StoreError::Conflict { path: name.into() };
        match world.files.get(name) {
            Some(existing) if existing == bytes => return Ok(PutOutcome::AlreadyIdentical),
            Some(_) => {
                world.violations.push(format!("file {name} written again with different content"));
                return Err(conflict());
            }
            None => {}
        }
        let fault = world.fault(Step::WriteFile);
        if matches!(fault, None | Some(Fault::CrashAfter)) {
            world.files.insert(name.to_owned(), bytes.to_vec());
        }
        match fault {
            None => Ok(PutOutcome::Written),
            Some(_) => Err(storage_error(Step::WriteFile)),
        }
    }

    fn get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.world.borrow().files.get(name).cloned())
    }

    fn list(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.world.borrow().files.keys().cloned().collect())
    }
}

fn storage_error(step: Step) -> StoreError {
    StoreError::Io { path: "sim".into(), source: std::io::Error::other(format!("simulated fault at {step:?}")) }
}

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
        let mut world = self.io.world.borrow_mut();
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
pub(crate) struct FilesView<'a>(&'a BTreeMap<String, Vec<u8>>);

impl World {
    /// The output directory, read-only.
    pub(crate) fn io_store(&self) -> FilesView<'_> {
        FilesView(&self.files)
    }
}

impl OutputStore for FilesView<'_> {
    fn put(&self, name: &str, _: &[u8]) -> Result<PutOutcome, StoreError> {
        Err(StoreError::Conflict { path: name.into() })
    }

    fn get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.0.get(name).cloned())
    }

    fn list(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.0.keys().cloned().collect())
    }
}
