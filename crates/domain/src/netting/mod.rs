//! The netting state machine of one shard.
//!
//! It sees every instruction of the merchants it owns, in input order, and nothing else: all
//! state is keyed by merchant, so splitting merchants over any number of shards gives the same
//! results. It does no I/O and reads no clock; the caller decides which window an instruction is
//! netted into (its event window, or a later one when it arrives late) and when windows close.

mod batch;
mod batched;
mod closed;
mod credits;
mod merchants;
mod refund_checks;
mod refund_record;
mod settle;
mod stored;
mod time;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use foldhash::fast::RandomState;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_128;

use crate::calendar::{Calendar, Window, WindowId};
use crate::instruction::{Body, Instruction, RefundFields};
use crate::money::{Currency, Minor, MinorSum};
use crate::policy::Policy;
use crate::reject::{Reject, RejectReason};
use crate::sliced::SlicedMap;
use batch::BatchState;
use batched::Keys;
use merchants::{MerchantHandle, Merchants};
use refund_checks::{check_against_original, check_stated_original, exceeds, Source};
use refund_record::RefundRecord;
use stored::{Stored, Strings};
use time::Time;

pub use batch::{Counts, Detail, Effect};
pub use closed::{DetailTooLarge, DetailView, Details};
pub use credits::{CreditTooLarge, CreditView, Credits};

pub use settle::{Credit, CreditKind, EndToEndId, EndToEndIds, SettledBatch, Totals};

type Map<K, V> = HashMap<K, V, RandomState>;

/// A batch is one merchant's instructions in one currency (within one window).
type BatchKey = (MerchantHandle, Currency);

/// A 128-bit hash standing for an id (or a merchant and an id) in the history maps: 16 bytes
/// instead of one or two strings, compared in one instruction. Two different keys collide with
/// probability about 2^-128 per pair (docs/decisions.md).
type Key = u128;

/// The key of transaction `id` of `merchant` (a capture, or the original of refunds).
fn original_key(merchant: &str, id: &str) -> Key {
    let len = merchant.len() + id.len() + 1;
    // Most keys fit 64 bytes; the buffer is zeroed on every call, so it is kept small.
    let mut stack = [0u8; 64];
    let mut heap = Vec::new();
    let bytes = if len <= stack.len() {
        &mut stack[..len]
    } else {
        heap.resize(len, 0);
        &mut heap[..]
    };
    bytes[..merchant.len()].copy_from_slice(merchant.as_bytes());
    bytes[merchant.len()] = 0xff; // never in an id: keeps ("ab","c") apart from ("a","bc")
    bytes[merchant.len() + 1..].copy_from_slice(id.as_bytes());
    xxh3_128(bytes)
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

impl Placement {
    /// Where an instruction whose own (event-time) window is `own` is netted while every window
    /// ending at or before `closed_before` is closed: its own window, or, when that one is
    /// closed, the window containing `closed_before` (the earliest still open), as a late
    /// instruction. File mode closes nothing before its input ends (`None`); the daemon's
    /// partitions pass their seal horizon. The one rule for both.
    pub fn of(calendar: &Calendar, own: Window, closed_before: Option<Timestamp>) -> Placement {
        match closed_before {
            Some(closed) if own.end <= closed => {
                Placement { window: calendar.window_of(closed).id, late_from: Some(own.id) }
            }
            _ => Placement { window: own.id, late_from: None },
        }
    }
}

/// Refund state per (merchant, original transaction).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct OriginalState {
    original_amount: Minor,
    currency: Currency,
    refunded: Minor,
    /// The original's time the first accepted refund was held to (what expiry goes by).
    original_time: Time,
}

/// What a later refund of an accepted capture is held to: the spec's rule that a refund never
/// exceeds a capture the engine has seen, whatever the refund declares about its original.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct CaptureRecord {
    currency: Currency,
    amount: Minor,
    event_time: Time,
}

// The history records stay the sizes the memory budget counts on (docs/benchmarks.md): with
// their 16-byte keys, buckets of 40 and 48 bytes.
const _: () = assert!(std::mem::size_of::<CaptureRecord>() == 24);
const _: () = assert!(std::mem::size_of::<OriginalState>() == 32);

/// An open window: its batches, and the strings of their details.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct OpenWindow {
    batches: Map<BatchKey, BatchState>,
    strings: Strings,
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
    merchants: Merchants,
    open: BTreeMap<WindowId, OpenWindow>,
    originals: SlicedMap<OriginalState>,
    refunds: SlicedMap<RefundRecord>,
    captures: SlicedMap<CaptureRecord>,
    carried: Map<BatchKey, MinorSum>,
    last_closed: Option<WindowId>,
}

impl Netter {
    /// An empty shard state under `policy`.
    pub fn new(policy: Arc<Policy>) -> Netter {
        Netter { policy, state: NetterState::default() }
    }

    /// A shard state restored from a checkpoint, under `policy`.
    pub fn restore(policy: Arc<Policy>, mut state: NetterState) -> Netter {
        state.merchants.reindex();
        Netter { policy, state }
    }

    /// The state to checkpoint.
    pub fn state(&self) -> &NetterState {
        &self.state
    }

    /// Instructions netted into open windows.
    pub fn open_details(&self) -> usize {
        self.state.open.values().flat_map(|w| w.batches.values()).map(|b| b.details.len()).sum()
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
        self.state.captures.retain(|_, c| c.event_time.get() >= before);
        self.state.originals.retain(|_, o| o.original_time.get() >= before);
        self.state.refunds.retain(|_, r| r.event_time() >= before);
        // A merchant nothing refers to any more (no open batch, no carried debt, no refund a
        // reversal could name) is forgotten too: its handle is free for the next new merchant.
        let state = &self.state;
        let open = state.open.values().flat_map(|w| w.batches.keys()).map(|(m, _)| *m);
        let carried = state.carried.keys().map(|(m, _)| *m);
        let referred = state.refunds.values().map(|r| r.merchant);
        let live: std::collections::HashSet<MerchantHandle> = open.chain(carried).chain(referred).collect();
        self.state.merchants.retain(&live);
    }

    /// Merchants remembered (what [`Netter::expire`] also bounds).
    pub fn merchants_len(&self) -> usize {
        self.state.merchants.len()
    }

    /// Remembered captures, originals and refunds (what [`Netter::expire`] bounds).
    pub fn history_len(&self) -> usize {
        self.state.captures.len() + self.state.originals.len() + self.state.refunds.len()
    }

    /// Lays each history table (captures, originals, refunds) out for the `expected(len)`
    /// entries it should hold at the end, `len` being what it holds now: file mode sizes the
    /// tables once for the whole input instead of doubling them all the way (`engine`'s
    /// presizing, `SlicedMap::reserve_total`).
    pub fn reserve_history(&mut self, expected: impl Fn(usize) -> usize) {
        let state = &mut self.state;
        state.captures.reserve_total(expected(state.captures.len()));
        state.originals.reserve_total(expected(state.originals.len()));
        state.refunds.reserve_total(expected(state.refunds.len()));
    }

    /// The newest window closed so far.
    pub fn last_closed(&self) -> Option<WindowId> {
        self.state.last_closed
    }

    /// Validates `instruction` against the shard's state and nets it into `place.window`.
    /// On rejection the state is unchanged.
    pub fn apply(&mut self, seq: u64, instruction: &Instruction, place: Placement) -> Result<(), Reject> {
        self.apply_keyed(seq, instruction, place, Keys::of(instruction))
    }

    /// [`Netter::apply`] with the instruction's history keys already built.
    fn apply_keyed(&mut self, seq: u64, instruction: &Instruction, place: Placement, keys: Keys) -> Result<(), Reject> {
        assert!(
            self.state.last_closed.is_none_or(|closed| place.window > closed),
            "instruction {seq} placed into closed window {}",
            place.window
        );
        if !self.policy.knows(&instruction.merchant_id) {
            let message = format!("merchant {} is not in the merchant registry", instruction.merchant_id);
            return Err(Reject::field(RejectReason::UnknownMerchant, "merchant_id", message));
        }
        let currency = instruction.currency;
        let (amount, fee) = (currency.minor(instruction.amount), currency.minor(instruction.fee));
        // Looked up, not interned: a rejected instruction leaves no trace, not even its merchant.
        let merchant = self.state.merchants.get(&instruction.merchant_id);
        let effect = match (&instruction.body, keys) {
            (Body::Capture, Keys::Capture { own }) => self.capture(instruction, amount, own),
            (Body::Refund(refund), Keys::Refund { original, own }) => {
                self.refund(instruction, refund, (merchant, amount), place, (original, own))
            }
            (Body::RefundReversal { reverses }, Keys::Reversal { reversed }) => {
                self.reversal(instruction, reverses, (merchant, amount), place, reversed)
            }
            _ => unreachable!("history keys built for another kind of instruction (seq {seq})"),
        }?;
        let merchant = merchant.unwrap_or_else(|| self.state.merchants.intern(&instruction.merchant_id));
        let window = self.state.open.entry(place.window).or_default();
        let stored = Stored::new(seq, instruction, (amount, fee), place.late_from, effect, &mut window.strings);
        let batch = window.batches.entry((merchant, currency)).or_default();
        batch.fees += MinorSum::from(fee);
        let amount_sum = MinorSum::from(amount);
        match effect {
            Effect::Captured => {
                batch.captures += amount_sum;
                batch.counts.captures += 1;
            }
            Effect::Refunded => {
                batch.refunds += amount_sum;
                batch.counts.refunds += 1;
            }
            Effect::Recovery => {
                batch.recoveries += amount_sum;
                batch.counts.reversals += 1;
            }
            Effect::NettedReversal => batch.counts.reversals += 1,
            Effect::RefundReversed => unreachable!("only assigned to an earlier detail"),
        }
        if place.late_from.is_some() {
            batch.counts.late += 1;
        }
        batch.push_detail(stored);
        Ok(())
    }

    /// A capture of `amount`, whose own key in `captures` is `key`.
    fn capture(&mut self, instruction: &Instruction, amount: Minor, key: Key) -> Result<Effect, Reject> {
        let record =
            CaptureRecord { currency: instruction.currency, amount, event_time: instruction.event_time.into() };
        self.state.captures.insert(key, record);
        Ok(Effect::Captured)
    }

    /// A refund of `amount` by `merchant` (`None` when the shard has accepted nothing of it
    /// yet); `original_key` is its original's key, `own_key` its own id's.
    fn refund(
        &mut self,
        ins: &Instruction,
        refund: &RefundFields,
        (merchant, amount): (Option<MerchantHandle>, Minor),
        place: Placement,
        (original_key, own_key): (Key, Key),
    ) -> Result<Effect, Reject> {
        let currency = ins.currency;
        let stated_amount = currency.minor(refund.original_amount);
        let capture = self.state.captures.get(&original_key).copied();
        let original_time = capture.map_or(refund.original_time, |c| c.event_time.get());
        if let Some(c) = capture {
            let source = Source::Capture(&refund.original_transaction_id);
            check_stated_original(ins, stated_amount, c.currency, c.amount, source)?;
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
        // What was refunded of the original so far, and the time its first refund was held to.
        let (refunded, first_time) = match self.state.originals.get(&original_key) {
            Some(state) => {
                (check_against_original(ins, (stated_amount, amount), refund, state)?, state.original_time.get())
            }
            None if amount > stated_amount => return Err(exceeds(ins, 0, stated_amount)),
            None => (0, original_time),
        };
        let batch = merchant.and_then(|m| self.state.open.get(&place.window)?.batches.get(&(m, currency)));
        let (count, total, detail_index) = batch.map_or((0, 0, 0), |b| (b.counts.refunds, b.refunds, b.details.len()));
        self.check_limits(ins, place.window, count, total + MinorSum::from(amount))?;
        let original = OriginalState {
            original_amount: stated_amount,
            currency,
            refunded: refunded + amount,
            original_time: first_time.into(),
        };
        self.state.originals.insert(original_key, original);
        let merchant = merchant.unwrap_or_else(|| self.state.merchants.intern(&ins.merchant_id));
        let record = RefundRecord::new(
            (merchant, original_key),
            (currency, amount),
            (ins.event_time, place.window),
            detail_index,
        )
        .expect("fewer than 2^31 details per batch");
        let previous = self.state.refunds.insert(own_key, record);
        assert!(previous.is_none(), "refund id {} accepted twice", ins.id);
        Ok(Effect::Refunded)
    }

    /// Refund limits against the batch's accepted refunds: `count` so far, `total` with this one.
    fn check_limits(&self, ins: &Instruction, window: WindowId, count: u64, total: MinorSum) -> Result<(), Reject> {
        let limits = self.policy.limits_for(&ins.merchant_id);
        if limits.max_count.is_some_and(|max| count >= u64::from(max)) {
            let message = format!("merchant {} reached its limit of refunds in window {window}", ins.merchant_id);
            return Err(Reject::new(RejectReason::MerchantLimitExceeded, message));
        }
        if let Some(max) = limits.max_amount.get(&ins.currency) {
            if ins.currency.from_minor(total) > *max {
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

    fn reversal(
        &mut self,
        ins: &Instruction,
        reverses: &str,
        (merchant, amount): (Option<MerchantHandle>, Minor),
        place: Placement,
        reversed_key: Key,
    ) -> Result<Effect, Reject> {
        let record = match self.state.refunds.get_mut(&reversed_key) {
            Some(record) if Some(record.merchant) == merchant => record,
            _ => {
                let message = format!("merchant {} has no accepted refund {reverses}", ins.merchant_id);
                return Err(Reject::field(RejectReason::ReversalUnknownRefund, "reverses", message));
            }
        };
        if record.reversed() {
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
        if record.amount != amount {
            let message = format!(
                "reversal amount {} differs from refund amount {}",
                ins.currency.format(ins.amount),
                ins.currency.format(ins.currency.from_minor(record.amount.into()))
            );
            return Err(Reject::field(RejectReason::ReversalAmountMismatch, "amount", message));
        }
        if ins.event_time < record.event_time() {
            let message =
                format!("reversal at {} is before refund {reverses} at {}", ins.event_time, record.event_time());
            return Err(Reject::field(RejectReason::ReversalBeforeRefund, "event_time", message));
        }
        record.reverse();
        let (refund_window, detail_index, merchant) = (record.window, record.detail_index(), record.merchant);
        // The original may be forgotten (its time is before the history horizon, the refund's
        // is not): then nothing remembers what was refunded of it, and nothing needs to.
        if let Some(original) = self.state.originals.get_mut(&record.original()) {
            original.refunded -= amount;
            assert!(original.refunded >= 0, "refunded-so-far went negative reversing {reverses}");
        }
        if refund_window != place.window {
            return Ok(Effect::Recovery);
        }
        let window = self.state.open.get_mut(&place.window).expect("the refund's window is open");
        let batch = window.batches.get_mut(&(merchant, ins.currency)).expect("the refund's batch is open");
        let refund = &mut batch.details[detail_index];
        let in_step = refund.id(&window.strings) == reverses && refund.effect == Effect::Refunded;
        assert!(in_step, "refund detail index out of step");
        refund.effect = Effect::RefundReversed;
        batch.refunds -= MinorSum::from(amount);
        Ok(Effect::NettedReversal)
    }
}

#[cfg(test)]
mod tests;
