//! The rules that hold a refund to its original, as the netting state knows it, and their
//! rejections. Apart from `Netter::refund` because they are pure: an instruction and a record
//! in, a rejection or what was refunded so far out.

use super::OriginalState;
use crate::instruction::{Instruction, RefundFields};
use crate::money::{Currency, Minor};
use crate::reject::{Reject, RejectReason};

/// What a refund's original is known from, named in a rejection's message. Formatted only when
/// a refund is rejected: every accepted refund passes through these checks.
#[derive(Debug, Clone, Copy)]
pub(super) enum Source<'a> {
    /// The capture the engine accepted, by id.
    Capture(&'a str),
    /// What the first accepted refund of the original (by id) stated.
    FirstRefund(&'a str),
}

impl std::fmt::Display for Source<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Capture(id) => write!(f, "capture {id}"),
            Source::FirstRefund(id) => write!(f, "original {id} as its first refund stated"),
        }
    }
}

/// A refund is held to its original as the engine knows it: the capture it accepted, or else what
/// the first accepted refund of that original stated. Same currency, same original amount (so
/// the cap is that amount, not a number each refund chooses).
pub(super) fn check_stated_original(
    ins: &Instruction,
    stated_amount: Minor,
    currency: Currency,
    amount: Minor,
    source: Source<'_>,
) -> Result<(), Reject> {
    if currency != ins.currency {
        let message = format!("refund in {} of {source} in {currency}", ins.currency);
        return Err(Reject::field(RejectReason::CurrencyMismatch, "currency", message));
    }
    if stated_amount != amount {
        let message = format!(
            "original_amount {} differs from {}, the amount of {source}",
            currency.format(currency.from_minor(stated_amount.into())),
            currency.format(currency.from_minor(amount.into()))
        );
        return Err(Reject::field(RejectReason::OriginalAmountMismatch, "original_amount", message));
    }
    Ok(())
}

/// What was refunded of the original so far, when a refund of `amount` (stating the original
/// at `stated_amount`) still fits it.
pub(super) fn check_against_original(
    ins: &Instruction,
    (stated_amount, amount): (Minor, Minor),
    refund: &RefundFields,
    state: &OriginalState,
) -> Result<Minor, Reject> {
    let source = Source::FirstRefund(&refund.original_transaction_id);
    check_stated_original(ins, stated_amount, state.currency, state.original_amount, source)?;
    if state.refunded + amount > state.original_amount {
        return Err(exceeds(ins, state.refunded, state.original_amount));
    }
    Ok(state.refunded)
}

/// The amounts in the message are as short as they can be written ("80", "12.5"), as the
/// instruction's own amounts are once parsed.
pub(super) fn exceeds(ins: &Instruction, refunded: Minor, original: Minor) -> Reject {
    let short = |minor: Minor| ins.currency.from_minor(minor.into()).normalize();
    let message = format!(
        "refund of {} on top of {} already refunded exceeds the original {}",
        ins.amount,
        short(refunded),
        short(original)
    );
    Reject::field(RejectReason::RefundExceedsOriginal, "amount", message)
}
