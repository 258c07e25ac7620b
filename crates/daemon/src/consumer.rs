//! The consumer thread: the only owner of the group consumer. It carries what rdkafka's `poll`
//! and rebalance callbacks say to the loop's decisions (`intake.rs`: batches per shard, idle
//! ticks at partition EOF, periodic checkpoints, what to commit), and their answers back to the
//! broker. Those decisions are apart so the simulator runs them too.
//!
//! Rebalances are handled inside `poll`, on this thread: a revoked partition is checkpointed by
//! its shard before it is given up, and an assigned partition starts at the offset of its
//! checkpoint (the committed offset only serves lag monitoring and tools). Sending to a full
//! shard queue blocks this thread, which stops polling: that is the backpressure.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::ClientContext;

use crate::intake::{Channels, Intake};
use crate::shard::{Command, Durable, Msg};
use crate::stranded::StrandedCheck;
use crate::{telemetry, DaemonError, Settings};

/// Rebalance handling: talks to the shards synchronously from inside `poll`.
pub(crate) struct GroupContext {
    settings: Arc<Settings>,
    /// The loop's decisions. Locked by the consumer thread for each event, never across a
    /// `poll`, inside which the rebalance callback locks it.
    intake: Mutex<Intake<Channels>>,
    shards: Vec<Sender<Command>>,
    ready: Arc<AtomicBool>,
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
        let Ok(intake) = self.intake.try_lock() else { return };
        let owned = intake.owned().clone();
        drop(intake);
        let Some(topic) = statistics.topics.get(&self.settings.input_topic) else { return };
        for (partition, stats) in &topic.partitions {
            if owned.contains(partition) && stats.consumer_lag >= 0 {
                telemetry::lag(*partition, stats.consumer_lag);
            }
        }
    }
}

impl GroupContext {
    fn intake(&self) -> MutexGuard<'_, Intake<Channels>> {
        self.intake.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Checkpoints and releases `partitions`; returns the offsets to commit.
    fn release(&self, partitions: &[i32]) -> TopicPartitionList {
        self.offsets(&self.intake().revoked(partitions))
    }

    fn offsets(&self, offsets: &[(i32, u64)]) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for &(partition, next) in offsets {
            let _ = tpl.add_partition_offset(&self.settings.input_topic, partition, Offset::Offset(next as i64));
        }
        tpl
    }

    fn take(&self, tpl: &mut TopicPartitionList) -> Result<(), String> {
        let topic = self.settings.input_topic.clone();
        let partitions: Vec<i32> = tpl.elements_for_topic(&topic).iter().map(|e| e.partition()).collect();
        let resumed = self.intake().assigned(&partitions)?;
        for (partition, resume) in resumed {
            let offset = resume.map_or(Offset::Beginning, |next| Offset::Offset(next as i64));
            tpl.set_partition_offset(&topic, partition, offset).map_err(|e| e.to_string())?;
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
                tracing::info!(partitions = ?self.intake().owned(), "partitions assigned");
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
    let intake = Mutex::new(Intake::new(Channels(shards.clone()), settings.batch_messages));
    let context =
        GroupContext { settings: Arc::clone(settings), intake, shards, ready, assigned: AtomicBool::new(false) };
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
    let context = consumer.context();
    let (mut last_tick, mut last_checkpoint, mut last_flush) = (Instant::now(), Instant::now(), Instant::now());
    let mut stranded = StrandedCheck::new(settings);
    while !shutdown.load(Ordering::Relaxed) {
        match consumer.poll(Duration::from_millis(50)) {
            Some(Ok(message)) => {
                context.intake().message(Msg {
                    partition: message.partition(),
                    offset: message.offset() as u64,
                    key: message.key().map(<[u8]>::to_vec),
                    timestamp: crate::record_time(message.timestamp()),
                    payload: message.payload().unwrap_or_default().to_vec(),
                });
                if last_flush.elapsed() < Duration::from_millis(20) {
                    continue;
                }
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                context.intake().end_of_partition(partition, settings.clock.now());
            }
            Some(Err(KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownTopicOrPartition)))
            | Some(Err(_))
            | None => {}
        }
        context.intake().flush();
        last_flush = Instant::now();
        if last_tick.elapsed() >= settings.idle_tick {
            last_tick = Instant::now();
            context.intake().tick(settings.clock.now());
            context.shards.iter().enumerate().for_each(|(i, s)| telemetry::queue_depth(i, s.len()));
        }
        if last_checkpoint.elapsed() >= settings.checkpoint_interval {
            last_checkpoint = Instant::now();
            context.intake().checkpoint();
        }
        let committable = context.intake().committable(reports.try_iter());
        commit(&consumer, &committable, CommitMode::Async);
        let owns_none = context.assigned.load(Ordering::Relaxed) && context.intake().owned().is_empty();
        stranded.check(&consumer, settings, owns_none);
    }
    let owned = context.intake().owned().clone();
    let released = context.intake().release_all();
    commit(&consumer, &released, CommitMode::Sync);
    tracing::info!(partitions = ?owned, "partitions checkpointed and released");
    consumer.unsubscribe();
}

fn commit(consumer: &BaseConsumer<GroupContext>, offsets: &[(i32, u64)], mode: CommitMode) {
    if offsets.is_empty() {
        return;
    }
    if let Err(e) = consumer.commit(&consumer.context().offsets(offsets), mode) {
        telemetry::kafka_error(&e);
    }
}
