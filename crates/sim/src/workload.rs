//! A seed's workload: `clearhouse gen` output with out-of-order and late event times, split
//! into the partitions of the simulated instruction topic by key, as a producer would.

use clearhouse_gen::{generate_each, GenOptions};
use jiff::Timestamp;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A partition's messages, in offset order: key and value.
pub(crate) type Log = Vec<Vec<(Vec<u8>, Vec<u8>)>>;

/// A seed's workload: the instruction topic, split into partitions by merchant.
pub(crate) struct Workload {
    pub(crate) log: Log,
    /// Instances sharing the state directory (1 to 3).
    pub(crate) instances: usize,
    /// Shards per instance (1 or 2).
    pub(crate) shards: usize,
}

/// The workload of `seed`: 1-3 partitions and instances, `messages` generated instructions with
/// out-of-order and late event times.
pub(crate) fn workload(seed: u64, messages: u64) -> Workload {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let partitions = rng.random_range(1..=3usize);
    let options = GenOptions {
        seed,
        count: messages,
        merchants: rng.random_range(2..=12),
        days: 1,
        reversal_permille: 60,
        bad_permille: 40,
        duplicate_permille: 40,
        disorder_secs: rng.random_range(0..=1_800),
        late_permille: rng.random_range(0..=60),
        late_secs: 3 * 3_600,
        ..GenOptions::default()
    };
    let mut log: Log = vec![Vec::new(); partitions];
    generate_each(&options, |key, value| {
        let partition = (xxhash_rust::xxh3::xxh3_64(key.as_bytes()) % partitions as u64) as usize;
        log[partition].push((key.as_bytes().to_vec(), value.to_vec()));
        Ok(())
    })
    .expect("generating into memory");
    let instances = rng.random_range(1..=3);
    Workload { log, instances, shards: rng.random_range(1..=2) }
}

/// The event time of a generated message, when it has a readable one.
pub(crate) fn event_time(value: &[u8]) -> Option<Timestamp> {
    let text = std::str::from_utf8(value).ok()?;
    let field = r#""event_time":""#;
    let rest = &text[text.find(field)? + field.len()..];
    rest.split('"').next()?.parse().ok()
}
