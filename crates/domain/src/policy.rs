//! The rules that vary per deployment: refund period, the merchant registry and risk limits.
//! Built once from configuration and shared read-only by every netting shard.

use std::collections::BTreeMap;

use compact_str::CompactString;
use jiff::SignedDuration;
use rust_decimal::Decimal;

use crate::instruction::Payee;
use crate::money::Currency;

/// A merchant's settlement account, from the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merchant {
    /// Merchant id (the instruction's `merchant_id`).
    pub id: CompactString,
    /// Account holder and account the payout is credited to.
    pub account: Payee,
}

/// Refund limits per merchant and window (risk signal). `None` means unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefundLimits {
    /// Most refunds accepted per merchant, window and currency.
    pub max_count: Option<u32>,
    /// Largest refund total per merchant and window, per currency.
    pub max_amount: BTreeMap<Currency, Decimal>,
}

/// Deployment rules consulted by the netting state machine.
#[derive(Debug, Clone)]
pub struct Policy {
    /// How long after the original a refund is still allowed (default 365 days).
    pub refund_period: SignedDuration,
    /// When set, instructions of merchants not listed are rejected (`unknown_merchant`) and
    /// positive nets become payout credits to the listed account.
    pub registry: Option<BTreeMap<CompactString, Merchant>>,
    /// Limits applied to merchants without their own entry.
    pub default_limits: RefundLimits,
    /// Per-merchant limits, replacing the default for that merchant.
    pub merchant_limits: BTreeMap<CompactString, RefundLimits>,
    /// How far an event time may lead the message's own timestamp (or a file run's `now`)
    /// before it is `event_time_in_future` (default 1 hour).
    pub max_event_time_skew: SignedDuration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            refund_period: SignedDuration::from_hours(365 * 24),
            max_event_time_skew: SignedDuration::from_hours(1),
            registry: None,
            default_limits: RefundLimits::default(),
            merchant_limits: BTreeMap::new(),
        }
    }
}

impl Policy {
    /// The limits that apply to `merchant`.
    pub fn limits_for(&self, merchant: &str) -> &RefundLimits {
        self.merchant_limits.get(merchant).unwrap_or(&self.default_limits)
    }

    /// The registry entry of `merchant`, if a registry is configured and lists it.
    pub fn merchant(&self, merchant: &str) -> Option<&Merchant> {
        self.registry.as_ref().and_then(|r| r.get(merchant))
    }

    /// False only when a registry is configured and does not list `merchant`.
    pub fn knows(&self, merchant: &str) -> bool {
        self.registry.as_ref().is_none_or(|r| r.contains_key(merchant))
    }
}
