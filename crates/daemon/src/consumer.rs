//! The consumer thread: the only owner of the group consumer. It batches messages per shard,
//! turns partition EOF into idle ticks, asks shards for periodic checkpoints and commits the
//! offsets they report durable.
//!
//! Rebalances are handled inside `poll`, on this thread: a revoked partition is checkpointed by
//! its shard before it is given up, and an assigned partition starts at the offset of its
//! checkpoint (the committed offset only serves lag monitoring and tools). Sending to a full
//! shard queue blocks this thread, which stops polling: that is the backpressure.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::ClientContext;

use crate::shard::{Command, Durable, Msg};
use crate::stranded::StrandedCheck;
use crate::{telemetry, DaemonError, Settings};

/// Rebalance handling: talks to the shards synchronously from inside `poll`.
pub(crate) struct GroupContext {
    settings: Arc<Settings>,
    shards: Vec<Sender<Command>>,
    ready: Arc<AtomicBool>,
    owned: std::sync::Mutex<BTreeSet<i32>>,
    /// Between an assignment and the next revocation (not while a rebalance is under way).
    assigned: AtomicBool,
}

impl ClientContext for GroupContext {
    fn error(&self, error: KafkaError, reason: &str) {
        // End of partition arrives through `poll` as well, where it means "idle".
        if !matches!(error, KafkaError::Global(RDKafkaErrorCode::PartitionEOF)) {
            telemetry::kafka_error(&format_args!("{error}: {reason}"));
        }
    }

    fn stats(&self, statistics: rdkafka::Statistics) {
        let owned = self.owned().clone();
        let Some(topic) = statistics.topics.get(&self.settings.input_topic) else { return };
        for (partition, stats) in &topic.partitions {
            if owned.contains(partition) && stats.consumer_lag >= 0 {
                telemetry::lag(*partition, stats.consumer_lag);
            }
        }
    }
}

impl GroupContext {
    fn shard(&self, partition: i32) -> &Sender<Command> {
        &self.shards[partition as usize % self.shards.len()]
    }

    fn owned(&self) -> std::sync::MutexGuard<'_, BTreeSet<i32>> {
        self.owned.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Checkpoints and releases `partitions`; returns the offsets to commit.
    fn release(&self, partitions: &[i32]) -> TopicPartitionList {
        let mut commit = TopicPartitionList::new();
        for &partition in partitions {
            let (tx, rx) = bounded(1);
            if self.shard(partition).send(Command::Revoke { partition, reply: tx }).is_err() {
                continue;
            }
            if let Ok(Some(next)) = rx.recv() {
                let _ = commit.add_partition_offset(&self.settings.input_topic, partition, Offset::Offset(next as i64));
            }
            self.owned().remove(&partition);
        }
        commit
    }

    fn take(&self, tpl: &mut TopicPartitionList) -> Result<(), String> {
        let topic = self.settings.input_topic.clone();
        let partitions: Vec<i32> = tpl.elements_for_topic(&topic).iter().map(|e| e.partition()).collect();
        for partition in partitions {
            let (tx, rx) = bounded(1);
            self.shard(partition).send(Command::Assign { partition, reply: tx }).map_err(|_| "shard stopped")?;
            let resume = rx.recv().map_err(|_| "shard stopped".to_owned())??;
            let offset = resume.map_or(Offset::Beginning, |next| Offset::Offset(next as i64));
            tpl.set_partition_offset(&topic, partition, offset).map_err(|e| e.to_string())?;
            self.owned().insert(partition);
        }
        Ok(())
    }
}

impl ConsumerContext for GroupContext {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                if let Err(problem) = self.take(tpl) {
                    tracing::error!(problem, "cannot restore an assigned partition; stopping");
                    std::process::exit(70);
                }
                tracing::info!(partitions = ?self.owned(), "partitions assigned");
                if let Err(e) = consumer.assign(tpl) {
                    telemetry::kafka_error(&e);
                }
                self.ready.store(true, Ordering::Relaxed);
                self.assigned.store(true, Ordering::Relaxed);
            }
            _ => {
                self.assigned.store(false, Ordering::Relaxed);
                let revoked: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                let commit = self.release(&revoked);
                tracing::info!(partitions = ?revoked, "partitions revoked");
                if commit.count() > 0 {
                    if let Err(e) = consumer.commit(&commit, CommitMode::Sync) {
                        telemetry::kafka_error(&e);
                    }
                }
                if let Err(e) = consumer.unassign() {
                    telemetry::kafka_error(&e);
                }
            }
        }
    }
}

/// Creates the group consumer and subscribes it.
pub(crate) fn subscribe(
    settings: &Arc<Settings>,
    shards: Vec<Sender<Command>>,
    ready: Arc<AtomicBool>,
) -> Result<BaseConsumer<GroupContext>, DaemonError> {
    let mut config = settings.kafka.client_config();
    if !settings.kafka.properties.contains_key("session.timeout.ms") {
        // librdkafka's 45 s default keeps a killed instance's partitions idle that long.
        config.set("session.timeout.ms", "10000").set("heartbeat.interval.ms", "1000");
    }
    config
        .set("group.id", &settings.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "range")
        .set("statistics.interval.ms", "5000");
    let context = GroupContext {
        settings: Arc::clone(settings),
        shards,
        ready,
        owned: std::sync::Mutex::new(BTreeSet::new()),
        assigned: AtomicBool::new(false),
    };
    let consumer: BaseConsumer<GroupContext> = config.create_with_context(context)?;
    consumer.subscribe(&[&settings.input_topic])?;
    Ok(consumer)
}

/// Polls until `shutdown`, then checkpoints and releases every partition.
pub(crate) fn run(
    consumer: BaseConsumer<GroupContext>,
    settings: &Settings,
    reports: Receiver<Durable>,
    shutdown: &AtomicBool,
) {
    let shards = consumer.context().shards.clone();
    let mut buffers: Vec<Vec<Msg>> = shards.iter().map(|_| Vec::new()).collect();
    let mut at_eof: BTreeSet<i32> = BTreeSet::new();
    let (mut last_tick, mut last_checkpoint, mut last_flush) = (Instant::now(), Instant::now(), Instant::now());
    let mut stranded = StrandedCheck::new(settings);
    while !shutdown.load(Ordering::Relaxed) {
        match consumer.poll(Duration::from_millis(50)) {
            Some(Ok(message)) => {
                let partition = message.partition();
                at_eof.remove(&partition);
                let shard = partition as usize % shards.len();
                buffers[shard].push(Msg {
                    partition,
                    offset: message.offset() as u64,
                    key: message.key().map(<[u8]>::to_vec),
                    timestamp: crate::record_time(message.timestamp()),
                    payload: message.payload().unwrap_or_default().to_vec(),
                });
                if buffers[shard].len() >= settings.batch_messages {
                    send(&shards[shard], Command::Records(std::mem::take(&mut buffers[shard])));
                }
                if last_flush.elapsed() < Duration::from_millis(20) {
                    continue;
                }
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                flush(&shards, &mut buffers);
                at_eof.insert(partition);
                idle(&shards, partition, settings);
            }
            Some(Err(KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownTopicOrPartition)))
            | Some(Err(_))
            | None => {}
        }
        flush(&shards, &mut buffers);
        last_flush = Instant::now();
        if last_tick.elapsed() >= settings.idle_tick {
            last_tick = Instant::now();
            let owned = consumer.context().owned().clone();
            at_eof.retain(|p| owned.contains(p));
            at_eof.iter().for_each(|&p| idle(&shards, p, settings));
            shards.iter().enumerate().for_each(|(i, s)| telemetry::queue_depth(i, s.len()));
        }
        if last_checkpoint.elapsed() >= settings.checkpoint_interval {
            last_checkpoint = Instant::now();
            shards.iter().for_each(|s| send(s, Command::Checkpoint));
        }
        commit_reported(&consumer, settings, &reports, CommitMode::Async);
        let context = consumer.context();
        let owns_none = context.assigned.load(Ordering::Relaxed) && context.owned().is_empty();
        stranded.check(&consumer, settings, owns_none);
    }
    flush(&shards, &mut buffers);
    let owned: Vec<i32> = consumer.context().owned().iter().copied().collect();
    let commit = consumer.context().release(&owned);
    if commit.count() > 0 {
        if let Err(e) = consumer.commit(&commit, CommitMode::Sync) {
            telemetry::kafka_error(&e);
        }
    }
    tracing::info!(partitions = ?owned, "partitions checkpointed and released");
    consumer.unsubscribe();
}

fn send(shard: &Sender<Command>, command: Command) {
    // A shard only stops when the process is going down.
    let _ = shard.send(command);
}

fn flush(shards: &[Sender<Command>], buffers: &mut [Vec<Msg>]) {
    for (shard, buffer) in shards.iter().zip(buffers.iter_mut()) {
        if !buffer.is_empty() {
            send(shard, Command::Records(std::mem::take(buffer)));
        }
    }
}

fn idle(shards: &[Sender<Command>], partition: i32, settings: &Settings) {
    let now = settings.clock.now();
    send(&shards[partition as usize % shards.len()], Command::Idle { partition, now });
}

fn commit_reported(
    consumer: &BaseConsumer<GroupContext>,
    settings: &Settings,
    reports: &Receiver<Durable>,
    mode: CommitMode,
) {
    let reported: Vec<Durable> = reports.try_iter().collect();
    if reported.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    let owned = consumer.context().owned().clone();
    for report in reported.into_iter().filter(|r| owned.contains(&r.partition)) {
        let offset = Offset::Offset(report.next_offset as i64);
        let _ = tpl.add_partition_offset(&settings.input_topic, report.partition, offset);
    }
    if tpl.count() > 0 {
        if let Err(e) = consumer.commit(&tpl, mode) {
            telemetry::kafka_error(&e);
        }
    }
}
