//! What a shard remembers of an accepted refund, for a later reversal: one per refund, the
//! largest of the history records.
//!
//! Why its fields are packed: the refund table holds one entry per accepted refund, two thirds
//! of all instructions, and its buckets were 80 bytes (a 16-byte-aligned `u128` key of the
//! original rounded the record to 64 bytes, beside its own 16-byte key). With the key as two
//! `u64`s, the time as a packed [`Time`] and the `reversed` flag in the top bit of the detail
//! index, the record takes 56 bytes and its bucket 72 (docs/benchmarks.md). It serializes
//! through [`RefundRecordForm`], the record's earlier layout field for field, so a checkpoint's
//! refunds encode as before and either build reads the other's.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::merchants::MerchantHandle;
use super::time::Time;
use super::Key;
use crate::calendar::WindowId;
use crate::money::{Currency, Minor};
use crate::sliced::SplitKey;

/// The top bit of `detail`: the refund was reversed.
const REVERSED: u32 = 1 << 31;

/// What a later reversal needs to know about an accepted refund.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(into = "RefundRecordForm", try_from = "RefundRecordForm")]
pub(super) struct RefundRecord {
    /// Its merchant: a reversal must come from the same merchant.
    pub(super) merchant: MerchantHandle,
    /// The key of its original in `originals`, as two halves (8-byte aligned).
    original: SplitKey,
    pub(super) currency: Currency,
    pub(super) amount: Minor,
    event_time: Time,
    pub(super) window: WindowId,
    /// Its index among its batch's details, and [`REVERSED`].
    detail: u32,
}

const _: () = assert!(std::mem::size_of::<RefundRecord>() == 56);

impl RefundRecord {
    /// A refund not reversed. `None` when its detail index does not fit below [`REVERSED`].
    pub(super) fn new(
        (merchant, original): (MerchantHandle, Key),
        (currency, amount): (Currency, Minor),
        (event_time, window): (Timestamp, WindowId),
        detail_index: usize,
    ) -> Option<RefundRecord> {
        let detail = u32::try_from(detail_index).ok().filter(|&i| i < REVERSED)?;
        let original = SplitKey::of(original);
        Some(RefundRecord { merchant, original, currency, amount, event_time: event_time.into(), window, detail })
    }

    /// The key of its original.
    pub(super) fn original(&self) -> Key {
        self.original.get()
    }

    /// Its event time.
    pub(super) fn event_time(&self) -> Timestamp {
        self.event_time.get()
    }

    /// Its index among its batch's details.
    pub(super) fn detail_index(&self) -> usize {
        (self.detail & !REVERSED) as usize
    }

    /// Whether a reversal of it was accepted.
    pub(super) fn reversed(&self) -> bool {
        self.detail & REVERSED != 0
    }

    /// Records that a reversal of it was accepted.
    pub(super) fn reverse(&mut self) {
        self.detail |= REVERSED;
    }
}

/// The record as a checkpoint holds it (its layout before it was packed).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct RefundRecordForm {
    merchant: MerchantHandle,
    original: Key,
    currency: Currency,
    amount: Minor,
    event_time: Timestamp,
    window: WindowId,
    detail_index: u32,
    reversed: bool,
}

impl From<RefundRecord> for RefundRecordForm {
    fn from(record: RefundRecord) -> RefundRecordForm {
        RefundRecordForm {
            merchant: record.merchant,
            original: record.original(),
            currency: record.currency,
            amount: record.amount,
            event_time: record.event_time(),
            window: record.window,
            detail_index: record.detail & !REVERSED,
            reversed: record.reversed(),
        }
    }
}

impl TryFrom<RefundRecordForm> for RefundRecord {
    type Error = String;

    fn try_from(form: RefundRecordForm) -> Result<RefundRecord, String> {
        let index = form.detail_index;
        let mut record = RefundRecord::new(
            (form.merchant, form.original),
            (form.currency, form.amount),
            (form.event_time, form.window),
            index as usize,
        )
        .ok_or_else(|| format!("refund detail index {index} out of range"))?;
        if form.reversed {
            record.reverse();
        }
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_as_its_earlier_layout_and_keeps_every_field() {
        let cny = Currency::from_code("CNY").expect("CNY");
        let time: Timestamp = "2026-11-21T10:00:00.5Z".parse().expect("time");
        let window = WindowId::from_second(1_763_719_200);
        let original = u128::MAX - 12345;
        let mut record = RefundRecord::new((7, original), (cny, Minor::from(1250)), (time, window), 41).expect("fits");
        assert!(!record.reversed());
        record.reverse();
        let form = RefundRecordForm {
            merchant: 7,
            original,
            currency: cny,
            amount: Minor::from(1250),
            event_time: time,
            window,
            detail_index: 41,
            reversed: true,
        };
        let bytes = postcard::to_stdvec(&record).expect("encode");
        assert_eq!(bytes, postcard::to_stdvec(&form).expect("encode"));
        let back: RefundRecord = postcard::from_bytes(&bytes).expect("decode");
        assert_eq!((back.merchant, back.original(), back.currency, back.amount), (7, original, cny, Minor::from(1250)));
        assert_eq!((back.event_time(), back.window, back.detail_index(), back.reversed()), (time, window, 41, true));
    }

    #[test]
    fn a_detail_index_beyond_its_bits_is_refused() {
        let cny = Currency::from_code("CNY").expect("CNY");
        let at = (Timestamp::UNIX_EPOCH, WindowId::from_second(0));
        assert!(RefundRecord::new((0, 0), (cny, Minor::from(1)), at, (1 << 31) - 1).is_some());
        assert!(RefundRecord::new((0, 0), (cny, Minor::from(1)), at, 1 << 31).is_none());
        let form = RefundRecordForm {
            merchant: 0,
            original: 0,
            currency: cny,
            amount: Minor::from(1),
            event_time: Timestamp::UNIX_EPOCH,
            window: WindowId::from_second(0),
            detail_index: u32::MAX,
            reversed: false,
        };
        let bytes = postcard::to_stdvec(&form).expect("encode");
        assert!(postcard::from_bytes::<RefundRecord>(&bytes).is_err(), "a damaged checkpoint is an error");
    }
}
