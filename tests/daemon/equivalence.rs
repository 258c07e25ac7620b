//! The daemon against `net` on the same instructions, with metrics, health and SIGTERM.

use std::collections::HashSet;
use std::time::Duration;

use super::common::broker::Tansu;
use super::common::clearhouse;
use super::common::daemon::{files, key_counts, read_topic, signal, without_fences, Deployment};
use super::common::http::{http_get, metric};
use super::{credits_in_files, free_port, gen, wait_exit, CLOCK};

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
    let count = |name: &str| metric(&body, name) as u64;
    assert_eq!(count("clearhouse_consumed_messages_total"), 20_000);
    assert_eq!(count("clearhouse_accepted_instructions_total"), summary["accepted"].as_u64().expect("n"));
    assert_eq!(count("clearhouse_rejected_instructions_total"), summary["rejected"].as_u64().expect("n"));
    assert_eq!(count("clearhouse_duplicate_instructions_total"), summary["duplicates"].as_u64().expect("n"));
    assert_eq!(count("clearhouse_windows_emitted_total"), windows as u64);
    assert!(body.contains("clearhouse_checkpoint_duration_seconds_count"), "checkpoint histogram exported");
    // Every metric the shipped alerts and dashboard query is really on /metrics (consumer lag
    // comes with librdkafka's statistics, every 5 s: scrape until it is there).
    let missing = |body: &str| -> Vec<String> {
        let exported =
            |name: &str| body.lines().any(|l| l.strip_prefix(name).is_some_and(|r| r.starts_with(['{', ' ', '_'])));
        super::common::monitored_metrics().into_iter().filter(|name| !exported(name)).collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut body = body;
    while !missing(&body).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        body = http_get(&admin, "/metrics").1;
    }
    assert_eq!(missing(&body), Vec::<String>::new(), "queried by deploy/ but not exported:\n{body}");

    signal(&daemon, "-TERM");
    let status = wait_exit(&mut daemon, Duration::from_secs(60));
    assert!(status.success(), "SIGTERM exit status {status}");

    let got = files(&deployment.out());
    for (name, bytes) in &got {
        let want = expected.get(name).unwrap_or_else(|| panic!("{name} not produced by net"));
        if name.starts_with("manifest-") {
            assert_eq!(without_fences(bytes), without_fences(want), "{name}");
            let fences: serde_json::Value = serde_json::from_slice(bytes).expect("manifest");
            for field in ["fences", "sealed_before"] {
                let keys: Vec<&String> = fences[field].as_object().expect(field).keys().collect();
                assert_eq!(keys, ["eq/0", "eq/1", "eq/2", "eq/3"], "one {field} entry per partition");
            }
        } else {
            assert!(bytes == want, "{name} differs from net's");
        }
    }
    let window_files = expected.keys().filter(|n| !n.ends_with(".jsonl") && *n != "summary.json").count();
    assert_eq!(got.len(), window_files, "every window file of net, nothing else");
    // The daemon's directory has no run seal; verify vouches for it window by window.
    clearhouse().arg("verify").arg(deployment.out()).assert().success();

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

    // `trace` in run mode finds a reject on the dead-letter topic, with its source position.
    let with_id = dlq.iter().map(|(_, p)| serde_json::from_slice::<serde_json::Value>(p).expect("json"));
    let reject = with_id.rev().find(|v| v["id"].is_string()).expect("a reject with an id");
    let id = reject["id"].as_str().expect("id");
    let at = format!("eq/{}/{}", reject["source"]["partition"], reject["source"]["offset"]);
    clearhouse()
        .current_dir(dir.path())
        .args(["trace", id, "--out", "eq-out", "--config", "eq.toml"])
        .assert()
        .success()
        .stdout(predicates::str::contains(format!(
            "{id}: rejected, reason {}",
            reject["reason"].as_str().expect("reason")
        )))
        .stdout(predicates::str::contains(format!("{at}, on the dead-letter topic eq.dlq")));

    let (input, accepted, rejected, duplicates) = deployment.accounting();
    assert_eq!(input, 20_000);
    assert_eq!(input, accepted + rejected + duplicates);
}
