//! A revocation commits an offset only when everything below it is settled, dead letters
//! included (found by the simulation, seed 71, once it ran the consumer loop's decisions: the
//! revocation committed past rejects whose publication had failed).

use std::sync::Arc;

use clearhouse_daemon::shard::{Command, LetterSink, Msg, Shard};
use clearhouse_daemon::state_dir::StateDir;
use clearhouse_sim::settings;

/// A dead-letter topic that is down, or up.
struct Broker {
    up: bool,
}

impl LetterSink for Broker {
    fn publish(&mut self, _topic: &str, _letters: &[(String, Vec<u8>)]) -> bool {
        self.up
    }
}

fn revoke_after_a_reject(broker_up: bool) -> Option<u64> {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = settings();
    let state = StateDir::open(dir.path(), &settings.input_topic).expect("state dir");
    let (reports, _) = crossbeam_channel::unbounded();
    let (wake, _) = crossbeam_channel::unbounded();
    let mut shard = Shard::new(Arc::clone(&settings), state, reports, wake, Broker { up: broker_up });
    let (reply, answer) = crossbeam_channel::bounded(1);
    shard.handle(Command::Assign { partition: 0, reply }).expect("assign");
    assert_eq!(answer.recv().expect("answer"), Ok(None), "a new partition starts at the beginning");
    let bad =
        Msg { partition: 0, offset: 0, key: Some(b"k".to_vec()), timestamp: None, payload: b"{not json".to_vec() };
    shard.handle(Command::Records(vec![bad])).expect("records");
    let (reply, answer) = crossbeam_channel::bounded(1);
    shard.handle(Command::Revoke { partition: 0, reply }).expect("revoke checkpoints");
    answer.recv().expect("answer")
}

#[test]
fn a_revocation_commits_nothing_past_a_dead_letter_that_was_not_published() {
    assert_eq!(revoke_after_a_reject(true), Some(1), "published: offset 1 may be committed");
    assert_eq!(revoke_after_a_reject(false), None, "not published: the next owner sends it, then commits");
}
