//! One seed: a workload, a fault-free reference run, and a run under the seed's schedule of
//! crashes, restarts, rebalances and I/O faults, driving the daemon's shards the way its
//! consumer loop does (assign from the checkpoint and resume at its offset, records in offset
//! order, periodic checkpoints, idle ticks, revoke on rebalance).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use clearhouse_daemon::assemble::Assembly;
use clearhouse_daemon::shard::{Command, Durable, Msg, Shard};
use clearhouse_daemon::state_dir::StateDir;
use clearhouse_daemon::Settings;
use clearhouse_formats::DirStore;
use clearhouse_gen::{generate_each, GenOptions};
use crossbeam_channel::Receiver;
use jiff::Timestamp;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::outputs::SimTopics;
use crate::simfs::{SimFs, OUTPUT_DIR, STATE_DIR};
use crate::world::{lock, Shared, SimIo};

/// A partition's messages, in offset order: key and value.
pub(crate) type Log = Vec<Vec<(Vec<u8>, Vec<u8>)>>;

/// A seed's workload: the instruction topic, split into partitions by merchant.
pub(crate) struct Workload {
    pub(crate) log: Log,
    /// Instances sharing the state directory (1 to 3).
    pub(crate) instances: usize,
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
    Workload { log, instances: rng.random_range(1..=3) }
}

/// What a run did.
#[derive(Debug, Default, Clone, Copy)]
pub struct RunCounts {
    /// Commands handed to shards.
    pub commands: u64,
    /// Instances that died (injected or planned).
    pub crashes: u64,
    /// Partitions moved between live instances.
    pub rebalances: u64,
    /// Assembly passes started.
    pub assemblies: u64,
}

/// One simulated process: its shard and the partitions it consumes, with the next offset to
/// hand it per partition, and its window assembler.
struct Instance {
    shard: Shard<StateDir, SimIo>,
    assembly: Assembly<StateDir, SimTopics, DirStore>,
    cursors: BTreeMap<usize, u64>,
    /// The shard's durable-checkpoint reports: what the consumer commits.
    reports: Receiver<Durable>,
}

/// The instances of a run and who owns which partition: what the consumer group decides in
/// the daemon.
struct Cluster<'a> {
    settings: &'a Arc<Settings>,
    world: &'a Shared,
    log: &'a Log,
    live: Vec<Option<Instance>>,
    owner: Vec<Option<usize>>,
    counts: RunCounts,
}

/// Drives `workload` to the end under `world`'s faults and the schedule drawn from `rng`
/// (`chaos` false: one instance, no schedule, the reference run).
pub(crate) fn drive(
    settings: &Arc<Settings>,
    workload: &Workload,
    world: &Shared,
    rng: &mut ChaCha8Rng,
    chaos: bool,
) -> RunCounts {
    let partitions = workload.log.len();
    let instances = if chaos { workload.instances } else { 1 };
    let mut cluster = Cluster {
        settings,
        world,
        log: &workload.log,
        live: (0..instances).map(|_| None).collect(),
        owner: vec![None; partitions],
        counts: RunCounts::default(),
    };
    let mut guard = 0u64;
    loop {
        guard += 1;
        if guard == 1_000_000 {
            lock(world).violations.push("the run made no progress in a million steps".to_owned());
        }
        if !lock(world).violations.is_empty() {
            // The run is already a failure; the checks report the first violation.
            return cluster.counts;
        }
        cluster.restart_and_assign(rng);
        if (0..partitions).all(|p| cluster.at_end(p)) {
            break;
        }
        let action = if chaos { rng.random_range(0..100) } else { 0 };
        let p = rng.random_range(0..partitions);
        let Some(i) = cluster.owner[p] else { continue };
        let command = match action {
            0..=74 => cluster.records(i, p, rng),
            // A checkpoint that records new seals wakes the assembler, in the daemon.
            75..=84 => {
                cluster.send(i, Command::Checkpoint);
                cluster.assemble(i);
                None
            }
            85..=89 => cluster.idle(i, p, rng),
            90..=92 => {
                cluster.assemble(i);
                None
            }
            93..=96 => {
                cluster.rebalance(p, rng);
                None
            }
            _ => {
                cluster.crash(i, "is killed between commands");
                None
            }
        };
        if let Some(command) = command {
            cluster.send(i, command);
        }
    }
    lock(world).calm();
    cluster.finish(rng);
    cluster.counts
}

impl Cluster<'_> {
    /// Whether partition `p` has had every message handed to its owner.
    fn at_end(&self, p: usize) -> bool {
        self.owner[p]
            .and_then(|i| self.live[i].as_ref())
            .and_then(|inst| inst.cursors.get(&p))
            .is_some_and(|&c| c as usize >= self.log[p].len())
    }

    /// Starts dead instances (a crashed one restarts on the next step) and assigns every
    /// unowned partition to an instance, from its checkpoint, as a rebalance after a crash does.
    fn restart_and_assign(&mut self, rng: &mut ChaCha8Rng) {
        for i in 0..self.live.len() {
            if self.live[i].is_none() {
                self.start(i);
            }
        }
        for p in 0..self.owner.len() {
            if self.owner[p].is_none() && self.live.iter().any(Option::is_some) {
                let i = rng.random_range(0..self.live.len());
                self.assign(i, p);
            }
        }
    }

    /// Starts instance `i`: it opens the state and output directories on the disk, which may
    /// fail or crash it (it is started again on the next step).
    fn start(&mut self, i: usize) {
        lock(self.world).note(format!("instance {i} starts"));
        let (report_tx, reports) = crossbeam_channel::unbounded();
        let (wake, _) = crossbeam_channel::unbounded();
        let io = SimIo { world: Arc::clone(self.world), reports: reports.clone() };
        let fs: Arc<dyn clearhouse_storage::Fs> = Arc::new(SimFs(io.clone()));
        let opened = StateDir::open_on(Arc::clone(&fs), Path::new(STATE_DIR), &self.settings.input_topic)
            .map_err(|e| e.to_string())
            .and_then(|state| Ok((state, DirStore::shared_on(fs, Path::new(OUTPUT_DIR)).map_err(|e| e.to_string())?)));
        let (state, store) = match opened {
            Ok(opened) => opened,
            Err(e) => {
                let mut world = lock(self.world);
                world.note(format!("instance {i} fails to start: {e}"));
                let power_lost = std::mem::take(&mut world.power_lost);
                world.crashed = false;
                drop(world);
                if power_lost {
                    self.power_loss();
                }
                return;
            }
        };
        let shard = Shard::new(Arc::clone(self.settings), state.clone(), report_tx, wake, io.clone());
        let input = (self.settings.input_topic.clone(), self.log.len() as i32);
        let topics = SimTopics::new(io, input);
        let assembly = Assembly::new(Arc::clone(self.settings), state, topics, store);
        self.live[i] = Some(Instance { shard, assembly, cursors: BTreeMap::new(), reports });
    }

    /// Every instance dies with the machine.
    fn power_loss(&mut self) {
        for i in 0..self.live.len() {
            self.crash(i, "dies in the power loss");
        }
    }

    /// Instance `i` takes partition `p` from its checkpoint and resumes at its offset.
    fn assign(&mut self, i: usize, p: usize) {
        let (reply, answer) = crossbeam_channel::bounded(1);
        if !self.send(i, Command::Assign { partition: p as i32, reply }) {
            return;
        }
        match answer.try_recv() {
            Ok(Ok(resume)) => {
                if let Some(instance) = self.live[i].as_mut() {
                    instance.cursors.insert(p, resume.unwrap_or(0));
                    self.owner[p] = Some(i);
                }
            }
            // A damaged checkpoint is never an injected fault: the disk model keeps a file's old
            // or new content unless the daemon renamed it into place before it was durable.
            Ok(Err(e)) if e.contains("is damaged") => {
                lock(self.world).violations.push(format!("partition {p}'s checkpoint does not load: {e}"));
                self.crash(i, &format!("fails to load partition {p}"));
            }
            // A checkpoint that cannot be read stops the process, as it does the daemon.
            _ => self.crash(i, &format!("fails to load partition {p}")),
        }
    }

    /// Hands `command` to instance `i`; false when the instance died of it (a persisting error
    /// stops the daemon's process; an injected crash stops it too).
    fn send(&mut self, i: usize, command: Command) -> bool {
        let Some(instance) = self.live[i].as_mut() else { return false };
        let failed = instance.shard.handle(command).is_err();
        self.counts.commands += 1;
        // Reports sent before a crash may have been committed: the consumer thread took them.
        let reports: Vec<Durable> = instance.reports.try_iter().collect();
        reports.into_iter().for_each(|report| lock(self.world).commit(report));
        if failed || lock(self.world).crashed {
            self.crash(i, "dies");
            return false;
        }
        true
    }

    /// Instance `i` dies: its memory is gone, its partitions are reassigned from their
    /// checkpoints.
    fn crash(&mut self, i: usize, how: &str) {
        let Some(mut instance) = self.live[i].take() else { return };
        instance.assembly.topics_mut().die();
        let mut world = lock(self.world);
        world.note(format!("instance {i} {how}"));
        world.crashed = false;
        let power_lost = std::mem::take(&mut world.power_lost);
        drop(world);
        self.owner.iter_mut().filter(|o| **o == Some(i)).for_each(|o| *o = None);
        self.counts.crashes += 1;
        if power_lost {
            self.power_loss();
        }
    }

    /// Instance `i` runs one assembly pass, as its assembler thread does when woken; true when
    /// the pass finished. An error leaves the instance running (the daemon logs it and retries);
    /// an injected crash kills it.
    fn assemble(&mut self, i: usize) -> bool {
        let Some(instance) = self.live[i].as_mut() else { return false };
        self.counts.assemblies += 1;
        let result = instance.assembly.pass();
        if lock(self.world).crashed {
            self.crash(i, "dies assembling");
            return false;
        }
        if let Err(e) = &result {
            let chain = clearhouse_daemon::error_chain(e);
            let mut world = lock(self.world);
            if chain.contains("refusing to overwrite") {
                world.violations.push(format!("a window file was written again with other content: {chain}"));
            }
            world.note(format!("instance {i}: assembly failed: {chain}"));
        }
        result.is_ok()
    }

    /// Up to 16 of the partition's next messages, in offset order.
    fn records(&mut self, i: usize, p: usize, rng: &mut ChaCha8Rng) -> Option<Command> {
        let log = &self.log[p];
        let cursor = self.live[i].as_mut()?.cursors.get_mut(&p)?;
        let end = log.len().min(*cursor as usize + rng.random_range(1..=16));
        let batch: Vec<Msg> = (*cursor as usize..end)
            .map(|offset| Msg {
                partition: p as i32,
                offset: offset as u64,
                key: Some(log[offset].0.clone()),
                timestamp: None,
                payload: log[offset].1.clone(),
            })
            .collect();
        *cursor = end as u64;
        (!batch.is_empty()).then_some(Command::Records(batch))
    }

    /// An idle tick at a wall-clock instant near the newest event time the partition has been
    /// handed: from two hours behind it to two hours ahead, and one tick in ten after the clock
    /// jumped six hours forward. A tick ahead of the data seals windows that later messages
    /// still fall in (they are netted late); a tick behind an earlier one seals nothing (seals
    /// never go back). The seals a run makes depend on these instants, so its windows are held
    /// to a replay of the seals its final checkpoints recorded (`replayed.rs`).
    fn idle(&self, i: usize, p: usize, rng: &mut ChaCha8Rng) -> Option<Command> {
        let cursor = *self.live[i].as_ref()?.cursors.get(&p)? as usize;
        let newest = self.log[p][..cursor].iter().filter_map(|(_, v)| event_time(v)).max()?;
        let jump = if rng.random_range(0..10) == 0 { 6 * 3_600 } else { 0 };
        let offset = jiff::SignedDuration::from_secs(rng.random_range(-7_200..=7_200) + jump);
        let now = newest.checked_add(offset).ok()?;
        Some(Command::Idle { partition: p as i32, now })
    }

    /// Moves partition `p` from its owner to an instance (possibly the same): the owner
    /// checkpoints and releases it (`Revoke`), the new one loads it (`Assign`).
    fn rebalance(&mut self, p: usize, rng: &mut ChaCha8Rng) {
        let Some(from) = self.owner[p] else { return };
        let (reply, _answer) = crossbeam_channel::bounded(1);
        if self.send(from, Command::Revoke { partition: p as i32, reply }) {
            if let Some(instance) = self.live[from].as_mut() {
                instance.cursors.remove(&p);
            }
        }
        self.owner[p] = None;
        self.counts.rebalances += 1;
        let to = rng.random_range(0..self.live.len());
        lock(self.world).note(format!("partition {p} moves from instance {from} to {to}"));
        if self.live[to].is_some() {
            self.assign(to, p);
        }
    }

    /// The end of the run, without faults: every partition's owner is ticked far past the
    /// data, so every window seals, and checkpoints.
    fn finish(&mut self, rng: &mut ChaCha8Rng) {
        self.restart_and_assign(rng);
        let far: Timestamp = "2100-01-01T00:00:00Z".parse().expect("constant");
        for (p, i) in self.owner.clone().into_iter().enumerate() {
            let i = i.expect("every partition owned once faults stop");
            self.send(i, Command::Idle { partition: p as i32, now: far });
            self.send(i, Command::Checkpoint);
        }
        let i = self.owner[0].expect("partition 0 owned");
        assert!(self.assemble(i), "an assembly pass without faults finishes");
    }
}

/// The event time of a generated message, when it has a readable one.
fn event_time(value: &[u8]) -> Option<Timestamp> {
    let text = std::str::from_utf8(value).ok()?;
    let field = r#""event_time":""#;
    let rest = &text[text.find(field)? + field.len()..];
    rest.split('"').next()?.parse().ok()
}
