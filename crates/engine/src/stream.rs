//! Streaming netting of one input partition: the state a daemon checkpoints and hands over.
//!
//! The partition is the unit of state because it is the unit Kafka moves between consumers:
//! instructions are keyed by merchant, so every merchant (and with it all refund state and
//! carried debt) lives in exactly one partition. Each partition keeps its own event-time
//! watermark and seals windows on its own: a window is sealed on a partition once the
//! partition's event time, or the wall clock while the partition is idle, has passed
//! `end + grace`. A window is closed when every partition has sealed it; the fence of a
//! partition is its next offset at the moment it sealed the window.
//!
//! Nothing here reads a clock or touches a file: the caller passes offsets, payloads and the
//! wall-clock instant of an idle tick, and persists [`PartitionState`] as it likes. Replaying
//! the same messages and the same idle ticks from a checkpoint gives the same seals and batches.

use std::sync::Arc;

use clearhouse_domain::parse::{guard_event_time, guard_key};
use clearhouse_domain::{
    parse, Calendar, Instruction, Netter, NetterState, Parsed, Placement, Policy, Reject, RejectReason, SettledBatch,
    WindowId,
};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::dedupe::{Decision, Delivery, IdIndex};
use clearhouse_domain::{DuplicateRecord, RejectRecord, Stats};

/// Seal history entries kept in a checkpoint (enough for any window still being assembled).
const MAX_SEALS: usize = 4096;

/// A point where the partition sealed every window ending at or before `closed_before`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seal {
    /// Windows ending at or before this instant are sealed.
    pub closed_before: Timestamp,
    /// First offset not included in them.
    pub fence: u64,
}

/// A window sealed on this partition, with the partition's batches of it (possibly none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedPart {
    /// The window.
    pub window: WindowId,
    /// First offset of this partition not included.
    pub fence: u64,
    /// The partition's batches of the window, sorted by merchant and currency.
    pub batches: Vec<SettledBatch>,
}

/// The durable state of one partition: what a checkpoint saves and a new owner restores.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PartitionState {
    /// Next offset to apply; everything before it is reflected in this state.
    pub next_offset: u64,
    /// Highest event time of an accepted on-time instruction.
    pub watermark: Option<Timestamp>,
    /// Seal history, oldest first; the last entry is the current horizon.
    pub seals: Vec<Seal>,
    /// Cumulative outcome counts of this partition.
    pub stats: Stats,
    /// Accepted late instructions.
    pub late: u64,
    /// Dead-letter messages `(key, value)` of rejects not yet acknowledged by the broker: saved
    /// with the checkpoint that passes their offsets, so a crash before they are published
    /// cannot lose them (the next owner publishes them again: at-least-once).
    pub dead_letters: Vec<(String, Vec<u8>)>,
    /// The history horizon at the last time history was forgotten (see [`Horizons`]).
    pub forgotten_before: Option<Timestamp>,
    ids: IdIndex,
    netter: NetterState,
}

impl PartitionState {
    /// Windows ending at or before this are sealed here.
    pub fn closed_before(&self) -> Option<Timestamp> {
        self.seals.last().map(|s| s.closed_before)
    }

    /// The fence of `window` on this partition, once sealed.
    pub fn fence_of(&self, window: WindowId) -> Option<u64> {
        seal_of(&self.seals, window).map(|s| s.fence)
    }
}

/// The seal of `window` in a seal history: the first one that covers it.
pub fn seal_of(seals: &[Seal], window: WindowId) -> Option<Seal> {
    seals.iter().find(|s| window.end() <= s.closed_before).copied()
}

/// A borrowed [`PartitionState`]: same fields in the same order, so it serializes identically
/// without copying the netting state.
#[derive(Debug, Serialize)]
#[allow(missing_docs)]
pub struct StateView<'a> {
    pub next_offset: u64,
    pub watermark: Option<Timestamp>,
    pub seals: &'a [Seal],
    pub stats: &'a Stats,
    pub late: u64,
    pub dead_letters: &'a [(String, Vec<u8>)],
    pub forgotten_before: Option<Timestamp>,
    ids: &'a IdIndex,
    netter: &'a NetterState,
}

/// How long a partition waits for late data and how long it remembers.
#[derive(Debug, Clone, Copy)]
pub struct Horizons {
    /// A window is sealed once the partition's event time, or the wall clock while it is idle,
    /// passes the window's end plus this.
    pub grace: SignedDuration,
    /// Added to the refund period: ids, captures, originals and refunds whose event time is
    /// older than the partition's latest event time minus both are forgotten (so its state is
    /// bounded by what can still change), and instructions that old are `history_expired`.
    pub history_margin: SignedDuration,
}

/// History is forgotten when the horizon has moved this far since the last time: the retain
/// passes over the id index and refund history then cost little, and where they happen depends
/// only on the messages (the horizon follows event times), so a replay forgets at the same points.
const FORGET_EVERY: SignedDuration = SignedDuration::from_hours(24);

/// A message of the partition. Besides its value, the key and the record timestamp matter: the
/// key must be the merchant (`partition_key_mismatch`), and the event time may lead the
/// timestamp by at most the policy's skew (`event_time_in_future`). Both come from the log, so a
/// replay decides exactly as the original run did.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// Offset in the partition.
    pub offset: u64,
    /// The message key.
    pub key: Option<&'a [u8]>,
    /// The record's timestamp, when the broker gives one (no future-time check without it).
    pub timestamp: Option<Timestamp>,
    /// The value: one instruction.
    pub payload: &'a [u8],
}

/// What one message did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Netted; `late` when into a later window than its own.
    Accepted {
        /// Netted into the earliest open window because its own was sealed.
        late: bool,
    },
    /// Rejected with a reason.
    Rejected(RejectRecord),
    /// An identical re-delivery.
    Duplicate(DuplicateRecord),
}

/// One partition's live netting state.
#[derive(Debug)]
pub struct Partition {
    calendar: Arc<Calendar>,
    grace: SignedDuration,
    /// Refund period plus history margin.
    history: SignedDuration,
    skew: SignedDuration,
    netter: Netter,
    state: PartitionState,
    sealed: Vec<SealedPart>,
}

impl Partition {
    /// Restores a partition from `state` (or starts it from `PartitionState::default()`).
    pub fn new(calendar: Arc<Calendar>, policy: Arc<Policy>, horizons: Horizons, mut state: PartitionState) -> Self {
        let Horizons { grace, history_margin } = horizons;
        assert!(!grace.is_negative() && !history_margin.is_negative(), "grace and margin must not be negative");
        let skew = policy.max_event_time_skew;
        let history = policy.refund_period + history_margin;
        let netter = Netter::restore(policy, std::mem::take(&mut state.netter));
        Partition { calendar, grace, history, skew, netter, state, sealed: Vec::new() }
    }

    /// Instructions older than this are `history_expired`; history older than it is forgotten.
    pub fn history_horizon(&self) -> Option<Timestamp> {
        self.state.watermark.and_then(|w| w.checked_sub(self.history).ok())
    }

    /// Ids and refund history remembered (what the history horizon bounds).
    pub fn history_len(&self) -> usize {
        self.state.ids.len() + self.netter.history_len()
    }

    /// Next offset to apply.
    pub fn next_offset(&self) -> u64 {
        self.state.next_offset
    }

    /// Cumulative counts.
    pub fn stats(&self) -> &Stats {
        &self.state.stats
    }

    /// Seal history.
    pub fn seals(&self) -> &[Seal] {
        &self.state.seals
    }

    /// Open windows.
    pub fn open_windows(&self) -> usize {
        self.netter.open_windows().count()
    }

    /// The oldest window still open here (its end is when it was due to close, plus grace).
    pub fn oldest_open_window(&self) -> Option<WindowId> {
        self.netter.open_windows().next()
    }

    /// Instructions in open windows.
    pub fn open_instructions(&self) -> usize {
        self.netter.open_details()
    }

    /// Applies the message at `offset`. Offsets may skip (compaction, transaction markers) but
    /// never go back: an offset below `next_offset` is already reflected and is ignored (`None`).
    pub fn apply(&mut self, message: Message<'_>) -> Option<Outcome> {
        let offset = message.offset;
        if offset < self.state.next_offset {
            return None;
        }
        self.state.next_offset = offset + 1;
        self.state.stats.input += 1;
        let outcome = self.classify(message);
        match &outcome {
            Outcome::Accepted { late } => {
                self.state.stats.accepted += 1;
                self.state.late += u64::from(*late);
            }
            Outcome::Rejected(record) => self.state.stats.reject(record.reject.reason),
            Outcome::Duplicate(_) => self.state.stats.duplicates += 1,
        }
        assert!(self.state.stats.balances(), "partition inputs not accounted for: {:?}", self.state.stats);
        Some(outcome)
    }

    fn classify(&mut self, message: Message<'_>) -> Outcome {
        let Message { offset, key, timestamp, payload } = message;
        let reject = |id, reject| Outcome::Rejected(RejectRecord::new(offset, id, reject, payload));
        let mut parsed = guard_key(parse(payload), key);
        if let Some(timestamp) = timestamp {
            parsed = guard_event_time(parsed, timestamp, self.skew, "the message's timestamp");
        }
        let horizon = self.history_horizon();
        // A refused message has no trusted event time: it is remembered as of the watermark.
        let time = match &parsed {
            Parsed::Valid { instruction, .. } if horizon.is_some_and(|h| instruction.event_time < h) => {
                let message = format!(
                    "event_time {} is more than {} days (refund period plus history margin) before this partition's latest event time {}: its ids and refunds are no longer remembered",
                    instruction.event_time,
                    self.history.as_hours() / 24,
                    self.state.watermark.map(|w| w.to_string()).unwrap_or_default()
                );
                let r = Reject::field(RejectReason::HistoryExpired, "event_time", message);
                return reject(Some(instruction.id.clone()), r);
            }
            Parsed::Valid { instruction, .. } => instruction.event_time.as_second(),
            Parsed::Invalid { .. } => self.state.watermark.map_or(0, |w| w.as_second()),
        };
        match self.state.ids.decide(parsed, Delivery { position: offset, unit: "offset", time }) {
            Decision::Net(instruction) => self.net(offset, &instruction, payload),
            Decision::Reject(id, r) => reject(id, r),
            Decision::Duplicate(duplicate) => Outcome::Duplicate(duplicate),
        }
    }

    fn net(&mut self, offset: u64, instruction: &Instruction, payload: &[u8]) -> Outcome {
        let event_time = instruction.event_time;
        let own = self.calendar.window_of(event_time);
        let place = Placement::of(&self.calendar, own, self.state.closed_before());
        match self.netter.apply(offset, instruction, place) {
            Ok(()) => {
                if place.late_from.is_none() && self.state.watermark.is_none_or(|w| event_time > w) {
                    self.state.watermark = Some(event_time);
                    self.advance(event_time - self.grace);
                    self.forget();
                }
                Outcome::Accepted { late: place.late_from.is_some() }
            }
            Err(r) => Outcome::Rejected(RejectRecord::new(offset, Some(instruction.id.clone()), r, payload)),
        }
    }

    /// Forgets the history older than the horizon, once it has moved [`FORGET_EVERY`] since the
    /// last time.
    fn forget(&mut self) {
        let Some(horizon) = self.history_horizon() else { return };
        if self.state.forgotten_before.is_some_and(|f| horizon < f + FORGET_EVERY) {
            return;
        }
        self.state.ids.expire(horizon.as_second());
        self.netter.expire(horizon);
        self.state.forgotten_before = Some(horizon);
    }

    /// The partition has no backlog at wall-clock instant `now`: windows whose `end + grace`
    /// has passed are sealed, so an idle partition never holds a window open.
    pub fn idle(&mut self, now: Timestamp) {
        self.advance(now - self.grace);
    }

    /// Seals every window ending at or before the start of the window containing `horizon`.
    fn advance(&mut self, horizon: Timestamp) {
        let closed_before = self.calendar.window_of(horizon).start;
        if self.state.closed_before().is_some_and(|c| c >= closed_before) {
            return;
        }
        let fence = self.state.next_offset;
        self.state.seals.push(Seal { closed_before, fence });
        if self.state.seals.len() > MAX_SEALS {
            self.state.seals.remove(0);
        }
        loop {
            let next = self.netter.open_windows().next();
            let Some(window) = next.filter(|w| w.end() <= closed_before) else { break };
            let (closed, batches) = self.netter.close_earliest().expect("an open window to close");
            assert_eq!(closed, window, "windows close oldest first");
            self.sealed.push(SealedPart { window, fence, batches });
        }
    }

    /// Windows sealed since the last call, oldest first.
    pub fn take_sealed(&mut self) -> Vec<SealedPart> {
        std::mem::take(&mut self.sealed)
    }

    /// Queues dead-letter messages to be saved with the next checkpoint.
    pub fn queue_dead_letters(&mut self, messages: impl IntoIterator<Item = (String, Vec<u8>)>) {
        self.state.dead_letters.extend(messages);
    }

    /// Dead-letter messages saved (or to be saved) but not yet acknowledged.
    pub fn dead_letters(&self) -> &[(String, Vec<u8>)] {
        &self.state.dead_letters
    }

    /// The broker acknowledged every queued dead letter.
    pub fn dead_letters_published(&mut self) {
        self.state.dead_letters.clear();
    }

    /// True when sealed windows wait for [`Partition::take_sealed`].
    pub fn has_sealed(&self) -> bool {
        !self.sealed.is_empty()
    }

    /// The durable state, for a checkpoint; serializes exactly like [`PartitionState`]. Sealed
    /// parts must have been taken (and persisted) first: the checkpoint records their seals.
    pub fn checkpoint(&self) -> StateView<'_> {
        assert!(self.sealed.is_empty(), "checkpoint with sealed windows not yet persisted");
        let s = &self.state;
        StateView {
            next_offset: s.next_offset,
            watermark: s.watermark,
            seals: &s.seals,
            stats: &s.stats,
            late: s.late,
            dead_letters: &s.dead_letters,
            forgotten_before: s.forgotten_before,
            ids: &s.ids,
            netter: self.netter.state(),
        }
    }
}

#[cfg(test)]
mod tests;
