//! `clearhouse run` as a process against a real broker (tansu, SQLite storage, loopback):
//! equivalence with `net`, metrics over HTTP and SIGTERM (`equivalence`), kill -9 recovery and a
//! broker outage (`faults`), a second instance joining and leaving (`rebalance`), and `replay`
//! of a window closed on the wall clock (`replay`). Every
//! fault test compares its deployment with an undisturbed one reading the same topic: same
//! files byte for byte (fences included), same accounting, same EndToEndIds, none twice.

#[path = "../common/mod.rs"]
mod common;

mod equivalence;
mod faults;
mod guards;
mod rebalance;
mod replay;
mod tls;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use common::broker::free_port;
use common::clearhouse;
use common::daemon::{files, key_counts, read_topic, Deployment};

/// A wall clock after every generated window, so partitions that reach their end close
/// everything, and the same for every run.
const CLOCK: &str = "2030-01-01T00:00:00Z";
/// A wall clock before the data: windows close by event time only, so an instance that reaches
/// the end of a partition between two phases of production closes nothing early.
const PAST: &str = "2000-01-01T00:00:00Z";
const START: &str = "2026-10-01T00:00:00+08:00";

fn gen(args: &[&str]) {
    clearhouse().args(["gen", "--start", START, "--merchants", "300"]).args(args).assert().success();
}

/// Generates `count` instructions into `dir/in.jsonl` (to be produced in phases) and creates
/// `topic` with 4 partitions; returns the lines.
fn phased_workload(brokers: &str, dir: &Path, topic: &str, count: u32, seed: u32) -> Vec<String> {
    let file = dir.join("in.jsonl");
    let (count, seed) = (count.to_string(), seed.to_string());
    gen(&["--count", &count, "--seed", &seed, "--out", file.to_str().expect("utf-8")]);
    let kafka = clearhouse_kafka::KafkaOptions { brokers: brokers.to_owned(), properties: Default::default() };
    kafka.ensure_topic(topic, 4).expect("topic");
    common::daemon::lines_of(&file)
}

fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "daemon did not exit within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what} not reached within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until every deployment has netted `count` instructions and emitted the same windows,
/// with nothing changing for two seconds (the assembler runs after each checkpoint).
fn wait_settled(deployments: &[&Deployment], count: u64) {
    for d in deployments {
        wait_until(&format!("{} netted {count}", d.name), Duration::from_secs(300), || d.accounting().0 >= count);
    }
    let snapshot = || deployments.iter().map(|d| (d.manifests(), d.windows_done())).collect::<Vec<_>>();
    let mut last = (snapshot(), Instant::now());
    wait_until("windows settled", Duration::from_secs(120), || {
        let now = snapshot();
        if now != last.0 {
            last = (now, Instant::now());
            return false;
        }
        let same = now.windows(2).all(|w| w[0] == w[1]) && now.iter().all(|&(m, d)| m == d);
        same && last.1.elapsed() >= Duration::from_secs(2)
    });
}

/// Stops a daemon with SIGTERM and asserts a clean exit, printing its log if not.
/// An undisturbed deployment named `name` that has consumed all `count` messages of `topic`
/// and stopped: what a disturbed one must end up identical to.
fn settled_reference(brokers: &str, dir: &Path, name: &str, topic: &str, count: u64) -> Deployment {
    let reference = Deployment::new(dir, name, brokers, topic, CLOCK, "");
    let daemon = reference.start("run");
    wait_settled(&[&reference], count);
    stop(&reference, "run", daemon);
    reference
}

fn stop(deployment: &Deployment, tag: &str, mut child: Child) {
    common::daemon::signal(&child, "-TERM");
    let status = wait_exit(&mut child, Duration::from_secs(60));
    let log = std::fs::read_to_string(deployment.dir.join(format!("{}-{tag}.log", deployment.name)));
    assert!(status.success(), "{} {tag} exited {status}; its log:\n{}", deployment.name, log.unwrap_or_default());
}

/// Number of credit transfers in every pain.001 file of a directory.
fn credits_in_files(dir: &Path) -> usize {
    files(dir)
        .iter()
        .filter(|(name, _)| name.starts_with("pain001-"))
        .map(|(_, bytes)| String::from_utf8_lossy(bytes).matches("<CdtTrfTxInf>").count())
        .sum()
}

/// `got` produced exactly what the undisturbed `want` did: every file byte for byte, the same
/// accounting, and the same set of EndToEndIds on its credits topic with none published twice.
fn assert_same_outcome(brokers: &str, got: &Deployment, want: &Deployment) {
    let (got_files, want_files) = (files(&got.out()), files(&want.out()));
    assert!(want_files.keys().any(|n| n.starts_with("manifest-")), "the reference closed windows");
    assert_eq!(got_files.keys().collect::<Vec<_>>(), want_files.keys().collect::<Vec<_>>());
    for (name, bytes) in &got_files {
        assert!(bytes == &want_files[name], "{name} differs from the undisturbed run");
    }
    let (input, accepted, rejected, duplicates) = got.accounting();
    assert_eq!(input, accepted + rejected + duplicates, "every instruction accounted for");
    assert_eq!(got.accounting(), want.accounting(), "every instruction applied once");

    let credits = read_topic(brokers, &format!("{}.credits", got.name));
    let counts = key_counts(&credits);
    let twice: BTreeMap<&&str, &usize> = counts.iter().filter(|(_, &n)| n > 1).collect();
    assert!(twice.is_empty(), "EndToEndIds published twice: {twice:?}");
    let want_keys: HashSet<String> =
        read_topic(brokers, &format!("{}.credits", want.name)).into_iter().map(|(k, _)| k).collect();
    let got_keys: HashSet<String> = credits.into_iter().map(|(k, _)| k).collect();
    assert_eq!(got_keys, want_keys);
    assert_eq!(got_keys.len(), credits_in_files(&got.out()));
}
