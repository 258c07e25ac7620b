//! Faults: the daemon killed with SIGKILL again and again, and the broker going away mid-stream.

use std::time::{Duration, Instant};

use super::common::broker::Tansu;
use super::common::daemon::{produce_lines, read_topic, signal, Deployment};
use super::{
    assert_same_outcome, gen, phased_workload, settled_reference, stop, wait_exit, wait_settled, wait_until, CLOCK,
    PAST,
};

/// Lines of the instance's log that report a Kafka client error.
fn kafka_warnings(deployment: &Deployment, tag: &str) -> usize {
    let log = std::fs::read_to_string(deployment.log_path(tag)).unwrap_or_default();
    log.lines().filter(|l| l.contains("kafka client error")).count()
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

    let reference = settled_reference(&broker.addr, dir.path(), "ref", "crash", COUNT);
    let windows = reference.manifests();

    // The same topic, killed at 20 pseudo-random points after it got its partitions back (and
    // so started consuming), including while windows were being emitted.
    let crashed = Deployment::new(dir.path(), "crashed", &broker.addr, "crash", CLOCK, "");
    let mut seed = 0x5eed_u64;
    let mut progress = Vec::new();
    let mut resume_secs = Vec::new();
    for life in 0..20 {
        let tag = format!("life{life}");
        let started = Instant::now();
        let mut daemon = crashed.start(&tag);
        crashed.wait_for_log(&tag, "partitions assigned", Duration::from_secs(90));
        resume_secs.push(started.elapsed().as_secs_f32());
        std::thread::sleep(Duration::from_millis(next(&mut seed) % 1500));
        signal(&daemon, "-KILL");
        let _ = daemon.wait();
        progress.push((crashed.accounting().0, crashed.manifests()));
    }
    eprintln!("seconds from restart to partitions assigned: {resume_secs:?}");
    eprintln!("(instructions checkpointed, windows) after each kill: {progress:?}");
    assert!(progress.iter().any(|&(n, _)| n > 0 && n < COUNT), "some kills landed mid-stream: {progress:?}");

    let daemon = crashed.start("final");
    // The last killed life may already have emitted every window: wait for this one to be up.
    crashed.wait_for_log("final", "partitions assigned", Duration::from_secs(90));
    crashed.wait_for_windows(windows, Duration::from_secs(300));
    wait_settled(&[&crashed, &reference], COUNT);
    stop(&crashed, "final", daemon);
    assert_same_outcome(&broker.addr, &crashed, &reference);
}

#[test]
fn a_broker_outage_mid_stream_is_waited_out_and_changes_nothing() {
    let mut broker = Tansu::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let lines = phased_workload(&broker.addr, dir.path(), "outage", 30_000, 41);
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();

    let outage = Deployment::new(dir.path(), "outage", &broker.addr, "outage", PAST, "");
    produce_lines(&broker.addr, "outage", &lines[..15_000]);
    let mut daemon = outage.start("run");
    wait_until("first half netted", Duration::from_secs(120), || outage.accounting().0 >= 15_000);
    let emitted_before = outage.windows_done();

    let warnings_before = kafka_warnings(&outage, "run");
    broker.stop();
    std::thread::sleep(Duration::from_secs(8));
    assert!(daemon.try_wait().expect("wait").is_none(), "the daemon waits out a broker outage");
    // librdkafka reports the outage about twenty times a second; the log backs off (1, 2, 4 s).
    let warned = kafka_warnings(&outage, "run") - warnings_before;
    assert!((1..=6).contains(&warned), "{warned} kafka error lines in an 8 s outage");
    broker.restart();
    produce_lines(&broker.addr, "outage", &lines[15_000..]);

    let reference = Deployment::new(dir.path(), "outref", &broker.addr, "outage", PAST, "");
    let undisturbed = reference.start("run");
    wait_settled(&[&outage, &reference], lines.len() as u64);
    assert!(outage.windows_done() > emitted_before, "windows closed after the outage");
    stop(&outage, "run", daemon);
    stop(&reference, "run", undisturbed);
    assert_same_outcome(&broker.addr, &outage, &reference);
}

#[test]
fn sigterm_while_the_broker_is_down_exits_within_ten_seconds_and_loses_nothing() {
    let mut broker = Tansu::start();
    let dir = tempfile::tempdir().expect("tempdir");
    gen(&["--count", "5000", "--seed", "43", "--topic", "down", "--brokers", &broker.addr, "--partitions", "4"]);
    let down = Deployment::new(dir.path(), "down", &broker.addr, "down", CLOCK, "");
    let mut daemon = down.start("run");
    wait_until("everything netted", Duration::from_secs(120), || down.accounting().0 >= 5_000);
    broker.stop();
    std::thread::sleep(Duration::from_secs(2));
    signal(&daemon, "-TERM");
    // The shutdown deadline (8 s by default) bounds the wait on a broker that is gone.
    let status = wait_exit(&mut daemon, Duration::from_secs(10));
    assert!(status.success(), "exit status {status}");
    broker.restart();
    let again = down.start("again");
    down.wait_for_log("again", "partitions assigned", Duration::from_secs(90));
    let reference = Deployment::new(dir.path(), "downref", &broker.addr, "down", CLOCK, "");
    let undisturbed = reference.start("run");
    wait_settled(&[&down, &reference], 5_000);
    stop(&down, "again", again);
    stop(&reference, "run", undisturbed);
    assert_same_outcome(&broker.addr, &down, &reference);
}

#[test]
fn a_dead_shard_or_a_broken_state_directory_stops_the_process_and_a_restart_resumes() {
    const COUNT: u64 = 20_000;
    let broker = Tansu::start();
    let dir = tempfile::tempdir().expect("tempdir");
    gen(&["--count", "20000", "--seed", "47", "--topic", "fail", "--brokers", &broker.addr, "--partitions", "4"]);
    let reference = settled_reference(&broker.addr, dir.path(), "failref", "fail", COUNT);

    let failing = Deployment::new(dir.path(), "failing", &broker.addr, "fail", CLOCK, "");
    let log = |tag: &str| std::fs::read_to_string(failing.log_path(tag)).unwrap_or_default();
    // A shard panics, as a bug would: the instance stops instead of running on without it.
    let mut daemon = failing.start_with_env("panic", &[("CLEARHOUSE_INJECT_PANIC", "0:500")]);
    let status = wait_exit(&mut daemon, Duration::from_secs(120));
    assert!(!status.success(), "a dead shard must stop the process: {status}");
    let text = log("panic");
    assert!(text.contains("thread shard-0 panicked: injected fault at partition 0 offset 500"), "{text}");
    assert!(text.contains("a daemon thread failed: not ready, stopping"), "{text}");

    // The state directory of partition 1 is broken: the partition cannot be restored or saved.
    let p1 = dir.path().join("failing-state/fail/p1");
    let moved = dir.path().join("failing-state/fail/p1-moved");
    if p1.exists() {
        std::fs::rename(&p1, &moved).expect("move p1");
    }
    std::fs::write(&p1, "not a directory").expect("plant a file");
    let mut daemon = failing.start("broken");
    let status = wait_exit(&mut daemon, Duration::from_secs(120));
    assert_eq!(status.code(), Some(70), "{}", log("broken"));
    assert!(log("broken").contains("p1 is a regular file, not a regular directory"), "{}", log("broken"));
    std::fs::remove_file(&p1).expect("remove the file");
    if moved.exists() {
        std::fs::rename(&moved, &p1).expect("restore p1");
    }

    let daemon = failing.start("final");
    failing.wait_for_log("final", "partitions assigned", Duration::from_secs(90));
    wait_settled(&[&failing], COUNT);
    stop(&failing, "final", daemon);
    assert_same_outcome(&broker.addr, &failing, &reference);
}

#[test]
fn a_crash_between_a_checkpoint_and_its_dead_letters_loses_no_reject() {
    const COUNT: u64 = 10_000;
    let broker = Tansu::start();
    let dir = tempfile::tempdir().expect("tempdir");
    gen(&["--count", "10000", "--seed", "59", "--topic", "dlq", "--brokers", &broker.addr, "--partitions", "4"]);
    let reference = settled_reference(&broker.addr, dir.path(), "dlqref", "dlq", COUNT);

    // Aborts right after the first checkpoint that holds rejects not yet on the dead-letter topic.
    let crashed = Deployment::new(dir.path(), "dlqcrash", &broker.addr, "dlq", CLOCK, "");
    let mut daemon = crashed.start_with_env("crash", &[("CLEARHOUSE_INJECT_CRASH", "after-checkpoint")]);
    let status = wait_exit(&mut daemon, Duration::from_secs(120));
    assert!(!status.success(), "the injected crash happened: {status}");
    assert!(std::fs::read_to_string(crashed.log_path("crash")).unwrap_or_default().contains("injected crash"));
    let checkpointed = crashed.accounting();
    assert!(checkpointed.2 > 0, "the crash came after a checkpoint with rejects: {checkpointed:?}");

    let daemon = crashed.start("final");
    wait_settled(&[&crashed], COUNT);
    stop(&crashed, "final", daemon);
    let keys = |topic: &str| -> std::collections::BTreeSet<String> {
        read_topic(&broker.addr, topic).into_iter().map(|(key, _)| key).collect()
    };
    let (want, got) = (keys("dlqref.dlq"), keys("dlqcrash.dlq"));
    assert_eq!(want.len() as u64, reference.accounting().2, "the reference dead-lettered every reject");
    assert_eq!(got, want, "every reject reached the dead-letter topic despite the crash");
}
