//! What each subcommand prints. Results go to stdout, progress and logs to stderr.

use std::fs::File;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use clearhouse_formats::{verify::verify as verify_dir, DirStore};
use clearhouse_gen::{generate, generate_each, GenOptions};
use clearhouse_jobs::{run_net, Config, NetOptions, NetReport};
use clearhouse_kafka::{KafkaOptions, TopicWriter};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::{GenArgs, NetArgs, RunArgs, VerifyArgs};

pub fn net(args: &NetArgs) -> Result<ExitCode> {
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let options = NetOptions {
        input: args.input.clone(),
        out: args.out.clone(),
        shards: args.shards.map(usize::from),
        now: args.now,
    };
    let progress = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let show = !args.no_progress && std::io::stderr().is_terminal();
    let report = std::thread::scope(|scope| {
        if show {
            scope.spawn(|| progress_bar(&progress, &done));
        }
        let report = run_net(&config, &options, &progress);
        done.store(true, Ordering::Relaxed);
        report
    })?;
    print_net_summary(args, &report);
    if config.debtor_is_placeholder() {
        tell!("note: [debtor] is not configured; credit files name a placeholder settlement account");
    }
    Ok(ExitCode::SUCCESS)
}

fn progress_bar(progress: &AtomicU64, done: &AtomicBool) {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {human_pos} instructions netted ({per_sec}) {elapsed}")
            .expect("template"),
    );
    while !done.load(Ordering::Relaxed) {
        bar.set_position(progress.load(Ordering::Relaxed));
        std::thread::sleep(Duration::from_millis(100));
    }
    bar.finish_and_clear();
}

// Throughput is a display figure, not money: floats are fine here.
#[allow(clippy::float_arithmetic)]
fn print_net_summary(args: &NetArgs, report: &NetReport) {
    let s = &report.stats;
    let secs = report.elapsed.as_secs_f64();
    let rate = if secs > 0.0 { s.input as f64 / secs } else { 0.0 };
    say!("clearhouse net: {} instructions from {} in {secs:.2} s ({rate:.0}/s)", s.input, args.input.display());
    say!("  accepted {}, rejected {}, duplicates {}", s.accepted, s.rejected_total(), s.duplicates);
    if !s.rejected.is_empty() {
        let reasons: Vec<String> = s.rejected.iter().map(|(r, n)| format!("{r} {n}")).collect();
        say!("  rejected by reason: {}", reasons.join(", "));
    }
    say!("  windows {} ({}), batches {}", report.windows.len(), report.windows.join(", "), report.batches);
    for (currency, (payouts, refunds)) in &report.totals {
        say!(
            "  {currency}: refund credits {}, merchant payouts {}",
            currency.format(*refunds),
            currency.format(*payouts)
        );
    }
    say!(
        "  files: {} written, {} already identical, in {}",
        report.files_written,
        report.files_unchanged,
        args.out.display()
    );
}

pub fn verify(args: &VerifyArgs) -> Result<ExitCode> {
    if !args.dir.is_dir() {
        anyhow::bail!("{} is not a directory", args.dir.display());
    }
    if let Some(original) = &args.against {
        return crate::ops::verify_against(original, &args.dir);
    }
    let report = DirStore::open(&args.dir)
        .and_then(|store| verify_dir(&store))
        .with_context(|| format!("cannot read {}", args.dir.display()))?;
    if report.problems.is_empty() {
        say!(
            "verify OK: {} windows, {} files, {} batches, {} accepted instructions in {}",
            report.windows,
            report.files,
            report.batches,
            report.details,
            args.dir.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    for problem in &report.problems {
        tell!("verify: {problem}");
    }
    tell!("verify FAILED: {} problem(s) in {}", report.problems.len(), args.dir.display());
    Ok(ExitCode::FAILURE)
}

pub fn gen(args: &GenArgs) -> Result<ExitCode> {
    let options = GenOptions {
        seed: args.seed,
        count: args.count,
        merchants: args.merchants,
        hot_percent: args.hot_percent,
        start: args.start,
        days: args.days,
        capture_permille: args.capture_permille,
        reversal_permille: args.reversal_permille,
        bad_permille: args.bad_permille,
        duplicate_permille: args.duplicate_permille,
        disorder_secs: args.disorder_secs,
        late_permille: args.late_permille,
        late_secs: args.late_secs,
    };
    anyhow::ensure!(args.merchants > 0 && args.days > 0, "--merchants and --days must be at least 1");
    let (stats, target) = match (&args.out, &args.topic) {
        (Some(path), _) => {
            let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
            let stats = generate(&options, file).with_context(|| format!("writing {}", path.display()))?;
            (stats, path.display().to_string())
        }
        (None, Some(topic)) => (gen_to_topic(args, &options, topic)?, format!("topic {topic}")),
        (None, None) => unreachable!("clap requires --out or --topic"),
    };
    say!(
        "clearhouse gen: {} lines to {target} (seed {}): {} captures, {} refunds, {} reversals, {} bad, {} re-delivered",
        stats.lines, args.seed, stats.captures, stats.refunds, stats.reversals, stats.bad, stats.duplicates
    );
    Ok(ExitCode::SUCCESS)
}

/// The instruction's event time, as the record timestamp its producer would give it (the message
/// is created when the refund happens), so the workload is consistent with the daemon's
/// `event_time_in_future` rule whatever today's date; `None` for a line without one.
fn event_time_ms(line: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(line).ok()?;
    let start = text.find("\"event_time\":\"")? + "\"event_time\":\"".len();
    let end = start + text[start..].find('"')?;
    text[start..end].parse::<jiff::Timestamp>().ok().map(|t| t.as_millisecond())
}

/// Produces the workload to a topic, keyed by merchant, stamped with each instruction's event
/// time, and waits for every acknowledgement.
fn gen_to_topic(args: &GenArgs, options: &GenOptions, topic: &str) -> Result<clearhouse_gen::GenStats> {
    let kafka = KafkaOptions {
        brokers: args.brokers.clone().unwrap_or_default(),
        properties: args.properties.iter().cloned().collect(),
    };
    kafka.ensure_topic(topic, args.partitions).with_context(|| format!("preparing topic {topic}"))?;
    let mut writer = TopicWriter::new(&kafka, topic)?;
    let mut failure = None;
    let stats = generate_each(options, |merchant, line| {
        writer.send_stamped(topic, merchant.as_bytes(), line, event_time_ms(line)).map_err(|e| {
            failure = Some(e);
            std::io::Error::other("produce failed")
        })
    });
    if let Some(error) = failure {
        return Err(error).with_context(|| format!("producing to {topic}"));
    }
    let stats = stats?;
    let delivered = writer.finish(Duration::from_secs(60)).with_context(|| format!("producing to {topic}"))?;
    anyhow::ensure!(delivered == stats.lines, "{delivered} of {} messages delivered", stats.lines);
    Ok(stats)
}

/// `clearhouse run`: the daemon, until SIGTERM or SIGINT.
pub fn run(args: &RunArgs) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // Handlers first: a SIGTERM during start-up must stop the daemon cleanly too.
    let shutdown = runtime.block_on(shutdown_signal())?;
    let config = Config::load(&args.config)?;
    let settings = config.daemon_settings()?;
    clearhouse_jobs::topics::ensure_output_topics(&config, &settings).context("creating output topics")?;
    let result = runtime.block_on(clearhouse_daemon::run(settings, shutdown));
    // A shutdown cut short leaves threads blocked on the broker: do not wait for them again.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    result?;
    Ok(ExitCode::SUCCESS)
}

/// Installs the SIGTERM and SIGINT handlers; the future resolves on the first of them.
async fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}
