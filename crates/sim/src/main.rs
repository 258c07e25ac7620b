//! `clearhouse-sim`: runs seeds of the deterministic simulation.
//!
//! `--seed N` replays one seed exactly and prints its schedule; `--seeds N` runs seeds
//! `0..N` (from `--first`) with a progress bar and prints the coverage of the I/O steps the
//! faults reached. A failing seed prints itself, the broken invariant and its schedule, and the
//! exit code is 1.

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use clearhouse_sim::world::Fault;
use clearhouse_sim::{run_seed, settings, SimConfig};
use indicatif::{ProgressBar, ProgressStyle};

/// Deterministic simulation of the daemon's shards under seeded fault schedules.
#[derive(Debug, Parser)]
#[command(name = "clearhouse-sim", version)]
struct Args {
    /// Replay this one seed and print its schedule.
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// Run this many seeds.
    #[arg(long, default_value_t = 1000)]
    seeds: u64,
    /// First seed of `--seeds`.
    #[arg(long, default_value_t = 0)]
    first: u64,
    /// Instructions per seed.
    #[arg(long, default_value_t = SimConfig::default().messages)]
    messages: u64,
    /// Faults per thousand file-system calls.
    #[arg(long, default_value_t = SimConfig::default().fs_fault_permille)]
    fs_fault_permille: u32,
    /// Faults per thousand broker calls.
    #[arg(long, default_value_t = SimConfig::default().broker_fault_permille)]
    broker_fault_permille: u32,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = SimConfig {
        messages: args.messages,
        fs_fault_permille: args.fs_fault_permille,
        broker_fault_permille: args.broker_fault_permille,
    };
    let settings = settings();
    if let Some(seed) = args.seed {
        return match run_seed(seed, &config, &settings) {
            Ok(report) => {
                report.events.iter().for_each(|e| println!("  {e}"));
                println!(
                    "seed {seed}: ok ({} partitions, {} instances, {} commands, {} crashes, {} rebalances, \
                     {} assembly passes; {} windows, {} credits)",
                    report.partitions,
                    report.instances,
                    report.counts.commands,
                    report.counts.crashes,
                    report.counts.rebalances,
                    report.counts.assemblies,
                    report.published.0,
                    report.published.1
                );
                ExitCode::SUCCESS
            }
            Err(violation) => fail(&violation),
        };
    }
    let bar = ProgressBar::new(args.seeds);
    bar.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} seeds, {per_sec}, eta {eta}").expect("template"));
    let started = Instant::now();
    let mut coverage = std::collections::BTreeMap::new();
    let (mut crashes, mut rebalances, mut assemblies, mut windows, mut credits) = (0, 0, 0, 0, 0);
    let mut power_losses = 0;
    let mut manifest_replay_differs = Vec::new();
    for seed in args.first..args.first + args.seeds {
        match run_seed(seed, &config, &settings) {
            Ok(report) => {
                for (key, n) in report.injected {
                    *coverage.entry(key).or_insert(0u64) += n;
                }
                crashes += report.counts.crashes;
                power_losses += report.power_losses;
                rebalances += report.counts.rebalances;
                assemblies += report.counts.assemblies;
                windows += report.published.0;
                credits += report.published.1;
                if !report.manifest_replay_matches {
                    manifest_replay_differs.push(seed);
                }
            }
            Err(violation) => {
                bar.abandon();
                return fail(&violation);
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let ms = started.elapsed().as_millis().max(1);
    println!(
        "{} seeds, no invariant broken, in {ms} ms ({} seeds/s); {crashes} crashes \
         ({power_losses} power losses), {rebalances} rebalances, {assemblies} assembly passes; {windows} windows and {credits} credits each published exactly once",
        args.seeds,
        u128::from(args.seeds) * 1000 / ms
    );
    println!(
        "replay from the manifests gives other files in {} seeds (a known gap, docs/exactly-once.md): {:?}",
        manifest_replay_differs.len(),
        &manifest_replay_differs[..manifest_replay_differs.len().min(10)]
    );
    let crash_points = coverage.keys().filter(|(_, f)| matches!(f, Fault::CrashBefore | Fault::CrashAfter)).count();
    println!("faults injected, per I/O step ({} kinds reached, {crash_points} of them crash points):", coverage.len());
    for ((step, fault), n) in coverage {
        println!("  {:<28} {:<12} {n}", format!("{step:?}"), format!("{fault:?}"));
    }
    ExitCode::SUCCESS
}

fn fail(violation: &clearhouse_sim::Violation) -> ExitCode {
    eprintln!("{violation}");
    eprintln!("schedule:");
    violation.schedule.iter().for_each(|e| eprintln!("  {e}"));
    ExitCode::FAILURE
}
