//! How a closed batch holds its credits: a fixed 76-byte entry each, whose refund creditor is
//! the payee of a detail, read from the window's string arena, and whose EndToEndId is inline.
//! A credit is read through a [`CreditView`].
//!
//! Why: one refund credit per payee is about one per refund in real traffic (payees rarely
//! repeat). As a [`Credit`] each held a copy of its payee (72 bytes and up to three
//! allocations) and a 35-character id on the heap: about 170 bytes a refund, which made
//! closing a window cost as much memory again as the rest of a batch (docs/benchmarks.md).
//!
//! The serialized form (the daemon's sealed parts) is unchanged: a sequence of [`Credit`]s.

use std::ops::Range;
use std::sync::Arc;

use rust_decimal::Decimal;
use serde::Serialize;

use super::closed::packed_list;
use super::settle::{Credit, CreditKind};
use super::stored::{Span, Strings};
use crate::instruction::{Payee, PayeeView};

/// The longest EndToEndId ISO 20022 allows (and every id [`super::end_to_end_id`] makes).
const MAX_ID: usize = 35;

/// Who a credit pays.
#[derive(Debug, Clone, Copy)]
enum Creditor {
    /// The payee of a refund detail, in the arena.
    Refund(Span),
    /// Index in [`Credits::payees`]: a merchant's account, or a creditor read back.
    Owned(u32),
}

#[derive(Debug, Clone)]
struct Entry {
    amount: Decimal,
    refunds: u32,
    creditor: Creditor,
    kind: CreditKind,
    id_len: u8,
    id: [u8; MAX_ID],
}

/// The entry stays the size the memory budget counts on (docs/benchmarks.md).
const _: () = assert!(std::mem::size_of::<Entry>() == 76);

impl Entry {
    fn end_to_end_id(&self) -> &str {
        // Whole `str`s of at most 35 bytes were copied in, so the id is UTF-8.
        std::str::from_utf8(&self.id[..usize::from(self.id_len)]).expect("an id copied from a str")
    }
}

/// The credits of a closed batch: refund credits in first-appearance order of their payees,
/// then the payout if any.
#[derive(Clone)]
pub struct Credits {
    entries: Vec<Entry>,
    /// Creditors that are no detail's payee.
    payees: Vec<Payee>,
    strings: Arc<Strings>,
}

/// One credit of a closed batch: the fields of a [`Credit`], its strings borrowed. Serializes
/// exactly as a [`Credit`] does (same fields, same order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CreditView<'a> {
    /// Deterministic id, stable on replay (at most 35 characters).
    pub end_to_end_id: &'a str,
    /// Refund or payout.
    pub kind: CreditKind,
    /// Who is paid.
    pub creditor: PayeeView<'a>,
    /// How much.
    pub amount: Decimal,
    /// Number of refunds combined into it (0 for a payout).
    pub refunds: u32,
}

impl CreditView<'_> {
    /// The credit with strings of its own.
    pub fn to_credit(&self) -> Credit {
        Credit {
            end_to_end_id: self.end_to_end_id.into(),
            kind: self.kind,
            creditor: self.creditor.to_payee(),
            amount: self.amount,
            refunds: self.refunds,
        }
    }
}

/// A credit no closing could have made: an EndToEndId longer than 35 bytes, or more credits
/// than a batch can index.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("credit {end_to_end_id:?} is not one a closed batch could hold")]
pub struct CreditTooLarge {
    /// The credit's id.
    pub end_to_end_id: String,
}

impl Credits {
    /// No credits yet; refund creditors will be payees in `strings`.
    pub(crate) fn new(strings: Arc<Strings>) -> Credits {
        Credits { entries: Vec::new(), payees: Vec::new(), strings }
    }

    /// Appends a credit of no amount yet to the payee at `span`; returns its index.
    pub(crate) fn push_refund(&mut self, end_to_end_id: &str, span: Span) -> u32 {
        self.push(end_to_end_id, CreditKind::Refund, Creditor::Refund(span), Decimal::ZERO)
            .expect("a closing's EndToEndIds are 35 characters")
    }

    /// Appends `credit`, with a creditor of its own.
    fn push_owned(&mut self, credit: Credit) -> Result<u32, CreditTooLarge> {
        let too_large = || CreditTooLarge { end_to_end_id: credit.end_to_end_id.to_string() };
        let payee = u32::try_from(self.payees.len()).map_err(|_| too_large())?;
        let index = self
            .push(&credit.end_to_end_id, credit.kind, Creditor::Owned(payee), credit.amount)
            .ok_or_else(too_large)?;
        self.entries[index as usize].refunds = credit.refunds;
        self.payees.push(credit.creditor);
        Ok(index)
    }

    /// Appends a payout to `account`.
    pub(crate) fn push_payout(&mut self, end_to_end_id: &str, account: &Payee, amount: Decimal) {
        let credit = Credit {
            end_to_end_id: end_to_end_id.into(),
            kind: CreditKind::Payout,
            creditor: account.clone(),
            amount,
            refunds: 0,
        };
        self.push_owned(credit).expect("a closing's EndToEndIds are 35 characters");
    }

    fn push(&mut self, end_to_end_id: &str, kind: CreditKind, creditor: Creditor, amount: Decimal) -> Option<u32> {
        let index = u32::try_from(self.entries.len()).ok().filter(|&i| i != u32::MAX)?;
        let bytes = end_to_end_id.as_bytes();
        let mut id = [0u8; MAX_ID];
        id.get_mut(..bytes.len())?.copy_from_slice(bytes);
        let id_len = bytes.len() as u8; // at most 35
        self.entries.push(Entry { amount, refunds: 0, creditor, kind, id_len, id });
        Some(index)
    }

    /// Counts one more refund paid by credit `index`.
    pub(crate) fn count_refund(&mut self, index: u32) {
        self.entries[index as usize].refunds += 1;
    }

    /// Sets the amount of credit `index`.
    pub(crate) fn set_amount(&mut self, index: usize, amount: Decimal) {
        self.entries[index].amount = amount;
    }

    /// Number of credits.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Credit `index`, if there is one.
    pub fn get(&self, index: usize) -> Option<CreditView<'_>> {
        self.entries.get(index).map(|entry| self.view(entry))
    }

    /// The EndToEndId of credit `index`, if there is one (what a clearing detail names).
    pub fn end_to_end_id(&self, index: usize) -> Option<&str> {
        self.entries.get(index).map(Entry::end_to_end_id)
    }

    /// The credits in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = CreditView<'_>> + Clone + '_ {
        self.entries.iter().map(|entry| self.view(entry))
    }

    /// The amounts of the credits at `range`, in order, without reading their creditors (what
    /// sums and layouts need; a view reads the payee from the arena, a cache miss each).
    pub fn amounts(&self, range: Range<usize>) -> impl ExactSizeIterator<Item = Decimal> + Clone + '_ {
        self.entries[range].iter().map(|entry| entry.amount)
    }

    /// Number of refund credits.
    pub fn refund_count(&self) -> usize {
        self.entries.iter().filter(|e| e.kind == CreditKind::Refund).count()
    }

    /// The credits at `range`, in order.
    pub fn range(&self, range: Range<usize>) -> impl ExactSizeIterator<Item = CreditView<'_>> + Clone + '_ {
        self.entries[range].iter().map(|entry| self.view(entry))
    }

    /// The credits with strings of their own.
    pub fn to_vec(&self) -> Vec<Credit> {
        self.iter().map(|c| c.to_credit()).collect()
    }

    fn view<'s>(&'s self, entry: &'s Entry) -> CreditView<'s> {
        let creditor = match entry.creditor {
            Creditor::Refund(span) => self.strings.payee(span),
            Creditor::Owned(index) => self.payees[index as usize].view(),
        };
        CreditView {
            end_to_end_id: entry.end_to_end_id(),
            kind: entry.kind,
            creditor,
            amount: entry.amount,
            refunds: entry.refunds,
        }
    }
}

impl TryFrom<Vec<Credit>> for Credits {
    type Error = CreditTooLarge;

    /// Credits read back (a sealed part) or built by hand, each with a creditor of its own.
    fn try_from(credits: Vec<Credit>) -> Result<Credits, CreditTooLarge> {
        let mut packed = Credits::new(Arc::default());
        for credit in credits {
            packed.push_owned(credit)?;
        }
        Ok(packed)
    }
}

packed_list!(Credits, Credit);

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Credit> {
        let payee = |name: &str, account: &str| Payee {
            name: name.into(),
            account: account.into(),
            bank: "COBADEFFXXX".into(),
        };
        vec![
            Credit {
                end_to_end_id: "20261121T1500ZR0123456789abcdef0123".into(),
                kind: CreditKind::Refund,
                creditor: payee("Zoë Ünlü, a name longer than twenty-four bytes", "DE89370400440532013000"),
                amount: Decimal::new(1_250, 2),
                refunds: 2,
            },
            Credit {
                end_to_end_id: "20261121T1500ZP0123456789abcdef0123".into(),
                kind: CreditKind::Payout,
                creditor: payee("Merchant", "GB82WEST12345698765432"),
                amount: Decimal::new(10_000, 2),
                refunds: 0,
            },
        ]
    }

    #[test]
    fn credits_come_back_and_serialize_as_owned_credits_do() {
        let owned = sample();
        let packed = Credits::try_from(owned.clone()).expect("valid credits");
        assert_eq!(packed.to_vec(), owned);
        assert_eq!(packed.range(1..2).map(|c| c.to_credit()).collect::<Vec<_>>(), owned[1..]);
        let postcard = postcard::to_stdvec(&packed).expect("postcard");
        assert_eq!(postcard, postcard::to_stdvec(&owned).expect("postcard"));
        assert_eq!(postcard::from_bytes::<Credits>(&postcard).expect("decode"), packed);
        let json = serde_json::to_string(&packed).expect("json");
        assert_eq!(json, serde_json::to_string(&owned).expect("json"));
    }

    #[test]
    fn an_id_longer_than_iso_20022_allows_is_refused_not_a_panic() {
        let mut long = sample();
        long[0].end_to_end_id = "x".repeat(36).into();
        assert!(Credits::try_from(long.clone()).is_err());
        let bytes = postcard::to_stdvec(&long).expect("encode");
        assert!(postcard::from_bytes::<Credits>(&bytes).is_err());
    }
}
