//! The invariants every seed must keep, checked against the same workload run without faults:
//!
//! - every checkpoint loads (the daemon's own codec, checksums included);
//! - every partition accounted for every message exactly once: `input = accepted + rejected +
//!   duplicates`, equal to the reference's counts, and the checkpoint's next offset at the end
//!   of the partition;
//! - every window part byte-identical to the reference's, and none ever written with other
//!   content (a part rewritten after a crash must be the same bytes);
//! - every reject on the dead-letter topic at least once, and nothing there that the reference
//!   did not reject (a re-sent letter must be the same bytes);
//! - the output directory byte-identical to the reference's, no file ever written again with
//!   other content, and `verify` passing on it;
//! - every credit (EndToEndId) on the credits topic exactly once and every window event on the
//!   windows topic exactly once, the same messages as the reference's, which published one
//!   event for every window any partition wrote a part of;
//! - while the run goes (`driver.rs`), every offset the consumer would commit is covered by the
//!   partition's durable checkpoint, with every reject below it already on the dead-letter
//!   topic.

use std::collections::{BTreeMap, BTreeSet};

use crate::driver::Log;
use crate::world::World;

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

/// Checks `faulty` against `reference` for the workload `log`.
pub(crate) fn compare(seed: u64, log: &Log, reference: &World, faulty: &World) -> Result<(), Violation> {
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
        return Err(fail(format!("part of window {window} on partition {p} written twice with different bytes")));
    }
    for (key, bytes) in reference.parts() {
        match faulty.parts().get(key) {
            Some(have) if have == bytes => {}
            Some(_) => return Err(fail(format!("part of window {} on partition {} differs", key.0, key.1))),
            None => return Err(fail(format!("part of window {} on partition {} is missing", key.0, key.1))),
        }
    }
    if let Some(key) = faulty.parts().keys().find(|k| !reference.parts().contains_key(k)) {
        return Err(fail(format!("part of window {} on partition {} is not in the reference", key.0, key.1)));
    }
    dead_letters(reference, faulty).map_err(fail)?;
    outputs(reference, faulty).map_err(fail)
}

/// The window files and the credits and windows topics.
fn outputs(reference: &World, faulty: &World) -> Result<(), String> {
    let windows: BTreeSet<_> = reference.parts().keys().map(|(w, _)| w.to_string()).collect();
    let events = exactly_once(reference, "windows")?;
    if events.keys().map(|k| k.to_string()).collect::<BTreeSet<_>>() != windows {
        return Err(format!("the reference published events for {:?}, its parts are of {windows:?}", events.keys()));
    }
    for topic in ["credits", "windows"] {
        if exactly_once(faulty, topic)? != exactly_once(reference, topic)? {
            return Err(format!("the {topic} topic differs from the reference's"));
        }
    }
    if let Some(name) =
        reference.files.keys().chain(faulty.files.keys()).find(|n| reference.files.get(*n) != faulty.files.get(*n))
    {
        return Err(format!("output file {name} differs from the reference's (or is missing)"));
    }
    let report = clearhouse_formats::verify::verify(&faulty.io_store()).map_err(|e| format!("verify failed: {e}"))?;
    match report.problems.first() {
        Some(problem) => Err(format!("verify: {problem}")),
        None if report.windows != windows.len() => Err(format!("verify checked {} windows", report.windows)),
        None => Ok(()),
    }
}

/// The messages of the output topic whose name ends with `suffix`, by key; an error when a
/// key is there twice.
fn exactly_once<'a>(world: &'a World, suffix: &str) -> Result<BTreeMap<&'a str, &'a [u8]>, String> {
    let mut out = BTreeMap::new();
    let topics = world.topics.iter().filter(|(name, _)| name.ends_with(suffix));
    for (key, payload) in topics.flat_map(|(_, partitions)| partitions.iter().flatten()) {
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
