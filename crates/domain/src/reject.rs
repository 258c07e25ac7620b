//! Rejections are values, not errors: every refused instruction carries a stable reason code
//! (the contract with reconciliation tools), the field at fault when there is one, and a message
//! for humans.

use std::fmt;

/// Stable reason codes from the settlement model. The `code()` strings never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum RejectReason {
    /// Not a JSON object (syntax error, wrong top-level type, duplicate key, empty line).
    Malformed,
    /// Larger than the 64 KiB message limit; rejected unread.
    TooLarge,
    /// A required field is absent.
    MissingField,
    /// A field has the wrong type or format.
    InvalidField,
    /// A well-formed currency code the engine does not know.
    UnsupportedCurrency,
    /// More fraction digits than the currency's minor units.
    AmountScale,
    /// Zero or negative amount.
    AmountNotPositive,
    /// Amount above 10^12.
    AmountTooLarge,
    /// Same id as an earlier instruction but different content.
    DuplicateConflict,
    /// Cumulative refunds would exceed the original amount.
    RefundExceedsOriginal,
    /// States a different original amount than the first accepted refund of that original.
    OriginalAmountMismatch,
    /// Refund event time before the original transaction time.
    RefundBeforeOriginal,
    /// Refund outside the refund period.
    RefundPeriodExpired,
    /// Currency differs from the capture or refund it refers to.
    CurrencyMismatch,
    /// Reversal of a refund this merchant never had accepted.
    ReversalUnknownRefund,
    /// The refund was already reversed.
    ReversalAlreadyApplied,
    /// Reversal amount differs from the refund amount.
    ReversalAmountMismatch,
    /// Reversal event time earlier than the refund's.
    ReversalBeforeRefund,
    /// Merchant not in the configured registry.
    UnknownMerchant,
    /// Per-merchant refund count or amount limit for the window reached.
    MerchantLimitExceeded,
    /// Event time further ahead of the message's own timestamp (or the run's `now`) than the
    /// configured skew: one such instruction must not hold a window open.
    EventTimeInFuture,
    /// Kafka: the message key is not its `merchant_id` (a merchant's state lives on one
    /// partition).
    PartitionKeyMismatch,
    /// Daemon: the event time is older than the partition's history horizon (its latest event
    /// time minus the refund period and the history margin): the ids and refunds of that time are
    /// no longer kept, so a re-delivery could not be told from a new instruction.
    HistoryExpired,
}

impl RejectReason {
    /// Every reason, in code order (for summaries and documentation).
    pub const ALL: [RejectReason; 23] = [
        Self::Malformed,
        Self::TooLarge,
        Self::MissingField,
        Self::InvalidField,
        Self::UnsupportedCurrency,
        Self::AmountScale,
        Self::AmountNotPositive,
        Self::AmountTooLarge,
        Self::DuplicateConflict,
        Self::RefundExceedsOriginal,
        Self::OriginalAmountMismatch,
        Self::RefundBeforeOriginal,
        Self::RefundPeriodExpired,
        Self::CurrencyMismatch,
        Self::ReversalUnknownRefund,
        Self::ReversalAlreadyApplied,
        Self::ReversalAmountMismatch,
        Self::ReversalBeforeRefund,
        Self::UnknownMerchant,
        Self::MerchantLimitExceeded,
        Self::EventTimeInFuture,
        Self::PartitionKeyMismatch,
        Self::HistoryExpired,
    ];

    /// The stable snake_case code written to reject outputs.
    pub fn code(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::TooLarge => "too_large",
            Self::MissingField => "missing_field",
            Self::InvalidField => "invalid_field",
            Self::UnsupportedCurrency => "unsupported_currency",
            Self::AmountScale => "amount_scale",
            Self::AmountNotPositive => "amount_not_positive",
            Self::AmountTooLarge => "amount_too_large",
            Self::DuplicateConflict => "duplicate_conflict",
            Self::RefundExceedsOriginal => "refund_exceeds_original",
            Self::OriginalAmountMismatch => "original_amount_mismatch",
            Self::RefundBeforeOriginal => "refund_before_original",
            Self::RefundPeriodExpired => "refund_period_expired",
            Self::CurrencyMismatch => "currency_mismatch",
            Self::ReversalUnknownRefund => "reversal_unknown_refund",
            Self::ReversalAlreadyApplied => "reversal_already_applied",
            Self::ReversalAmountMismatch => "reversal_amount_mismatch",
            Self::ReversalBeforeRefund => "reversal_before_refund",
            Self::UnknownMerchant => "unknown_merchant",
            Self::MerchantLimitExceeded => "merchant_limit_exceeded",
            Self::EventTimeInFuture => "event_time_in_future",
            Self::PartitionKeyMismatch => "partition_key_mismatch",
            Self::HistoryExpired => "history_expired",
        }
    }

    /// Parses a code back (used when reading reject outputs).
    pub fn from_code(code: &str) -> Option<RejectReason> {
        Self::ALL.into_iter().find(|r| r.code() == code)
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A refusal: reason code, the field at fault (if any) and a human message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// Stable reason code.
    pub reason: RejectReason,
    /// Name of the offending field (`payee.account` for nested ones).
    pub field: Option<&'static str>,
    /// Human-readable explanation.
    pub message: String,
}

impl Reject {
    /// A rejection not tied to one field.
    pub fn new(reason: RejectReason, message: impl Into<String>) -> Reject {
        Reject { reason, field: None, message: message.into() }
    }

    /// A rejection naming the field at fault.
    pub fn field(reason: RejectReason, field: &'static str, message: impl Into<String>) -> Reject {
        Reject { reason, field: Some(field), message: message.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for r in RejectReason::ALL {
            assert!(seen.insert(r.code()), "duplicate code {}", r.code());
            assert_eq!(RejectReason::from_code(r.code()), Some(r));
        }
        assert_eq!(RejectReason::from_code("nope"), None);
    }
}
