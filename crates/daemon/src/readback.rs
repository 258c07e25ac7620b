//! Reading an output topic back: what was already published, so that nothing is published twice
//! (the assembler after a crash, `replay --emit` after lost output), and the dead letters of one
//! instruction (`trace`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use clearhouse_formats::events::RejectMessage;
use clearhouse_formats::trace::reject_is_of;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::{telemetry, DaemonError};

/// A plain reader for the daemon's tools (assembler, replay, emit, trace): its own group id
/// `<group_id>.<role>`, offsets assigned explicitly and never committed.
pub(crate) fn reader(settings: &crate::Settings, role: &str) -> Result<BaseConsumer, DaemonError> {
    let mut config = settings.kafka.client_config();
    config.set("group.id", format!("{}.{role}", settings.group_id)).set("enable.auto.commit", "false");
    Ok(config.create()?)
}

/// The end offset of every partition of `topic`.
pub(crate) fn end_offsets(
    client: &BaseConsumer,
    topic: &str,
    timeout: Duration,
) -> Result<BTreeMap<i32, i64>, DaemonError> {
    let metadata = client.fetch_metadata(Some(topic), timeout)?;
    let mut ends = BTreeMap::new();
    for p in metadata.topics().first().map(|t| t.partitions()).unwrap_or_default() {
        let (_, high) = client.fetch_watermarks(topic, p.id(), timeout)?;
        ends.insert(p.id(), high);
    }
    Ok(ends)
}

/// Every message of `topic` from `start` (per partition; the beginning where absent) to the
/// current end, as (key, payload).
pub(crate) fn messages_since(
    client: &BaseConsumer,
    topic: &str,
    start: &BTreeMap<i32, i64>,
    timeout: Duration,
) -> Result<Vec<(String, Vec<u8>)>, DaemonError> {
    let ends = end_offsets(client, topic, timeout)?;
    let mut tpl = TopicPartitionList::new();
    let mut pending: BTreeMap<i32, i64> = BTreeMap::new();
    for (&p, &end) in &ends {
        let from = start.get(&p).copied().unwrap_or(0);
        if from < end {
            tpl.add_partition_offset(topic, p, Offset::Offset(from))?;
            pending.insert(p, end);
        }
    }
    let mut messages = Vec::new();
    if pending.is_empty() {
        return Ok(messages);
    }
    client.assign(&tpl)?;
    let deadline = Instant::now() + timeout * 4;
    while !pending.is_empty() {
        if Instant::now() > deadline {
            return Err(DaemonError::State(format!("reading back {topic} timed out")));
        }
        match client.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
                messages.push((key, m.payload().unwrap_or_default().to_vec()));
                if pending.get(&m.partition()).is_some_and(|&end| m.offset() + 1 >= end) {
                    pending.remove(&m.partition());
                }
            }
            Some(Err(e)) => telemetry::kafka_error(&e),
            None => {}
        }
    }
    client.unassign()?;
    Ok(messages)
}

/// The dead letters of instruction `id` on the daemon's dead-letter topic (`trace` in `run`
/// mode, where rejects are not files). A reject whose id could not be read is matched by its
/// payload.
pub fn dead_letters_for(settings: &crate::Settings, id: &str) -> Result<Vec<RejectMessage>, DaemonError> {
    let client = reader(settings, "trace")?;
    let timeout = Duration::from_secs(30);
    let mut found = Vec::new();
    for (_, payload) in messages_since(&client, &settings.dlq_topic, &BTreeMap::new(), timeout)? {
        let Ok(message) = serde_json::from_slice::<RejectMessage>(&payload) else { continue };
        if reject_is_of(message.id.as_deref(), &message.payload, id) {
            found.push(message);
        }
    }
    Ok(found)
}
