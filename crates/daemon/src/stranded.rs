//! A guard against a stranded group: this instance holds no partition while a partition of the
//! topic has unread messages and its committed offset has not moved for a long while, so nobody
//! is consuming it. Tansu 0.6 does this when the member that led the group was killed: the next
//! member's SyncGroup is answered with an empty assignment after a few seconds and the group then
//! stays "stable" with every partition unowned. Apache Kafka does not, and the broker's group
//! listing cannot be used to tell (tansu drops the connection on DescribeGroups), but a
//! settlement daemon idling while instructions go unread is the worst outcome, so an instance
//! without partitions watches the committed offsets and rejoins the group when a partition has
//! unread messages and the same committed offset on two checks in a row. A rejoin only costs a rebalance: every partition is
//! checkpointed before it moves. Owners commit at every checkpoint that covers new messages, so
//! a live owner is never taken for a stuck one.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaResult;
use rdkafka::{Offset, TopicPartitionList};

use crate::consumer::GroupContext;
use crate::{telemetry, Settings};

const TIMEOUT: Duration = Duration::from_secs(2);

/// The previous observation of committed offsets.
pub(crate) struct StrandedCheck {
    every: Duration,
    last: Instant,
    committed: BTreeMap<i32, i64>,
}

impl StrandedCheck {
    /// Checks every three checkpoint intervals, and at least every 15 s.
    pub(crate) fn new(settings: &Settings) -> StrandedCheck {
        let every = (settings.checkpoint_interval * 3).max(Duration::from_secs(15));
        StrandedCheck { every, last: Instant::now(), committed: BTreeMap::new() }
    }

    /// Rejoins the group when this instance owns nothing and a partition is stuck.
    pub(crate) fn check(&mut self, consumer: &BaseConsumer<GroupContext>, settings: &Settings, owns_none: bool) {
        if !owns_none {
            self.committed.clear();
            return;
        }
        // The first observation is taken at once, so a stranded instance is found one period
        // after its empty assignment.
        let baseline = self.committed.is_empty() && self.last.elapsed() >= Duration::from_secs(1);
        if !baseline && self.last.elapsed() < self.every {
            return;
        }
        self.last = Instant::now();
        let stuck = match self.stuck(consumer, settings) {
            Ok(stuck) => stuck,
            Err(e) => return telemetry::kafka_error(&e),
        };
        if !stuck.is_empty() {
            self.committed.clear();
            telemetry::stranded_rejoin(&stuck);
            consumer.unsubscribe();
            if let Err(e) = consumer.subscribe(&[&settings.input_topic]) {
                telemetry::kafka_error(&e);
            }
        }
    }

    /// Partitions with unread messages whose committed offset did not move since the last check.
    fn stuck(&mut self, consumer: &BaseConsumer<GroupContext>, settings: &Settings) -> KafkaResult<Vec<i32>> {
        let topic = &settings.input_topic;
        let metadata = consumer.fetch_metadata(Some(topic), TIMEOUT)?;
        let mut tpl = TopicPartitionList::new();
        for p in metadata.topics().first().map(|t| t.partitions()).unwrap_or_default() {
            tpl.add_partition(topic, p.id());
        }
        let committed = consumer.committed_offsets(tpl, TIMEOUT)?;
        let mut stuck = Vec::new();
        let mut now = BTreeMap::new();
        for element in committed.elements() {
            let offset = match element.offset() {
                Offset::Offset(o) => o,
                _ => 0,
            };
            let (_, high) = consumer.fetch_watermarks(topic, element.partition(), TIMEOUT)?;
            if high > offset && self.committed.get(&element.partition()) == Some(&offset) {
                stuck.push(element.partition());
            }
            now.insert(element.partition(), offset);
        }
        self.committed = now;
        Ok(stuck)
    }
}
