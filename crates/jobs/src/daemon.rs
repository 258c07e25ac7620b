//! `[kafka]` and `[daemon]`: how `clearhouse run` connects and where it keeps its state, turned
//! into the daemon's resolved [`Settings`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clearhouse_daemon::{Clock, Settings};
use clearhouse_kafka::KafkaOptions;
use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;

use crate::{Config, ConfigError};

/// The daemon's topics, directories and sizing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonSection {
    /// Consumer group id; instances with the same id share the partitions.
    pub group_id: String,
    /// Topic of instructions (key = merchant_id).
    pub input_topic: String,
    /// Topic that receives one message per credit (key = EndToEndId).
    pub credits_topic: String,
    /// Topic that receives one message per closed window (key = window id).
    pub windows_topic: String,
    /// Dead-letter topic for rejected instructions (key = topic/partition/offset).
    pub dlq_topic: String,
    /// Create the three output topics (1 partition) at start when they are missing: credits and
    /// windows compacted with unlimited retention.
    pub create_topics: bool,
    /// Replication factor of the output topics it creates (1 only for a single-broker cluster).
    pub replication_factor: u16,
    /// Start even when the credits or windows topic can forget messages (not compacted, finite
    /// retention). The double-payment guard reads them back; only for tests and migrations.
    pub allow_forgetful_output_topics: bool,
    /// Directory of window files; shared by all instances of a group. Relative to the config.
    pub out_dir: PathBuf,
    /// Directory of checkpoints; shared by all instances of a group. Relative to the config.
    pub state_dir: PathBuf,
    /// Allowed lateness: a window is sealed on a partition when its event time (or, while the
    /// partition is idle, the wall clock) passes the window end plus this.
    pub grace_secs: u32,
    /// Days added to the refund period to make the history horizon: ids, captures, originals
    /// and refunds whose event time is that far before a partition's latest event time are
    /// forgotten, and instructions that old are rejected `history_expired` (docs/decisions.md).
    pub history_margin_days: u32,
    /// Maximum time between checkpoints of a partition that changed.
    pub checkpoint_interval_ms: u64,
    /// How often idle partitions are ticked with the wall clock.
    pub idle_tick_ms: u64,
    /// Netting shards (threads); partitions are spread over them (0: one per core).
    pub shards: usize,
    /// Capacity of each shard queue, in batches of `batch_messages`.
    pub queue_batches: usize,
    /// Messages per batch handed to a shard.
    pub batch_messages: usize,
    /// Address of `/metrics` and `/health/{live,ready}`; empty disables them.
    pub admin_listen: String,
    /// `system`, or an RFC 3339 instant that freezes the wall clock (replaying old topics).
    pub clock: String,
    /// Longest a SIGTERM waits for checkpoints, commits and the group leave before the process
    /// exits anyway (a broker that is down would otherwise hold it); what was not committed is
    /// re-read on the next start, as after a crash.
    pub shutdown_timeout_ms: u64,
}

impl Default for DaemonSection {
    fn default() -> Self {
        DaemonSection {
            group_id: "clearhouse".to_owned(),
            input_topic: "refund-instructions".to_owned(),
            credits_topic: "clearhouse.credits".to_owned(),
            windows_topic: "clearhouse.windows".to_owned(),
            dlq_topic: "clearhouse.dlq".to_owned(),
            create_topics: true,
            replication_factor: 3,
            allow_forgetful_output_topics: false,
            out_dir: PathBuf::from("out"),
            state_dir: PathBuf::from("state"),
            grace_secs: 300,
            history_margin_days: 30,
            checkpoint_interval_ms: 5000,
            idle_tick_ms: 1000,
            shards: 0,
            queue_batches: 8,
            batch_messages: 1024,
            admin_listen: "127.0.0.1:9464".to_owned(),
            clock: "system".to_owned(),
            shutdown_timeout_ms: 8000,
        }
    }
}

impl Config {
    /// The daemon's settings; `[kafka] brokers` is required.
    pub fn daemon_settings(&self) -> Result<Settings, ConfigError> {
        let kafka: KafkaOptions = self
            .kafka
            .clone()
            .ok_or_else(|| ConfigError::Invalid("[kafka] brokers is required for `clearhouse run`".to_owned()))?;
        let d = &self.daemon;
        let admin_listen = match d.admin_listen.as_str() {
            "" => None,
            text => Some(
                text.parse::<SocketAddr>()
                    .map_err(|e| ConfigError::Invalid(format!("[daemon] admin_listen {text:?}: {e}")))?,
            ),
        };
        let clock = match d.clock.as_str() {
            "system" => Clock::System,
            text => Clock::Fixed(text.parse::<Timestamp>().map_err(|e| {
                ConfigError::Invalid(format!("[daemon] clock {text:?} is neither \"system\" nor RFC 3339: {e}"))
            })?),
        };
        // Loaded configurations were checked already; this covers ones built in code.
        crate::limits::check_ranges(self)?;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Settings {
            kafka,
            group_id: d.group_id.clone(),
            input_topic: d.input_topic.clone(),
            credits_topic: d.credits_topic.clone(),
            windows_topic: d.windows_topic.clone(),
            dlq_topic: d.dlq_topic.clone(),
            out_dir: self.base_dir.join(&d.out_dir),
            state_dir: self.base_dir.join(&d.state_dir),
            grace: SignedDuration::from_secs(i64::from(d.grace_secs)),
            history_margin: SignedDuration::from_hours(24 * i64::from(d.history_margin_days)),
            checkpoint_interval: Duration::from_millis(d.checkpoint_interval_ms),
            idle_tick: Duration::from_millis(d.idle_tick_ms),
            shutdown_timeout: Duration::from_millis(d.shutdown_timeout_ms),
            shards: if d.shards == 0 { cores } else { d.shards },
            queue_batches: d.queue_batches,
            batch_messages: d.batch_messages,
            admin_listen,
            clock,
            calendar: Arc::new(self.calendar()?),
            policy: Arc::new(self.policy()?),
            debtor: self.debtor()?,
        })
    }
}
