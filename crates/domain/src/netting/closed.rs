//! How a closed batch holds its details: the open window's 64-byte records, moved (not copied)
//! out of the window when it closes, with the window's string arena shared by all its batches.
//! A detail is read through a [`DetailView`] that borrows its strings from the arena.
//!
//! Why: `net` closes every window when its input ends. When closing turned each record into a
//! [`Detail`] with strings of its own (about 200 bytes and up to five allocations each), the
//! close added 150 MB to a 350 MB run at one million lines, and copied every string once more
//! (docs/benchmarks.md). The encoders need only to read each detail once.
//!
//! The serialized form (the daemon's sealed parts) is unchanged: a sequence of [`Detail`]s.

use std::sync::Arc;

use jiff::Timestamp;
use serde::Serialize;

use super::batch::{Detail, Effect};
use super::stored::{warmed, Stored, Strings};
use crate::calendar::WindowId;
#[cfg(test)]
use crate::instruction::Payee;
use crate::instruction::{Kind, PayeeView};
use crate::money::Minor;

/// No credit paid this detail (in [`Details::credits`]).
const NO_CREDIT: u32 = u32::MAX;

/// The details of a closed batch, in input order.
#[derive(Clone)]
pub struct Details {
    records: Vec<Stored>,
    /// Per record, the index of the credit that paid it, or [`NO_CREDIT`].
    credits: Vec<u32>,
    strings: Arc<Strings>,
}

/// One detail of a closed batch: the fields of a [`Detail`], its strings borrowed. Serializes
/// exactly as a [`Detail`] does (same fields, same order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DetailView<'a> {
    /// Input order (file line or global sequence).
    pub seq: u64,
    /// The instruction's id.
    pub id: &'a str,
    /// Its kind.
    pub kind: Kind,
    /// Its event time.
    pub event_time: Timestamp,
    /// Its amount, in the batch currency's minor units.
    pub amount: Minor,
    /// Its fee (zero when it had none), in the batch currency's minor units.
    pub fee: Minor,
    /// What it refers to: a refund's original transaction, a reversal's refund.
    pub reference: Option<&'a str>,
    /// A refund's payee.
    pub payee: Option<PayeeView<'a>>,
    /// The window its event time belongs to, when it was netted into a later one.
    pub late_from: Option<WindowId>,
    /// What it did to the batch.
    pub effect: Effect,
    /// Index of the credit that paid it (refunds).
    pub credit: Option<u32>,
}

impl DetailView<'_> {
    /// The detail with strings of its own.
    pub fn to_detail(&self) -> Detail {
        Detail {
            seq: self.seq,
            id: self.id.into(),
            kind: self.kind,
            event_time: self.event_time,
            amount: self.amount,
            fee: self.fee,
            reference: self.reference.map(Into::into),
            payee: self.payee.map(|p| Box::new(p.to_payee())),
            late_from: self.late_from,
            effect: self.effect,
            credit: self.credit,
        }
    }
}

impl Details {
    /// A closed batch's records, in input order, whose strings are in `strings`; nothing paid
    /// yet (see [`Details::set_credit`]).
    pub(crate) fn new(records: Vec<Stored>, strings: Arc<Strings>) -> Details {
        let credits = vec![NO_CREDIT; records.len()];
        Details { records, credits, strings }
    }

    /// Records that credit `credit` paid detail `index`.
    pub(crate) fn set_credit(&mut self, index: usize, credit: u32) {
        assert_ne!(credit, NO_CREDIT, "more credits than a batch can hold");
        self.credits[index] = credit;
    }

    /// The records and their arena (the credit grouping at close reads them).
    pub(crate) fn records(&self) -> (&[Stored], &Strings) {
        (&self.records, &self.strings)
    }

    /// The window's string arena, which the batch's refund credits name their payees in.
    pub(crate) fn strings(&self) -> Arc<Strings> {
        Arc::clone(&self.strings)
    }

    /// Number of details.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Detail `index`, if there is one.
    pub fn get(&self, index: usize) -> Option<DetailView<'_>> {
        let record = self.records.get(index)?;
        Some(record.view(&self.strings, self.credits[index]))
    }

    /// The details in input order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = DetailView<'_>> + '_ {
        let records = warmed(&self.records, &self.strings);
        records.zip(&self.credits).map(|((_, record), &credit)| record.view(&self.strings, credit))
    }

    /// The details with strings of their own.
    pub fn to_vec(&self) -> Vec<Detail> {
        self.iter().map(|d| d.to_detail()).collect()
    }
}

/// The credit index as a [`DetailView`] states it.
pub(crate) fn credit_of(credit: u32) -> Option<u32> {
    (credit != NO_CREDIT).then_some(credit)
}

impl TryFrom<Vec<Detail>> for Details {
    type Error = DetailTooLarge;

    /// Details read back (a sealed part) or built by hand, packed into an arena of their own.
    fn try_from(details: Vec<Detail>) -> Result<Details, DetailTooLarge> {
        let mut strings = Strings::default();
        let mut records = Vec::with_capacity(details.len());
        let mut credits = Vec::with_capacity(details.len());
        for detail in &details {
            records.push(Stored::from_detail(detail, &mut strings).ok_or(DetailTooLarge { seq: detail.seq })?);
            credits.push(detail.credit.unwrap_or(NO_CREDIT));
        }
        Ok(Details { records, credits, strings: Arc::new(strings) })
    }
}

/// A detail no accepted instruction could have made: a string longer than validation allows,
/// or a late origin at the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("detail {seq} holds a string longer than any valid instruction's, or an impossible window")]
pub struct DetailTooLarge {
    /// The detail's sequence number.
    pub seq: u64,
}

/// The traits a packed list of views ([`Details`], [`Credits`]) shares: equality and `Debug` by
/// its views, and the serialized form of the owned list it replaces (a sequence of `$owned`),
/// decoded through its `TryFrom<Vec<$owned>>`.
macro_rules! packed_list {
    ($packed:ty, $owned:ty) => {
        impl PartialEq for $packed {
            fn eq(&self, other: &$packed) -> bool {
                self.len() == other.len() && self.iter().eq(other.iter())
            }
        }

        impl Eq for $packed {}

        impl std::fmt::Debug for $packed {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_list().entries(self.iter()).finish()
            }
        }

        impl serde::Serialize for $packed {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_seq(self.iter())
            }
        }

        impl<'de> serde::Deserialize<'de> for $packed {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<$packed, D::Error> {
                let owned = <Vec<$owned> as serde::Deserialize>::deserialize(deserializer)?;
                <$packed>::try_from(owned).map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use packed_list;

packed_list!(Details, Detail);

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Detail> {
        let time: Timestamp = "2026-11-21T10:00:00.123456789Z".parse().expect("time");
        let refund = Detail {
            seq: 7,
            id: "r-1".into(),
            kind: Kind::Refund,
            event_time: time,
            amount: 1250,
            fee: 3,
            reference: Some("c-1".into()),
            payee: Some(Box::new(Payee {
                name: "Zoë Ünlü, a name longer than twenty-four bytes".into(),
                account: "DE89370400440532013000".into(),
                bank: "COBADEFFXXX".into(),
            })),
            late_from: Some("20261120T1500Z".parse().expect("window")),
            effect: Effect::Refunded,
            credit: Some(0),
        };
        let capture = Detail {
            seq: 3,
            id: "c-1".into(),
            kind: Kind::Capture,
            event_time: time,
            amount: 5000,
            fee: 0,
            reference: None,
            payee: None,
            late_from: None,
            effect: Effect::Captured,
            credit: None,
        };
        vec![capture, refund]
    }

    #[test]
    fn details_come_back_as_they_went_in() {
        let owned = sample();
        let packed = Details::try_from(owned.clone()).expect("valid details");
        assert_eq!(packed.len(), 2);
        assert_eq!(packed.to_vec(), owned);
        assert_eq!(packed.get(1).and_then(|d| d.payee).map(|p| p.to_payee()), owned[1].payee.as_deref().cloned());
        assert_eq!(packed.get(2), None);
    }

    #[test]
    fn a_detail_no_instruction_could_make_is_refused_not_a_panic() {
        let mut long = sample();
        long[0].id = "x".repeat(256).into();
        assert_eq!(Details::try_from(long.clone()), Err(DetailTooLarge { seq: 3 }));
        let bytes = postcard::to_stdvec(&long).expect("encode");
        assert!(postcard::from_bytes::<Details>(&bytes).is_err());
        let mut epoch = sample();
        epoch[0].late_from = Some(WindowId::from_second(0));
        assert!(Details::try_from(epoch).is_err());
    }

    #[test]
    fn details_serialize_exactly_as_owned_details_do() {
        let owned = sample();
        let packed = Details::try_from(owned.clone()).expect("valid details");
        let json = serde_json::to_string(&packed).expect("json");
        assert_eq!(json, serde_json::to_string(&owned).expect("json"));
        let postcard = postcard::to_stdvec(&packed).expect("postcard");
        assert_eq!(postcard, postcard::to_stdvec(&owned).expect("postcard"));
        let back: Details = postcard::from_bytes(&postcard).expect("decode");
        assert_eq!(back, packed);
        assert_eq!(serde_json::from_str::<Details>(&json).expect("decode"), packed);
    }
}
