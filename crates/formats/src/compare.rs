//! `clearhouse verify --against ORIGINAL REPLAY`: proves a replay reproduced what was sent, or
//! shows where it did not. Files are compared byte for byte, grouped by window; a differing file
//! shows its first differing record (line) and, in a clearing file, the batch it belongs to;
//! batches are compared through the manifests, so a difference is also named by merchant and
//! currency. Ops reads the verdict from the exit code.

use std::collections::{BTreeMap, BTreeSet};

use crate::manifest::{Manifest, ManifestBatch};
use crate::store::{OutputStore, StoreError};

/// Longest excerpt of a differing record that is shown.
const EXCERPT_CHARS: usize = 160;

/// The state of one file or batch in the replay, against the original.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Same bytes (or, for a batch, the same figures).
    Identical,
    /// In the original, not in the replay.
    Missing,
    /// In the replay, not in the original.
    Extra,
    /// In both, with other content.
    Different(Difference),
}

/// Where a file or batch first differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// 1-based line of a file, or the first differing field of a batch.
    pub at: String,
    /// The clearing-file batch (`merchant/currency`) holding the line, when known.
    pub batch: Option<String>,
    /// The original's record (shortened).
    pub original: String,
    /// The replay's record (shortened).
    pub replay: String,
}

/// One window (or `run` for the evidence files that belong to no window).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowComparison {
    /// Window id, or `run`.
    pub window: String,
    /// Each file of the window by name.
    pub files: BTreeMap<String, Status>,
    /// Each batch (`merchant/currency`) when both manifests could be read.
    pub batches: BTreeMap<String, Status>,
}

/// The whole comparison, and the verdict it leads to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Comparison {
    /// Windows in id order (`run` last).
    pub windows: Vec<WindowComparison>,
}

/// The overall outcome, worst first when mixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// Every file identical.
    Identical,
    /// Nothing differs, but files are missing from (or extra in) the replay.
    Incomplete,
    /// At least one file differs.
    Different,
}

impl Comparison {
    /// Identical, incomplete (missing or extra files only), or different.
    pub fn verdict(&self) -> Verdict {
        let statuses = self.windows.iter().flat_map(|w| w.files.values());
        statuses.fold(Verdict::Identical, |worst, status| {
            worst.max(match status {
                Status::Identical => Verdict::Identical,
                Status::Missing | Status::Extra => Verdict::Incomplete,
                Status::Different(_) => Verdict::Different,
            })
        })
    }
}

/// The window a file belongs to: `manifest-W.json`, `clearing-W-CCY.txt`, `pain001-W-CCY.xml`.
pub(crate) fn window_of(name: &str) -> Option<&str> {
    let rest = name.strip_prefix("manifest-").and_then(|r| r.strip_suffix(".json"));
    let rest = rest.or_else(|| {
        let stem = name.strip_prefix("clearing-").or_else(|| name.strip_prefix("pain001-"))?;
        stem.rsplit_once('-').map(|(window, _)| window)
    });
    rest.filter(|w| !w.is_empty())
}

/// Compares every file of `original` with `replay`.
pub fn compare(original: &dyn OutputStore, replay: &dyn OutputStore) -> Result<Comparison, StoreError> {
    let names: BTreeSet<String> = original.list()?.into_iter().chain(replay.list()?).collect();
    let mut windows: BTreeMap<String, WindowComparison> = BTreeMap::new();
    for name in names.iter().filter(|n| !n.starts_with('.')) {
        let window = window_of(name).unwrap_or("run").to_owned();
        let entry = windows.entry(window.clone()).or_insert_with(|| WindowComparison {
            window,
            files: BTreeMap::new(),
            batches: BTreeMap::new(),
        });
        let status = match (original.get(name)?, replay.get(name)?) {
            (Some(a), Some(b)) if a == b => Status::Identical,
            (Some(a), Some(b)) => Status::Different(first_difference(&a, &b)),
            (Some(_), None) => Status::Missing,
            (None, _) => Status::Extra,
        };
        entry.files.insert(name.clone(), status);
    }
    for w in windows.values_mut() {
        let manifest = format!("manifest-{}.json", w.window);
        if let (Some(a), Some(b)) = (read_manifest(original, &manifest)?, read_manifest(replay, &manifest)?) {
            w.batches = compare_batches(&a.batches, &b.batches);
        }
    }
    let (run, mut ordered): (Vec<_>, Vec<_>) = windows.into_values().partition(|w| w.window == "run");
    ordered.extend(run);
    Ok(Comparison { windows: ordered })
}

fn read_manifest(store: &dyn OutputStore, name: &str) -> Result<Option<Manifest>, StoreError> {
    Ok(store.get(name)?.and_then(|bytes| serde_json::from_slice(&bytes).ok()))
}

fn shorten(line: &str) -> String {
    match line.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_owned(),
    }
}

/// The first line where `a` and `b` differ, with the clearing batch it falls in.
fn first_difference(a: &[u8], b: &[u8]) -> Difference {
    let (a, b) = (String::from_utf8_lossy(a), String::from_utf8_lossy(b));
    let (mut left, mut right) = (a.split('\n'), b.split('\n'));
    let mut batch = None;
    let mut line = 0usize;
    loop {
        line += 1;
        let (x, y) = (left.next(), right.next());
        if x != y {
            return Difference {
                at: format!("line {line}"),
                batch,
                original: x.map_or_else(|| "(end of file)".to_owned(), shorten),
                replay: y.map_or_else(|| "(end of file)".to_owned(), shorten),
            };
        }
        let Some(x) = x else {
            // Equal split sequences mean equal bytes, which `compare` excludes.
            return Difference { at: format!("line {line}"), batch, original: String::new(), replay: String::new() };
        };
        if let Some(b) = x.strip_prefix("B|") {
            batch = Some(b.replace('|', "/"));
        }
    }
}

fn batch_fields(b: &ManifestBatch) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::to_value(b) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    }
}

fn compare_batches(original: &[ManifestBatch], replay: &[ManifestBatch]) -> BTreeMap<String, Status> {
    let key = |b: &ManifestBatch| format!("{}/{}", b.merchant_id, b.currency);
    let index = |batches: &[ManifestBatch]| batches.iter().map(|b| (key(b), b.clone())).collect::<BTreeMap<_, _>>();
    let (a, b) = (index(original), index(replay));
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .map(|k| {
            let status = match (a.get(k), b.get(k)) {
                (Some(x), Some(y)) if x == y => Status::Identical,
                (Some(x), Some(y)) => {
                    let (fx, fy) = (batch_fields(x), batch_fields(y));
                    let field = fx.iter().find(|(name, value)| fy.get(*name) != Some(value));
                    let (name, value) = field.map_or(("batch", String::new()), |(n, v)| (n.as_str(), v.to_string()));
                    let other = fy.get(name).map(ToString::to_string).unwrap_or_default();
                    Status::Different(Difference { at: name.to_owned(), batch: None, original: value, replay: other })
                }
                (Some(_), None) => Status::Missing,
                (None, _) => Status::Extra,
            };
            (k.clone(), status)
        })
        .collect()
}

mod report;
#[cfg(test)]
mod tests;
