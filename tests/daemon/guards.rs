//! The daemon's input guards through a real broker: a message keyed by another merchant, and an
//! instruction stamped years ahead of its record, are rejected onto the dead-letter topic
//! instead of splitting a merchant over two partitions or holding every later window open.

use std::time::Duration;

use super::common::broker::Tansu;
use super::common::daemon::{produce, read_topic, Deployment};
use super::{stop, wait_settled, CLOCK};

fn capture(id: &str, time: &str) -> String {
    format!(
        r#"{{"id":"{id}","type":"capture","merchant_id":"M001","amount":"10.00","currency":"CNY","event_time":"{time}"}}"#
    )
}

#[test]
fn mis_keyed_and_future_dated_instructions_go_to_the_dead_letter_topic() {
    let broker = Tansu::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let kafka = clearhouse_kafka::KafkaOptions { brokers: broker.addr.clone(), ..Default::default() };
    kafka.ensure_topic("guards", 4).expect("topic");
    let stamp = |t: &str| Some(t.parse::<jiff::Timestamp>().expect("time").as_millisecond());
    let day1 = "2026-11-21T09:00:00+08:00";
    let (c1, c2, c3, c4) = (
        capture("C1", day1),
        capture("C2", day1),
        capture("C3", "2031-01-01T00:00:00Z"),
        capture("C4", "2026-11-22T09:00:00+08:00"),
    );
    produce(
        &broker.addr,
        "guards",
        &[
            ("M001".to_owned(), stamp(day1), c1.as_str()),
            ("M999".to_owned(), stamp(day1), c2.as_str()),
            ("M001".to_owned(), stamp(day1), c3.as_str()),
            ("M001".to_owned(), stamp("2026-11-22T09:00:00+08:00"), c4.as_str()),
        ],
    );
    let deployment = Deployment::new(dir.path(), "guards", &broker.addr, "guards", CLOCK, "");
    let daemon = deployment.start("run");
    deployment.wait_for_windows(2, Duration::from_secs(120));
    wait_settled(&[&deployment], 4);
    stop(&deployment, "run", daemon);
    let (input, accepted, rejected, duplicates) = deployment.accounting();
    assert_eq!((input, accepted, rejected, duplicates), (4, 2, 2, 0));
    let mut reasons: Vec<(String, String)> = read_topic(&broker.addr, "guards.dlq")
        .iter()
        .map(|(_, payload)| {
            let v: serde_json::Value = serde_json::from_slice(payload).expect("dlq json");
            (v["id"].as_str().expect("id").to_owned(), v["reason"].as_str().expect("reason").to_owned())
        })
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [("C2".to_owned(), "partition_key_mismatch".to_owned()), ("C3".to_owned(), "event_time_in_future".to_owned())]
    );
    assert_eq!(deployment.manifests(), 2, "both days settled: the 2031 instruction held nothing open");
}

#[test]
fn a_credits_topic_that_can_forget_is_refused_at_start_unless_allowed() {
    let broker = Tansu::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let kafka = clearhouse_kafka::KafkaOptions { brokers: broker.addr.clone(), ..Default::default() };
    kafka.ensure_topic("forget", 1).expect("input topic");
    let week = [("cleanup.policy", "delete"), ("retention.ms", "604800000")];
    let spec = clearhouse_kafka::TopicSpec { name: "forget.credits", partitions: 1, replication: 1, configs: &week };
    kafka.create_topic(&spec).expect("a week-long credits topic");
    let deployment = Deployment::new(dir.path(), "forget", &broker.addr, "forget", CLOCK, "");
    let mut daemon = deployment.start("refused");
    let status = super::wait_exit(&mut daemon, Duration::from_secs(60));
    let log = std::fs::read_to_string(deployment.log_path("refused")).unwrap_or_default();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("topic forget.credits can forget messages (cleanup.policy=delete, retention.ms=604800000"),
        "{log}"
    );
    let config = dir.path().join("forget.toml");
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(&config, text.replace("[daemon]\n", "[daemon]\nallow_forgetful_output_topics = true\n"))
        .expect("config");
    let daemon = deployment.start("allowed");
    deployment.wait_for_log(
        "allowed",
        "output topic can forget messages (allowed by configuration)",
        Duration::from_secs(60),
    );
    stop(&deployment, "allowed", daemon);
}
