//! What an open window accumulates per merchant and currency.

use serde::{Deserialize, Serialize};

use compact_str::CompactString;
use jiff::Timestamp;

use super::stored::Stored;
use crate::calendar::WindowId;
use crate::instruction::{Kind, Payee};
use crate::money::{Minor, MinorSum};

/// What an accepted instruction did to its batch. Written into the clearing file so a reader
/// can recompute every total from the detail records alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Effect {
    /// A capture: adds to `captures`.
    Captured,
    /// A refund paid to its payee: adds to `refunds` and to a refund credit.
    Refunded,
    /// A refund reversed within the same window: moves no money (its fee stays).
    RefundReversed,
    /// A reversal netted against a refund of the same window: moves no money.
    NettedReversal,
    /// A reversal of a refund paid in an earlier window: adds to `recoveries`.
    Recovery,
}

impl Effect {
    /// Stable code used in the clearing file.
    pub fn code(self) -> &'static str {
        match self {
            Effect::Captured => "CAPTURED",
            Effect::Refunded => "REFUNDED",
            Effect::RefundReversed => "REVERSED",
            Effect::NettedReversal => "NETTED",
            Effect::Recovery => "RECOVERY",
        }
    }

    /// Parses a code back.
    pub fn from_code(code: &str) -> Option<Effect> {
        [Effect::Captured, Effect::Refunded, Effect::RefundReversed, Effect::NettedReversal, Effect::Recovery]
            .into_iter()
            .find(|e| e.code() == code)
    }
}

/// One accepted instruction as netted into a batch: what its clearing record and its credit
/// need, and nothing else (an original's amount and time were needed only to accept it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Detail {
    /// Input order (file line or global sequence); details are kept in this order.
    pub seq: u64,
    /// The instruction's id.
    pub id: CompactString,
    /// Its kind.
    pub kind: Kind,
    /// Its event time.
    pub event_time: Timestamp,
    /// Its amount, in the batch currency's minor units.
    pub amount: Minor,
    /// Its fee (zero when it had none), in the batch currency's minor units.
    pub fee: Minor,
    /// What it refers to: a refund's original transaction, a reversal's refund.
    pub reference: Option<CompactString>,
    /// A refund's payee (boxed: most details are not refunds).
    pub payee: Option<Box<Payee>>,
    /// The window its event time belongs to, when it was netted into a later one.
    pub late_from: Option<WindowId>,
    /// What it did to the batch.
    pub effect: Effect,
    /// Index of the credit that paid it (refunds), filled in when the window closes.
    pub credit: Option<u32>,
}

/// Accepted instructions per type netted into a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Captures.
    pub captures: u64,
    /// Refunds (including ones reversed in the same window).
    pub refunds: u64,
    /// Refund reversals.
    pub reversals: u64,
    /// Late instructions (netted into a window after their own).
    pub late: u64,
}

impl Counts {
    /// All accepted instructions of the batch.
    pub fn total(&self) -> u64 {
        self.captures + self.refunds + self.reversals
    }
}

/// Running totals of one open batch, in its currency's minor units.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct BatchState {
    pub(crate) captures: MinorSum,
    pub(crate) refunds: MinorSum,
    pub(crate) recoveries: MinorSum,
    pub(crate) fees: MinorSum,
    pub(crate) counts: Counts,
    /// Its details, in input order; their strings are in the window's arena.
    pub(crate) details: Vec<Stored>,
}

impl BatchState {
    /// Appends a detail. A full vector grows by half, not by double: a window holds tens of
    /// thousands of batches, each vector's spare room is memory no record uses, and growing by
    /// half keeps about a quarter spare on average instead of about 44%. At 5 M lines it took
    /// 30 MB off the peak; its cost in time did not show beyond the runs' spread
    /// (docs/benchmarks.md).
    pub(crate) fn push_detail(&mut self, stored: Stored) {
        if self.details.len() == self.details.capacity() {
            self.details.reserve_exact((self.details.len() / 2).max(8));
        }
        self.details.push(stored);
    }
}
