//! The invariants every seed must keep. Counts and dead letters are checked against the same
//! workload run without faults; windows against a replay of the seals the run recorded
//! (`replayed.rs`), since where a run seals depends on its wall clock and its crashes:
//!
//! - every checkpoint loads (the daemon's own codec, checksums included);
//! - every partition accounted for every message exactly once: `input = accepted + rejected +
//!   duplicates`, equal to the reference's counts, and the checkpoint's next offset at the end
//!   of the partition;
//! - every reject on the dead-letter topic at least once, and nothing there that the reference
//!   did not reject (a re-sent letter must be the same bytes);
//! - every window part byte-identical to the replay's, and none rewritten with other bytes
//!   once a durable checkpoint recorded its seal;
//! - the output directory byte-identical to the replay's, no file ever written again with
//!   other content, and `verify` passing on it;
//! - every credit (EndToEndId) on the credits topic exactly once and every window event on the
//!   windows topic exactly once, the same messages as the replay's, which has one event for
//!   every window any partition wrote a part of;
//! - while the run goes (`driver.rs`), every offset the consumer would commit is covered by the
//!   partition's durable checkpoint, with every reject below it already on the dead-letter
//!   topic.

use std::collections::{BTreeMap, BTreeSet};

use clearhouse_daemon::Settings;

use crate::outputs::FilesView;
use crate::replayed::{self, Expected, SealSource};
use crate::workload::Log;
use crate::world::{part_of, World};

/// A broken invariant, with what is needed to replay it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("seed {seed}: {problem} (replay: cargo run -p clearhouse-sim -- --seed {seed})")]
pub struct Violation {
    /// The seed.
    pub seed: u64,
    /// What is wrong.
    pub problem: String,
    /// The fault schedule of the failing run, in order.
    pub schedule: Vec<String>,
}

/// Checks `faulty` against `reference` and against a replay of its own seals, for the
/// workload `log`.
pub(crate) fn compare(
    seed: u64,
    settings: &Settings,
    log: &Log,
    reference: &World,
    faulty: &World,
) -> Result<(), Violation> {
    let fail = |problem: String| Violation { seed, problem, schedule: Vec::new() };
    if let Some(problem) = faulty.violations.first() {
        return Err(fail(problem.clone()));
    }
    let expected = reference.checkpoints().map_err(|e| fail(format!("reference checkpoint does not load: {e}")))?;
    let got = faulty.checkpoints().map_err(|e| fail(format!("checkpoint does not load: {e}")))?;
    for (p, messages) in log.iter().enumerate() {
        let p = p as i32;
        let (Some(want), Some(have)) = (expected.get(&p), got.get(&p)) else {
            return Err(fail(format!("partition {p} has no final checkpoint")));
        };
        if have.next_offset != messages.len() as u64 {
            return Err(fail(format!("partition {p} ends at offset {} of {}", have.next_offset, messages.len())));
        }
        if have.stats != want.stats || !have.stats.balances() {
            return Err(fail(format!("partition {p} counts {:?}, expected {:?}", have.stats, want.stats)));
        }
    }
    if let Some((window, p)) = faulty.rewritten_parts.first() {
        return Err(fail(format!("part of window {window} on partition {p} rewritten after its seal was durable")));
    }
    dead_letters(reference, faulty).map_err(fail)?;
    let replayed = replayed::replay(settings, log, faulty, SealSource::Durable).map_err(fail)?;
    windows(&replayed, faulty).map_err(fail)
}

/// Whether a replay of the seals `run`'s manifests recorded, as `clearhouse replay` makes it,
/// gives the run's window files.
pub(crate) fn manifest_replay_matches(settings: &Settings, log: &Log, run: &World) -> bool {
    replayed::replay(settings, log, run, SealSource::Manifests).is_ok_and(|r| r.files == run.files())
}

/// The parts, the window files and the credits and windows topics, against the replay.
fn windows(replayed: &Expected, faulty: &World) -> Result<(), String> {
    let (parts, files) = (faulty.parts(), faulty.files());
    if let Some(key) = differing(&replayed.parts, &parts) {
        let fence = |parts: &BTreeMap<_, Vec<u8>>| match parts.get(key).map(|b| part_of(b)) {
            Some(Ok(part)) => format!("at fence {}", part.fence),
            Some(Err(e)) => format!("unreadable ({e})"),
            None => "missing".to_owned(),
        };
        let (run, replay) = (fence(&parts), fence(&replayed.parts));
        return Err(format!("part of window {} on partition {}: run's {run}, replay's {replay}", key.0, key.1));
    }
    let with_parts: BTreeSet<String> = replayed.parts.keys().map(|(w, _)| w.to_string()).collect();
    if replayed.events.keys().cloned().collect::<BTreeSet<_>>() != with_parts {
        return Err(format!("the replay has events for {:?}, parts of {with_parts:?}", replayed.events.keys()));
    }
    for (suffix, expected) in [("credits", &replayed.credits), ("windows", &replayed.events)] {
        let (got, want) = (exactly_once(faulty, suffix)?, as_slices(expected));
        if let Some(key) = differing(&want, &got) {
            let what = if !got.contains_key(key) {
                "missing from"
            } else if !want.contains_key(key) {
                "extra on"
            } else {
                "different on"
            };
            return Err(format!("message {key} is {what} the {suffix} topic, against the replay"));
        }
    }
    if let Some(name) = differing(&replayed.files, &files) {
        return Err(format!("output file {name} differs from the replay's (or is missing)"));
    }
    let report = clearhouse_formats::verify::verify(&FilesView(files)).map_err(|e| format!("verify failed: {e}"))?;
    match report.problems.first() {
        Some(problem) => Err(format!("verify: {problem}")),
        None if report.windows != with_parts.len() => Err(format!("verify checked {} windows", report.windows)),
        None => Ok(()),
    }
}

/// The first key whose value differs between `a` and `b` (or is in one only).
fn differing<'a, K: Ord, V: PartialEq>(a: &'a BTreeMap<K, V>, b: &'a BTreeMap<K, V>) -> Option<&'a K> {
    a.keys().chain(b.keys()).find(|k| a.get(*k) != b.get(*k))
}

fn as_slices(map: &BTreeMap<String, Vec<u8>>) -> BTreeMap<&str, &[u8]> {
    map.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect()
}

/// The messages of the output topic whose name ends with `suffix`, by key; an error when a
/// key is there twice.
fn exactly_once<'a>(world: &'a World, suffix: &str) -> Result<BTreeMap<&'a str, &'a [u8]>, String> {
    let mut out = BTreeMap::new();
    for (key, payload) in world.messages(suffix) {
        if out.insert(key.as_str(), payload.as_slice()).is_some() {
            return Err(format!("{key} is on the {suffix} topic twice"));
        }
    }
    Ok(out)
}

fn dead_letters(reference: &World, faulty: &World) -> Result<(), String> {
    let expected: BTreeMap<&str, &[u8]> =
        reference.dead_letters.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
    if expected.len() != reference.dead_letters.len() {
        return Err("the reference published a dead letter twice".to_owned());
    }
    let mut seen = BTreeSet::new();
    for (key, payload) in &faulty.dead_letters {
        match expected.get(key.as_str()) {
            Some(want) if *want == payload.as_slice() => {
                seen.insert(key.as_str());
            }
            Some(_) => return Err(format!("dead letter {key} differs from the reference")),
            None => return Err(format!("dead letter {key} was not rejected by the reference")),
        }
    }
    match expected.keys().find(|k| !seen.contains(*k)) {
        Some(missing) => Err(format!("reject {missing} never reached the dead-letter topic")),
        None => Ok(()),
    }
}
