//! What window assembly and publication touch, as two small interfaces: the output topics
//! ([`Topics`]) and the state directory's parts, progress and publication markers
//! ([`AssemblyState`]); output files go through `clearhouse_formats::OutputStore`. The daemon's
//! implementations are rdkafka and the state directory on disk; `clearhouse-sim` has in-memory
//! ones with a fault injector, so the simulator drives the same assembly code the daemon runs.

use std::collections::BTreeMap;
use std::time::Duration;

use clearhouse_domain::WindowId;
use clearhouse_engine::stream::SealedPart;
use clearhouse_kafka::TopicWriter;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::readback::{end_offsets, messages_since, reader};
use crate::state_dir::{Progress, StateDir, StateError};
use crate::{DaemonError, Settings};

const TIMEOUT: Duration = Duration::from_secs(30);

/// A message to publish or read back: key and payload.
pub type Message = (String, Vec<u8>);

/// The broker as publication uses it.
pub trait Topics {
    /// The number of partitions of `topic`.
    fn partitions(&mut self, topic: &str) -> Result<i32, DaemonError>;
    /// The end offset of every partition of `topic`.
    fn end_offsets(&mut self, topic: &str) -> Result<BTreeMap<i32, i64>, DaemonError>;
    /// Every message of `topic` from `start` (per partition; the beginning where absent) to
    /// its current end.
    fn messages_since(&mut self, topic: &str, start: &BTreeMap<i32, i64>) -> Result<Vec<Message>, DaemonError>;
    /// Queues a message.
    fn send(&mut self, topic: &str, key: &str, payload: &[u8]) -> Result<(), DaemonError>;
    /// Waits until every queued message is acknowledged. When it fails, whatever was not
    /// acknowledged has been purged: it may have landed, but it will not land after this
    /// returns, so a read-back afterwards sees everything that will ever be there.
    fn flush(&mut self) -> Result<(), DaemonError>;
}

/// What assembly reads of the state directory, and the markers it keeps there.
pub trait AssemblyState {
    /// A partition's progress (its seals) from its checkpoint; `None` before its first one.
    fn progress(&self, partition: i32) -> Result<Option<Progress>, StateError>;
    /// Windows some partition wrote a part of, oldest first.
    fn windows_with_parts(&self) -> Result<Vec<WindowId>, StateError>;
    /// A partition's part of a window.
    fn part(&self, window: WindowId, partition: i32) -> Result<Option<SealedPart>, StateError>;
    /// A publication marker of `window` (`credits.start`, `window.done`, ...).
    fn marker(&self, window: WindowId, name: &str) -> Result<Option<Vec<u8>>, StateError>;
    /// Sets a publication marker, durably, before it returns.
    fn mark(&self, window: WindowId, name: &str, bytes: &[u8]) -> Result<(), StateError>;
    /// Makes `window`'s markers durable before a publication reads and acts on them: the
    /// assembler lock is taken per pass, so another instance may have set one and died
    /// before its fsync.
    fn settle_markers(&self, window: WindowId) -> Result<(), StateError>;
}

impl AssemblyState for StateDir {
    fn progress(&self, partition: i32) -> Result<Option<Progress>, StateError> {
        StateDir::progress(self, partition)
    }

    fn windows_with_parts(&self) -> Result<Vec<WindowId>, StateError> {
        StateDir::windows_with_parts(self)
    }

    fn part(&self, window: WindowId, partition: i32) -> Result<Option<SealedPart>, StateError> {
        StateDir::part(self, window, partition)
    }

    fn marker(&self, window: WindowId, name: &str) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.emitted(window)?.read(name)?)
    }

    fn mark(&self, window: WindowId, name: &str, bytes: &[u8]) -> Result<(), StateError> {
        self.emitted(window)?.replace(name, bytes)?;
        Ok(())
    }

    fn settle_markers(&self, window: WindowId) -> Result<(), StateError> {
        Ok(self.emitted(window)?.make_durable()?)
    }
}

/// The output topics through rdkafka: a plain reader (never commits) and an idempotent
/// producer.
pub struct KafkaTopics {
    client: BaseConsumer,
    writer: TopicWriter,
}

impl KafkaTopics {
    /// Connects a reader under `<group_id>.<role>` and a producer.
    pub fn connect(settings: &Settings, role: &str) -> Result<KafkaTopics, DaemonError> {
        let client = reader(settings, role)?;
        let writer = TopicWriter::new(&settings.kafka, &settings.credits_topic)?;
        Ok(KafkaTopics { client, writer })
    }
}

impl Topics for KafkaTopics {
    fn partitions(&mut self, topic: &str) -> Result<i32, DaemonError> {
        let metadata = self.client.fetch_metadata(Some(topic), TIMEOUT)?;
        Ok(metadata.topics().first().map_or(0, |t| t.partitions().len()) as i32)
    }

    fn end_offsets(&mut self, topic: &str) -> Result<BTreeMap<i32, i64>, DaemonError> {
        end_offsets(&self.client, topic, TIMEOUT)
    }

    fn messages_since(&mut self, topic: &str, start: &BTreeMap<i32, i64>) -> Result<Vec<Message>, DaemonError> {
        messages_since(&self.client, topic, start, TIMEOUT)
    }

    fn send(&mut self, topic: &str, key: &str, payload: &[u8]) -> Result<(), DaemonError> {
        Ok(self.writer.send_to(topic, key.as_bytes(), payload)?)
    }

    fn flush(&mut self) -> Result<(), DaemonError> {
        self.writer.flush(TIMEOUT)?;
        Ok(())
    }
}
