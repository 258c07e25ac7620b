//! `clearhouse run` as a process against a real broker (tansu, SQLite storage, loopback):
//! equivalence with `net`, metrics over HTTP, SIGTERM, and kill -9 recovery.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use common::broker::Tansu;
use common::clearhouse;
use common::daemon::{files, key_counts, read_topic, signal, without_fences, Deployment};

/// The wall clock the daemons see: after every generated window, so partitions that reach
/// their end close everything, and the same for every run.
const CLOCK: &str = "2030-01-01T00:00:00Z";
const START: &str = "2026-10-01T00:00:00+08:00";

fn gen(args: &[&str]) {
    clearhouse().args(["gen", "--start", START, "--merchants", "300"]).args(args).assert().success();
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port()
}

/// `GET path` over plain HTTP/1.0: (status code, body).
fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect admin");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status line");
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

fn metric(body: &str, name: &str) -> u64 {
    body.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()).expect("metric value") as u64)
        .sum()
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

/// Number of credit transfers in every pain.001 file of a directory.
fn credits_in_files(dir: &Path) -> usize {
    files(dir)
        .iter()
        .filter(|(name, _)| name.starts_with("pain001-"))
        .map(|(_, bytes)| String::from_utf8_lossy(bytes).matches("<CdtTrfTxInf>").count())
        .sum()
}

#[test]
fn daemon_output_equals_net_with_metrics_and_a_clean_sigterm() {
    let broker = Tansu::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("in.jsonl");
    gen(&["--count", "20000", "--seed", "11", "--out", file.to_str().expect("utf-8")]);
    gen(&["--count", "20000", "--seed", "11", "--topic", "eq", "--brokers", &broker.addr, "--partitions", "4"]);
    let net_out = dir.path().join("net-out");
    clearhouse().args(["net", "--no-progress", "--input"]).arg(&file).arg("--out").arg(&net_out).assert().success();
    let expected = files(&net_out);
    let windows = expected.keys().filter(|n| n.starts_with("manifest-")).count();
    assert!(windows >= 3, "the workload spans several windows");

    let admin = format!("127.0.0.1:{}", free_port());
    let deployment = Deployment::new(dir.path(), "eq", &broker.addr, "eq", CLOCK, &admin);
    let mut daemon = deployment.start("run");
    deployment.wait_for_windows(windows, Duration::from_secs(120));

    let (status, _) = http_get(&admin, "/health/live");
    assert_eq!(status, 200);
    let (status, _) = http_get(&admin, "/health/ready");
    assert_eq!(status, 200);
    let (status, body) = http_get(&admin, "/metrics");
    assert_eq!(status, 200);
    let summary: serde_json::Value = serde_json::from_slice(&expected["summary.json"]).expect("summary");
    assert_eq!(metric(&body, "clearhouse_consumed_messages_total"), 20_000);
    assert_eq!(metric(&body, "clearhouse_accepted_instructions_total"), summary["accepted"].as_u64().expect("n"));
    assert_eq!(metric(&body, "clearhouse_rejected_instructions_total"), summary["rejected"].as_u64().expect("n"));
    assert_eq!(metric(&body, "clearhouse_duplicate_instructions_total"), summary["duplicates"].as_u64().expect("n"));
    assert_eq!(metric(&body, "clearhouse_windows_emitted_total"), windows as u64);
    assert!(body.contains("clearhouse_checkpoint_duration_seconds_count"), "checkpoint histogram exported");

    signal(&daemon, "-TERM");
    let status = wait_exit(&mut daemon, Duration::from_secs(60));
    assert!(status.success(), "SIGTERM exit status {status}");

    let got = files(&deployment.out());
    for (name, bytes) in &got {
        let want = expected.get(name).unwrap_or_else(|| panic!("{name} not produced by net"));
        if name.starts_with("manifest-") {
            assert_eq!(without_fences(bytes), without_fences(want), "{name}");
            let fences: serde_json::Value = serde_json::from_slice(bytes).expect("manifest");
            let keys: Vec<&String> = fences["fences"].as_object().expect("fences").keys().collect();
            assert_eq!(keys, ["eq/0", "eq/1", "eq/2", "eq/3"], "one fence per partition");
        } else {
            assert!(bytes == want, "{name} differs from net's");
        }
    }
    let window_files = expected.keys().filter(|n| !n.ends_with(".jsonl") && *n != "summary.json").count();
    assert_eq!(got.len(), window_files, "every window file of net, nothing else");

    let credits = read_topic(&broker.addr, "eq.credits");
    assert_eq!(credits.len(), credits_in_files(&net_out), "one credit message per credit transfer");
    assert!(key_counts(&credits).values().all(|&n| n == 1), "no EndToEndId twice");
    assert_eq!(read_topic(&broker.addr, "eq.windows").len(), windows);
    let dlq = read_topic(&broker.addr, "eq.dlq");
    let dlq_keys: HashSet<&str> = dlq.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(dlq_keys.len() as u64, summary["rejected"].as_u64().expect("n"), "every reject on the DLQ");
    let first: serde_json::Value = serde_json::from_slice(&dlq[0].1).expect("dlq json");
    assert_eq!(first["source"]["topic"], "eq");
    assert!(first["reason"].is_string() && first["payload"].is_string());

    let (input, accepted, rejected, duplicates) = deployment.accounting();
    assert_eq!(input, 20_000);
    assert_eq!(input, accepted + rejected + duplicates);
}

/// A small deterministic generator for kill points.
fn next(seed: &mut u64) -> u64 {
    *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    *seed >> 33
}

#[test]
fn kill_nine_twenty_times_loses_nothing_and_pays_nobody_twice() {
    const COUNT: u64 = 100_000;
    let broker = Tansu::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let count = COUNT.to_string();
    gen(&["--count", &count, "--seed", "23", "--topic", "crash", "--brokers", &broker.addr, "--partitions", "4"]);

    // Reference: one uninterrupted run.
    let reference = Deployment::new(dir.path(), "ref", &broker.addr, "crash", CLOCK, "");
    let mut daemon = reference.start("run");
    let deadline = Instant::now() + Duration::from_secs(300);
    while reference.accounting().0 < COUNT || reference.manifests() == 0 {
        assert!(Instant::now() < deadline, "reference run did not finish");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    let windows = reference.manifests();
    reference.wait_for_windows(windows, Duration::from_secs(60));
    signal(&daemon, "-TERM");
    assert!(wait_exit(&mut daemon, Duration::from_secs(60)).success());
    let expected = files(&reference.out());

    // The same topic, killed with SIGKILL at 20 pseudo-random points.
    let crashed = Deployment::new(dir.path(), "crashed", &broker.addr, "crash", CLOCK, "");
    let mut seed = 0x5eed_u64;
    let mut progress = Vec::new();
    let mut resume_secs = Vec::new();
    for life in 0..20 {
        let tag = format!("life{life}");
        let started = Instant::now();
        let mut daemon = crashed.start(&tag);
        // Kill at a random point after it got its partitions back (and so started consuming).
        crashed.wait_for_log(&tag, "partitions assigned", Duration::from_secs(90));
        resume_secs.push(started.elapsed().as_secs_f32());
        std::thread::sleep(Duration::from_millis(next(&mut seed) % 1500));
        signal(&daemon, "-KILL");
        let _ = daemon.wait();
        progress.push((crashed.accounting().0, crashed.manifests()));
    }
    eprintln!("seconds from restart to partitions assigned: {resume_secs:?}");
    let mut daemon = crashed.start("final");
    // The last killed life may already have emitted every window: wait for this one to be up.
    crashed.wait_for_log("final", "partitions assigned", Duration::from_secs(90));
    crashed.wait_for_windows(windows, Duration::from_secs(300));
    signal(&daemon, "-TERM");
    let status = wait_exit(&mut daemon, Duration::from_secs(60));
    let log = std::fs::read_to_string(dir.path().join("crashed-final.log")).unwrap_or_default();
    assert!(status.success(), "final run exited {status}; its log:\n{log}");
    eprintln!("(instructions checkpointed, windows) after each kill: {progress:?}");
    assert!(progress.iter().any(|&(n, _)| n > 0 && n < COUNT), "some kills landed mid-stream: {progress:?}");

    let got = files(&crashed.out());
    assert_eq!(got.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>());
    for (name, bytes) in &got {
        assert!(bytes == &expected[name], "{name} differs from the uninterrupted run");
    }
    let (input, accepted, rejected, duplicates) = crashed.accounting();
    assert_eq!((input, accepted + rejected + duplicates), (COUNT, COUNT), "every instruction applied once");
    assert_eq!(crashed.accounting(), reference.accounting());

    let credits = read_topic(&broker.addr, "crashed.credits");
    let counts = key_counts(&credits);
    let twice: BTreeMap<&&str, &usize> = counts.iter().filter(|(_, &n)| n > 1).collect();
    assert!(twice.is_empty(), "EndToEndIds published twice: {twice:?}");
    let reference_keys: HashSet<String> = read_topic(&broker.addr, "ref.credits").into_iter().map(|(k, _)| k).collect();
    let crashed_keys: HashSet<String> = credits.into_iter().map(|(k, _)| k).collect();
    assert_eq!(crashed_keys, reference_keys);
    assert_eq!(crashed_keys.len(), credits_in_files(&crashed.out()));
}
