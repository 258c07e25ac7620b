//! `clearhouse run`: the Kafka daemon.
//!
//! ```text
//! group consumer ──Records/Idle/Checkpoint──▶ shards (partition % S, one thread each)
//!      ▲  commits durable offsets                 │ checkpoint + parts → state dir
//!      └────────────── Durable ───────────────────┘ rejects → dead-letter topic
//! assembler (any instance, under a lock): every partition sealed window W
//!      → files in out_dir, credits topic, windows topic (each exactly once)
//! ```
//!
//! Effectively-once without Kafka transactions: a partition's netting state and the offset it
//! reflects are one atomic file, offsets are committed only after it is durable, a restarted or
//! new owner resumes from that file, and every output is deterministic and published through an
//! idempotent step. `docs/exactly-once.md` walks through each crash point.

pub mod assemble;
mod consumer;
pub mod emit;
pub mod intake;
mod readback;
pub mod replay;
pub mod shard;
pub mod state_dir;
mod stranded;
pub mod telemetry;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clearhouse_domain::{Calendar, Payee, Policy};
use clearhouse_kafka::{KafkaOptions, TopicWriter};
use crossbeam_channel::bounded;
use jiff::{SignedDuration, Timestamp};

pub use readback::dead_letters_for;
pub use state_dir::{Progress, StateDir, StateError};

/// Where wall-clock time comes from (window closing on idle partitions, close latency).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// The system clock.
    System,
    /// A frozen instant: idle partitions close nothing after it (tests, replays of old topics).
    Fixed(Timestamp),
}

impl Clock {
    /// The current instant.
    pub fn now(&self) -> Timestamp {
        match self {
            Clock::System => Timestamp::now(),
            Clock::Fixed(t) => *t,
        }
    }
}

/// Everything the daemon needs, resolved from the configuration file.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Brokers and librdkafka properties (TLS/SASL included).
    pub kafka: KafkaOptions,
    /// Consumer group id.
    pub group_id: String,
    /// Instruction topic.
    pub input_topic: String,
    /// Credits topic (one message per credit, key = EndToEndId).
    pub credits_topic: String,
    /// Window-closed events.
    pub windows_topic: String,
    /// Dead-letter topic for rejects.
    pub dlq_topic: String,
    /// Window files.
    pub out_dir: PathBuf,
    /// Checkpoints, parts and publication markers (shared by all instances of a group).
    pub state_dir: PathBuf,
    /// Allowed lateness before a window is sealed.
    pub grace: SignedDuration,
    /// Added to the refund period: history older than both is forgotten.
    pub history_margin: SignedDuration,
    /// Maximum time between checkpoints of a changed partition.
    pub checkpoint_interval: Duration,
    /// How often idle partitions are ticked with the wall clock.
    pub idle_tick: Duration,
    /// Longest a shutdown waits for the threads to checkpoint, commit and leave the group.
    pub shutdown_timeout: Duration,
    /// Netting shards (threads).
    pub shards: usize,
    /// Capacity of each shard queue, in batches.
    pub queue_batches: usize,
    /// Messages per batch sent to a shard.
    pub batch_messages: usize,
    /// Admin HTTP listener (`/metrics`, `/health/*`); `None` disables it.
    pub admin_listen: Option<SocketAddr>,
    /// Wall clock.
    pub clock: Clock,
    /// Settlement calendar.
    pub calendar: Arc<Calendar>,
    /// Refund rules and registry.
    pub policy: Arc<Policy>,
    /// The acquirer's settlement account.
    pub debtor: Payee,
}

impl Settings {
    /// What a partition's stream needs of the settings: grace and history margin.
    pub fn horizons(&self) -> clearhouse_engine::stream::Horizons {
        clearhouse_engine::stream::Horizons { grace: self.grace, history_margin: self.history_margin }
    }
}

/// Why the daemon could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Kafka client failure.
    #[error("kafka")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// Producer or topic failure.
    #[error(transparent)]
    Client(#[from] clearhouse_kafka::ClientError),
    /// State directory failure.
    #[error(transparent)]
    StateFile(#[from] StateError),
    /// Inconsistent state.
    #[error("state: {0}")]
    State(String),
    /// Output store failure (including a refusal to overwrite a file with other content).
    #[error(transparent)]
    Store(#[from] clearhouse_formats::StoreError),
    /// Other I/O.
    #[error("{path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A daemon thread died; the process stops so that the orchestrator restarts it.
    #[error("{0}; stopping (the instance resumes from its checkpoints when restarted)")]
    ThreadFailed(String),
    /// The admin listener could not bind.
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// A Kafka record timestamp as an instant; `None` when the broker gave none.
pub(crate) fn record_time(timestamp: rdkafka::Timestamp) -> Option<jiff::Timestamp> {
    timestamp.to_millis().and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
}

/// Runs the daemon until `shutdown` resolves, then checkpoints every owned partition, releases
/// it, finishes any window that is complete and returns.
pub async fn run(
    settings: Settings,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), DaemonError> {
    assert!(settings.shards > 0 && settings.queue_batches > 0 && settings.batch_messages > 0, "sizes must be positive");
    let settings = Arc::new(settings);
    let state = StateDir::open(&settings.state_dir, &settings.input_topic)?;
    let handle = telemetry::install();
    let ready = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let (admin_stop_tx, admin_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let admin = match settings.admin_listen {
        Some(addr) => {
            let listener = telemetry::bind_admin(addr).await.map_err(|source| DaemonError::Listen { addr, source })?;
            tracing::info!(addr = %listener.local_addr().unwrap_or(addr), "admin endpoints listening");
            let stopped = async move {
                let _ = admin_stop_rx.await;
            };
            Some(tokio::spawn(telemetry::serve_admin(listener, handle, Arc::clone(&ready), stopped)))
        }
        None => None,
    };
    let (failures, mut failed) = tokio::sync::mpsc::unbounded_channel::<String>();
    let (report_tx, report_rx) = bounded(4096);
    let (wake_tx, wake_rx) = bounded(1);
    let mut shard_txs = Vec::new();
    let mut threads = Vec::new();
    for i in 0..settings.shards {
        let (tx, rx) = bounded(settings.queue_batches);
        shard_txs.push(tx);
        let dlq = TopicWriter::new(&settings.kafka, &settings.dlq_topic)?;
        let shard = shard::Shard::new(Arc::clone(&settings), state.clone(), report_tx.clone(), wake_tx.clone(), dlq)
            .with_test_hooks();
        threads.push(spawn(format!("shard-{i}"), &failures, move || shard.run(rx))?);
    }
    drop((report_tx, wake_tx));
    let assembler = assemble::Assembler::new(Arc::clone(&settings), state.clone())?;
    let consumer = consumer::subscribe(&settings, shard_txs, Arc::clone(&ready))?;
    tracing::info!(topic = settings.input_topic, group = settings.group_id, shards = settings.shards, "daemon started");
    let assembler_thread = {
        let stop = Arc::clone(&stop);
        spawn("assembler".into(), &failures, move || assembler.run(wake_rx, &stop))?
    };
    let consumer_thread = {
        let (stop, settings) = (Arc::clone(&stop), Arc::clone(&settings));
        spawn("consumer".into(), &failures, move || consumer::run(consumer, &settings, report_rx, &stop))?
    };
    tokio::select! {
        () = shutdown => tracing::info!("shutdown requested: checkpointing and releasing partitions"),
        Some(failure) = failed.recv() => {
            // Not ready first, then out: a half-dead instance must not keep its partitions.
            ready.store(false, Ordering::Relaxed);
            stop.store(true, Ordering::Relaxed);
            telemetry::thread_failed(&failure);
            let _ = admin_stop_tx.send(());
            return Err(DaemonError::ThreadFailed(failure));
        }
    }
    ready.store(false, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let join = tokio::task::spawn_blocking(move || {
        let _ = consumer_thread.join();
        threads.into_iter().for_each(|t| {
            let _ = t.join();
        });
        let _ = assembler_thread.join();
    });
    if tokio::time::timeout(settings.shutdown_timeout, join).await.is_err() {
        // A broker that is down holds commits, flushes and the group leave for minutes. Exiting
        // now is a crash after the last checkpoint, which the design already survives: nothing
        // past it was committed, so the next start re-reads it.
        tracing::warn!(
            timeout_ms = settings.shutdown_timeout.as_millis() as u64,
            "shutdown did not finish in time (is the broker down?): exiting; work since the last checkpoint is re-read on the next start"
        );
    }
    let _ = admin_stop_tx.send(());
    if let Some(admin) = admin {
        let _ = admin.await;
    }
    tracing::info!("daemon stopped");
    Ok(())
}

/// Starts a daemon thread whose panic is reported on `failures` instead of ending that thread
/// alone while the process looks healthy.
fn spawn(
    name: String,
    failures: &tokio::sync::mpsc::UnboundedSender<String>,
    f: impl FnOnce() + Send + 'static,
) -> Result<std::thread::JoinHandle<()>, DaemonError> {
    let failures = failures.clone();
    let thread = name.clone();
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
                let what = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("(no message)");
                let _ = failures.send(format!("thread {thread} panicked: {what}"));
            }
        })
        .map_err(|source| DaemonError::Io { path: PathBuf::from(format!("thread {name}")), source })
}

/// An error and its causes on one line.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
