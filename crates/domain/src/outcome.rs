//! What became of each input besides netting: reject records, duplicates and the outcome
//! counts. Plain data, here rather than in the engine, because the output formats write them and
//! should not depend on the engine to do so.

use std::collections::BTreeMap;

use crate::parse::KEPT_PAYLOAD_BYTES;
use crate::reject::{Reject, RejectReason};
use compact_str::CompactString;

/// A rejected input: where it came from, why, and its raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectRecord {
    /// Source position (file line).
    pub position: u64,
    /// The instruction id, when one could be read.
    pub id: Option<CompactString>,
    /// Reason, field and message.
    pub reject: Reject,
    /// The raw message.
    pub payload: Vec<u8>,
}

impl RejectRecord {
    /// A reject of `payload`, keeping at most [`KEPT_PAYLOAD_BYTES`] of a message too large to
    /// read (the reject's message carries its length and SHA-256).
    pub fn new(position: u64, id: Option<CompactString>, reject: Reject, payload: &[u8]) -> RejectRecord {
        let kept = if reject.reason == RejectReason::TooLarge {
            &payload[..payload.len().min(KEPT_PAYLOAD_BYTES)]
        } else {
            payload
        };
        RejectRecord { position, id, reject, payload: kept.to_vec() }
    }
}

/// An identical re-delivery: counted, no effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateRecord {
    /// Source position of the re-delivery.
    pub position: u64,
    /// The instruction id.
    pub id: CompactString,
    /// Source position of the first delivery with this content.
    pub first_position: u64,
}

/// Outcome counts. `input = accepted + rejected + duplicates` always holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    /// Messages read.
    pub input: u64,
    /// Netted into a batch.
    pub accepted: u64,
    /// Duplicates (identical re-deliveries).
    pub duplicates: u64,
    /// Rejected, by reason.
    pub rejected: BTreeMap<RejectReason, u64>,
}

impl Stats {
    /// Total rejected.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    /// True when every input is accounted for.
    pub fn balances(&self) -> bool {
        self.input == self.accepted + self.rejected_total() + self.duplicates
    }

    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &Stats) {
        self.input += other.input;
        self.accepted += other.accepted;
        self.duplicates += other.duplicates;
        for (reason, n) in &other.rejected {
            *self.rejected.entry(*reason).or_default() += n;
        }
    }

    /// Counts one reject for `reason`.
    pub fn reject(&mut self, reason: RejectReason) {
        *self.rejected.entry(reason).or_default() += 1;
    }
}
