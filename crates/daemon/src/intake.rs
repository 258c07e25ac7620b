//! The consumer loop's decisions, apart from rdkafka: which shard gets a message, when a batch
//! goes out, which partitions get idle ticks, what an assignment resumes from, what a
//! revocation commits, and which durable reports may be committed.
//!
//! The daemon's consumer thread (`consumer.rs`) feeds an [`Intake`] what `poll` returns and
//! what the group's rebalance callbacks say, and carries its answers to the broker; the shards
//! are reached through [`ShardLink`], channels to the shard threads. The simulator
//! (`clearhouse-sim`) feeds the same `Intake` from its simulated log and group, with a link
//! that runs each shard's command on the spot, so the loop's decisions are under test too.

use std::collections::BTreeSet;

use crossbeam_channel::{bounded, Sender};
use jiff::Timestamp;

use crate::shard::{Command, Durable, Msg};

/// How the loop reaches its shards.
pub trait ShardLink {
    /// How many shards there are.
    fn shard_count(&self) -> usize;
    /// Hands a command to shard `shard` (waits while its queue is full: the backpressure).
    fn send(&mut self, shard: usize, command: Command);
    /// Asks shard `shard` to take `partition` from its checkpoint; its resume offset (`None`:
    /// from the beginning), or why it cannot.
    fn assign(&mut self, shard: usize, partition: i32) -> Result<Option<u64>, String>;
    /// Asks shard `shard` to checkpoint and release `partition`; its next offset, if it had it.
    fn revoke(&mut self, shard: usize, partition: i32) -> Option<u64>;
}

/// The shard threads' command queues.
#[derive(Debug, Clone)]
pub struct Channels(pub Vec<Sender<Command>>);

impl ShardLink for Channels {
    fn shard_count(&self) -> usize {
        self.0.len()
    }

    fn send(&mut self, shard: usize, command: Command) {
        // A shard only stops when the process is going down.
        let _ = self.0[shard].send(command);
    }

    fn assign(&mut self, shard: usize, partition: i32) -> Result<Option<u64>, String> {
        let (reply, answer) = bounded(1);
        self.0[shard].send(Command::Assign { partition, reply }).map_err(|_| "shard stopped")?;
        answer.recv().map_err(|_| "shard stopped".to_owned())?
    }

    fn revoke(&mut self, shard: usize, partition: i32) -> Option<u64> {
        let (reply, answer) = bounded(1);
        self.0[shard].send(Command::Revoke { partition, reply }).ok()?;
        answer.recv().ok().flatten()
    }
}

/// The consumer loop's state: owned partitions, per-shard batches, partitions at their end.
#[derive(Debug)]
pub struct Intake<L> {
    link: L,
    owned: BTreeSet<i32>,
    buffers: Vec<Vec<Msg>>,
    at_eof: BTreeSet<i32>,
    batch_messages: usize,
}

impl<L: ShardLink> Intake<L> {
    /// A loop over `link`'s shards sending batches of at most `batch_messages`.
    pub fn new(link: L, batch_messages: usize) -> Intake<L> {
        let buffers = (0..link.shard_count()).map(|_| Vec::new()).collect();
        Intake { link, owned: BTreeSet::new(), buffers, at_eof: BTreeSet::new(), batch_messages: batch_messages.max(1) }
    }

    /// The shards.
    pub fn link(&mut self) -> &mut L {
        &mut self.link
    }

    /// The partitions this instance owns.
    pub fn owned(&self) -> &BTreeSet<i32> {
        &self.owned
    }

    fn shard(&self, partition: i32) -> usize {
        partition.unsigned_abs() as usize % self.buffers.len()
    }

    /// The group assigned `partitions`: each is taken from its checkpoint. Returns where each
    /// resumes (`None`: from the beginning), or the first that cannot be taken.
    pub fn assigned(&mut self, partitions: &[i32]) -> Result<Vec<(i32, Option<u64>)>, String> {
        let mut resume = Vec::with_capacity(partitions.len());
        for &partition in partitions {
            let next = self.link.assign(self.shard(partition), partition)?;
            self.owned.insert(partition);
            resume.push((partition, next));
        }
        Ok(resume)
    }

    /// The group revoked `partitions`: what is buffered goes out, each is checkpointed and
    /// released. Returns the offsets to commit before the partitions are given up.
    pub fn revoked(&mut self, partitions: &[i32]) -> Vec<(i32, u64)> {
        self.flush();
        let mut commit = Vec::new();
        for &partition in partitions {
            if let Some(next) = self.link.revoke(self.shard(partition), partition) {
                commit.push((partition, next));
            }
            self.owned.remove(&partition);
            self.at_eof.remove(&partition);
        }
        commit
    }

    /// A message: buffered for its shard, which gets the batch once it is full.
    pub fn message(&mut self, msg: Msg) {
        self.at_eof.remove(&msg.partition);
        let shard = self.shard(msg.partition);
        self.buffers[shard].push(msg);
        if self.buffers[shard].len() >= self.batch_messages {
            let batch = std::mem::take(&mut self.buffers[shard]);
            self.link.send(shard, Command::Records(batch));
        }
    }

    /// Sends every buffered batch.
    pub fn flush(&mut self) {
        for shard in 0..self.buffers.len() {
            if !self.buffers[shard].is_empty() {
                let batch = std::mem::take(&mut self.buffers[shard]);
                self.link.send(shard, Command::Records(batch));
            }
        }
    }

    /// The partition reached its end at wall-clock `now`: what is buffered goes out, then an
    /// idle tick, and it gets one at every [`Intake::tick`] until a message comes.
    pub fn end_of_partition(&mut self, partition: i32, now: Timestamp) {
        self.flush();
        self.at_eof.insert(partition);
        self.idle(partition, now);
    }

    /// The periodic idle tick: every owned partition at its end is told the wall clock.
    pub fn tick(&mut self, now: Timestamp) {
        let owned = &self.owned;
        self.at_eof.retain(|p| owned.contains(p));
        for partition in self.at_eof.clone() {
            self.idle(partition, now);
        }
    }

    fn idle(&mut self, partition: i32, now: Timestamp) {
        self.link.send(self.shard(partition), Command::Idle { partition, now });
    }

    /// The periodic checkpoint: every shard persists what changed.
    pub fn checkpoint(&mut self) {
        for shard in 0..self.buffers.len() {
            self.link.send(shard, Command::Checkpoint);
        }
    }

    /// Of the durable-checkpoint `reports`, the offsets to commit: those of partitions this
    /// instance still owns (a report of a partition revoked since was committed at the
    /// revocation, and another instance may own it now).
    pub fn committable(&self, reports: impl IntoIterator<Item = Durable>) -> Vec<(i32, u64)> {
        reports
            .into_iter()
            .filter(|r| self.owned.contains(&r.partition))
            .map(|r| (r.partition, r.next_offset))
            .collect()
    }

    /// Shutting down: what is buffered goes out, and every owned partition is checkpointed and
    /// released. Returns the offsets to commit.
    pub fn release_all(&mut self) -> Vec<(i32, u64)> {
        let owned: Vec<i32> = self.owned.iter().copied().collect();
        self.revoked(&owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shards that record what they are told, answering assignments from `resume`.
    #[derive(Default)]
    struct Recorder {
        shards: usize,
        log: Vec<String>,
    }

    impl ShardLink for Recorder {
        fn shard_count(&self) -> usize {
            self.shards
        }
        fn send(&mut self, shard: usize, command: Command) {
            let what = match command {
                Command::Records(batch) => format!("records {:?}", batch.iter().map(|m| m.offset).collect::<Vec<_>>()),
                Command::Idle { partition, .. } => format!("idle p{partition}"),
                Command::Checkpoint => "checkpoint".to_owned(),
                Command::Assign { .. } | Command::Revoke { .. } => unreachable!("through assign and revoke"),
            };
            self.log.push(format!("shard {shard}: {what}"));
        }
        fn assign(&mut self, shard: usize, partition: i32) -> Result<Option<u64>, String> {
            self.log.push(format!("shard {shard}: assign p{partition}"));
            Ok(Some(10 * partition as u64))
        }
        fn revoke(&mut self, shard: usize, partition: i32) -> Option<u64> {
            self.log.push(format!("shard {shard}: revoke p{partition}"));
            Some(100 + partition as u64)
        }
    }

    fn msg(partition: i32, offset: u64) -> Msg {
        Msg { partition, offset, key: None, timestamp: None, payload: Vec::new() }
    }

    #[test]
    fn batches_go_to_the_partitions_shard_when_full_or_flushed_and_before_any_idle_tick() {
        let mut intake = Intake::new(Recorder { shards: 2, ..Recorder::default() }, 2);
        assert_eq!(intake.assigned(&[0, 1, 3]).expect("assigned"), [(0, Some(0)), (1, Some(10)), (3, Some(30))]);
        intake.message(msg(1, 10));
        intake.message(msg(3, 30));
        intake.message(msg(0, 0));
        let now: Timestamp = "2026-11-22T00:00:00Z".parse().expect("constant");
        intake.end_of_partition(0, now);
        intake.tick(now);
        intake.message(msg(0, 1));
        intake.tick(now);
        let log = &intake.link().log;
        assert_eq!(
            log[3..],
            [
                "shard 1: records [10, 30]",
                "shard 0: records [0]",
                "shard 0: idle p0",
                "shard 0: idle p0",
                // A message ends the partition's idle ticks, until its end comes again.
            ]
        );
    }

    #[test]
    fn a_revocation_flushes_first_and_commits_only_what_the_shard_returned() {
        let mut intake = Intake::new(Recorder { shards: 1, ..Recorder::default() }, 100);
        intake.assigned(&[0, 1]).expect("assigned");
        intake.message(msg(1, 10));
        assert_eq!(intake.revoked(&[1]), [(1, 101)]);
        assert_eq!(intake.link().log[2..], ["shard 0: records [10]", "shard 0: revoke p1"]);
        let reports = [Durable { partition: 0, next_offset: 5 }, Durable { partition: 1, next_offset: 11 }];
        assert_eq!(intake.committable(reports), [(0, 5)], "a report of a partition given up is not committed");
        assert_eq!(intake.release_all(), [(0, 100)]);
        assert!(intake.owned().is_empty());
    }
}
