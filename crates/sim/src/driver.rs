//! One seed: a workload, a fault-free reference run, and a run under the seed's schedule of
//! crashes, restarts, rebalances and I/O faults. The driver is the log and the consumer group:
//! it hands each instance's `Intake` (the daemon's consumer-loop decisions) messages in offset
//! order, ends of partitions at drawn wall-clock instants, periodic ticks and checkpoints,
//! assignments and revocations, and commits what the `Intake` says to commit.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use clearhouse_daemon::assemble::Assembly;
use clearhouse_daemon::intake::Intake;
use clearhouse_daemon::shard::{Durable, Msg, Shard};
use clearhouse_daemon::state_dir::StateDir;
use clearhouse_daemon::Settings;
use clearhouse_formats::DirStore;
use crossbeam_channel::Receiver;
use jiff::Timestamp;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::link::SimLink;
use crate::outputs::SimTopics;
use crate::simfs::{SimFs, OUTPUT_DIR, STATE_DIR};
use crate::workload::{event_time, Log, Workload};
use crate::world::{lock, Shared, SimIo};

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

/// One simulated process: the daemon's consumer-loop decisions (`Intake`) over its shards, the
/// next offset the simulated log hands it per partition, and its window assembler.
struct Instance {
    intake: Intake<SimLink>,
    assembly: Assembly<StateDir, SimTopics, DirStore>,
    cursors: BTreeMap<usize, u64>,
    /// The shards' durable-checkpoint reports: what the consumer commits.
    reports: Receiver<Durable>,
}

/// The instances of a run and who owns which partition: what the consumer group decides in
/// the daemon.
struct Cluster<'a> {
    settings: &'a Arc<Settings>,
    world: &'a Shared,
    log: &'a Log,
    shards: usize,
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
        shards: if chaos { workload.shards } else { 1 },
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
        cluster.restart_and_assign(rng, !chaos);
        if (0..partitions).all(|p| cluster.at_end(p)) {
            break;
        }
        let action = if chaos { rng.random_range(0..100) } else { 0 };
        let p = rng.random_range(0..partitions);
        let Some(i) = cluster.owner[p] else { continue };
        match action {
            0..=74 => cluster.records(i, p, rng),
            // A checkpoint that records new seals wakes the assembler, in the daemon.
            75..=84 => {
                cluster.act(i, Intake::checkpoint);
                cluster.assemble(i);
            }
            85..=89 => cluster.idle(i, p, rng),
            90..=92 => {
                cluster.assemble(i);
            }
            93..=96 => cluster.rebalance(p, rng),
            _ => cluster.crash(i, "is killed between commands"),
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

    /// Starts dead instances (each after a random delay: one chance in four per step, unless
    /// `now`) and assigns every unowned partition to a live instance, from its checkpoint, as
    /// the group's rebalance after a crash does. While an instance is down, the others take
    /// its partitions.
    fn restart_and_assign(&mut self, rng: &mut ChaCha8Rng, now: bool) {
        for i in 0..self.live.len() {
            if self.live[i].is_none() && (now || rng.random_range(0..4) == 0) {
                self.start(i);
            }
        }
        for p in 0..self.owner.len() {
            let live: Vec<usize> = (0..self.live.len()).filter(|&i| self.live[i].is_some()).collect();
            if self.owner[p].is_none() && !live.is_empty() {
                let i = live[rng.random_range(0..live.len())];
                self.assign(i, p);
            }
        }
    }

    /// Starts instance `i`: it opens the state and output directories on the disk, which may
    /// fail or crash it (it is started again later).
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
        let shards = (0..self.shards)
            .map(|_| Shard::new(Arc::clone(self.settings), state.clone(), report_tx.clone(), wake.clone(), io.clone()))
            .collect();
        let intake = Intake::new(SimLink { shards, failed: false, commands: 0 }, self.settings.batch_messages);
        let input = (self.settings.input_topic.clone(), self.log.len() as i32);
        let topics = SimTopics::new(io, input);
        let assembly = Assembly::new(Arc::clone(self.settings), state, topics, store);
        self.live[i] = Some(Instance { intake, assembly, cursors: BTreeMap::new(), reports });
    }

    /// Every instance dies with the machine.
    fn power_loss(&mut self) {
        for i in 0..self.live.len() {
            self.crash(i, "dies in the power loss");
        }
    }

    /// Instance `i` takes partition `p` from its checkpoint and resumes at its offset, as the
    /// daemon's rebalance callback has its `Intake` do.
    fn assign(&mut self, i: usize, p: usize) {
        match self.act(i, |intake| intake.assigned(&[p as i32])) {
            None => {}
            Some(Ok(resumed)) => {
                if let Some(instance) = self.live[i].as_mut() {
                    instance.cursors.insert(p, resumed.first().and_then(|(_, r)| *r).unwrap_or(0));
                    self.owner[p] = Some(i);
                }
            }
            // A damaged checkpoint is never an injected fault: the disk model keeps a file's old
            // or new content unless the daemon renamed it into place before it was durable.
            Some(Err(e)) if e.contains("is damaged") => {
                lock(self.world).violations.push(format!("partition {p}'s checkpoint does not load: {e}"));
                self.crash(i, &format!("fails to load partition {p}"));
            }
            // A checkpoint that cannot be read stops the process, as it does the daemon.
            Some(Err(_)) => self.crash(i, &format!("fails to load partition {p}")),
        }
    }

    /// Instance `i`'s consumer loop does `action`; `None` when the instance died of it (a shard
    /// that cannot persist stops the daemon's process; an injected crash stops it too). The
    /// durable reports its shards sent meanwhile are committed, as the consumer thread does.
    fn act<R>(&mut self, i: usize, action: impl FnOnce(&mut Intake<SimLink>) -> R) -> Option<R> {
        let instance = self.live[i].as_mut()?;
        let before = instance.intake.link().commands;
        let result = action(&mut instance.intake);
        self.counts.commands += instance.intake.link().commands - before;
        let reports: Vec<Durable> = instance.reports.try_iter().collect();
        for (partition, next_offset) in instance.intake.committable(reports) {
            lock(self.world).commit(Durable { partition, next_offset });
        }
        if instance.intake.link().failed || lock(self.world).crashed {
            self.crash(i, "dies");
            return None;
        }
        Some(result)
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

    /// Up to 16 of the partition's next messages, in offset order, polled by instance `i`'s
    /// consumer loop, which sends them to the shard.
    fn records(&mut self, i: usize, p: usize, rng: &mut ChaCha8Rng) {
        let log = &self.log[p];
        let Some(cursor) = self.live[i].as_mut().and_then(|inst| inst.cursors.get_mut(&p)) else { return };
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
        self.act(i, |intake| {
            batch.into_iter().for_each(|msg| intake.message(msg));
            intake.flush();
        });
    }

    /// An idle tick at a wall-clock instant near the newest event time the partition has been
    /// handed: from two hours behind it to two hours ahead, and one tick in ten after the clock
    /// jumped six hours forward. A tick ahead of the data seals windows that later messages
    /// still fall in (they are netted late); a tick behind an earlier one seals nothing (seals
    /// never go back). The seals a run makes depend on these instants, so its windows are held
    /// to a replay of the seals its final checkpoints recorded (`replayed.rs`).
    ///
    /// Half the ticks are the consumer reaching the partition's end (the producer is slower
    /// than the consumer), half the periodic tick of every partition still at its end.
    fn idle(&mut self, i: usize, p: usize, rng: &mut ChaCha8Rng) {
        let Some(&cursor) = self.live[i].as_ref().and_then(|inst| inst.cursors.get(&p)) else { return };
        let Some(newest) = self.log[p][..cursor as usize].iter().filter_map(|(_, v)| event_time(v)).max() else {
            return;
        };
        let jump = if rng.random_range(0..10) == 0 { 6 * 3_600 } else { 0 };
        let offset = jiff::SignedDuration::from_secs(rng.random_range(-7_200..=7_200) + jump);
        let Ok(now) = newest.checked_add(offset) else { return };
        if rng.random_range(0..2) == 0 {
            self.act(i, |intake| intake.end_of_partition(p as i32, now));
        } else {
            self.act(i, |intake| intake.tick(now));
        }
    }

    /// Moves partition `p` from its owner to an instance (possibly the same): the owner
    /// checkpoints and releases it (`Revoke`), the new one loads it (`Assign`).
    fn rebalance(&mut self, p: usize, rng: &mut ChaCha8Rng) {
        let Some(from) = self.owner[p] else { return };
        // The offsets a revocation returns are committed before the partition is given up.
        if let Some(offsets) = self.act(from, |intake| intake.revoked(&[p as i32])) {
            let mut world = lock(self.world);
            offsets.into_iter().for_each(|(partition, next_offset)| world.commit(Durable { partition, next_offset }));
            drop(world);
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
        self.restart_and_assign(rng, true);
        let far: Timestamp = "2100-01-01T00:00:00Z".parse().expect("constant");
        for (p, i) in self.owner.clone().into_iter().enumerate() {
            let i = i.expect("every partition owned once faults stop");
            self.act(i, |intake| {
                intake.end_of_partition(p as i32, far);
                intake.checkpoint();
            });
        }
        let i = self.owner[0].expect("partition 0 owned");
        assert!(self.assemble(i), "an assembly pass without faults finishes");
    }
}
