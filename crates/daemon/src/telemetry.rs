//! Every metric the daemon exports, named in one place (`clearhouse_<name>_<unit>`), and the
//! events that emit a log line together with the counter, so the two never disagree. Logs carry
//! reason codes, ids and positions, never payloads or account numbers.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use clearhouse_domain::RejectReason;
use metrics::{counter, gauge, histogram, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Messages read from the instruction topic.
pub const CONSUMED: &str = "clearhouse_consumed_messages_total";
/// Instructions netted into a batch.
pub const ACCEPTED: &str = "clearhouse_accepted_instructions_total";
/// Instructions rejected, label `reason`.
pub const REJECTED: &str = "clearhouse_rejected_instructions_total";
/// Identical re-deliveries.
pub const DUPLICATES: &str = "clearhouse_duplicate_instructions_total";
/// Instructions netted into a later window than their own.
pub const LATE: &str = "clearhouse_late_instructions_total";
/// Open windows per partition, label `partition`.
pub const OPEN_WINDOWS: &str = "clearhouse_open_windows";
/// Instructions held in open windows, label `partition`.
pub const OPEN_INSTRUCTIONS: &str = "clearhouse_open_instructions";
/// From `end + grace` of a window to its files and messages being published.
pub const CLOSE_LATENCY: &str = "clearhouse_window_close_latency_seconds";
/// From the assembler finding a window sealed by every partition to its window event being
/// acknowledged (the daemon's own share of a window's close latency).
pub const SEAL_TO_PUBLISH: &str = "clearhouse_window_seal_to_publish_seconds";
/// Windows whose files and messages were published by this instance.
pub const WINDOWS_EMITTED: &str = "clearhouse_windows_emitted_total";
/// Credits published on the credits topic.
pub const CREDITS_PUBLISHED: &str = "clearhouse_credits_published_total";
/// Time to write one partition checkpoint.
pub const CHECKPOINT_DURATION: &str = "clearhouse_checkpoint_duration_seconds";
/// High watermark minus position, label `partition`.
pub const CONSUMER_LAG: &str = "clearhouse_consumer_lag_messages";
/// Batches waiting in a shard's queue, label `shard`.
pub const QUEUE_DEPTH: &str = "clearhouse_queue_depth_batches";
/// Errors reported by the Kafka client (broker down, timeouts).
pub const KAFKA_ERRORS: &str = "clearhouse_kafka_errors_total";
/// Times this instance rejoined its group because it was stranded without partitions.
pub const STRANDED_REJOINS: &str = "clearhouse_stranded_rejoins_total";
/// 1, labelled with the version: which build is running where.
pub const BUILD_INFO: &str = "clearhouse_build_info";
/// When each owned partition last made a checkpoint durable (Unix seconds).
pub const CHECKPOINT_LAST: &str = "clearhouse_checkpoint_last_timestamp_seconds";
/// End of the oldest window still open on each owned partition (Unix seconds; 0: none).
pub const OLDEST_OPEN_WINDOW_END: &str = "clearhouse_oldest_open_window_end_timestamp_seconds";
/// Windows sealed by some partition whose files and messages are not yet all published.
pub const PENDING_WINDOWS: &str = "clearhouse_pending_windows";
/// End of the oldest such window (Unix seconds; 0: none).
pub const OLDEST_PENDING_WINDOW_END: &str = "clearhouse_oldest_pending_window_end_timestamp_seconds";
/// Windows not assembled because a partition's part did not match its recorded seal.
pub const ASSEMBLY_ERRORS: &str = "clearhouse_assembly_errors_total";
/// Daemon threads that died (the process stops right after; seen by a scrape only if it lands
/// in between, so alert on restarts too).
pub const THREAD_FAILURES: &str = "clearhouse_thread_failures_total";

/// Installs the Prometheus recorder and describes every metric.
pub fn install() -> PrometheusHandle {
    let recorder = PrometheusBuilder::new()
        .set_buckets(&[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0])
        .expect("static buckets")
        .build_recorder();
    let handle = recorder.handle();
    // A second daemon in one process (tests) keeps the first recorder; its handle still renders.
    if metrics::set_global_recorder(recorder).is_err() {
        tracing::debug!("metrics recorder already installed");
    }
    metrics::describe_counter!(CONSUMED, Unit::Count, "Messages read from the instruction topic");
    metrics::describe_counter!(ACCEPTED, Unit::Count, "Instructions netted into a batch");
    metrics::describe_counter!(REJECTED, Unit::Count, "Instructions rejected, by reason code");
    metrics::describe_counter!(DUPLICATES, Unit::Count, "Identical re-deliveries");
    metrics::describe_counter!(LATE, Unit::Count, "Instructions netted into a later window than their own");
    metrics::describe_gauge!(OPEN_WINDOWS, Unit::Count, "Open windows per owned partition");
    metrics::describe_gauge!(OPEN_INSTRUCTIONS, Unit::Count, "Instructions held in open windows per partition");
    metrics::describe_histogram!(CLOSE_LATENCY, Unit::Seconds, "Window end + grace to outputs published");
    metrics::describe_histogram!(
        SEAL_TO_PUBLISH,
        Unit::Seconds,
        "Every partition's seal of a window seen by the assembler to its window event acknowledged"
    );
    metrics::describe_counter!(WINDOWS_EMITTED, Unit::Count, "Windows published by this instance");
    metrics::describe_counter!(CREDITS_PUBLISHED, Unit::Count, "Credits published on the credits topic");
    metrics::describe_histogram!(CHECKPOINT_DURATION, Unit::Seconds, "Time to write one partition checkpoint");
    metrics::describe_gauge!(CONSUMER_LAG, Unit::Count, "High watermark minus consumer position");
    metrics::describe_gauge!(QUEUE_DEPTH, Unit::Count, "Batches waiting in a netting shard's queue");
    metrics::describe_counter!(KAFKA_ERRORS, Unit::Count, "Errors reported by the Kafka client");
    metrics::describe_counter!(
        STRANDED_REJOINS,
        Unit::Count,
        "Group rejoins by an instance without partitions while partitions went unconsumed"
    );
    metrics::describe_gauge!(BUILD_INFO, Unit::Count, "1, labelled with the running version");
    metrics::describe_gauge!(CHECKPOINT_LAST, Unit::Seconds, "When each owned partition last checkpointed");
    metrics::describe_gauge!(OLDEST_OPEN_WINDOW_END, Unit::Seconds, "End of the oldest open window per partition");
    metrics::describe_gauge!(PENDING_WINDOWS, Unit::Count, "Sealed windows not yet fully published");
    metrics::describe_gauge!(OLDEST_PENDING_WINDOW_END, Unit::Seconds, "End of the oldest sealed, unpublished window");
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    // Failure counters exist from the start, so `increase()` alerts have a series to watch.
    for name in [KAFKA_ERRORS, STRANDED_REJOINS, ASSEMBLY_ERRORS, THREAD_FAILURES] {
        counter!(name).increment(0);
    }
    metrics::describe_counter!(
        ASSEMBLY_ERRORS,
        Unit::Count,
        "Window assemblies refused because a partition's part did not match its recorded seal"
    );
    metrics::describe_counter!(THREAD_FAILURES, Unit::Count, "Daemon threads that died (the process then stops)");
    handle
}

/// Outcome counters for a batch of messages of one partition.
pub fn netted(consumed: u64, accepted: u64, duplicates: u64, late: u64) {
    counter!(CONSUMED).increment(consumed);
    counter!(ACCEPTED).increment(accepted);
    counter!(DUPLICATES).increment(duplicates);
    counter!(LATE).increment(late);
}

/// A rejected instruction (id and position only: payloads never reach the log).
pub fn rejected(partition: i32, offset: u64, reason: RejectReason) {
    tracing::debug!(partition, offset, reason = reason.code(), "instruction rejected");
    counter!(REJECTED, "reason" => reason.code()).increment(1);
}

/// What a durable checkpoint of one partition leaves behind.
#[derive(Debug, Clone, Copy)]
pub struct Checkpointed {
    /// The partition.
    pub partition: i32,
    /// Next offset it reflects.
    pub next_offset: u64,
    /// Open windows on the partition.
    pub open_windows: usize,
    /// Instructions in them.
    pub open_instructions: u64,
    /// End of the oldest open window.
    pub oldest_open_end: Option<jiff::Timestamp>,
    /// Time the checkpoint took.
    pub took: Duration,
}

/// A partition checkpoint became durable.
pub fn checkpointed(c: &Checkpointed) {
    tracing::debug!(
        partition = c.partition,
        next_offset = c.next_offset,
        open_windows = c.open_windows,
        open_instructions = c.open_instructions,
        ms = c.took.as_millis() as u64,
        "checkpoint"
    );
    let label = c.partition.to_string();
    histogram!(CHECKPOINT_DURATION).record(c.took.as_secs_f64());
    gauge!(OPEN_WINDOWS, "partition" => label.clone()).set(c.open_windows as f64);
    gauge!(OPEN_INSTRUCTIONS, "partition" => label.clone()).set(c.open_instructions as f64);
    let oldest = c.oldest_open_end.map_or(0.0, |t| t.as_second() as f64);
    gauge!(OLDEST_OPEN_WINDOW_END, "partition" => label.clone()).set(oldest);
    gauge!(CHECKPOINT_LAST, "partition" => label).set(jiff::Timestamp::now().as_second() as f64);
}

/// What the assembler still has to publish.
pub fn pending_windows(count: usize, oldest_end: Option<jiff::Timestamp>) {
    gauge!(PENDING_WINDOWS).set(count as f64);
    gauge!(OLDEST_PENDING_WINDOW_END).set(oldest_end.map_or(0.0, |t| t.as_second() as f64));
}

/// This instance owns no partition while `stuck` partitions go unconsumed: it rejoins the group.
pub fn stranded_rejoin(stuck: &[i32]) {
    tracing::warn!(?stuck, "no partitions assigned here while these go unconsumed: rejoining the group");
    counter!(STRANDED_REJOINS).increment(1);
}

/// A window could not be assembled: partition `partition` sealed it at `fence`, but its part
/// does not match. Damaged state: an operator must look (docs/operations.md).
pub fn assembly_error(window: &str, partition: i32, fence: u64, problem: &str) {
    tracing::error!(
        window,
        partition,
        fence,
        problem,
        "window not assembled: a partition's part does not match its seal"
    );
    counter!(ASSEMBLY_ERRORS).increment(1);
}

/// A daemon thread died: the instance is no longer ready and stops.
pub fn thread_failed(failure: &str) {
    tracing::error!(failure, "a daemon thread failed: not ready, stopping so the instance is restarted");
    counter!(THREAD_FAILURES).increment(1);
}

/// A window's files and messages were published, `latency` after its end plus grace and
/// `since_sealed` after this instance found it sealed (unknown when another instance began it).
pub fn window_emitted(
    window: &str,
    batches: usize,
    credits: usize,
    published: usize,
    latency: Duration,
    since_sealed: Option<Duration>,
) {
    let since_sealed_ms = since_sealed.map(|d| d.as_millis() as u64);
    let latency_ms = latency.as_millis() as u64;
    tracing::info!(window, batches, credits, published, latency_ms, since_sealed_ms, "window emitted");
    counter!(WINDOWS_EMITTED).increment(1);
    counter!(CREDITS_PUBLISHED).increment(published as u64);
    histogram!(CLOSE_LATENCY).record(latency.as_secs_f64());
    if let Some(since) = since_sealed {
        histogram!(SEAL_TO_PUBLISH).record(since.as_secs_f64());
    }
}

/// The Kafka client reported an error; it retries on its own. Every error is counted, but with
/// the broker down librdkafka reports one about twenty times a second: the log line backs off
/// exponentially (1 s, 2 s, 4 s ... 60 s between lines, each saying how many it stands for) and
/// starts again at 1 s after a quiet minute.
pub fn kafka_error(error: &dyn std::fmt::Display) {
    counter!(KAFKA_ERRORS).increment(1);
    static BACKOFF: std::sync::Mutex<Option<(std::time::Instant, Duration, u64)>> = std::sync::Mutex::new(None);
    let now = std::time::Instant::now();
    let mut state = BACKOFF.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let (last, interval, suppressed) = state.get_or_insert((now, Duration::ZERO, 0));
    let since = now.duration_since(*last);
    if since >= Duration::from_secs(60) + *interval {
        *interval = Duration::ZERO;
    }
    if since < *interval {
        *suppressed += 1;
        return;
    }
    tracing::warn!(%error, suppressed = *suppressed, "kafka client error (retrying)");
    *last = now;
    *interval = (*interval * 2).clamp(Duration::from_secs(1), Duration::from_secs(60));
    *suppressed = 0;
}

/// Consumer lag of one partition.
pub fn lag(partition: i32, messages: i64) {
    gauge!(CONSUMER_LAG, "partition" => partition.to_string()).set(messages.max(0) as f64);
}

/// Queue depth of one shard.
pub fn queue_depth(shard: usize, batches: usize) {
    gauge!(QUEUE_DEPTH, "shard" => shard.to_string()).set(batches as f64);
}

/// Serves `/metrics`, `/health/live` and `/health/ready` until `shutdown` resolves.
pub async fn serve_admin(
    listener: tokio::net::TcpListener,
    handle: PrometheusHandle,
    ready: Arc<AtomicBool>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(move || std::future::ready(handle.render())))
        .route("/health/live", get(|| std::future::ready("live\n")))
        .route(
            "/health/ready",
            get(move || {
                let ok = ready.load(Ordering::Relaxed);
                std::future::ready(match ok {
                    true => (StatusCode::OK, "ready\n"),
                    false => (StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
                })
            }),
        );
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

/// Binds the admin listener.
pub async fn bind_admin(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}
