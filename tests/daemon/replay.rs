//! Replay after an outage: the daemon closes a window on the wall clock while its topic is
//! quiet, the rest of that window's instructions arrive afterwards (netted late into the next
//! one), and `replay` must reproduce the original files byte for byte from the topic and the
//! manifests. Without the manifests (event time only) it cannot, and `verify --against` says so.
//! Then lost output: `replay --emit` restores it without publishing any credit twice, refuses a
//! window whose published bytes differ, and a daemon that lost its state too re-emits nothing.

use std::time::Duration;

use super::common::clearhouse;
use super::common::daemon::{files, key_counts, produce_lines, read_topic, Deployment};
use super::{gen, phased_workload, stop, wait_settled, wait_until, CLOCK};
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

    // A range: up to the second window's fences, then from them on (per-partition offsets).
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest-20261002T1500Z.json")).expect("manifest"))
            .expect("json");
    let fences = manifest["fences"].as_object().expect("fences");
    let fences: Vec<String> =
        fences.iter().map(|(input, f)| format!("{}:{f}", input.trim_start_matches("rp/"))).collect();
    let fences = fences.join(",");
    replay(&["--out", "first-two", "--to-offset", &fences]).assert().success();
    verify("rp-out", "first-two")
        .assert()
        .code(4)
        .stdout(
            predicate::str::contains("window 20261001T1500Z: files ").and(predicate::str::contains("different").not()),
        )
        .stdout(
            predicate::str::is_match("window 20261002T1500Z: files [0-9]+ identical; batches [0-9]+ identical\n")
                .expect("re"),
        );
    replay(&["--out", "after-two", "--from-offset", &fences]).assert().success().stdout(
        predicate::str::contains("window 20261003T1500Z").and(predicate::str::contains("window 20261002T1500Z").not()),
    );
    verify("rp-out", "after-two").assert().code(4).stdout(
        predicate::str::is_match("window 20261003T1500Z: files [0-9]+ identical; batches [0-9]+ identical\n")
            .expect("re"),
    );

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

#[test]
fn lost_output_is_restored_by_replay_emit_and_nobody_is_paid_twice() {
    let broker = super::common::broker::Tansu::start();
    let dir = tempfile::tempdir().expect("tempdir");
    gen(&["--count", "10000", "--seed", "61", "--topic", "re", "--brokers", &broker.addr, "--partitions", "4"]);
    let live = Deployment::new(dir.path(), "re", &broker.addr, "re", CLOCK, "");
    let daemon = live.start("run");
    wait_settled(&[&live], 10_000);
    stop(&live, "run", daemon);
    let original = files(&live.out());
    let credits = read_topic(&broker.addr, "re.credits");
    let windows = original.keys().filter(|n| n.starts_with("manifest-")).count();
    let replay = |args: &[&str]| {
        let mut cmd = clearhouse();
        cmd.current_dir(dir.path()).args(["replay", "--config", "re.toml"]).args(args);
        cmd
    };
    let unchanged_credits = || {
        let now = read_topic(&broker.addr, "re.credits");
        assert_eq!(now.len(), credits.len(), "no credit published again");
        assert!(key_counts(&now).values().all(|&n| n == 1));
    };

    // The output directory is lost: the fences come from the windows topic.
    std::fs::remove_dir_all(live.out()).expect("lose the output");
    replay(&["--out", "staged", "--from-windows-topic", "--emit"])
        .assert()
        .success()
        .stdout(predicate::str::contains("fences and seals from the events on re.windows"))
        .stdout(predicate::str::contains("already on the topic; window event already there").count(windows));
    assert!(files(&live.out()) == original, "every file restored byte for byte");
    unchanged_credits();

    // A file that differs from what the topic replays is never replaced, and nothing is sent.
    let manifest = original.keys().find(|n| n.starts_with("manifest-")).expect("a manifest");
    let window = manifest.trim_start_matches("manifest-").trim_end_matches(".json").to_owned();
    let clearing = original.keys().find(|n| n.starts_with(&format!("clearing-{window}-"))).expect("a clearing file");
    std::fs::write(live.out().join(clearing), b"tampered\n").expect("tamper");
    replay(&["--out", "staged-again", "--emit"]).assert().code(3).stdout(predicate::str::contains(format!(
        "emit {window}: REFUSED, nothing written or sent: file {clearing} differs"
    )));
    assert_eq!(std::fs::read(live.out().join(clearing)).expect("read"), b"tampered\n");
    std::fs::write(live.out().join(clearing), &original[clearing]).expect("put back");

    // The credits topic forgets (here: replaced by an empty one) and the output is lost again:
    // the windows this state directory marked done are restored as files, but nothing is sent.
    let kafka = clearhouse_kafka::KafkaOptions { brokers: broker.addr.clone(), ..Default::default() };
    kafka.ensure_topic("re.credits-forgot", 1).expect("topic");
    let config = dir.path().join("re.toml");
    let text = std::fs::read_to_string(&config).expect("config");
    let forgetful = text.replace("credits_topic = \"re.credits\"", "credits_topic = \"re.credits-forgot\"");
    std::fs::write(dir.path().join("re-forgot.toml"), forgetful).expect("config");
    std::fs::remove_dir_all(live.out()).expect("lose the output");
    clearhouse()
        .current_dir(dir.path())
        .args(["replay", "--config", "re-forgot.toml", "--out", "staged-forgot", "--from-windows-topic", "--emit"])
        .assert()
        .success();
    assert!(files(&live.out()) == original, "every file restored byte for byte");
    assert!(read_topic(&broker.addr, "re.credits-forgot").is_empty(), "no credit sent again for a window marked done");

    // State and output both lost: the daemon re-nets the topic and rewrites the same files, and
    // the window events already on the windows topic stop it from paying anybody again.
    std::fs::remove_dir_all(live.out()).expect("lose the output");
    std::fs::remove_dir_all(dir.path().join("re-state")).expect("lose the state");
    let daemon = live.start("after-loss");
    wait_settled(&[&live], 10_000);
    stop(&live, "after-loss", daemon);
    assert!(files(&live.out()) == original, "the same files again");
    unchanged_credits();
    assert_eq!(read_topic(&broker.addr, "re.windows").len(), windows, "no window event twice");
}
