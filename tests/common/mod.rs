//! Helpers shared by the integration tests.
#![allow(dead_code, missing_docs)]

pub mod broker;
pub mod daemon;
pub mod http;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicU64;

use clearhouse_formats::MemStore;
use clearhouse_jobs::{net_reader, Config};

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The built `clearhouse` binary.
pub fn clearhouse() -> assert_cmd::Command {
    assert_cmd::Command::cargo_bin("clearhouse").expect("clearhouse binary")
}

/// `clearhouse net --config CONFIG --input INPUT --out OUT`, ready to assert on.
pub fn net_command(config: &Path, input: &Path, out: &Path) -> assert_cmd::Command {
    let mut cmd = clearhouse();
    cmd.arg("net").arg("--config").arg(config).arg("--input").arg(input).arg("--out").arg(out);
    cmd
}

/// `net` on the bundled sample (config, registry and instructions from `examples/`).
pub fn net_sample(out: &Path) -> assert_cmd::Command {
    let r = root();
    net_command(&r.join("examples/clearhouse.toml"), &r.join("examples/instructions.jsonl"), out)
}

/// The sample configuration shipped in `examples/`.
pub fn sample_config() -> Config {
    Config::load(&root().join("examples/clearhouse.toml")).expect("sample config")
}

/// Runs the real file-mode job in memory and returns every output file by name. The engine is
/// told the input's length, as `net` is told a file's, so its tables are sized from it.
pub fn net_in_memory(config: &Config, input: &[u8], shards: usize) -> BTreeMap<String, Vec<u8>> {
    net_in_memory_sized(config, input, shards, Some(input.len() as u64))
}

/// [`net_in_memory`] with the input's length as stated to the engine (`None`: not stated).
pub fn net_in_memory_sized(
    config: &Config,
    input: &[u8],
    shards: usize,
    input_bytes: Option<u64>,
) -> BTreeMap<String, Vec<u8>> {
    let store = MemStore::default();
    let shape = (Some(shards), None, input_bytes);
    net_reader(config, input, "input.jsonl", &store, shape, &AtomicU64::new(0)).expect("net");
    store.into_files()
}

/// Every file as text (readable assertion failures).
pub fn as_text(files: &BTreeMap<String, Vec<u8>>) -> BTreeMap<String, String> {
    files.iter().map(|(n, b)| (n.clone(), String::from_utf8_lossy(b).into_owned())).collect()
}

/// Only the per-window files (clearing, pain.001, manifest), as text. With `without_fences`,
/// manifests lose their input fences (which move when lines are added to the input).
pub fn window_files(files: &BTreeMap<String, Vec<u8>>, without_fences: bool) -> BTreeMap<String, String> {
    let mut out = as_text(files);
    out.retain(|n, _| !n.ends_with(".jsonl") && n.as_str() != "summary.json");
    if without_fences {
        for (name, text) in out.iter_mut().filter(|(n, _)| n.starts_with("manifest-")) {
            let mut manifest: serde_json::Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            manifest.as_object_mut().expect("manifest object").remove("fences");
            *text = manifest.to_string();
        }
    }
    out
}

/// The official XSD installed by `scripts/setup.sh`; panics (never skips) when missing.
pub fn pain001_xsd() -> PathBuf {
    let path = std::env::var_os("CLEARHOUSE_PAIN001_XSD")
        .map_or_else(|| root().join(".cache/xsd/pain.001.001.09.xsd"), PathBuf::from);
    assert!(path.is_file(), "pain.001.001.09 XSD not found at {}: run scripts/setup.sh", path.display());
    path
}

/// Validates `file` against the official XSD with xmllint; panics with xmllint's output on failure.
pub fn assert_valid_pain001(file: &Path) {
    assert_valid_pain001_all(&[file.to_owned()]);
}

/// Validates every `pain001-*` file of an in-memory run with one xmllint call.
pub fn assert_valid_pain001_in(files: &BTreeMap<String, Vec<u8>>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut paths = Vec::new();
    for (name, bytes) in files.iter().filter(|(n, _)| n.starts_with("pain001-")) {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).expect("write pain.001");
        paths.push(path);
    }
    if !paths.is_empty() {
        assert_valid_pain001_all(&paths);
    }
}

fn assert_valid_pain001_all(files: &[PathBuf]) {
    let output = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(pain001_xsd())
        .args(files)
        .output()
        .unwrap_or_else(|e| panic!("xmllint could not be run ({e}): run scripts/setup.sh"));
    assert!(
        output.status.success(),
        "{files:?} do not validate against pain.001.001.09:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Every `clearhouse_*` metric the shipped alert rules and Grafana dashboard query, by base name
/// (a histogram's `_bucket`, `_sum` and `_count` series count as the histogram).
pub fn monitored_metrics() -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for file in ["deploy/prometheus/alerts.yml", "deploy/grafana/clearhouse.json"] {
        let text = std::fs::read_to_string(root().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        for (at, _) in text.match_indices("clearhouse_") {
            let name: String =
                text[at..].chars().take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_').collect();
            let base = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(&name);
            names.insert(base.to_owned());
        }
    }
    names
}
