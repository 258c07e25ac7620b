//! The daemon's output topics. The credits and windows topics are the double-payment guard: before
//! it publishes, the assembler (and `replay --emit`) reads them back to see what is already there.
//! A topic that forgets messages would make a re-run pay again, so they are created compacted
//! with unlimited retention, and an existing one that can forget is refused unless the operator
//! says otherwise.

use clearhouse_daemon::Settings;
use clearhouse_kafka::{ClientError, TopicSpec};

use crate::Config;

/// Why the output topics cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    /// The broker refused or could not be reached.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A topic the double-payment guard reads back can forget messages.
    #[error(
        "topic {topic} can forget messages ({why}): the daemon reads it back so that nobody is paid twice; \\
         make it cleanup.policy=compact or retention.ms=-1 (or set [daemon] allow_forgetful_output_topics = true)"
    )]
    Forgetful {
        /// The topic.
        topic: String,
        /// Its settings that allow it to forget.
        why: String,
    },
}

/// Settings of the credits and windows topics: compacted (one message per key kept forever).
const KEEP_FOREVER: [(&str, &str); 2] = [("cleanup.policy", "compact"), ("retention.ms", "-1")];

/// Creates the output topics when configured to, then checks that the credits and windows
/// topics cannot forget what was published.
pub fn ensure_output_topics(config: &Config, settings: &Settings) -> Result<(), TopicError> {
    let d = &config.daemon;
    let replication = i32::from(d.replication_factor);
    if replication == 1 {
        tracing::warn!(
            "[daemon] replication_factor = 1: one broker's loss can lose credits; only for single-broker clusters"
        );
    }
    let guarded = [settings.credits_topic.as_str(), settings.windows_topic.as_str()];
    if d.create_topics {
        for name in guarded {
            let spec = TopicSpec { name, partitions: 1, replication, configs: &KEEP_FOREVER };
            settings.kafka.create_topic(&spec)?;
        }
        let dlq = TopicSpec { name: &settings.dlq_topic, partitions: 1, replication, configs: &[] };
        settings.kafka.create_topic(&dlq)?;
    }
    for topic in guarded {
        let config = settings.kafka.topic_config(topic)?;
        if let Some(why) = forgetful(&config) {
            if !d.allow_forgetful_output_topics {
                return Err(TopicError::Forgetful { topic: topic.to_owned(), why });
            }
            tracing::warn!(topic, why, "output topic can forget messages (allowed by configuration)");
        }
    }
    Ok(())
}

/// Why a topic with these settings can drop a message that was published, if it can.
fn forgetful(config: &std::collections::BTreeMap<String, String>) -> Option<String> {
    let policy = config.get("cleanup.policy").map_or("delete", String::as_str);
    let compact_only = policy.split(',').map(str::trim).all(|p| p == "compact");
    let unlimited = |key: &str| config.get(key).is_none_or(|v| v == "-1");
    if compact_only || (unlimited("retention.ms") && unlimited("retention.bytes")) {
        return None;
    }
    let value = |key: &str| config.get(key).map_or("broker default", String::as_str).to_owned();
    Some(format!(
        "cleanup.policy={policy}, retention.ms={}, retention.bytes={}",
        value("retention.ms"),
        value("retention.bytes")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn only_compacted_or_unlimited_topics_keep_every_credit() {
        assert_eq!(forgetful(&settings(&[("cleanup.policy", "compact"), ("retention.ms", "604800000")])), None);
        assert_eq!(forgetful(&settings(&[("cleanup.policy", "delete"), ("retention.ms", "-1")])), None);
        let week = settings(&[("cleanup.policy", "delete"), ("retention.ms", "604800000")]);
        assert_eq!(
            forgetful(&week).as_deref(),
            Some("cleanup.policy=delete, retention.ms=604800000, retention.bytes=broker default")
        );
        let both = settings(&[("cleanup.policy", "compact,delete"), ("retention.ms", "86400000")]);
        assert!(forgetful(&both).is_some(), "compact,delete also deletes");
    }
}
