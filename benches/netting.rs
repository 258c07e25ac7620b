//! Criterion microbenchmarks of the three stages that bound file-mode throughput: parsing and
//! validating a line, netting it in one shard, and encoding a closed window's files.
//! Run: `cargo bench --bench netting`. Numbers are recorded in docs/benchmarks.md.
#![allow(missing_docs)]

use std::sync::Arc;

use clearhouse_domain::parse::parse_reference;
use clearhouse_domain::{parse, Calendar, Netter, Parsed, Payee, Placement, Policy, Schedule, SettledBatch};
use clearhouse_formats::{window_files, WindowMeta};
use clearhouse_gen::{generate, GenOptions};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

const LINES: u64 = 20_000;

fn workload() -> Vec<u8> {
    let mut out = Vec::new();
    let options = GenOptions { count: LINES, merchants: 500, days: 1, ..GenOptions::default() };
    generate(&options, &mut out).expect("generate");
    out
}

fn calendar() -> Calendar {
    Calendar::new("Asia/Shanghai", Schedule::IntervalSecs(86_400), 1, []).expect("calendar")
}

/// The valid instructions of `input`, first delivery of each id only (what the router hands
/// the shards), with the window each is netted into.
fn parsed(input: &[u8], calendar: &Calendar) -> Vec<(clearhouse_domain::Instruction, Placement)> {
    let mut seen = std::collections::HashSet::new();
    input
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| match parse(l) {
            Parsed::Valid { instruction, .. } => Some(instruction),
            Parsed::Invalid { .. } => None,
        })
        .filter(|i| seen.insert(i.id.clone()))
        .map(|i| {
            let place = Placement { window: calendar.window_of(i.event_time).id, late_from: None };
            (i, place)
        })
        .collect()
}

/// Nets `instructions` in one shard and closes every window: what `net_one_shard` measures.
fn settled(
    instructions: Vec<(clearhouse_domain::Instruction, Placement)>,
) -> Vec<(clearhouse_domain::WindowId, Vec<SettledBatch>)> {
    let mut netter = Netter::new(Arc::new(Policy::default()));
    let placed =
        instructions.iter().enumerate().map(|(seq, (instruction, place))| (seq as u64, instruction, *place, ()));
    netter.apply_all(placed, |(), _, result| drop(result));
    std::iter::from_fn(|| netter.close_earliest()).collect()
}

fn bench(c: &mut Criterion) {
    let input = workload();
    let lines: Vec<&[u8]> = input.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    let mut group = c.benchmark_group("file_mode");
    group.throughput(Throughput::Elements(lines.len() as u64));
    group.bench_function("parse_validate", |b| {
        b.iter(|| lines.iter().map(|l| parse(l)).filter(|p| matches!(p, Parsed::Valid { .. })).count())
    });
    // The reference tree parser on the same lines: what the fast decoder replaced.
    group.bench_function("parse_validate_reference", |b| {
        b.iter(|| lines.iter().map(|l| parse_reference(l)).filter(|p| matches!(p, Parsed::Valid { .. })).count())
    });

    let calendar = calendar();
    let instructions = parsed(&input, &calendar);
    group.throughput(Throughput::Elements(instructions.len() as u64));
    group.bench_function("net_one_shard", |b| b.iter_batched(|| instructions.clone(), settled, BatchSize::LargeInput));

    let windows = settled(instructions);
    let debtor = Payee::validated("Acquirer", "110060123456789012", "BKCHCNBJ").expect("debtor");
    let details: usize = windows.iter().flat_map(|(_, b)| b).map(|b| b.details.len()).sum();
    group.throughput(Throughput::Elements(details as u64));
    group.bench_function("encode_window_files", |b| {
        b.iter(|| {
            windows
                .iter()
                .map(|(id, batches)| {
                    let meta = WindowMeta::new(&calendar, &calendar.window(*id));
                    window_files(&meta, batches, Default::default(), &debtor).len()
                })
                .sum::<usize>()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
