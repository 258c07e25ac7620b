//! A simulated process's shards as the daemon's consumer loop reaches them: through
//! `ShardLink`, with each command run on the spot instead of on a shard thread.

use clearhouse_daemon::intake::ShardLink;
use clearhouse_daemon::shard::{Command, Shard};
use clearhouse_daemon::state_dir::StateDir;
use crossbeam_channel::bounded;

use crate::world::SimIo;

/// A process's shards, each command run on the spot (the daemon hands them to shard threads).
pub(crate) struct SimLink {
    pub(crate) shards: Vec<Shard<StateDir, SimIo>>,
    /// A shard could not persist its state: the process stops, as the daemon's does.
    pub(crate) failed: bool,
    /// Commands handed to the shards.
    pub(crate) commands: u64,
}

impl ShardLink for SimLink {
    fn shard_count(&self) -> usize {
        self.shards.len()
    }

    fn send(&mut self, shard: usize, command: Command) {
        if !self.failed {
            self.commands += 1;
            self.failed = self.shards[shard].handle(command).is_err();
        }
    }

    fn assign(&mut self, shard: usize, partition: i32) -> Result<Option<u64>, String> {
        let (reply, answer) = bounded(1);
        self.send(shard, Command::Assign { partition, reply });
        answer.try_recv().unwrap_or_else(|_| Err("the shard stopped".to_owned()))
    }

    fn revoke(&mut self, shard: usize, partition: i32) -> Option<u64> {
        let (reply, answer) = bounded(1);
        self.send(shard, Command::Revoke { partition, reply });
        answer.try_recv().ok().flatten()
    }
}
