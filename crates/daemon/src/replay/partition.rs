//! One partition replayed: its messages from the beginning of the log, in offset order, sealed
//! where the original run sealed them (each original seal applied before the first message at or
//! past its fence) and by event time. The Kafka replay feeds it from the topic; the simulator
//! feeds it the simulated log, to check that a replay reproduces a run's files.

use std::collections::VecDeque;
use std::sync::Arc;

use clearhouse_engine::stream::{Message, Partition, PartitionState, Seal, SealedPart};
use jiff::{SignedDuration, Timestamp};

use super::OriginalSeals;
use crate::Settings;

/// A partition being replayed.
pub struct PartitionReplay {
    partition: Partition,
    grace: SignedDuration,
    /// The original seals not applied yet: (fence, closed_before), in fence order.
    pending: VecDeque<(u64, Timestamp)>,
    history: Vec<Seal>,
    sealed: Vec<SealedPart>,
    read: u64,
}

/// What a partition's replay produced.
#[derive(Debug, Clone)]
pub struct Replayed {
    /// Messages read.
    pub read: u64,
    /// Its parts of the windows it sealed, oldest first.
    pub parts: Vec<SealedPart>,
    /// Its seals, oldest first.
    pub seals: Vec<Seal>,
}

impl PartitionReplay {
    /// A replay from an empty state, applying `seals` (the original run's, for this partition).
    pub fn new(settings: &Settings, seals: &OriginalSeals) -> PartitionReplay {
        let calendar = Arc::clone(&settings.calendar);
        let partition =
            Partition::new(calendar, Arc::clone(&settings.policy), settings.horizons(), PartitionState::default());
        PartitionReplay {
            partition,
            grace: settings.grace,
            pending: seals.iter().copied().collect(),
            history: Vec::new(),
            sealed: Vec::new(),
            read: 0,
        }
    }

    /// Applies the next message of the partition.
    pub fn message(&mut self, message: Message<'_>) {
        self.seal_up_to(message.offset);
        self.partition.apply(message);
        self.record();
        self.read += 1;
    }

    /// The end of the replayed range (`end`, exclusive): the original seals up to it are applied.
    pub fn finish(mut self, end: u64) -> Replayed {
        self.seal_up_to(end);
        Replayed { read: self.read, parts: self.sealed, seals: self.history }
    }

    /// Applies every original seal whose fence is at or before `offset`.
    fn seal_up_to(&mut self, offset: u64) {
        while let Some(&(fence, closed)) = self.pending.front() {
            if fence > offset {
                break;
            }
            self.partition.idle(closed + self.grace);
            self.pending.pop_front();
            self.record();
        }
    }

    /// Takes newly sealed parts and the newest seal, if it is new.
    fn record(&mut self) {
        self.sealed.extend(self.partition.take_sealed());
        if let Some(&last) = self.partition.seals().last() {
            if self.history.last() != Some(&last) {
                self.history.push(last);
            }
        }
    }
}
