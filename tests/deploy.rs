//! `deploy/` cannot run here (no Docker engine, no cluster), so its syntax and its wiring are
//! checked: YAML parses, the compose services and Kubernetes objects are complete, the ports
//! agree, the Dockerfile is well formed, and the daemon configurations it ships load.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;

use clearhouse_jobs::Config;
use serde_norway::Value;

fn deploy(name: &str) -> PathBuf {
    common::root().join("deploy").join(name)
}

fn yaml_documents(name: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(deploy(name)).expect("read");
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{name}: {e}")))
        .collect()
}

use serde::Deserialize;

#[test]
fn compose_has_kafka_kraft_clearhouse_and_prometheus_scraping_it() {
    let compose = &yaml_documents("compose.yaml")[0];
    let services = compose["services"].as_mapping().expect("services");
    let names: BTreeSet<&str> = services.keys().filter_map(Value::as_str).collect();
    assert_eq!(names, BTreeSet::from(["clearhouse", "kafka", "prometheus"]));
    assert_eq!(compose["services"]["kafka"]["environment"]["KAFKA_PROCESS_ROLES"], "broker,controller", "KRaft");
    assert_eq!(compose["services"]["clearhouse"]["build"]["dockerfile"], "deploy/Dockerfile");
    let prometheus = &yaml_documents("prometheus/prometheus.yml")[0];
    let target = &prometheus["scrape_configs"][0]["static_configs"][0]["targets"][0];
    assert_eq!(target, "clearhouse:9464");
}

#[test]
fn kubernetes_objects_are_complete_and_probe_the_health_endpoints() {
    let docs = yaml_documents("k8s/clearhouse.yaml");
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().expect("kind")).collect();
    assert_eq!(kinds, ["ConfigMap", "PersistentVolumeClaim", "Deployment", "Service"]);
    for doc in &docs {
        assert!(doc["apiVersion"].is_string() && doc["metadata"]["name"].is_string(), "{doc:?}");
    }
    let container = &docs[2]["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/health/live");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/health/ready");
    assert_eq!(docs[1]["spec"]["accessModes"][0], "ReadWriteMany", "instances share state and output");
    let toml = docs[0]["data"]["clearhouse.toml"].as_str().expect("embedded config");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("clearhouse.toml");
    std::fs::write(&path, toml).expect("write");
    Config::load(&path).expect("k8s config loads").daemon_settings().expect("k8s config is a daemon config");
}

#[test]
fn dockerfile_is_well_formed_and_the_image_config_is_valid() {
    let text = std::fs::read_to_string(deploy("Dockerfile")).expect("Dockerfile");
    let known = ["FROM", "WORKDIR", "COPY", "RUN", "USER", "EXPOSE", "ENTRYPOINT", "CMD", "ENV", "ARG", "LABEL"];
    let mut logical = String::new();
    let mut instructions = Vec::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty()) {
        logical.push_str(line.trim_end_matches('\\'));
        if !line.ends_with('\\') {
            instructions.push(std::mem::take(&mut logical));
        }
    }
    let first = instructions[0].split_whitespace().next().expect("instruction");
    assert_eq!(first, "FROM");
    for i in &instructions {
        let word = i.split_whitespace().next().expect("instruction");
        assert!(known.contains(&word), "unknown Dockerfile instruction {word:?}");
    }
    assert!(instructions.iter().any(|i| i.starts_with("EXPOSE 9464")));
    let config = Config::load(&deploy("clearhouse.toml")).expect("deploy/clearhouse.toml loads");
    let settings = config.daemon_settings().expect("valid daemon settings");
    assert_eq!(settings.admin_listen.map(|a| a.port()), Some(9464));
}

#[test]
fn alert_rules_pass_promtool_and_every_monitored_metric_is_one_the_daemon_declares() {
    let check = |path: &std::path::Path| {
        std::process::Command::new("promtool")
            .args(["check", "rules"])
            .arg(path)
            .output()
            .unwrap_or_else(|e| panic!("promtool could not run ({e}): run scripts/setup.sh"))
    };
    let output = check(&deploy("prometheus/alerts.yml"));
    assert!(output.status.success(), "promtool: {}", String::from_utf8_lossy(&output.stdout));
    // The checker must be able to say no.
    let dir = tempfile::tempdir().expect("tempdir");
    let broken = dir.path().join("broken.yml");
    let text = std::fs::read_to_string(deploy("prometheus/alerts.yml")).expect("rules");
    std::fs::write(&broken, text.replacen("expr: up{job=\"clearhouse\"} == 0", "expr: up{job=", 1)).expect("write");
    assert!(!check(&broken).status.success(), "promtool accepted a broken rule");

    let telemetry = std::fs::read_to_string(common::root().join("crates/daemon/src/telemetry.rs")).expect("telemetry");
    let monitored = common::monitored_metrics();
    assert!(monitored.len() >= 15, "{monitored:?}");
    for name in &monitored {
        assert!(
            telemetry.contains(&format!("\"{name}\"")),
            "{name} is queried but not a metric of crates/daemon/src/telemetry.rs"
        );
    }
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(deploy("grafana/clearhouse.json")).expect("dashboard"))
            .expect("json");
    for panel in dashboard["panels"].as_array().expect("panels") {
        let targets = panel["targets"].as_array().expect("targets");
        assert!(
            !targets.is_empty() && targets.iter().all(|t| t["expr"].as_str().is_some_and(|e| !e.is_empty())),
            "{panel}"
        );
    }
}
