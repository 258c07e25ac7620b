//! Kafka plumbing shared by every command that talks to a broker.
//!
//! librdkafka reports a failed delivery asynchronously, and a default producer context drops
//! that report on the floor; `TopicWriter` counts every failure and `finish` refuses to report
//! success unless every message was acknowledged. Clients pass any librdkafka property through
//! (TLS, SASL, timeouts), so the project never has to mirror librdkafka's configuration.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig};
use rdkafka::ClientContext;
use serde::Deserialize;

mod topics;
pub use topics::TopicSpec;

/// How to reach the cluster.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaOptions {
    /// Bootstrap servers, `host:port[,host:port]`.
    pub brokers: String,
    /// Extra librdkafka properties (`security.protocol`, `sasl.mechanism`, `ssl.ca.location`, ...).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// Broker-side failures.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// librdkafka refused an operation.
    #[error("kafka client error")]
    Kafka(#[source] KafkaError),
    /// librdkafka refused a property (its value is never shown: it may be a credential).
    #[error("[kafka.properties] {key}: {problem}")]
    Property {
        /// The property name.
        key: String,
        /// What is wrong with it (librdkafka's words, without the value).
        problem: String,
    },
    /// Some messages were not acknowledged.
    #[error("{failed} of {sent} messages were not delivered; first error: {first}")]
    Delivery {
        /// Messages handed to the producer.
        sent: u64,
        /// Messages whose delivery failed or never completed.
        failed: u64,
        /// The first delivery error seen.
        first: String,
    },
    /// Topic creation failed.
    #[error("cannot create topic {topic}: {message}")]
    CreateTopic {
        /// The topic.
        topic: String,
        /// Broker message.
        message: String,
    },
}

impl From<KafkaError> for ClientError {
    /// librdkafka's configuration errors carry the property's value, which may be a password:
    /// keep the key and librdkafka's reason with the value cut out of it.
    fn from(e: KafkaError) -> ClientError {
        match e {
            KafkaError::ClientConfig(_, description, key, value) => {
                let mut problem = description.replace(&format!("\"{value}\""), "(value not shown)");
                if value.len() >= 8 {
                    problem = problem.replace(&value, "(value not shown)");
                }
                ClientError::Property { key, problem }
            }
            other => ClientError::Kafka(other),
        }
    }
}

impl KafkaOptions {
    /// Checks every property with librdkafka now, so a mistake is a configuration error at load
    /// that names the key and never its value.
    pub fn check(&self) -> Result<(), ClientError> {
        self.client_config().create_native_config().map(drop).map_err(ClientError::from)
    }

    /// A librdkafka configuration with the brokers and the pass-through properties.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        // OpenSSL is built in (vendored), so its compiled-in CA directory is not the system's:
        // unless told otherwise, look for the system's CA bundle where distributions keep it.
        let tls = self.properties.get("security.protocol").is_some_and(|p| p.to_ascii_lowercase().ends_with("ssl"));
        if tls && !self.properties.contains_key("ssl.ca.location") && !self.properties.contains_key("ssl.ca.pem") {
            config.set("ssl.ca.location", "probe");
        }
        config
    }
}

/// Counts delivery failures reported by librdkafka.
#[derive(Default)]
struct Deliveries {
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {
        if let Err((error, _)) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            let mut first = self.first_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            first.get_or_insert_with(|| error.to_string());
        }
    }
}

/// An idempotent producer to one topic.
pub struct TopicWriter {
    producer: BaseProducer<Deliveries>,
    /// What the producer was made from: a flush that fails replaces it (see [`TopicWriter::flush`]).
    config: ClientConfig,
    topic: String,
    sent: u64,
}

impl TopicWriter {
    /// Connects an idempotent producer (`acks=all`) for `topic`.
    pub fn new(options: &KafkaOptions, topic: &str) -> Result<TopicWriter, ClientError> {
        let mut config = options.client_config();
        config.set("enable.idempotence", "true").set("linger.ms", "5");
        let producer = config.create_with_context(Deliveries::default())?;
        Ok(TopicWriter { producer, config, topic: topic.to_owned(), sent: 0 })
    }

    /// Queues a message to the writer's topic (waits while the local queue is full).
    pub fn send(&mut self, key: &[u8], payload: &[u8]) -> Result<(), ClientError> {
        let topic = std::mem::take(&mut self.topic);
        let result = self.send_to(&topic, key, payload);
        self.topic = topic;
        result
    }

    /// Queues a message to `topic`.
    pub fn send_to(&mut self, topic: &str, key: &[u8], payload: &[u8]) -> Result<(), ClientError> {
        self.send_stamped(topic, key, payload, None)
    }

    /// Queues a message to `topic` with the record timestamp `timestamp_ms` (milliseconds since
    /// the epoch; `None`: the producer's clock).
    pub fn send_stamped(
        &mut self,
        topic: &str,
        key: &[u8],
        payload: &[u8],
        timestamp_ms: Option<i64>,
    ) -> Result<(), ClientError> {
        loop {
            let mut record = BaseRecord::<[u8], [u8]>::to(topic).key(key).payload(payload);
            if let Some(ms) = timestamp_ms {
                record = record.timestamp(ms);
            }
            match self.producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    self.producer.poll(Duration::from_millis(50));
                }
                Err((error, _)) => return Err(error.into()),
            }
        }
        self.sent += 1;
        self.producer.poll(Duration::ZERO);
        Ok(())
    }

    /// Waits until every queued message is acknowledged; fails when any was not. Counters
    /// start again from zero, so the writer can be reused.
    ///
    /// A flush that times out (a broker down for longer) purges what is still queued or in
    /// flight, and replaces the producer, before it returns. Otherwise librdkafka would deliver
    /// those messages whenever the broker came back, after the caller had read the topic back
    /// and sent the missing ones again, and a credit would be paid twice. The producer is
    /// replaced because an idempotent one whose in-flight messages were purged has a gap in its
    /// sequence numbers, which the broker refuses from then on. A request already on the wire
    /// when it is purged may still be appended by the broker (docs/exactly-once.md).
    pub fn flush(&mut self, timeout: Duration) -> Result<u64, ClientError> {
        let flushed = self.producer.flush(timeout);
        let context = self.producer.context();
        let mut failed = context.failed.swap(0, Ordering::Relaxed);
        let mut first = context.first_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Err(error) = flushed {
            failed += self.producer.in_flight_count().max(0) as u64;
            first.get_or_insert_with(|| error.to_string());
            self.producer.purge(PurgeConfig::default().queue().inflight());
            self.producer = self.config.create_with_context(Deliveries::default())?;
        }
        let sent = std::mem::take(&mut self.sent);
        match failed {
            0 => Ok(sent),
            _ => Err(ClientError::Delivery { sent, failed, first: first.unwrap_or_default() }),
        }
    }

    /// Flushes and closes the writer; fails unless every message was acknowledged.
    pub fn finish(mut self, timeout: Duration) -> Result<u64, ClientError> {
        self.flush(timeout)
    }
}
