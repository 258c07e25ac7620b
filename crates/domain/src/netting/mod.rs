//! The netting state machine of one shard.
//!
//! It sees every instruction of the merchants it owns, in input order, and nothing else: all
//! state is keyed by merchant, so splitting merchants over any number of shards gives the same
//! results. It does no I/O and reads no clock; the caller decides which window an instruction is
//! netted into (its event window, or a later one when it arrives late) and when windows close.

mod batch;
mod settle;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use compact_str::CompactString;
use foldhash::fast::RandomState;
use jiff::Timestamp;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_128;

use crate::calendar::WindowId;
use crate::instruction::{Body, Instruction, RefundFields};
use crate::money::Currency;
use crate::policy::Policy;
use crate::reject::{Reject, RejectReason};
use batch::BatchState;

pub use batch::{Counts, Detail, Effect};

pub use settle::{end_to_end_id, Credit, CreditKind, SettledBatch, Totals};

type Map<K, V> = HashMap<K, V, RandomState>;
type BatchKey = (CompactString, Currency);

/// A 128-bit hash standing for an id (or a merchant and an id) in the history maps: 16 bytes
/// instead of one or two strings, compared in one instruction. Two different keys collide with
/// probability about 2^-128 per pair (docs/decisions.md).
type Key = u128;

/// The key of transaction `id` of `merchant` (a capture, or the original of refunds).
fn original_key(merchant: &str, id: &str) -> Key {
    let mut bytes = Vec::with_capacity(merchant.len() + id.len() + 1);
    bytes.extend_from_slice(merchant.as_bytes());
    bytes.push(0xff); // never in an id: keeps ("ab","c") apart from ("a","bc")
    bytes.extend_from_slice(id.as_bytes());
    xxh3_128(&bytes)
}

/// The key of an id on its own: a refund's (ids are unique across merchants), or a merchant's.
fn id_key(id: &str) -> Key {
    xxh3_128(id.as_bytes())
}

/// Where an instruction is netted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// The open window it is netted into.
    pub window: WindowId,
    /// Its own (event-time) window when that had already closed.
    pub late_from: Option<WindowId>,
}

/// Refund state per (merchant, original transaction).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct OriginalState {
    original_amount: Decimal,
    currency: Currency,
    refunded: Decimal,
    /// The original's time the first accepted refund was held to (what expiry goes by).
    original_time: Timestamp,
}

/// What a later refund of an accepted capture is held to: the spec's rule that a refund never
/// exceeds a capture the engine has seen, whatever the refund declares about its original.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct CaptureRecord {
    currency: Currency,
    amount: Decimal,
    event_time: Timestamp,
}

/// What a later reversal needs to know about an accepted refund.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RefundRecord {
    /// The merchant's key (`id_key` of its id): a reversal must come from the same merchant.
    merchant: Key,
    /// The key of its original in `originals`.
    original: Key,
    currency: Currency,
    amount: Decimal,
    event_time: Timestamp,
    window: WindowId,
    detail_index: usize,
    reversed: bool,
}

/// Netting state of one shard: open windows and per-merchant refund history.
#[derive(Debug)]
pub struct Netter {
    policy: Arc<Policy>,
    state: NetterState,
}

/// Everything a `Netter` remembers, apart from its policy: what a checkpoint saves.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NetterState {
    open: BTreeMap<WindowId, Map<BatchKey, BatchState>>,
    originals: Map<Key, OriginalState>,
    refunds: Map<Key, RefundRecord>,
    captures: Map<Key, CaptureRecord>,
    carried: Map<BatchKey, Decimal>,
    last_closed: Option<WindowId>,
}

impl Netter {
    /// An empty shard state under `policy`.
    pub fn new(policy: Arc<Policy>) -> Netter {
        Netter { policy, state: NetterState::default() }
    }

    /// A shard state restored from a checkpoint, under `policy`.
    pub fn restore(policy: Arc<Policy>, state: NetterState) -> Netter {
        Netter { policy, state }
    }

    /// The state to checkpoint.
    pub fn state(&self) -> &NetterState {
        &self.state
    }

    /// Instructions netted into open windows.
    pub fn open_details(&self) -> usize {
        self.state.open.values().flat_map(|w| w.values()).map(|b| b.details.len()).sum()
    }

    /// Ids of open windows, oldest first.
    pub fn open_windows(&self) -> impl Iterator<Item = WindowId> + '_ {
        self.state.open.keys().copied()
    }

    /// Forgets the history older than `before`: captures and refunds whose event time, and
    /// originals whose time, is before it. Open windows and carried debt are kept. The daemon
    /// calls it as its partition's history horizon advances (`engine::stream`); what an
    /// instruction referring to forgotten history gets is in docs/decisions.md.
    pub fn expire(&mut self, before: Timestamp) {
        self.state.captures.retain(|_, c| c.event_time >= before);
        self.state.originals.retain(|_, o| o.original_time >= before);
        self.state.refunds.retain(|_, r| r.event_time >= before);
    }

    /// Remembered captures, originals and refunds (what [`Netter::expire`] bounds).
    pub fn history_len(&self) -> usize {
        self.state.captures.len() + self.state.originals.len() + self.state.refunds.len()
    }

    /// The newest window closed so far.
    pub fn last_closed(&self) -> Option<WindowId> {
        self.state.last_closed
    }

    /// Validates `instruction` against the shard's state and nets it into `place.window`.
    /// On rejection the state is unchanged.
    pub fn apply(&mut self, seq: u64, instruction: Instruction, place: Placement) -> Result<(), Reject> {
        assert!(
            self.state.last_closed.is_none_or(|closed| place.window > closed),
            "instruction {seq} placed into closed window {}",
            place.window
        );
        if !self.policy.knows(&instruction.merchant_id) {
            let message = format!("merchant {} is not in the merchant registry", instruction.merchant_id);
            return Err(Reject::field(RejectReason::UnknownMerchant, "merchant_id", message));
        }
        let effect = match &instruction.body {
            Body::Capture => self.capture(&instruction),
            Body::Refund(refund) => self.refund(&instruction, refund, place, seq),
            Body::RefundReversal { reverses } => self.reversal(&instruction, reverses, place),
        }?;
        let batch = self.batch(place.window, &instruction);
        batch.fees += instruction.fee;
        match effect {
            Effect::Captured => {
                batch.captures += instruction.amount;
                batch.counts.captures += 1;
            }
            Effect::Refunded => {
                batch.refunds += instruction.amount;
                batch.counts.refunds += 1;
            }
            Effect::Recovery => {
                batch.recoveries += instruction.amount;
                batch.counts.reversals += 1;
            }
            Effect::NettedReversal => batch.counts.reversals += 1,
            Effect::RefundReversed => unreachable!("only assigned to an earlier detail"),
        }
        if place.late_from.is_some() {
            batch.counts.late += 1;
        }
        batch.details.push(Detail::new(seq, instruction, place.late_from, effect));
        Ok(())
    }

    fn batch(&mut self, window: WindowId, instruction: &Instruction) -> &mut BatchState {
        self.state
            .open
            .entry(window)
            .or_default()
            .entry((instruction.merchant_id.clone(), instruction.currency))
            .or_default()
    }

    fn capture(&mut self, instruction: &Instruction) -> Result<Effect, Reject> {
        let key = original_key(&instruction.merchant_id, &instruction.id);
        let record = CaptureRecord {
            currency: instruction.currency,
            amount: instruction.amount,
            event_time: instruction.event_time,
        };
        self.state.captures.insert(key, record);
        Ok(Effect::Captured)
    }

    fn refund(
        &mut self,
        ins: &Instruction,
        refund: &RefundFields,
        place: Placement,
        seq: u64,
    ) -> Result<Effect, Reject> {
        let original_key = original_key(&ins.merchant_id, &refund.original_transaction_id);
        let capture = self.state.captures.get(&original_key).copied();
        let original_time = capture.map_or(refund.original_time, |c| c.event_time);
        if let Some(c) = capture {
            let source = format!("capture {}", refund.original_transaction_id);
            check_stated_original(ins, refund, c.currency, c.amount, &source)?;
        }
        if ins.event_time < original_time {
            let message = format!("refund at {} is before its original at {original_time}", ins.event_time);
            return Err(Reject::field(RejectReason::RefundBeforeOriginal, "event_time", message));
        }
        if ins.event_time.duration_since(original_time) > self.policy.refund_period {
            let days = self.policy.refund_period.as_hours() / 24;
            let message = format!("refund at {} is more than {days} days after its original", ins.event_time);
            return Err(Reject::field(RejectReason::RefundPeriodExpired, "event_time", message));
        }
        let refunded = match self.state.originals.get(&original_key) {
            Some(state) => check_against_original(ins, refund, state)?,
            None if ins.amount > refund.original_amount => {
                return Err(exceeds(ins, Decimal::ZERO, refund.original_amount))
            }
            None => Decimal::ZERO,
        };
        let batch = self.state.open.get(&place.window).and_then(|w| w.get(&(ins.merchant_id.clone(), ins.currency)));
        let (count, total, detail_index) =
            batch.map_or((0, Decimal::ZERO, 0), |b| (b.counts.refunds, b.refunds, b.details.len()));
        self.check_limits(ins, place.window, count, total)?;
        let first_time = self.state.originals.get(&original_key).map_or(original_time, |o| o.original_time);
        self.state.originals.insert(
            original_key,
            OriginalState {
                original_amount: refund.original_amount,
                currency: ins.currency,
                refunded: refunded + ins.amount,
                original_time: first_time,
            },
        );
        let record = RefundRecord {
            merchant: id_key(&ins.merchant_id),
            original: original_key,
            currency: ins.currency,
            amount: ins.amount,
            event_time: ins.event_time,
            window: place.window,
            detail_index,
            reversed: false,
        };
        let previous = self.state.refunds.insert(id_key(&ins.id), record);
        assert!(previous.is_none(), "refund id {} accepted twice (seq {seq})", ins.id);
        Ok(Effect::Refunded)
    }

    /// Refund limits against the batch's accepted refunds so far (`count`, `total`).
    fn check_limits(&self, ins: &Instruction, window: WindowId, count: u64, total: Decimal) -> Result<(), Reject> {
        let limits = self.policy.limits_for(&ins.merchant_id);
        if limits.max_count.is_some_and(|max| count >= u64::from(max)) {
            let message = format!("merchant {} reached its limit of refunds in window {window}", ins.merchant_id);
            return Err(Reject::new(RejectReason::MerchantLimitExceeded, message));
        }
        if let Some(max) = limits.max_amount.get(&ins.currency) {
            if total + ins.amount > *max {
                let message = format!(
                    "merchant {} would exceed its refund limit of {} {} in window {window}",
                    ins.merchant_id,
                    ins.currency.format(*max),
                    ins.currency
                );
                return Err(Reject::new(RejectReason::MerchantLimitExceeded, message));
            }
        }
        Ok(())
    }

    fn reversal(&mut self, ins: &Instruction, reverses: &str, place: Placement) -> Result<Effect, Reject> {
        let record = match self.state.refunds.get_mut(&id_key(reverses)) {
            Some(record) if record.merchant == id_key(&ins.merchant_id) => record,
            _ => {
                let message = format!("merchant {} has no accepted refund {reverses}", ins.merchant_id);
                return Err(Reject::field(RejectReason::ReversalUnknownRefund, "reverses", message));
            }
        };
        if record.reversed {
            return Err(Reject::field(
                RejectReason::ReversalAlreadyApplied,
                "reverses",
                format!("refund {reverses} was already reversed"),
            ));
        }
        if record.currency != ins.currency {
            let message = format!("reversal in {} of a refund in {}", ins.currency, record.currency);
            return Err(Reject::field(RejectReason::CurrencyMismatch, "currency", message));
        }
        if record.amount != ins.amount {
            let message = format!(
                "reversal amount {} differs from refund amount {}",
                ins.currency.format(ins.amount),
                ins.currency.format(record.amount)
            );
            return Err(Reject::field(RejectReason::ReversalAmountMismatch, "amount", message));
        }
        if ins.event_time < record.event_time {
            let message =
                format!("reversal at {} is before refund {reverses} at {}", ins.event_time, record.event_time);
            return Err(Reject::field(RejectReason::ReversalBeforeRefund, "event_time", message));
        }
        record.reversed = true;
        let (refund_window, detail_index, amount) = (record.window, record.detail_index, record.amount);
        // The original may be forgotten (its time is before the history horizon, the refund's
        // is not): then nothing remembers what was refunded of it, and nothing needs to.
        if let Some(original) = self.state.originals.get_mut(&record.original) {
            original.refunded -= amount;
            assert!(original.refunded >= Decimal::ZERO, "refunded-so-far went negative reversing {reverses}");
        }
        if refund_window != place.window {
            return Ok(Effect::Recovery);
        }
        let batch = self.batch(place.window, ins);
        let refund = &mut batch.details[detail_index];
        assert!(refund.id == reverses && refund.effect == Effect::Refunded, "refund detail index out of step");
        refund.effect = Effect::RefundReversed;
        batch.refunds -= amount;
        Ok(Effect::NettedReversal)
    }
}

/// A refund is held to its original as the engine knows it: the capture it accepted, or else what
/// the first accepted refund of that original stated. Same currency, same original amount (so
/// the cap is that amount, not a number each refund chooses).
fn check_stated_original(
    ins: &Instruction,
    refund: &RefundFields,
    currency: Currency,
    amount: Decimal,
    source: &str,
) -> Result<(), Reject> {
    if currency != ins.currency {
        let message = format!("refund in {} of {source} in {currency}", ins.currency);
        return Err(Reject::field(RejectReason::CurrencyMismatch, "currency", message));
    }
    if refund.original_amount != amount {
        let message = format!(
            "original_amount {} differs from {}, the amount of {source}",
            ins.currency.format(refund.original_amount),
            ins.currency.format(amount)
        );
        return Err(Reject::field(RejectReason::OriginalAmountMismatch, "original_amount", message));
    }
    Ok(())
}

fn check_against_original(ins: &Instruction, refund: &RefundFields, state: &OriginalState) -> Result<Decimal, Reject> {
    let source = format!("original {} as its first refund stated", refund.original_transaction_id);
    check_stated_original(ins, refund, state.currency, state.original_amount, &source)?;
    if state.refunded + ins.amount > state.original_amount {
        return Err(exceeds(ins, state.refunded, state.original_amount));
    }
    Ok(state.refunded)
}

fn exceeds(ins: &Instruction, refunded: Decimal, original: Decimal) -> Reject {
    let message =
        format!("refund of {} on top of {refunded} already refunded exceeds the original {original}", ins.amount);
    Reject::field(RejectReason::RefundExceedsOriginal, "amount", message)
}

#[cfg(test)]
mod tests;
