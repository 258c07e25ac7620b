//! `manifest-<window_id>.json`: the contract with reconciliation tools. Written last for a
//! window, so its presence means every file it lists is complete.

use std::collections::BTreeMap;

use clearhouse_domain::SettledBatch;
use serde::{Deserialize, Serialize};

use crate::WindowMeta;

/// Value of the `format` field.
pub const FORMAT: &str = "clearhouse.manifest.v1";

/// The manifest of one closed window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// Window id (`YYYYMMDDTHHMMZ`, end instant in UTC).
    pub window_id: String,
    /// Local start with UTC offset.
    pub start: String,
    /// Local end with UTC offset.
    pub end: String,
    /// IANA timezone of the calendar.
    pub timezone: String,
    /// Settlement (value) date.
    pub settlement_date: String,
    /// Per input (file, or topic/partition): first position not included.
    pub fences: BTreeMap<String, u64>,
    /// `run` only: per topic/partition, the instant (RFC 3339, UTC) before which the seal at
    /// that fence closed every window of the partition. A seal made by the wall clock can reach
    /// past this window; `replay` needs it to seal exactly where the original run did.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sealed_before: BTreeMap<String, String>,
    /// Batches sorted by merchant, then currency.
    pub batches: Vec<ManifestBatch>,
    /// Output files of the window.
    pub files: Vec<ManifestFile>,
}

/// Where a window's inputs stop (see [`Manifest::fences`] and [`Manifest::sealed_before`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fences {
    /// Per input, the first position not included.
    pub positions: BTreeMap<String, u64>,
    /// Per input (`run` only), where the seal at that position closed windows up to.
    pub sealed_before: BTreeMap<String, String>,
}

impl From<BTreeMap<String, u64>> for Fences {
    fn from(positions: BTreeMap<String, u64>) -> Fences {
        Fences { positions, sealed_before: BTreeMap::new() }
    }
}

/// One batch's figures, amounts with the currency's minor units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct ManifestBatch {
    pub merchant_id: String,
    pub currency: String,
    pub captures: String,
    pub refunds: String,
    pub recoveries: String,
    pub fees: String,
    pub carried_in: String,
    pub net: String,
    pub payout: String,
    pub carried_out: String,
    pub refund_credits: String,
    pub refund_credit_count: u64,
    pub counts: ManifestCounts,
}

/// Accepted instructions per type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct ManifestCounts {
    pub captures: u64,
    pub refunds: u64,
    pub reversals: u64,
    pub late: u64,
}

/// An output file with its hash and record count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestFile {
    /// File name relative to the manifest.
    pub path: String,
    /// SHA-256 of the whole file, hex.
    pub sha256: String,
    /// Clearing file: records before the trailer; credit file: credit transfers.
    pub records: u64,
}

impl ManifestBatch {
    /// The manifest view of a settled batch.
    pub fn of(batch: &SettledBatch) -> ManifestBatch {
        let f = |d| batch.currency.format(d);
        let t = &batch.totals;
        ManifestBatch {
            merchant_id: batch.merchant_id.to_string(),
            currency: batch.currency.to_string(),
            captures: f(t.captures),
            refunds: f(t.refunds),
            recoveries: f(t.recoveries),
            fees: f(t.fees),
            carried_in: f(t.carried_in),
            net: f(t.net),
            payout: f(t.payout),
            carried_out: f(t.carried_out),
            refund_credits: f(t.refund_credits),
            refund_credit_count: batch.refund_credit_count() as u64,
            counts: ManifestCounts {
                captures: batch.counts.captures,
                refunds: batch.counts.refunds,
                reversals: batch.counts.reversals,
                late: batch.counts.late,
            },
        }
    }
}

impl Manifest {
    /// Builds the manifest for a window.
    pub fn new(meta: &WindowMeta, fences: Fences, batches: &[SettledBatch], files: Vec<ManifestFile>) -> Manifest {
        Manifest {
            format: FORMAT.to_owned(),
            window_id: meta.id.to_string(),
            start: meta.start_local.clone(),
            end: meta.end_local.clone(),
            timezone: meta.timezone.clone(),
            settlement_date: meta.settlement_date.to_string(),
            fences: fences.positions,
            sealed_before: fences.sealed_before,
            batches: batches.iter().map(ManifestBatch::of).collect(),
            files,
        }
    }

    /// Pretty JSON with a trailing newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("a manifest always serializes");
        bytes.push(b'\n');
        bytes
    }
}
