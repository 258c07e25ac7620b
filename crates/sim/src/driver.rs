//! One seed: a workload, a fault-free reference run, and a run under the seed's schedule of
//! crashes, restarts, rebalances and I/O faults, driving the daemon's shards the way its
//! consumer loop does (assign from the checkpoint and resume at its offset, records in offset
//! order, periodic checkpoints, idle ticks, revoke on rebalance).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use clearhouse_daemon::shard::{Command, Msg, Shard};
use clearhouse_daemon::Settings;
use clearhouse_gen::{generate_each, GenOptions};
use jiff::Timestamp;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::world::{SimIo, World};

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
}

/// One simulated process: its shard and the partitions it consumes, with the next offset to
/// hand it per partition.
struct Instance {
    shard: Shard<SimIo, SimIo>,
    cursors: BTreeMap<usize, u64>,
}

/// Drives `workload` to the end under `world`'s faults and the schedule drawn from `rng`
/// (`chaos` false: one instance, no schedule, the reference run).
pub(crate) fn drive(
    settings: &Arc<Settings>,
    workload: &Workload,
    world: &Rc<RefCell<World>>,
    rng: &mut ChaCha8Rng,
    chaos: bool,
) -> RunCounts {
    let partitions = workload.log.len();
    let instances = if chaos { workload.instances } else { 1 };
    let mut live: Vec<Option<Instance>> = (0..instances).map(|_| None).collect();
    let mut counts = RunCounts::default();
    let mut owner: Vec<Option<usize>> = vec![None; partitions];
    let mut guard = 0u64;
    loop {
        guard += 1;
        assert!(guard < 1_000_000, "the simulation made no progress");
        restart_and_assign(settings, world, &mut live, &mut owner, rng, &mut counts);
        if (0..partitions).all(|p| at_end(&live, &owner, p, &workload.log)) {
            break;
        }
        let action = if chaos { rng.random_range(0..100) } else { 0 };
        let p = rng.random_range(0..partitions);
        let Some(i) = owner[p] else { continue };
        let command = match action {
            0..=79 => records(&mut live, i, p, &workload.log, rng),
            80..=87 => Some(Command::Checkpoint),
            88..=92 => idle(&live, i, p, &workload.log),
            93..=96 => {
                rebalance(&mut live, &mut owner, p, world, rng, &mut counts);
                None
            }
            _ => {
                world.borrow_mut().note(format!("instance {i} is killed between commands"));
                crash(&mut live, &mut owner, i, world, &mut counts);
                None
            }
        };
        if let Some(command) = command {
            send(&mut live, &mut owner, i, command, world, &mut counts);
        }
    }
    world.borrow_mut().calm();
    finish(settings, world, &mut live, &mut owner, rng, &mut counts);
    counts
}

/// Whether partition `p` has had every message handed to its owner.
fn at_end(live: &[Option<Instance>], owner: &[Option<usize>], p: usize, log: &Log) -> bool {
    owner[p]
        .and_then(|i| live[i].as_ref())
        .and_then(|inst| inst.cursors.get(&p))
        .is_some_and(|&c| c as usize >= log[p].len())
}

/// Starts dead instances (a crashed one restarts on the next step) and assigns every unowned
/// partition to a live instance, from its checkpoint, as a rebalance after a crash does.
fn restart_and_assign(
    settings: &Arc<Settings>,
    world: &Rc<RefCell<World>>,
    live: &mut [Option<Instance>],
    owner: &mut [Option<usize>],
    rng: &mut ChaCha8Rng,
    counts: &mut RunCounts,
) {
    for (i, slot) in live.iter_mut().enumerate().filter(|(_, s)| s.is_none()) {
        world.borrow_mut().note(format!("instance {i} starts"));
        let (reports, _) = crossbeam_channel::unbounded();
        let (wake, _) = crossbeam_channel::unbounded();
        let io = SimIo(Rc::clone(world));
        let shard = Shard::new(Arc::clone(settings), io.clone(), reports, wake, io);
        *slot = Some(Instance { shard, cursors: BTreeMap::new() });
    }
    for p in 0..owner.len() {
        if owner[p].is_none() {
            let i = rng.random_range(0..live.len());
            assign(live, owner, i, p, world, counts);
        }
    }
}

fn assign(
    live: &mut [Option<Instance>],
    owner: &mut [Option<usize>],
    i: usize,
    p: usize,
    world: &Rc<RefCell<World>>,
    counts: &mut RunCounts,
) {
    let Some(instance) = live[i].as_mut() else { return };
    let (reply, answer) = crossbeam_channel::bounded(1);
    let failed = instance.shard.handle(Command::Assign { partition: p as i32, reply }).is_err();
    counts.commands += 1;
    match answer.try_recv() {
        Ok(Ok(resume)) if !failed && !world.borrow().crashed => {
            instance.cursors.insert(p, resume.unwrap_or(0));
            owner[p] = Some(i);
        }
        // A checkpoint that cannot be loaded stops the process, as it does the daemon.
        _ => {
            world.borrow_mut().note(format!("instance {i} fails to load partition {p}"));
            crash(live, owner, i, world, counts);
        }
    }
}

/// Up to 16 of the partition's next messages, in offset order.
fn records(live: &mut [Option<Instance>], i: usize, p: usize, log: &Log, rng: &mut ChaCha8Rng) -> Option<Command> {
    let instance = live[i].as_mut()?;
    let cursor = instance.cursors.get_mut(&p)?;
    let end = log[p].len().min(*cursor as usize + rng.random_range(1..=16));
    let batch: Vec<Msg> = (*cursor as usize..end)
        .map(|offset| Msg {
            partition: p as i32,
            offset: offset as u64,
            key: Some(log[p][offset].0.clone()),
            timestamp: None,
            payload: log[p][offset].1.clone(),
        })
        .collect();
    *cursor = end as u64;
    (!batch.is_empty()).then_some(Command::Records(batch))
}

/// An idle tick a day before the earliest event time the partition has been handed: it runs
/// the daemon's idle path (a seal that closes no window, persisted) without sealing a window
/// any message of the workload falls in, so the run stays comparable with the reference. What
/// the wall clock seals ahead of the data is not simulated (docs/exactly-once.md).
fn idle(live: &[Option<Instance>], i: usize, p: usize, log: &Log) -> Option<Command> {
    let cursor = *live[i].as_ref()?.cursors.get(&p)? as usize;
    let earliest = log[p][..cursor].iter().filter_map(|(_, v)| event_time(v)).min()?;
    let now = earliest.checked_sub(jiff::SignedDuration::from_hours(24)).ok()?;
    Some(Command::Idle { partition: p as i32, now })
}

/// The event time of a generated message, when it has a readable one.
fn event_time(value: &[u8]) -> Option<Timestamp> {
    let text = std::str::from_utf8(value).ok()?;
    let field = r#""event_time":""#;
    let rest = &text[text.find(field)? + field.len()..];
    rest.split('"').next()?.parse().ok()
}

fn send(
    live: &mut [Option<Instance>],
    owner: &mut [Option<usize>],
    i: usize,
    command: Command,
    world: &Rc<RefCell<World>>,
    counts: &mut RunCounts,
) {
    let Some(instance) = live[i].as_mut() else { return };
    let failed = instance.shard.handle(command).is_err();
    counts.commands += 1;
    if failed || world.borrow().crashed {
        world.borrow_mut().note(format!("instance {i} dies"));
        crash(live, owner, i, world, counts);
    }
}

/// The instance dies: its memory is gone, its partitions are reassigned from their checkpoints.
fn crash(
    live: &mut [Option<Instance>],
    owner: &mut [Option<usize>],
    i: usize,
    world: &Rc<RefCell<World>>,
    counts: &mut RunCounts,
) {
    world.borrow_mut().crashed = false;
    live[i] = None;
    owner.iter_mut().filter(|o| **o == Some(i)).for_each(|o| *o = None);
    counts.crashes += 1;
}

/// Moves partition `p` from its owner to another instance: the owner checkpoints and releases
/// it (`Revoke`), the new one loads it (`Assign`).
fn rebalance(
    live: &mut [Option<Instance>],
    owner: &mut [Option<usize>],
    p: usize,
    world: &Rc<RefCell<World>>,
    rng: &mut ChaCha8Rng,
    counts: &mut RunCounts,
) {
    let Some(from) = owner[p] else { return };
    let (reply, _answer) = crossbeam_channel::bounded(1);
    send(live, owner, from, Command::Revoke { partition: p as i32, reply }, world, counts);
    if let Some(instance) = live[from].as_mut() {
        instance.cursors.remove(&p);
    }
    owner[p] = None;
    counts.rebalances += 1;
    let to = rng.random_range(0..live.len());
    world.borrow_mut().note(format!("partition {p} moves from instance {from} to {to}"));
    if live[to].is_some() {
        assign(live, owner, to, p, world, counts);
    }
}

/// The end of the run, without faults: every partition's owner is ticked far past the data, so
/// every window seals, and checkpoints.
fn finish(
    settings: &Arc<Settings>,
    world: &Rc<RefCell<World>>,
    live: &mut [Option<Instance>],
    owner: &mut [Option<usize>],
    rng: &mut ChaCha8Rng,
    counts: &mut RunCounts,
) {
    restart_and_assign(settings, world, live, owner, rng, counts);
    let far: Timestamp = "2100-01-01T00:00:00Z".parse().expect("constant");
    let owners: Vec<Option<usize>> = owner.to_vec();
    for (p, i) in owners.iter().enumerate() {
        let i = i.expect("every partition owned once faults stop");
        send(live, owner, i, Command::Idle { partition: p as i32, now: far }, world, counts);
        send(live, owner, i, Command::Checkpoint, world, counts);
    }
}
