//! `clearhouse net`: the embedded default. Reads a JSONL file, nets it, and writes every window
//! (pure event time; all windows close at end of input) plus the run's evidence.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clearhouse_domain::Currency;
use clearhouse_domain::Stats;
use clearhouse_engine::{net_all, EngineError};

use crate::memory::{peak_rss_kb, return_freed_memory, rss_kb};
use clearhouse_formats::evidence::{self, Summary};
use clearhouse_formats::{
    encode_window, sha256_hex, DirStore, Draft, Fences, OutputStore, PutOutcome, StoreError, WindowMeta,
};
use clearhouse_ingest::JsonlReader;
use rust_decimal::Decimal;

use crate::{Config, ConfigError};

/// What to net and where to put it.
#[derive(Debug, Clone)]
pub struct NetOptions {
    /// JSONL input file.
    pub input: PathBuf,
    /// Output directory.
    pub out: PathBuf,
    /// Overrides `[engine] shards`.
    pub shards: Option<usize>,
    /// The run's `now`: event times more than `[calendar] max_event_time_skew_secs` after it are
    /// `event_time_in_future`. `None`: no such check (file mode's default).
    pub now: Option<jiff::Timestamp>,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct NetReport {
    /// Outcome counts.
    pub stats: Stats,
    /// Window ids written.
    pub windows: Vec<String>,
    /// Batches written.
    pub batches: usize,
    /// Per currency: (payouts, refund credits).
    pub totals: BTreeMap<Currency, (Decimal, Decimal)>,
    /// Files newly written.
    pub files_written: usize,
    /// Files that already existed with identical content.
    pub files_unchanged: usize,
    /// Wall time of the whole job.
    pub elapsed: Duration,
}

/// Why `net` failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// Configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The input file cannot be opened.
    #[error("cannot open input {path}")]
    OpenInput {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Reading the input failed midway.
    #[error("failed while reading {path}")]
    Engine {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: EngineError,
    },
    /// Writing outputs failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Runs the file-mode job on a file, writing into a directory. `progress` counts instructions
/// routed so far.
pub fn run_net(config: &Config, options: &NetOptions, progress: &AtomicU64) -> Result<NetReport, NetError> {
    let input_name = options
        .input
        .file_name()
        .map_or_else(|| options.input.display().to_string(), |n| n.to_string_lossy().into_owned());
    let file =
        File::open(&options.input).map_err(|source| NetError::OpenInput { path: options.input.clone(), source })?;
    let store = DirStore::create(&options.out)?;
    // The tables are sized from it (an estimate only: a file that changes while read is fine).
    let input_bytes = file.metadata().ok().filter(std::fs::Metadata::is_file).map(|m| m.len());
    let shape = (options.shards, options.now, input_bytes);
    net_reader(config, file, &input_name, &store, shape, progress).map_err(|e| match e {
        NetError::Engine { source, .. } => NetError::Engine { path: options.input.clone(), source },
        other => other,
    })
}

/// Runs the file-mode job on any JSONL stream named `input_name`, publishing into `store`, with
/// `shards` overriding the configuration, an optional `now` (see [`NetOptions`]) and the
/// stream's length when known (`EngineConfig::input_bytes`; outputs do not depend on it).
pub fn net_reader<R: Read + Send>(
    config: &Config,
    input: R,
    input_name: &str,
    store: &dyn OutputStore,
    (shards, now, input_bytes): (Option<usize>, Option<jiff::Timestamp>, Option<u64>),
    progress: &AtomicU64,
) -> Result<NetReport, NetError> {
    let started = Instant::now();
    let calendar = config.calendar()?;
    let policy = Arc::new(config.policy()?);
    let debtor = config.debtor()?;
    let mut engine = config.engine(shards);
    engine.now = now.map(|now| (now, policy.max_event_time_skew));
    engine.input_bytes = input_bytes;
    let reader = JsonlReader::new(input, config.engine.block_bytes.max(4096));
    let result = net_all(reader, &calendar, policy, &engine, progress)
        .map_err(|source| NetError::Engine { path: PathBuf::from(input_name), source })?;
    let peak_netting_kb = peak_rss_kb();
    return_freed_memory();
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        instructions = result.stats.input,
        peak_rss_kb = peak_netting_kb,
        rss_kb = rss_kb(),
        "netting finished"
    );
    let mut report = NetReport { stats: result.stats.clone(), ..NetReport::default() };
    // Every file's hash, for the summary's seal (which is published through the same closure).
    let sealed = std::cell::RefCell::new(BTreeMap::new());
    let mut publish = |name: &str, content: Content, sha256: String| -> Result<(), StoreError> {
        sealed.borrow_mut().insert(name.to_owned(), sha256);
        let outcome = match content {
            Content::Bytes(bytes) => store.put(name, &bytes)?,
            Content::Draft(draft) => store.publish_draft(name, draft)?,
        };
        match outcome {
            PutOutcome::Written => report.files_written += 1,
            PutOutcome::AlreadyIdentical => report.files_unchanged += 1,
        }
        Ok(())
    };
    let fences: Fences = BTreeMap::from([(input_name.to_owned(), result.last_position + 1)]).into();
    let (rejects, duplicates, stats) = (result.rejects, result.duplicates, result.stats);
    let outputs = encode_and_publish(result.windows, (&calendar, &fences, &debtor), store, &mut publish)?;
    for (name, bytes) in [
        (evidence::REJECTED, evidence::rejects_jsonl(input_name, &rejects)),
        (evidence::DUPLICATES, evidence::duplicates_jsonl(input_name, &duplicates)),
    ] {
        let sha256 = sha256_hex(&bytes);
        publish(name, Content::Bytes(bytes), sha256)?;
    }
    let summary = Summary::new(input_name, &stats, outputs.windows.clone(), sealed.take());
    let summary = summary.to_bytes();
    let sha256 = sha256_hex(&summary);
    publish(evidence::SUMMARY, Content::Bytes(summary), sha256)?;
    tracing::info!(
        windows = outputs.windows.len(),
        batches = outputs.batches,
        written = report.files_written,
        encode_ms = outputs.encode_time.as_millis() as u64,
        publish_ms = outputs.publish_time.as_millis() as u64,
        peak_rss_kb = peak_rss_kb(),
        "net finished"
    );
    report.windows = outputs.windows;
    report.batches = outputs.batches;
    report.totals = outputs.totals;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// What a file to publish holds: bytes in memory, or a draft already written.
enum Content {
    Bytes(Vec<u8>),
    Draft(Draft),
}

/// Publishes one file (name, content, SHA-256) and records it for the run's seal.
type Publish<'a> = dyn FnMut(&str, Content, String) -> Result<(), StoreError> + 'a;

/// What the window outputs of a run came to.
#[derive(Default)]
struct Outputs {
    windows: Vec<String>,
    batches: usize,
    totals: BTreeMap<Currency, (Decimal, Decimal)>,
    encode_time: Duration,
    publish_time: Duration,
}

/// Encodes the windows on one thread while publishing them on this one, oldest first. Each file
/// is written as it is encoded, into a draft (a temporary file in the output directory); this
/// thread then makes window N's files durable and renames them into place (fsync, rename,
/// directory fsync) while window N+1 is encoded and written, so waiting on the disk overlaps
/// encoding. The channel holds no window (a hand-over), so at most two windows' drafts are
/// unpublished at a time, and each window's batches are freed once encoded.
fn encode_and_publish(
    windows: Vec<clearhouse_engine::ClosedWindow>,
    (calendar, fences, debtor): (&clearhouse_domain::Calendar, &Fences, &clearhouse_domain::Payee),
    store: &dyn OutputStore,
    publish: &mut Publish<'_>,
) -> Result<Outputs, StoreError> {
    let (tx, rx) = crossbeam_channel::bounded(0);
    let mut out = Outputs::default();
    std::thread::scope(|scope| {
        let encoder = scope.spawn(move || {
            let mut encode_time = Duration::ZERO;
            let new_draft = || store.draft();
            for closed in windows {
                let started = Instant::now();
                let meta = WindowMeta::new(calendar, &closed.window);
                let files = encode_window(&meta, &closed.batches, fences.clone(), (debtor, &new_draft)).map(|(f, _)| f);
                let mut totals: BTreeMap<Currency, (Decimal, Decimal)> = BTreeMap::new();
                for b in &closed.batches {
                    let entry = totals.entry(b.currency).or_default();
                    entry.0 += b.totals.payout;
                    entry.1 += b.totals.refund_credits;
                }
                let summary = (closed.window.id.to_string(), closed.batches.len(), totals);
                drop(closed);
                encode_time += started.elapsed();
                let failed = files.is_err();
                if tx.send((summary, files)).is_err() || failed {
                    break; // the publisher stopped on an error, or this one did
                }
            }
            encode_time
        });
        let published = (|| {
            for ((id, batches, totals), files) in rx {
                let started = Instant::now();
                for file in files? {
                    publish(&file.name, Content::Draft(file.draft), file.sha256)?;
                }
                out.publish_time += started.elapsed();
                for (currency, (payout, credits)) in totals {
                    let entry = out.totals.entry(currency).or_default();
                    entry.0 += payout;
                    entry.1 += credits;
                }
                out.batches += batches;
                out.windows.push(id);
            }
            Ok(())
        })();
        // An encoder that failed its own check panicked: the run stops with that panic.
        out.encode_time = encoder.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        published
    })?;
    Ok(out)
}
