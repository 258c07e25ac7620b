//! JSON messages the daemon publishes on Kafka: one per credit (key = EndToEndId), one per
//! closed window (key = window id), one per reject on the dead-letter topic (key = source
//! position). Like the files, they carry no wall-clock time, so a re-published message is
//! byte-identical to the first one.

use std::collections::BTreeMap;

use clearhouse_domain::RejectRecord;
use clearhouse_domain::{CreditKind, SettledBatch};
use serde::{Deserialize, Serialize};

use crate::{Manifest, WindowMeta};

/// `format` of a credit message.
pub const CREDIT_FORMAT: &str = "clearhouse.credit.v1";
/// `format` of a window-closed message.
pub const WINDOW_FORMAT: &str = "clearhouse.window.v1";
/// `format` of a dead-letter message.
pub const REJECT_FORMAT: &str = "clearhouse.reject.v1";

/// Who a credit pays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Party {
    pub name: String,
    pub account: String,
    pub bank: String,
}

/// One bank credit, as on the credits topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreditMessage {
    /// Always [`CREDIT_FORMAT`].
    pub format: String,
    /// Deterministic id; also the message key.
    pub end_to_end_id: String,
    /// Window the credit settles.
    pub window_id: String,
    /// Requested execution date.
    pub settlement_date: String,
    /// Merchant of the batch.
    pub merchant_id: String,
    /// Currency code.
    pub currency: String,
    /// `refund` or `payout`.
    pub kind: String,
    /// Amount with the currency's minor units.
    pub amount: String,
    /// Number of refunds combined (0 for a payout).
    pub refunds: u32,
    /// Creditor.
    pub creditor: Party,
}

/// Every credit of a window in file order, as (key, payload).
pub fn credit_messages(meta: &WindowMeta, batches: &[SettledBatch]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for batch in batches {
        for credit in batch.credits.iter() {
            let message = CreditMessage {
                format: CREDIT_FORMAT.to_owned(),
                end_to_end_id: credit.end_to_end_id.to_string(),
                window_id: meta.id.to_string(),
                settlement_date: meta.settlement_date.to_string(),
                merchant_id: batch.merchant_id.to_string(),
                currency: batch.currency.code().to_owned(),
                kind: match credit.kind {
                    CreditKind::Refund => "refund",
                    CreditKind::Payout => "payout",
                }
                .to_owned(),
                amount: batch.currency.format(credit.amount),
                refunds: credit.refunds,
                creditor: Party {
                    name: credit.creditor.name.to_string(),
                    account: credit.creditor.account.to_string(),
                    bank: credit.creditor.bank.to_string(),
                },
            };
            let payload = serde_json::to_vec(&message).expect("serialize credit");
            out.push((message.end_to_end_id, payload));
        }
    }
    out
}

/// A closed window, as on the windows topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowMessage {
    /// Always [`WINDOW_FORMAT`].
    pub format: String,
    /// Window id; also the message key.
    pub window_id: String,
    /// Settlement date.
    pub settlement_date: String,
    /// Per input partition: first offset not included.
    pub fences: BTreeMap<String, u64>,
    /// Per input partition: where the seal at the fence closed windows up to (as the manifest).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sealed_before: BTreeMap<String, String>,
    /// Batches in the window.
    pub batches: usize,
    /// Credits published for the window.
    pub credits: usize,
    /// Files with their hashes, as in the manifest.
    pub files: Vec<crate::ManifestFile>,
}

/// The window-closed message for `manifest`, as (key, payload).
pub fn window_message(manifest: &Manifest, credits: usize) -> (String, Vec<u8>) {
    let message = WindowMessage {
        format: WINDOW_FORMAT.to_owned(),
        window_id: manifest.window_id.clone(),
        settlement_date: manifest.settlement_date.clone(),
        fences: manifest.fences.clone(),
        sealed_before: manifest.sealed_before.clone(),
        batches: manifest.batches.len(),
        credits,
        files: manifest.files.clone(),
    };
    (message.window_id.clone(), serde_json::to_vec(&message).expect("serialize window"))
}

/// Where a rejected message came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct KafkaSource {
    pub topic: String,
    pub partition: i32,
    pub offset: u64,
}

/// A rejected instruction, as on the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectMessage {
    /// Always [`REJECT_FORMAT`].
    pub format: String,
    /// Source position.
    pub source: KafkaSource,
    /// Instruction id when it could be read.
    pub id: Option<String>,
    /// Stable reason code.
    pub reason: String,
    /// Offending field, when there is one.
    pub field: Option<String>,
    /// Human-readable message.
    pub message: String,
    /// The raw message (base64 when not UTF-8).
    pub payload: String,
    /// `utf-8` or `base64`.
    pub payload_encoding: String,
}

/// The dead-letter message for a reject at `topic`/`partition`, as (key, payload); the key is
/// the source position, so a consumer can drop re-deliveries.
pub fn reject_message(topic: &str, partition: i32, record: &RejectRecord) -> (String, Vec<u8>) {
    let (payload, payload_encoding) = crate::evidence::encode_payload(&record.payload);
    let message = RejectMessage {
        format: REJECT_FORMAT.to_owned(),
        source: KafkaSource { topic: topic.to_owned(), partition, offset: record.position },
        id: record.id.as_ref().map(ToString::to_string),
        reason: record.reject.reason.code().to_owned(),
        field: record.reject.field.map(str::to_owned),
        message: record.reject.message.clone(),
        payload,
        payload_encoding: payload_encoding.to_owned(),
    };
    let key = format!("{topic}/{partition}/{}", record.position);
    (key, serde_json::to_vec(&message).expect("serialize reject"))
}
