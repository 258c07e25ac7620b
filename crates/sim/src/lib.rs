//! Deterministic simulation of the daemon (issue #12).
//!
//! The real-time fault tests kill a daemon at a handful of random instants; they cannot aim at
//! one I/O step or be replayed. Here the daemon's own consumer-loop decisions (`Intake`:
//! batching, idle ticks, assignment, revocation, what to commit), its `Shard`s (netting,
//! sealing, checkpointing, dead letters) and each instance's window assembler (`Assembly`, the code `replay --emit`
//! publishes through too) run with the daemon's own state and output directories (`StateDir`,
//! `DirStore`, `clearhouse_storage::Dir`) on a simulated disk (`disk.rs`, `simfs.rs`) that
//! loses what was not durable at a power loss, and against a simulated broker for dead letters,
//! credits and window events (`world.rs`, `outputs.rs`). One seed decides everything: the
//! workload (out-of-order and late event times), how many instances share the directories, the
//! wall clock of idle ticks (behind the data, ahead of it, jumping forward), and a schedule of
//! crashes and power losses at any file-system or broker call (before or after it lands),
//! failed writes, fsyncs and renames, refused sends, failed read-backs and flushes, lost
//! acknowledgements, restarts and rebalances.
//!
//! Counts and dead letters are compared with the same workload run with no faults; parts,
//! files, credits and window events with a replay of the run's own seal history
//! (`replayed.rs`), since seals depend on the clock and on crashes (`check.rs`); all of it after
//! a last power loss, so only what was durable counts.
//!
//! Not simulated (docs/exactly-once.md): rdkafka and the group protocol (the driver is the
//! log and the group: it hands out messages, ends of partitions, assignments and revocations,
//! and records commits), and file systems that break POSIX's fsync promises.

mod check;
mod disk;
mod disk_view;
mod driver;
mod link;
mod outputs;
mod replayed;
mod simfs;
mod workload;
pub mod world;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use clearhouse_daemon::Settings;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub use check::Violation;
pub use driver::RunCounts;
use world::{lock, Fault, Step, World};

/// How each seed runs.
#[derive(Debug, Clone, Copy)]
pub struct SimConfig {
    /// Instructions generated per seed.
    pub messages: u64,
    /// Faults per thousand file-system calls.
    pub fs_fault_permille: u32,
    /// Faults per thousand broker calls (dead letters, read-backs, sends, flushes).
    pub broker_fault_permille: u32,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig { messages: 300, fs_fault_permille: 4, broker_fault_permille: 30 }
    }
}

/// What one seed did.
#[derive(Debug, Clone)]
pub struct SeedReport {
    /// The seed.
    pub seed: u64,
    /// Partitions and instances of its workload.
    pub partitions: usize,
    /// Instances sharing the state directory.
    pub instances: usize,
    /// Commands, crashes and rebalances of the faulty run.
    pub counts: RunCounts,
    /// Crashes that were power losses (every instance died, and the disk lost what was not
    /// durable).
    pub power_losses: u64,
    /// Faults injected per I/O step and kind.
    pub injected: BTreeMap<(Step, Fault), u64>,
    /// The schedule as it happened.
    pub events: Vec<String>,
    /// Windows and credits the workload publishes (the reference run's).
    pub published: (usize, usize),
    /// Whether `clearhouse replay` from the run's manifests gives its files byte for byte: not
    /// when an idle tick sealed a window before its late data and no window holding data
    /// recorded that seal (docs/exactly-once.md, "Replay and seals in the manifest").
    pub manifest_replay_matches: bool,
}

/// The settings the simulated shards run with: the default configuration, hourly windows and
/// ten minutes of grace, so a day of workload seals many windows.
pub fn settings() -> Arc<Settings> {
    let text = "[calendar]\ninterval_secs = 3600\n[kafka]\nbrokers = \"sim:9092\"\n[daemon]\ngrace_secs = 600\n";
    let config = clearhouse_jobs::Config::from_toml(text, std::path::Path::new("sim.toml")).expect("sim config");
    Arc::new(config.daemon_settings().expect("sim settings"))
}

/// Runs `seed`: the reference run, the run under the seed's faults, and every invariant.
pub fn run_seed(seed: u64, config: &SimConfig, settings: &Arc<Settings>) -> Result<SeedReport, Box<Violation>> {
    let workload = workload::workload(seed, config.messages);
    let world = |seed: u64, permille: (u32, u32)| {
        let mut world = World::new(ChaCha8Rng::seed_from_u64(seed), permille);
        world.set_topic(&settings.input_topic);
        Arc::new(Mutex::new(world))
    };
    let reference = world(seed, (0, 0));
    driver::drive(settings, &workload, &reference, &mut ChaCha8Rng::seed_from_u64(seed ^ 1), false);
    let faulty = world(seed ^ 2, (config.fs_fault_permille, config.broker_fault_permille));
    let rejected = lock(&reference).rejected();
    lock(&faulty).expect_rejects(&settings.input_topic, rejected);
    let counts = driver::drive(settings, &workload, &faulty, &mut ChaCha8Rng::seed_from_u64(seed ^ 3), true);
    let (mut reference, mut faulty) = (lock(&reference), lock(&faulty));
    reference.final_power_loss();
    faulty.final_power_loss();
    let published = (reference.published("windows"), reference.published("credits"));
    let manifest_replay_matches = check::manifest_replay_matches(settings, &workload.log, &faulty);
    check::compare(seed, settings, &workload.log, &reference, &faulty)
        .map_err(|v| Box::new(Violation { schedule: faulty.events.clone(), ..v }))?;
    Ok(SeedReport {
        seed,
        partitions: workload.log.len(),
        instances: workload.instances,
        counts,
        power_losses: faulty.power_losses,
        injected: faulty.injected.clone(),
        events: faulty.events.clone(),
        published,
        manifest_replay_matches,
    })
}
