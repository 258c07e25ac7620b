//! The simulation in the suite: a thousand seeds with no broken invariant, every kind of fault
//! reached, and a seed replayed twice giving the same schedule.

use std::collections::BTreeSet;

use clearhouse_sim::world::{Fault, FsOp, Site, Step};
use clearhouse_sim::{run_seed, settings, SimConfig};

#[test]
fn a_thousand_seeds_break_no_invariant_and_reach_every_fault() {
    let (config, settings) = (SimConfig::default(), settings());
    let mut reached = BTreeSet::new();
    let (mut crashes, mut power_losses, mut windows, mut credits) = (0, 0, 0, 0);
    for seed in 0..1000 {
        let report = run_seed(seed, &config, &settings).unwrap_or_else(|v| panic!("{v}\nschedule: {:#?}", v.schedule));
        reached.extend(report.injected.keys().copied());
        crashes += report.counts.crashes;
        power_losses += report.power_losses;
        windows += report.published.0;
        credits += report.published.1;
    }
    let mut required: Vec<(Step, Fault)> = Vec::new();
    // Every call that changes the disk, on every kind of file: crashed before it, after it
    // (a power loss one time in two), and failed.
    for op in [FsOp::Mkdir, FsOp::Write, FsOp::SyncFile, FsOp::Rename, FsOp::SyncDir] {
        for site in [Site::Partition, Site::Part, Site::Marker, Site::Output] {
            for fault in [Fault::CrashBefore, Fault::CrashAfter, Fault::Error] {
                required.push((Step::Fs(op, site), fault));
            }
        }
    }
    for fault in [Fault::CrashBefore, Fault::CrashAfter, Fault::Error] {
        required.push((Step::Fs(FsOp::Remove, Site::Part), fault));
    }
    for fault in [Fault::CrashBefore, Fault::CrashAfter, Fault::Error, Fault::AckLost] {
        required.extend([(Step::PublishDeadLetters, fault), (Step::Flush, fault)]);
    }
    required.extend([(Step::ReadTopic, Fault::Error), (Step::Send, Fault::Error)]);
    let missing: Vec<_> = required.iter().filter(|k| !reached.contains(k)).collect();
    assert!(missing.is_empty(), "fault kinds never reached: {missing:?}");
    assert!(reached.len() >= 100, "{} fault kinds reached: {reached:?}", reached.len());
    assert!(crashes > 5000 && power_losses > 1000, "{crashes} crashes, {power_losses} power losses in 1,000 seeds");
    assert!(windows > 10_000 && credits > 100_000, "{windows} windows and {credits} credits published");
}

#[test]
fn a_seed_replays_exactly() {
    let (config, settings) = (SimConfig::default(), settings());
    for seed in [3, 45, 977] {
        let a = run_seed(seed, &config, &settings).expect("seed passes");
        let b = run_seed(seed, &config, &settings).expect("seed passes");
        assert_eq!(a.events, b.events, "seed {seed}: same schedule");
        assert!(!a.events.is_empty());
    }
}
