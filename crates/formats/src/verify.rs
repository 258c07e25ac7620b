//! `clearhouse verify DIR`: vouches for every byte in an output directory, or lists every problem,
//! each naming its file.
//!
//! A file-mode run is sealed by `summary.json` (the SHA-256 of every other file), so a missing,
//! extra or changed byte anywhere is found; within that, everything that can be recomputed is:
//! window bounds from the window id and timezone, control totals and record counts from the detail
//! records, conservation per batch, credits against pain.001, reason counts from `rejected.jsonl`.
//! A daemon's output directory has no run seal (its accounting is on its topics): there every
//! file must be listed, with its hash, by a window manifest. `verify` reads only plain names in
//! the directory, never a path a manifest makes up, never through a link, never a FIFO.

mod seal;
mod window;

use std::collections::{BTreeMap, BTreeSet};

use crate::evidence;
use crate::manifest::Manifest;
use crate::sha256_hex;
use crate::store::{OutputStore, StoreError};

/// What `verify` found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Manifests checked.
    pub windows: usize,
    /// Files checked (manifests and evidence included).
    pub files: usize,
    /// Batches checked.
    pub batches: usize,
    /// Accepted instructions found in clearing files.
    pub details: u64,
    /// Problems, each naming its file.
    pub problems: Vec<String>,
}

impl Report {
    fn problem(&mut self, file: &str, what: impl std::fmt::Display) {
        self.problems.push(format!("{file}: {what}"));
    }
}

/// Reads files and remembers their hashes (each file counted once); a name that is not a regular file
/// (a link, a FIFO) is a problem, not an error, so the report goes on.
struct Files<'a> {
    store: &'a dyn OutputStore,
    hashes: BTreeMap<String, String>,
}

impl Files<'_> {
    fn read(&mut self, name: &str, report: &mut Report) -> Result<Option<Vec<u8>>, StoreError> {
        let got = self.store.get(name);
        let hash = got.as_ref().ok().and_then(Option::as_deref).map(sha256_hex);
        Ok(self.record(name, got.map(|bytes| bytes.zip(hash)), report)?.map(|(bytes, _)| bytes))
    }

    /// Takes in what reading `name` gave (its bytes, or whatever else, with their hash): the
    /// hash is remembered and the file counted once; a name that is not a regular file is a
    /// problem, other failures an error.
    fn record<T>(
        &mut self,
        name: &str,
        got: Result<Option<(T, String)>, StoreError>,
        report: &mut Report,
    ) -> Result<Option<(T, String)>, StoreError> {
        match got {
            Ok(Some((read, hash))) => {
                if self.hashes.insert(name.to_owned(), hash.clone()).is_none() {
                    report.files += 1;
                }
                Ok(Some((read, hash)))
            }
            Ok(None) => Ok(None),
            Err(e @ (StoreError::NotRegular { .. } | StoreError::BadName { .. })) => {
                report.problem(name, e);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn hash(&mut self, name: &str, report: &mut Report) -> Result<Option<String>, StoreError> {
        if let Some(hash) = self.hashes.get(name) {
            return Ok(Some(hash.clone()));
        }
        Ok(self.read(name, report)?.map(|_| self.hashes[name].clone()))
    }
}

/// Verifies every window and the run's seal and evidence in `store`.
pub fn verify(store: &dyn OutputStore) -> Result<Report, StoreError> {
    let mut report = Report::default();
    let mut files = Files { store, hashes: BTreeMap::new() };
    let names = store.list()?;
    let mut accounted: BTreeSet<String> = BTreeSet::new();
    let mut manifests = Vec::new();
    for name in names.iter().filter(|n| n.starts_with("manifest-") && n.ends_with(".json")) {
        accounted.insert(name.clone());
        let Some(bytes) = files.read(name, &mut report)? else { continue };
        match serde_json::from_slice::<Manifest>(&bytes) {
            Ok(manifest) => {
                if manifest.to_bytes() != bytes {
                    report.problem(name, "is not in the canonical form the engine writes (edited by hand?)");
                }
                window::check(&mut files, name, &manifest, &mut report, &mut accounted)?;
                manifests.push(manifest);
            }
            Err(e) => report.problem(name, format!("not a valid manifest: {e}")),
        }
    }
    if names.iter().any(|n| n == evidence::SUMMARY) {
        seal::check(&mut files, &names, &manifests, &mut report, &mut accounted)?;
    } else if manifests.is_empty() {
        report.problems.push("no manifest or summary found: is this an output directory?".to_owned());
    } else if manifests.iter().any(|m| !is_daemon_manifest(m)) {
        report.problem(
            evidence::SUMMARY,
            "missing: the run did not finish (or the file was removed), so its output cannot be vouched for",
        );
    }
    for name in names.iter().filter(|n| !accounted.contains(*n)) {
        let what = if clearhouse_storage::is_temp_name(name) {
            "a temporary file left by an interrupted write"
        } else {
            "not part of the output (listed neither in summary.json nor in any manifest)"
        };
        report.problem(name, what);
    }
    Ok(report)
}

/// The daemon's manifests fence topic partitions (`topic/N`); file mode fences its input file.
fn is_daemon_manifest(m: &Manifest) -> bool {
    !m.fences.is_empty() && m.fences.keys().all(|k| k.rsplit_once('/').is_some_and(|(_, p)| p.parse::<u32>().is_ok()))
}
