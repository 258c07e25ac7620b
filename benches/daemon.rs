#![allow(clippy::float_arithmetic, clippy::cast_precision_loss)]
//! The daemon through a real broker (tansu, SQLite storage, loopback), measured against a bare
//! rdkafka consumer reading the same topic to nowhere in the same run, plus what one million
//! instructions in open windows cost: memory, checkpoint size and time, and kill -9 to
//! consuming again.
//!
//! After the throughput run it replays the topic with `clearhouse replay` and checks the result
//! with `verify --against` against the daemon's files, timed against the same bare consumer.
//!
//! `cargo bench --bench daemon -- [MESSAGES] [OPEN] [BACKLOG]` (defaults 500,000, 1,000,000 and
//! 200,000; 0 skips that part; `CLEARHOUSE_BENCH_BIN` runs another build of `clearhouse`). Under
//! `cargo test` (no `--bench` argument) it runs once on 2,000 messages, to keep the harness itself working.
//! The daemon is timed from its first consumed message to its last netted one, read from its own
//! `/metrics`, so process start and the group join are not counted against it (they are printed
//! separately).

#[path = "../tests/common/broker.rs"]
#[allow(dead_code)]
mod broker;
#[path = "../tests/common/http.rs"]
mod http;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// The binary under test: this build's, or `CLEARHOUSE_BENCH_BIN` (another build, to compare two
/// commits side by side on the same broker and machine).
fn bin() -> String {
    std::env::var("CLEARHOUSE_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_clearhouse").to_owned())
}
const START: &str = "2026-10-01T00:00:00+08:00";
const LIMIT: Duration = Duration::from_secs(1800);

fn gen(brokers: &str, topic: &str, count: u64, seed: u64, days: u32) {
    // Always this build's generator, so that two binaries compared see the same messages.
    let status = Command::new(env!("CARGO_BIN_EXE_clearhouse"))
        .args(["gen", "--topic", topic, "--brokers", brokers, "--partitions", "4", "--start", START])
        .args(["--count", &count.to_string(), "--seed", &seed.to_string(), "--days", &days.to_string()])
        .status()
        .expect("gen");
    assert!(status.success(), "gen --topic failed");
}

/// Reads every message of `topic` from the beginning with plain `assign` and no processing.
fn bare_consume(brokers: &str, topic: &str) -> (u64, Duration) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "bare")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
    let mut tpl = TopicPartitionList::new();
    let mut remaining = 0i64;
    for p in metadata.topics()[0].partitions() {
        let (low, high) = consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(10)).expect("watermarks");
        remaining += high - low;
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning).expect("tpl");
    }
    let total = remaining as u64;
    let started = Instant::now();
    consumer.assign(&tpl).expect("assign");
    while remaining > 0 {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            m.expect("consume");
            remaining -= 1;
        }
    }
    (total, started.elapsed())
}

/// One daemon deployment on `topic` with the default settings apart from the listed ones.
struct Daemon {
    dir: PathBuf,
    admin: String,
    child: Option<Child>,
}

impl Daemon {
    fn new(dir: &Path, brokers: &str, topic: &str, extra: &str) -> Daemon {
        let port = TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
        let admin = format!("127.0.0.1:{port}");
        let config = format!(
            "[kafka]\nbrokers = \"{brokers}\"\n[daemon]\nreplication_factor = 1\ninput_topic = \"{topic}\"\ngroup_id = \"{topic}\"\n\
             credits_topic = \"{topic}.credits\"\nwindows_topic = \"{topic}.windows\"\ndlq_topic = \"{topic}.dlq\"\n\
             admin_listen = \"{admin}\"\n{extra}"
        );
        std::fs::write(dir.join("clearhouse.toml"), config).expect("config");
        Daemon { dir: dir.to_owned(), admin, child: None }
    }

    fn start(&mut self) -> Instant {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("run.log")).expect("log");
        let started = Instant::now();
        let child = Command::new(bin())
            .args(["run", "--config", "clearhouse.toml"])
            .current_dir(&self.dir)
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("run");
        self.child = Some(child);
        started
    }

    /// A scrape of `/metrics`, or `None` while the listener is not up.
    fn metrics(&self) -> Option<String> {
        std::net::TcpStream::connect(&self.admin).ok()?;
        Some(http::http_get(&self.admin, "/metrics").1)
    }

    /// Polls `/metrics` every 10 ms until `done` holds; returns the body and when it held.
    fn wait(&self, what: &str, done: impl Fn(&str) -> bool) -> (String, Instant) {
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(body) = self.metrics().filter(|b| done(b)) {
                return (body, Instant::now());
            }
            assert!(Instant::now() < deadline, "{what}: not reached");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn rss_bytes(&self) -> u64 {
        self.status_bytes("VmRSS:")
    }

    /// The most the daemon has been resident so far (checkpoints included).
    fn peak_bytes(&self) -> u64 {
        self.status_bytes("VmHWM:")
    }

    fn status_bytes(&self, field: &str) -> u64 {
        let pid = self.child.as_ref().expect("running").id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
        let kib = status.lines().find_map(|l| l.strip_prefix(field)).expect("a field of /proc/PID/status");
        kib.trim().trim_end_matches("kB").trim().parse::<u64>().expect("kB") * 1024
    }

    fn signal(&mut self, sig: &str) {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill").args([sig, &child.id().to_string()]).status();
        let _ = child.wait();
    }
}

fn netted(body: &str) -> u64 {
    [
        "clearhouse_accepted_instructions_total",
        "clearhouse_rejected_instructions_total",
        "clearhouse_duplicate_instructions_total",
    ]
    .iter()
    .map(|name| http::metric(body, name))
    .sum::<f64>() as u64
}

fn consumed(body: &str) -> u64 {
    http::metric(body, "clearhouse_consumed_messages_total") as u64
}

/// Window directories under `<state>/<sub>`; with `done`, only those holding `window.done`.
fn count_dirs(state: &Path, sub: &str, done: bool) -> usize {
    std::fs::read_dir(state.join(sub))
        .map(|d| d.filter_map(Result::ok).filter(|e| !done || e.path().join("window.done").exists()).count())
        .unwrap_or(0)
}

/// Instructions covered by the checkpoints in a topic's state directory.
fn checkpointed(state: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(state) else { return 0 };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read(e.path().join("progress.json")).ok())
        .map(|b| {
            serde_json::from_slice::<serde_json::Value>(&b).expect("progress")["stats"]["input"].as_u64().unwrap_or(0)
        })
        .sum()
}

/// The smallest histogram bucket bound holding all `count` observations.
fn slowest_bucket(body: &str, name: &str, count: f64) -> String {
    let prefix = format!("{name}_bucket{{le=\"");
    body.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|rest| rest.split_once("\"} "))
        .find(|(_, n)| n.parse::<f64>().is_ok_and(|n| n >= count))
        .map_or_else(|| "?".to_owned(), |(le, _)| le.to_owned())
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// Daemon against the bare consumer on one topic.
fn throughput(brokers: &str, dir: &Path, count: u64) {
    gen(brokers, "bench", count, 7, 3);
    let (bare_messages, bare_time) = bare_consume(brokers, "bench");
    assert_eq!(bare_messages, count);

    let mut daemon = Daemon::new(dir, brokers, "bench", "clock = \"2030-01-01T00:00:00Z\"\n");
    let started = daemon.start();
    let (_, first) = daemon.wait("first message consumed", |b| consumed(b) > 0);
    let (_, last) = daemon.wait("every message netted", |b| netted(b) >= count);
    // Every window the partitions sealed (a `parts/` directory each) written and published.
    let state = dir.join("state/bench");
    let deadline = Instant::now() + LIMIT;
    while count_dirs(&state, "parts", false) == 0
        || count_dirs(&state, "emitted", true) < count_dirs(&state, "parts", false)
    {
        assert!(Instant::now() < deadline, "windows not emitted");
        std::thread::sleep(Duration::from_millis(10));
    }
    let emitted = Instant::now();
    let windows = count_dirs(&state, "emitted", true);
    daemon.signal("-TERM");
    let netting = last - first;
    let (bare, ours) = (rate(count, bare_time), rate(count, netting));
    println!("throughput, {count} messages on 4 partitions:");
    println!("  bare rdkafka consumer      {:>8.2} s {bare:>9.0} msg/s", bare_time.as_secs_f64());
    println!(
        "  daemon, consumed to netted {:>8.2} s {ours:>9.0} msg/s = {:.0}% of bare",
        netting.as_secs_f64(),
        100.0 * ours / bare
    );
    println!(
        "  daemon start to first message {:.2} s; to every window written and published {:.2} s ({} windows)",
        (first - started).as_secs_f64(),
        (emitted - started).as_secs_f64(),
        windows
    );
    replay_and_verify(dir, bare_time);
}

/// `clearhouse replay` of the whole topic with the daemon's manifests, then `verify --against`
/// the daemon's output (issue #4's target: under twice the bare consumer's time).
fn replay_and_verify(dir: &Path, bare_time: Duration) {
    let started = Instant::now();
    let replay = Command::new(bin())
        .args(["replay", "--config", "clearhouse.toml", "--out", "replayed"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .status()
        .expect("replay");
    assert!(replay.success(), "replay failed");
    let replayed = started.elapsed();
    let verify = Command::new(bin())
        .args(["verify", "--against", "out", "replayed"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .status()
        .expect("verify");
    assert!(verify.success(), "the replay differs from the daemon's output");
    let total = started.elapsed();
    // `trace` of the last instruction of the last clearing file: a full scan of the output.
    let out = dir.join("out");
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .expect("out")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("clearing-"))
        .collect();
    names.sort();
    let last = std::fs::read_to_string(out.join(names.last().expect("a clearing file"))).expect("read");
    let id = last.lines().rev().find_map(|l| l.strip_prefix("D|")).and_then(|l| l.split('|').next()).expect("an id");
    let bytes: u64 = names.iter().filter_map(|n| std::fs::metadata(out.join(n)).ok()).map(|m| m.len()).sum();
    let traced = Instant::now();
    let trace = Command::new(bin()).args(["trace", id, "--out", "out"]).current_dir(dir).stdout(Stdio::null()).status();
    assert!(trace.expect("trace").success(), "trace found it");
    println!(
        "  trace of one id over {} clearing files ({:.0} MiB): {:.2} s",
        names.len(),
        bytes as f64 / 1048576.0,
        traced.elapsed().as_secs_f64()
    );
    println!(
        "  replay of the topic {:.2} s + verify --against {:.2} s = {:.2} s = {:.2}x the bare consumer (identical)",
        replayed.as_secs_f64(),
        (total - replayed).as_secs_f64(),
        total.as_secs_f64(),
        total.as_secs_f64() / bare_time.as_secs_f64()
    );
}

/// A backlog of sealed windows (issue #11): `count` instructions over five days in one-hour
/// windows (about 120), with a wall clock in the future so that each window is sealed as soon as
/// the topic's event times pass it. Prints when the last window was sealed and when the last one
/// was published, and each window's time from sealed to published
/// (`clearhouse_window_seal_to_publish_seconds`).
fn window_backlog(brokers: &str, dir: &Path, count: u64) {
    gen(brokers, "hourly", count, 11, 5);
    let extra = "clock = \"2030-01-01T00:00:00Z\"\n[calendar]\ninterval_secs = 3600\n";
    let mut daemon = Daemon::new(dir, brokers, "hourly", extra);
    let started = daemon.start();
    let (_, first) = daemon.wait("first message consumed", |b| consumed(b) > 0);
    let (_, last) = daemon.wait("every message netted", |b| netted(b) >= count);
    let open = |b: &str| http::metric(b, "clearhouse_open_windows");
    let (_, sealed) = daemon.wait("every window sealed", |b| open(b) == 0.0);
    let state = dir.join("state/hourly");
    let (body, published) = daemon.wait("every window published", |b| {
        let parts = count_dirs(&state, "parts", false);
        let reported = http::metric(b, "clearhouse_windows_emitted_total") as usize;
        open(b) == 0.0 && parts > 0 && count_dirs(&state, "emitted", true) == parts && reported == parts
    });
    daemon.signal("-TERM");
    let windows = count_dirs(&state, "emitted", true);
    let name = "clearhouse_window_seal_to_publish_seconds";
    let (n, sum) = (http::metric(&body, &format!("{name}_count")), http::metric(&body, &format!("{name}_sum")));
    let secs = |t: Instant| (t - started).as_secs_f64();
    println!("window backlog, {count} messages over {windows} hourly windows on 4 partitions:");
    println!(
        "  start to first message {:.2} s, every message netted {:.2} s, every window sealed {:.2} s, every window published {:.2} s",
        secs(first),
        secs(last),
        secs(sealed),
        secs(published)
    );
    let per_window = if n > 0.0 {
        format!("mean {:.2} s, all within {} s ({n} windows)", sum / n, slowest_bucket(&body, name, n))
    } else {
        "not reported by this build".to_owned()
    };
    println!(
        "  last seal to last window published {:.2} s; sealed to published per window: {per_window}",
        (published - sealed).as_secs_f64()
    );
}

/// `open` instructions that stay in open windows (a week of grace, a wall clock in the past):
/// memory, checkpoint size and duration, then kill -9 and the time to consume again.
fn open_windows(brokers: &str, dir: &Path, open: u64) {
    gen(brokers, "open", open, 9, 1);
    let extra = "clock = \"2000-01-01T00:00:00Z\"\ngrace_secs = 604800\n";
    let mut daemon = Daemon::new(dir, brokers, "open", extra);
    daemon.start();
    daemon.wait("admin up", |_| true);
    let rss_empty = daemon.rss_bytes();
    daemon.wait("every message netted", |b| netted(b) >= open);
    let rss_full = daemon.rss_bytes();
    // Crash once a checkpoint covers everything (`progress.json` is written after it).
    let deadline = Instant::now() + LIMIT;
    while checkpointed(&dir.join("state/open")) < open {
        assert!(Instant::now() < deadline, "no checkpoint covered every message");
        std::thread::sleep(Duration::from_millis(10));
    }
    let peak = daemon.peak_bytes();
    let body = daemon.metrics().expect("metrics");
    let instructions = http::metric(&body, "clearhouse_accepted_instructions_total");
    let checkpoints = http::metric(&body, "clearhouse_checkpoint_duration_seconds_count");
    let seconds = http::metric(&body, "clearhouse_checkpoint_duration_seconds_sum");
    let slowest = slowest_bucket(&body, "clearhouse_checkpoint_duration_seconds", checkpoints);
    let bytes: u64 = (0..4)
        .filter_map(|p| std::fs::metadata(dir.join(format!("state/open/p{p}/checkpoint.bin"))).ok())
        .map(|m| m.len())
        .sum();
    daemon.signal("-KILL");
    gen(brokers, "open", 1_000, 10, 1);
    let restarted = daemon.start();
    let (_, resumed) = daemon.wait("consuming again", |b| consumed(b) > 0);
    let rejoins = http::metric(&daemon.metrics().expect("metrics"), "clearhouse_stranded_rejoins_total");
    daemon.signal("-TERM");

    let per = |total: f64| total / instructions.max(1.0);
    println!("open windows, {instructions} accepted instructions, all held in open windows, on 4 partitions:");
    println!(
        "  memory: {:.0} MiB resident, {:.0} MiB more than at start = {:.0} bytes per open instruction",
        rss_full as f64 / 1048576.0,
        (rss_full.saturating_sub(rss_empty)) as f64 / 1048576.0,
        per(rss_full.saturating_sub(rss_empty) as f64)
    );
    println!(
        "  peak resident, checkpoints included: {:.0} MiB = {:.0} bytes per open instruction",
        peak as f64 / 1048576.0,
        per(peak.saturating_sub(rss_empty) as f64)
    );
    println!("  checkpoints: {:.1} MiB on disk = {:.0} bytes per open instruction; {checkpoints} taken, mean {:.0} ms, all within {slowest} s",
        bytes as f64 / 1048576.0, per(bytes as f64), 1000.0 * seconds / checkpoints.max(1.0));
    println!(
        "  kill -9, restart to consuming again: {:.2} s ({rejoins} stranded-group rejoins)",
        (resumed - restarted).as_secs_f64()
    );
}

fn main() {
    let test_mode = !std::env::args().any(|a| a == "--bench");
    let numbers: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let arg = |i: usize, default: u64| numbers.get(i).copied().unwrap_or(default);
    let (count, open, backlog) =
        if test_mode { (2_000, 2_000, 2_000) } else { (arg(0, 500_000), arg(1, 1_000_000), arg(2, 200_000)) };
    let broker = broker::Tansu::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b, c) = (dir.path().join("throughput"), dir.path().join("open"), dir.path().join("backlog"));
    for d in [&a, &b, &c] {
        std::fs::create_dir_all(d).expect("dir");
    }
    // A count of 0 skips that part.
    if count > 0 {
        throughput(&broker.addr, &a, count);
    }
    if open > 0 {
        open_windows(&broker.addr, &b, open);
    }
    if backlog > 0 {
        window_backlog(&broker.addr, &c, backlog);
    }
}
