//! Command-line definitions and the top-level error handling (error chains on stderr, exit
//! codes: 0 success, 1 failure or verification problems, 2 usage error; `verify --against` and
//! `replay --emit` give their verdict as 3 and 4).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use clearhouse_daemon::replay::Bound;

use crate::{commands, ops};

/// Refund clearing and settlement engine.
#[derive(Debug, Parser)]
#[command(name = "clearhouse", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log filter (tracing env-filter syntax); RUST_LOG overrides it. Default: `info` for
    /// `run`, `warn` otherwise.
    #[arg(long, global = true)]
    log_level: Option<String>,
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Plain)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Plain,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Net a JSONL file of instructions and write every window's files (no broker needed).
    Net(NetArgs),
    /// Re-read an output directory and check hashes, control totals, manifests and conservation;
    /// with --against, compare it with an original directory, per window, file and batch.
    Verify(VerifyArgs),
    /// Write a deterministic synthetic workload (JSONL).
    Gen(GenArgs),
    /// The daemon: consume the instruction topic in a consumer group, close windows as they
    /// end, write files and publish credits; stops cleanly on SIGTERM or SIGINT.
    Run(RunArgs),
    /// Re-drive the instruction topic and write its windows again into a separate directory,
    /// sealing each window where the original manifests say it was sealed.
    Replay(ReplayArgs),
    /// Tell where an instruction went: its window, batch, clearing record and the EndToEndId that
    /// paid it, or its reject reason, or that it was a duplicate.
    Trace(TraceArgs),
}

/// Arguments of `clearhouse replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The daemon's TOML configuration (brokers, topic, calendar, policy); with --input, the
    /// configuration `net` used.
    #[arg(long, required_unless_present = "input")]
    pub config: Option<PathBuf>,
    /// Replay a JSONL file instead of the topic: exactly `net` into --out (file mode seals every
    /// window at the end of its input, so its manifests' fences are the file's end).
    #[arg(long, conflicts_with_all = ["from_windows_topic", "event_time_only", "emit", "original", "from_offset", "from_time", "to_offset", "to_time"])]
    pub input: Option<PathBuf>,
    /// Directory for the regenerated windows; must not be the live output or state directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Original output directory whose manifests give fences and seals [default: the
    /// configuration's out_dir, only read].
    #[arg(long, conflicts_with = "event_time_only")]
    pub original: Option<PathBuf>,
    /// Take fences and seals from the window-closed events on the windows topic instead of
    /// manifests (when the output directory is lost).
    #[arg(long, conflicts_with_all = ["original", "event_time_only"])]
    pub from_windows_topic: bool,
    /// Ignore any manifest: seal windows by event time only.
    #[arg(long)]
    pub event_time_only: bool,
    /// Then restore the live output of windows the original closed: write missing files and
    /// publish missing credits and window events; a window whose published bytes differ from the
    /// regenerated ones is refused (exit 3), so nobody is paid twice.
    #[arg(long, conflicts_with = "event_time_only")]
    pub emit: bool,
    /// Only windows with data at or after this offset: N on every partition, or P:N[,P:N...]
    /// for some partitions.
    #[arg(long, conflicts_with = "from_time", value_parser = parse_offsets)]
    pub from_offset: Option<Bound>,
    /// Only windows with data at or after this instant (RFC 3339; broker timestamps).
    #[arg(long)]
    pub from_time: Option<jiff::Timestamp>,
    /// Read up to this offset, exclusive: N on every partition, or P:N[,P:N...] for some
    /// (the others to their end) [default: the end of every partition].
    #[arg(long, conflicts_with = "to_time", value_parser = parse_offsets)]
    pub to_offset: Option<Bound>,
    /// Read every partition up to this instant, exclusive (RFC 3339; broker timestamps).
    #[arg(long)]
    pub to_time: Option<jiff::Timestamp>,
}

/// Arguments of `clearhouse trace`.
#[derive(Debug, clap::Args)]
pub struct TraceArgs {
    /// Instruction id.
    pub id: String,
    /// Output directory to look in.
    #[arg(long, default_value = "out")]
    pub out: PathBuf,
    /// The daemon's configuration: also look for the instruction on its dead-letter topic
    /// (in `run` mode rejects are messages, not files).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// Arguments of `clearhouse run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// TOML configuration with `[kafka]` and `[daemon]` sections.
    #[arg(long)]
    pub config: PathBuf,
}

/// Arguments of `clearhouse net`.
#[derive(Debug, clap::Args)]
pub struct NetArgs {
    /// JSONL file, one instruction per line.
    #[arg(long)]
    pub input: PathBuf,
    /// Output directory (created if missing; existing files are never overwritten).
    #[arg(long)]
    pub out: PathBuf,
    /// TOML configuration; without it the embedded defaults apply.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Netting shards, 1-256 (overrides the config).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub shards: Option<u16>,
    /// The run's "now" (RFC 3339): instructions whose event_time is more than
    /// `[calendar] max_event_time_skew_secs` after it are rejected `event_time_in_future`.
    /// Without it file mode checks no such thing.
    #[arg(long)]
    pub now: Option<jiff::Timestamp>,
    /// Never show a progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

/// Arguments of `clearhouse verify`.
#[derive(Debug, clap::Args)]
#[command(after_help = "With --against, the exit code is the verdict: 0 every file identical, \
3 some file differs, 4 files missing from or extra in DIR but none different \
(1 is an error, 2 a usage error).")]
pub struct VerifyArgs {
    /// Output directory written by `net`, `run` or `replay`.
    pub dir: PathBuf,
    /// Compare DIR (a replay) with this original output directory instead: per window, per file
    /// and per batch, identical, missing, extra or different, with the first differing record.
    #[arg(long, value_name = "ORIGINAL_DIR")]
    pub against: Option<PathBuf>,
}

/// Arguments of `clearhouse gen`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("sink").required(true).args(["out", "topic"])))]
pub struct GenArgs {
    /// Output JSONL file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Kafka topic to produce to instead (key = merchant_id); created if missing.
    #[arg(long, requires = "brokers")]
    pub topic: Option<String>,
    /// Kafka bootstrap servers (with --topic).
    #[arg(long)]
    pub brokers: Option<String>,
    /// Partitions of the topic when it has to be created.
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    /// Extra librdkafka property, KEY=VALUE (repeatable), e.g. security.protocol=SSL.
    #[arg(long = "property", value_parser = parse_property)]
    pub properties: Vec<(String, String)>,
    /// Number of lines.
    #[arg(long, default_value_t = 10_000)]
    pub count: u64,
    /// RNG seed; the same seed and options give the same file.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Number of merchants.
    #[arg(long, default_value_t = 1_000)]
    pub merchants: u32,
    /// Percent of traffic that goes to the hottest tenth of merchants.
    #[arg(long, default_value_t = 50)]
    pub hot_percent: u32,
    /// First event time (RFC 3339).
    #[arg(long, default_value = "2026-11-20T00:00:00+08:00")]
    pub start: jiff::Timestamp,
    /// Days the event times span.
    #[arg(long, default_value_t = 3)]
    pub days: u32,
    /// Captures per mille.
    #[arg(long, default_value_t = 300)]
    pub capture_permille: u32,
    /// Refund reversals per mille.
    #[arg(long, default_value_t = 20)]
    pub reversal_permille: u32,
    /// Bad lines per mille.
    #[arg(long, default_value_t = 5)]
    pub bad_permille: u32,
    /// Re-delivered lines per mille.
    #[arg(long, default_value_t = 10)]
    pub duplicate_permille: u32,
    /// Move each event time back by a random 0 to this many seconds (out-of-order times).
    #[arg(long, default_value_t = 0)]
    pub disorder_secs: u32,
    /// Late lines per mille: event time moved back a further --late-secs.
    #[arg(long, default_value_t = 0)]
    pub late_permille: u32,
    /// How far back a late line's event time goes, in seconds.
    #[arg(long, default_value_t = 7200)]
    pub late_secs: u32,
}

fn parse_offsets(text: &str) -> Result<Bound, String> {
    if let Ok(offset) = text.parse::<i64>() {
        return Ok(Bound::Offset(offset));
    }
    let mut offsets = std::collections::BTreeMap::new();
    for item in text.split(',') {
        let parsed = item.split_once(':').and_then(|(p, o)| Some((p.trim().parse().ok()?, o.trim().parse().ok()?)));
        let (partition, offset) = parsed.ok_or_else(|| format!("{item:?} is not PARTITION:OFFSET"))?;
        offsets.insert(partition, offset);
    }
    Ok(Bound::Offsets(offsets))
}

fn parse_property(text: &str) -> Result<(String, String), String> {
    let (key, value) = text.split_once('=').ok_or_else(|| format!("{text:?} is not KEY=VALUE"))?;
    Ok((key.trim().to_owned(), value.to_owned()))
}

/// Parses arguments, runs the command, prints errors as a chain.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, Command::Run(_)) { "info" } else { "warn" };
    init_logging(cli.log_level.as_deref().unwrap_or(default_level), cli.log_format);
    let result = match cli.command {
        Command::Net(args) => commands::net(&args),
        Command::Verify(args) => commands::verify(&args),
        Command::Gen(args) => commands::gen(&args),
        Command::Run(args) => commands::run(&args),
        Command::Trace(args) => ops::trace(&args),
        Command::Replay(args) => ops::replay(&args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            tell!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr);
    match format {
        LogFormat::Plain => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
