//! Topic administration: creating topics with the settings their use needs, and reading back the
//! settings a topic really has (a topic created by someone else may not have them).

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;

use crate::{ClientError, KafkaOptions};

/// A topic to create when it does not exist.
#[derive(Debug, Clone, Copy)]
pub struct TopicSpec<'a> {
    /// Topic name.
    pub name: &'a str,
    /// Partitions.
    pub partitions: i32,
    /// Replication factor.
    pub replication: i32,
    /// Topic configuration (`cleanup.policy`, `retention.ms`, ...).
    pub configs: &'a [(&'a str, &'a str)],
}

const TIMEOUT: Duration = Duration::from_secs(15);

impl KafkaOptions {
    fn admin(&self, topic: &str) -> Result<(AdminClient<DefaultClientContext>, tokio::runtime::Runtime), ClientError> {
        let admin = self.client_config().create()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|e| ClientError::CreateTopic { topic: topic.to_owned(), message: format!("no runtime: {e}") })?;
        Ok((admin, runtime))
    }

    /// Creates `topic` with `partitions` partitions (replication 1, broker defaults) unless it
    /// exists: the instruction topic of `gen --topic` and the tests.
    pub fn ensure_topic(&self, topic: &str, partitions: i32) -> Result<(), ClientError> {
        self.create_topic(&TopicSpec { name: topic, partitions, replication: 1, configs: &[] })
    }

    /// Creates the topic unless it exists (an existing topic is left as it is).
    pub fn create_topic(&self, spec: &TopicSpec<'_>) -> Result<(), ClientError> {
        let (admin, runtime) = self.admin(spec.name)?;
        let mut new_topic = NewTopic::new(spec.name, spec.partitions, TopicReplication::Fixed(spec.replication));
        for (key, value) in spec.configs {
            new_topic = new_topic.set(key, value);
        }
        let options = AdminOptions::new().operation_timeout(Some(TIMEOUT)).request_timeout(Some(TIMEOUT));
        let results =
            runtime.block_on(admin.create_topics([&new_topic], &options)).map_err(|e| ClientError::CreateTopic {
                topic: spec.name.to_owned(),
                message: format!("{e} (is {} reachable?)", self.brokers),
            })?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => return Err(ClientError::CreateTopic { topic: name, message: code.to_string() }),
            }
        }
        Ok(())
    }

    /// The configuration the broker reports for `topic` (every entry it describes).
    pub fn topic_config(&self, topic: &str) -> Result<BTreeMap<String, String>, ClientError> {
        let (admin, runtime) = self.admin(topic)?;
        let options = AdminOptions::new().request_timeout(Some(TIMEOUT));
        let failed = |message: String| ClientError::CreateTopic { topic: topic.to_owned(), message };
        let results = runtime
            .block_on(admin.describe_configs([&ResourceSpecifier::Topic(topic)], &options))
            .map_err(|e| failed(format!("cannot describe its configuration: {e}")))?;
        let mut out = BTreeMap::new();
        for result in results {
            let resource = result.map_err(|e| failed(format!("cannot describe its configuration: {e}")))?;
            for entry in resource.entries {
                if let Some(value) = entry.value {
                    out.insert(entry.name, value);
                }
            }
        }
        Ok(out)
    }
}
