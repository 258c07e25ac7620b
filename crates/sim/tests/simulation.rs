//! The simulation in the suite: a thousand seeds with no broken invariant, every kind of fault
//! reached, and a seed replayed twice giving the same schedule.

use std::collections::BTreeSet;

use clearhouse_sim::{run_seed, settings, SimConfig};

#[test]
fn a_thousand_seeds_break_no_invariant_and_reach_every_fault() {
    let (config, settings) = (SimConfig::default(), settings());
    let mut reached = BTreeSet::new();
    let (mut crashes, mut windows, mut credits) = (0, 0, 0);
    for seed in 0..1000 {
        let report = run_seed(seed, &config, &settings).unwrap_or_else(|v| panic!("{v}\nschedule: {:#?}", v.schedule));
        reached.extend(report.injected.keys().copied());
        crashes += report.counts.crashes;
        windows += report.published.0;
        credits += report.published.1;
    }
    // Ten I/O steps: checkpoint loads, read-backs and sends can fail; discarding unsealed
    // parts, part, checkpoint, file and marker writes crash before or after landing, or fail;
    // dead-letter publications and flushes also lose their acknowledgement.
    assert_eq!(reached.len(), 3 + 5 * 3 + 2 * 4, "fault kinds reached: {reached:?}");
    assert!(crashes > 1000, "{crashes} crashes in 1,000 seeds");
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
