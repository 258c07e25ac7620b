//! Closing a window: per batch, carried debt in, net, payout or debt out, and the credits that
//! move money. Conservation is asserted here in every build, because a batch that does not
//! balance must never reach a file.

use std::sync::Arc;

use compact_str::{format_compact, CompactString};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::batch::{BatchState, Counts, Effect};
use super::closed::Details;
use super::credits::Credits;
use super::stored::{warmed, Strings};
use super::{BatchKey, Map, Netter};
use crate::calendar::WindowId;
use crate::instruction::{Payee, PayeeView};
use crate::money::{Currency, MinorSum};

/// Batch amounts, as in the manifest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Σ captures.
    pub captures: Decimal,
    /// Σ refunds not reversed within the window.
    pub refunds: Decimal,
    /// Σ reversals of refunds paid in earlier windows.
    pub recoveries: Decimal,
    /// Σ fees of all accepted instructions.
    pub fees: Decimal,
    /// Debt (≤ 0) carried from the merchant's previous batch in this currency.
    pub carried_in: Decimal,
    /// captures − refunds + recoveries − fees + carried_in.
    pub net: Decimal,
    /// max(net, 0).
    pub payout: Decimal,
    /// min(net, 0), carried into the merchant's next batch.
    pub carried_out: Decimal,
    /// Σ refund credits (equals `refunds`).
    pub refund_credits: Decimal,
}

impl Totals {
    /// Computes net, payout and carried out from the flows.
    pub fn from_flows(
        captures: Decimal,
        refunds: Decimal,
        recoveries: Decimal,
        fees: Decimal,
        carried_in: Decimal,
        refund_credits: Decimal,
    ) -> Totals {
        let net = captures - refunds + recoveries - fees + carried_in;
        Totals {
            captures,
            refunds,
            recoveries,
            fees,
            carried_in,
            net,
            payout: net.max(Decimal::ZERO),
            carried_out: net.min(Decimal::ZERO),
            refund_credits,
        }
    }

    /// `captures + recoveries + carried_in = refund_credits + fees + payout + carried_out`, and
    /// the definitional identities behind it.
    pub fn is_conserved(&self) -> bool {
        self.captures + self.recoveries + self.carried_in
            == self.refund_credits + self.fees + self.payout + self.carried_out
            && self.refund_credits == self.refunds
            && self.net == self.captures - self.refunds + self.recoveries - self.fees + self.carried_in
            && self.payout == self.net.max(Decimal::ZERO)
            && self.carried_out == self.net.min(Decimal::ZERO)
            && self.carried_in <= Decimal::ZERO
    }
}

/// Whether a credit returns a refund or pays out a merchant's positive net.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CreditKind {
    /// Refunds of one batch to one payee, combined.
    Refund,
    /// The merchant's payout to its settlement account.
    Payout,
}

/// One bank credit transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credit {
    /// Deterministic id, stable on replay (≤ 35 characters).
    pub end_to_end_id: CompactString,
    /// Refund or payout.
    pub kind: CreditKind,
    /// Who is paid.
    pub creditor: Payee,
    /// How much.
    pub amount: Decimal,
    /// Number of refunds combined into it (0 for a payout).
    pub refunds: u32,
}

/// A closed batch: one merchant, one currency, one window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettledBatch {
    /// Window it was netted in.
    pub window: WindowId,
    /// Merchant.
    pub merchant_id: CompactString,
    /// Currency.
    pub currency: Currency,
    /// Amounts.
    pub totals: Totals,
    /// Accepted instructions per type.
    pub counts: Counts,
    /// Refund credits (first-appearance order of payees), then the payout credit if any.
    pub credits: Credits,
    /// Accepted instructions in input order.
    pub details: Details,
}

impl SettledBatch {
    /// Number of refund credits.
    pub fn refund_credit_count(&self) -> usize {
        self.credits.refund_count()
    }
}

/// The EndToEndIds of one window's credits:
/// `<window id><R|P><20 hex digits of SHA-256(merchant, currency, account, bank[, part])>`, 35
/// characters, the same every time the same window is produced.
///
/// Why a maker per window: a window closes with about one credit per refund, and formatting
/// the window id through `fmt` for each cost as much as the hash (docs/benchmarks.md). The id
/// is formatted once here; each credit's id is then bytes on the stack.
#[derive(Debug, Clone)]
pub struct EndToEndIds {
    window: CompactString,
}

/// One EndToEndId, on the stack.
#[derive(Debug, Clone, Copy)]
pub struct EndToEndId {
    bytes: [u8; 35],
    len: u8,
}

impl EndToEndId {
    /// The id.
    pub fn as_str(&self) -> &str {
        // Built from a window id's ASCII, one tag letter and hex digits.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).expect("an ASCII EndToEndId")
    }
}

impl EndToEndIds {
    /// The maker for `window`'s credits.
    pub fn new(window: WindowId) -> EndToEndIds {
        EndToEndIds { window: format_compact!("{window}") }
    }

    /// The id of a `kind` credit of `merchant` in `currency` to `creditor`; `part` > 0 for the
    /// further parts of a credit split at the largest transfer amount.
    pub fn make(
        &self,
        kind: CreditKind,
        merchant: &str,
        currency: Currency,
        creditor: PayeeView<'_>,
        part: u32,
    ) -> EndToEndId {
        let mut hasher = Sha256::new();
        for field in [merchant, currency.code(), creditor.account, creditor.bank] {
            hasher.update(field.as_bytes());
            hasher.update([0x1f]);
        }
        // Part 0 keeps the id of a credit that was never split.
        if part > 0 {
            hasher.update(part.to_string().as_bytes());
            hasher.update([0x1f]);
        }
        let digest = hasher.finalize();
        let window = self.window.as_bytes();
        assert!(window.len() + 21 <= 35, "EndToEndId of window {} longer than 35", self.window);
        let mut id = EndToEndId { bytes: [0; 35], len: (window.len() + 21) as u8 };
        id.bytes[..window.len()].copy_from_slice(window);
        id.bytes[window.len()] = match kind {
            CreditKind::Refund => b'R',
            CreditKind::Payout => b'P',
        };
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let hex = &mut id.bytes[window.len() + 1..usize::from(id.len)];
        for (pair, byte) in hex.chunks_exact_mut(2).zip(&digest[..10]) {
            pair[0] = HEX[usize::from(byte >> 4)];
            pair[1] = HEX[usize::from(byte & 15)];
        }
        id
    }
}

impl Netter {
    /// Closes the oldest open window and returns its batches sorted by merchant and currency.
    pub fn close_earliest(&mut self) -> Option<(WindowId, Vec<SettledBatch>)> {
        let (window, open) = self.state.open.pop_first()?;
        self.state.last_closed = Some(window);
        let mut batches: Vec<(BatchKey, BatchState)> = open.batches.into_iter().collect();
        let merchants = &self.state.merchants;
        batches.sort_unstable_by(|(a, _), (b, _)| (merchants.id(a.0), a.1).cmp(&(merchants.id(b.0), b.1)));
        let strings = Arc::new(open.strings);
        let settled = batches.into_iter().map(|(key, state)| self.settle(window, key, state, &strings)).collect();
        Some((window, settled))
    }

    fn settle(&mut self, window: WindowId, key: BatchKey, state: BatchState, strings: &Arc<Strings>) -> SettledBatch {
        let carried_in = self.state.carried.remove(&key).unwrap_or(0);
        let (handle, currency) = key;
        let merchant_id = self.state.merchants.id(handle).clone();
        // The records move into the closed batch as they are: no detail is copied.
        let mut details = Details::new(state.details, Arc::clone(strings));
        let ids = EndToEndIds::new(window);
        let mut credits = refund_credits(&ids, &merchant_id, currency, &mut details);
        let refund_credits: Decimal = credits.amounts(0..credits.len()).sum();
        let [captures, refunds, recoveries, fees, carried_in] =
            [state.captures, state.refunds, state.recoveries, state.fees, carried_in].map(|m| currency.from_minor(m));
        let totals = Totals::from_flows(captures, refunds, recoveries, fees, carried_in, refund_credits);
        assert!(totals.is_conserved(), "batch {window}/{merchant_id}/{currency} does not balance: {totals:?}");
        assert_eq!(state.counts.total(), details.len() as u64, "batch {window}/{merchant_id} counts");
        if totals.payout > Decimal::ZERO {
            if let Some(merchant) = self.policy.merchant(&merchant_id) {
                payout_credits(&mut credits, &ids, &merchant_id, currency, &merchant.account, totals.payout);
            }
        }
        if totals.carried_out < Decimal::ZERO {
            let carried_out = currency.to_minor(totals.carried_out).expect("a net has the currency's scale");
            self.state.carried.insert(key, carried_out);
        }
        SettledBatch { window, merchant_id, currency, totals, counts: state.counts, credits, details }
    }
}

/// Combines the batch's paid refunds per payee (account and bank), in order of first appearance.
/// A payee's credit that would pass the largest amount a transfer can carry is closed, and its
/// further refunds go into a new part (with its own EndToEndId), so every refund is paid whole
/// by exactly one credit.
fn refund_credits(ids: &EndToEndIds, merchant: &str, currency: Currency, details: &mut Details) -> Credits {
    let max = currency.to_minor(currency.max_transfer_amount()).expect("in minor units");
    let (records, strings) = details.records();
    let mut credits = Credits::new(details.strings());
    let mut sums: Vec<MinorSum> = Vec::new();
    let mut paid_by: Vec<(usize, u32)> = Vec::new();
    // Per payee: the index of its open credit, and that credit's part number.
    let mut by_payee: Map<(&str, &str), (u32, u32)> = Map::default();
    for (at, record) in warmed(records, strings).filter(|(_, r)| r.effect == Effect::Refunded) {
        let (payee, amount) = record.paid_to(strings);
        let amount = MinorSum::from(amount);
        let (open, part) = match by_payee.get(&(payee.account, payee.bank)) {
            Some(&(index, part)) if sums[index as usize] + amount <= max => (index, part),
            Some(&(_, part)) => (credits.len() as u32, part + 1),
            None => (credits.len() as u32, 0),
        };
        if open as usize == credits.len() {
            let id = ids.make(CreditKind::Refund, merchant, currency, payee, part);
            credits.push_refund(id.as_str(), record.span());
            sums.push(0);
            by_payee.insert((payee.account, payee.bank), (open, part));
        }
        sums[open as usize] += amount;
        credits.count_refund(open);
        paid_by.push((at, open));
    }
    for (index, sum) in sums.into_iter().enumerate() {
        credits.set_amount(index, currency.from_minor(sum));
    }
    for (at, credit) in paid_by {
        details.set_credit(at, credit);
    }
    credits
}

/// The merchant's payout, in parts of at most the largest amount a transfer can carry.
fn payout_credits(
    credits: &mut Credits,
    ids: &EndToEndIds,
    merchant: &str,
    currency: Currency,
    account: &Payee,
    payout: Decimal,
) {
    let max = currency.max_transfer_amount();
    let mut left = payout;
    let mut part = 0;
    while left > Decimal::ZERO {
        let amount = left.min(max);
        let id = ids.make(CreditKind::Payout, merchant, currency, account.view(), part);
        credits.push_payout(id.as_str(), account, amount);
        left -= amount;
        part += 1;
    }
}
