//! Replay after an outage: the daemon closes a window on the wall clock while its topic is
//! quiet, the rest of that window's instructions arrive afterwards (netted late into the next
//! one), and `replay` must reproduce the original files byte for byte from the topic and the
//! manifests. Without the manifests (event time only) it cannot, and `verify --against` says so.

use std::time::Duration;

use super::common::clearhouse;
use super::common::daemon::{files, produce_lines, Deployment};
use super::{phased_workload, stop, wait_settled, wait_until};
use predicates::prelude::*;

/// Just after the second window's end plus grace: a quiet partition seals it on the wall clock.
const MID: &str = "2026-10-02T15:10:00Z";

#[test]
fn replay_reproduces_a_wall_clock_close_byte_for_byte_and_trace_finds_the_late_ones() {
    let broker = super::common::broker::Tansu::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let lines = phased_workload(&broker.addr, dir.path(), "rp", 20_000, 53);
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();

    let live = Deployment::new(dir.path(), "rp", &broker.addr, "rp", MID, "");
    produce_lines(&broker.addr, "rp", &lines[..10_000]);
    let daemon = live.start("run");
    // The first half ends inside window 20261002T1500Z; at the end of the topic the wall clock
    // closes it.
    wait_until("two windows closed", Duration::from_secs(120), || live.manifests() >= 2 && live.windows_done() >= 2);
    produce_lines(&broker.addr, "rp", &lines[10_000..]);
    wait_settled(&[&live], lines.len() as u64);
    stop(&live, "run", daemon);
    let out = live.out();
    let third: String = files(&out)
        .iter()
        .filter(|(name, _)| name.starts_with("clearing-20261003T1500Z-"))
        .map(|(_, bytes)| String::from_utf8_lossy(bytes).into_owned())
        .collect();
    let late = third.lines().find(|l| l.starts_with("D|") && l.split('|').nth(8) == Some("20261002T1500Z"));
    let late = late.expect("instructions of the wall-clock-closed window netted late into the next");

    let replay = |args: &[&str]| {
        let mut cmd = clearhouse();
        cmd.current_dir(dir.path()).args(["replay", "--config", "rp.toml"]).args(args);
        cmd
    };
    let verify = |against: &str, replayed: &str| {
        let mut cmd = clearhouse();
        cmd.current_dir(dir.path()).args(["verify", "--against", against, replayed]);
        cmd
    };
    replay(&["--out", "replayed"])
        .assert()
        .success()
        .stdout(predicate::str::contains("messages of topic rp into replayed"))
        .stdout(
            predicate::str::is_match("window 20261002T1500Z: [0-9]+ batches, sealed as in its original manifest")
                .expect("regex"),
        );
    verify("rp-out", "replayed").assert().code(0).stdout(predicate::str::contains("IDENTICAL"));

    replay(&["--out", "event-time", "--event-time-only"])
        .assert()
        .success()
        .stdout(predicate::str::contains("no manifests: every window sealed by event time only"));
    verify("rp-out", "event-time")
        .assert()
        .code(3)
        .stdout(predicate::str::contains("different clearing-20261002T1500Z-CNY.txt"));

    replay(&["--out", "rp-out/x"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("overlaps the live output directory"));

    let id = late.split('|').nth(1).expect("id");
    clearhouse()
        .args(["trace", id, "--out"])
        .arg(&out)
        .assert()
        .success()
        .stdout(predicate::str::contains("accepted into window 20261003T1500Z"))
        .stdout(predicate::str::contains("late (its own window 20261002T1500Z)"));
}
