//! Property tests of the engine's invariants on generated workloads, run through the real
//! file-mode job (parse workers, router, shards, encoders) into an in-memory store:
//! conservation and accounting (checked by re-reading every file), shard-count independence,
//! merchant-order independence and idempotent re-delivery.

mod common;

use std::collections::BTreeMap;
use std::io::Write;

use clearhouse_formats::verify::verify;
use clearhouse_formats::{MemStore, OutputStore};
use clearhouse_gen::{generate, GenOptions};
use clearhouse_jobs::config::RegistryConfig;
use clearhouse_jobs::Config;
use common::{as_text, net_in_memory, net_in_memory_sized, window_files};
use proptest::prelude::*;

/// A config with a registry listing every generated merchant, so payouts produce credits.
fn config_with_registry(merchants: u32) -> (tempfile::TempDir, Config) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut file = std::fs::File::create(dir.path().join("merchants.csv")).expect("registry");
    writeln!(file, "merchant_id,name,account,bank").expect("write");
    for m in 0..merchants {
        writeln!(file, "M{m:05},Merchant {m},6222000011110{m:03},BKCHCNBJ").expect("write");
    }
    let mut config = Config { registry: Some(RegistryConfig { path: "merchants.csv".into() }), ..Config::default() };
    config.calendar.interval_secs = Some(4 * 3600);
    config.base_dir = dir.path().to_owned();
    (dir, config)
}

/// A generated workload; odd seeds have event times out of order and 3% of them late by six
/// hours, so every property also holds on disordered input.
fn workload(seed: u64, count: u64, merchants: u32) -> Vec<u8> {
    let disordered = seed % 2 == 1;
    let options = GenOptions {
        seed,
        count,
        merchants,
        days: 1,
        reversal_permille: 80,
        bad_permille: 30,
        duplicate_permille: 40,
        disorder_secs: if disordered { 3_600 } else { 0 },
        late_permille: if disordered { 30 } else { 0 },
        late_secs: 6 * 3_600,
        ..GenOptions::default()
    };
    let mut out = Vec::new();
    generate(&options, &mut out).expect("generate");
    out
}

fn lines(input: &[u8]) -> Vec<&[u8]> {
    input.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect()
}

fn join(lines: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(l);
        out.push(b'\n');
    }
    out
}

fn merchant_of(line: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(line)
        .ok()
        .and_then(|v| v["merchant_id"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn count_files(files: &BTreeMap<String, Vec<u8>>, prefix: &str) -> usize {
    files.keys().filter(|n| n.starts_with(prefix)).count()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// Every batch balances and every input is accounted for, as read back from the files.
    #[test]
    fn outputs_conserve_money_and_account_for_every_input(seed in 0u64..10_000, count in 50u64..1500, merchants in 1u32..40) {
        let (_dir, config) = config_with_registry(merchants);
        let input = workload(seed, count, merchants);
        let files = net_in_memory(&config, &input, 3);
        let store = MemStore::default();
        for (name, bytes) in &files {
            store.put(name, bytes).expect("put");
        }
        let report = verify(&store).expect("verify");
        prop_assert!(report.problems.is_empty(), "{:?}", report.problems);
        common::assert_valid_pain001_in(&files);
        let summary: serde_json::Value = serde_json::from_slice(&files["summary.json"]).expect("summary");
        prop_assert_eq!(summary["instructions"].as_u64(), Some(count));
        prop_assert_eq!(summary["accepted"].as_u64(), Some(report.details));
        prop_assert!(count_files(&files, "manifest-") >= 1);
    }

    /// One shard or eight: byte-identical outputs, evidence included.
    #[test]
    fn shard_count_does_not_change_any_byte(seed in 0u64..10_000, count in 50u64..1500, merchants in 1u32..40, shards in 2usize..9) {
        let (_dir, config) = config_with_registry(merchants);
        let input = workload(seed, count, merchants);
        let one = as_text(&net_in_memory(&config, &input, 1));
        prop_assert_eq!(&one, &as_text(&net_in_memory(&config, &input, shards)));
        prop_assert_eq!(&one, &as_text(&net_in_memory(&config, &input, 8)));
    }

    /// The input's length as stated to the engine, which sizes its tables from it once it has
    /// read a 32nd of it, changes no byte: stated or not, true or wildly wrong. Blocks of 4 KiB,
    /// so the sizing happens a few dozen blocks before the end.
    #[test]
    fn stated_input_length_does_not_change_any_byte(seed in 0u64..10_000, count in 300u64..1500, merchants in 1u32..40, shards in 1usize..5) {
        let (_dir, mut config) = config_with_registry(merchants);
        config.engine.block_bytes = 4096;
        let input = workload(seed, count, merchants);
        let len = input.len() as u64;
        let unstated = as_text(&net_in_memory_sized(&config, &input, shards, None));
        for stated in [len, len / 7, len * 50] {
            let sized = as_text(&net_in_memory_sized(&config, &input, shards, Some(stated)));
            prop_assert!(unstated == sized, "stated length {} of {}", stated, len);
        }
    }

    /// Interleaving merchants differently (each merchant's own order kept) gives the same
    /// window files.
    #[test]
    fn merchant_interleaving_does_not_change_window_files(seed in 0u64..10_000, count in 50u64..1200, merchants in 2u32..20, shuffle_seed in any::<u64>()) {
        let (_dir, config) = config_with_registry(merchants);
        let input = workload(seed, count, merchants);
        let original = lines(&input);
        let mut queues: BTreeMap<String, std::collections::VecDeque<&[u8]>> = BTreeMap::new();
        for line in &original {
            queues.entry(merchant_of(line)).or_default().push_back(line);
        }
        let mut rng = shuffle_seed;
        let mut reordered = Vec::with_capacity(original.len());
        while !queues.is_empty() {
            rng = rng.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let key = queues.keys().nth((rng >> 33) as usize % queues.len()).expect("key").clone();
            let queue = queues.get_mut(&key).expect("queue");
            reordered.push(queue.pop_front().expect("line"));
            if queue.is_empty() {
                queues.remove(&key);
            }
        }
        let a = window_files(&net_in_memory(&config, &join(&original), 4), false);
        let b = window_files(&net_in_memory(&config, &join(&reordered), 4), false);
        prop_assert_eq!(a, b);
    }

    /// Re-delivering any lines again, anywhere later, changes no window file.
    #[test]
    fn redelivery_has_no_effect(seed in 0u64..10_000, count in 50u64..1200, merchants in 1u32..30, picks in proptest::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>()), 1..40)) {
        let (_dir, config) = config_with_registry(merchants);
        let input = workload(seed, count, merchants);
        let original = lines(&input);
        // Each pick re-delivers line `i` right after line `j >= i` of the original stream.
        let copies: Vec<(usize, usize)> = picks
            .iter()
            .map(|(which, after)| {
                let i = which.index(original.len());
                (i, i + after.index(original.len() - i))
            })
            .collect();
        let mut redelivered = Vec::with_capacity(original.len() + copies.len());
        for (j, line) in original.iter().enumerate() {
            redelivered.push(*line);
            redelivered.extend(copies.iter().filter(|(_, after)| *after == j).map(|(i, _)| original[*i]));
        }
        let before = net_in_memory(&config, &join(&original), 2);
        let after = net_in_memory(&config, &join(&redelivered), 2);
        prop_assert_eq!(window_files(&before, true), window_files(&after, true));
        let accepted = |files: &BTreeMap<String, Vec<u8>>| serde_json::from_slice::<serde_json::Value>(&files["summary.json"]).expect("summary")["accepted"].as_u64();
        prop_assert_eq!(accepted(&before), accepted(&after));
    }
}
