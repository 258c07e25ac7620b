//! Untrusted bytes in, a schema-valid `Instruction` or a `Reject` out.
//!
//! Parsing is pure and stateless, so it runs on any thread in any order; everything that
//! depends on earlier instructions (duplicates, refund caps, reversals) happens later in a fixed
//! order. The fingerprint is computed over the whole parsed object (unknown fields included,
//! key order and whitespace excluded), which is what "identical re-delivery" compares.

mod fields;
mod guards;
mod json;
mod scan;

use compact_str::CompactString;
use sha2::{Digest, Sha256};

use crate::instruction::{Body, Instruction, Kind, RefundFields};
use crate::reject::{Reject, RejectReason};
use fields::{Fields, Node};
use fields::{
    AMOUNT, CURRENCY, EVENT_TIME, FEE, ID, MERCHANT_ID, ORIGINAL_AMOUNT, ORIGINAL_TIME, ORIGINAL_TRANSACTION_ID, PAYEE,
    REVERSES, TYPE,
};
use json::Json;

pub use fields::{is_valid_id, is_valid_merchant_id, parse_rfc3339};
pub use guards::{guard_event_time, guard_key};

/// Messages larger than this are rejected unread (`too_large`).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// How much of a `too_large` message is kept as its reject's payload.
pub const KEPT_PAYLOAD_BYTES: usize = 1024;

/// 128-bit canonical hash of a parsed instruction; equal fingerprints mean identical content.
pub type Fingerprint = u128;

/// The id and content fingerprint of an instruction whose `id` field is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The instruction id.
    pub id: CompactString,
    /// Canonical content hash.
    pub fingerprint: Fingerprint,
}

/// Outcome of parsing one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Schema-valid.
    Valid {
        /// The instruction.
        instruction: Instruction,
        /// Canonical content hash.
        fingerprint: Fingerprint,
    },
    /// Refused by a schema rule.
    Invalid {
        /// Present when the id itself was valid, so re-deliveries can be recognised.
        identity: Option<Identity>,
        /// Why.
        reject: Reject,
    },
}

impl Parsed {
    /// The id, when one could be read.
    pub fn id(&self) -> Option<&str> {
        match self {
            Parsed::Valid { instruction, .. } => Some(&instruction.id),
            Parsed::Invalid { identity, .. } => identity.as_ref().map(|i| i.id.as_str()),
        }
    }
}

/// The reject of a message over [`MAX_MESSAGE_BYTES`], unread: its length and SHA-256 identify
/// it, since only a prefix of it is kept as evidence.
pub fn too_large(len: u64, sha256: &[u8; 32]) -> Parsed {
    let message = format!(
        "message is {len} bytes; the limit is {MAX_MESSAGE_BYTES} (SHA-256 {}; the payload kept is its first {KEPT_PAYLOAD_BYTES} bytes)",
        hex::encode(sha256)
    );
    Parsed::Invalid { identity: None, reject: Reject::new(RejectReason::TooLarge, message) }
}

/// Parses and validates one message (a Kafka value or a JSONL line without its newline).
///
/// A message of the common shape is decoded in one pass over its bytes (`scan.rs`); anything
/// else goes to [`parse_reference`]. The two give the same answer for every message (see the
/// module docs of `scan.rs` and the differential tests).
pub fn parse(bytes: &[u8]) -> Parsed {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return too_large(bytes.len() as u64, &Sha256::digest(bytes).into());
    }
    match scan::scan(bytes) {
        Some(flat) => decide(Node::Flat(&flat), || flat.fingerprint(bytes.len())),
        None => parse_reference(bytes),
    }
}

/// The reference parser: the whole message into a JSON tree, then the same rules. It defines
/// what every message means; [`parse`] takes a faster path for the common shape.
pub fn parse_reference(bytes: &[u8]) -> Parsed {
    let invalid = |reject| Parsed::Invalid { identity: None, reject };
    if bytes.len() > MAX_MESSAGE_BYTES {
        return too_large(bytes.len() as u64, &Sha256::digest(bytes).into());
    }
    let depth = json::nesting_depth(bytes);
    if depth > json::MAX_DEPTH {
        let message = format!("objects and arrays nest {depth} deep; at most {} is accepted", json::MAX_DEPTH);
        return invalid(Reject::new(RejectReason::Malformed, message));
    }
    let json: Json<'_> = match serde_json::from_slice(bytes) {
        Ok(json) => json,
        Err(e) => return invalid(Reject::new(RejectReason::Malformed, format!("not valid JSON: {e}"))),
    };
    if !matches!(json, Json::Obj(_)) {
        let message = format!("expected a JSON object, found {}", json.type_name());
        return invalid(Reject::new(RejectReason::Malformed, message));
    }
    decide(Node::Tree(&json), || json.fingerprint())
}

/// Parses `bytes` with [`parse`] and with [`parse_reference`]; an error describing both answers
/// when they differ (the differential tests and the `parse_differential` fuzz target).
pub fn differential_line(bytes: &[u8]) -> Result<(), String> {
    let (fast, reference) = (parse(bytes), parse_reference(bytes));
    if fast == reference {
        return Ok(());
    }
    Err(format!("{:?}\n fast:      {fast:?}\n reference: {reference:?}", String::from_utf8_lossy(bytes)))
}

/// The rules, on a decoded object.
fn decide(node: Node<'_>, fingerprint: impl FnOnce() -> Fingerprint) -> Parsed {
    let fields = Fields::new(node);
    let id = match fields.id(ID) {
        Ok(id) => CompactString::from(id),
        Err(reject) => return Parsed::Invalid { identity: None, reject },
    };
    let fingerprint = fingerprint();
    match validate(&fields, id.clone()) {
        Ok(instruction) => Parsed::Valid { instruction, fingerprint },
        Err(reject) => Parsed::Invalid { identity: Some(Identity { id, fingerprint }), reject },
    }
}

fn validate(f: &Fields<'_>, id: CompactString) -> Result<Instruction, Reject> {
    let kind_text = f.required_str(TYPE)?;
    let kind = Kind::from_wire(kind_text).ok_or_else(|| {
        let message = format!("type must be capture, refund or refund_reversal, not {kind_text:?}");
        Reject::field(RejectReason::InvalidField, "type", message)
    })?;
    let merchant_id = CompactString::from(f.merchant_id(MERCHANT_ID)?);
    let currency = f.currency(CURRENCY)?;
    let amount = f.amount(AMOUNT, currency, false)?;
    let event_time = f.time(EVENT_TIME)?;
    let fee = f.optional_amount(FEE, currency)?.unwrap_or_default();
    let body = match kind {
        Kind::Capture => Body::Capture,
        Kind::Refund => Body::Refund(RefundFields {
            original_transaction_id: CompactString::from(f.id(ORIGINAL_TRANSACTION_ID)?),
            original_amount: f.amount(ORIGINAL_AMOUNT, currency, false)?,
            original_time: f.time(ORIGINAL_TIME)?,
            payee: f.payee(PAYEE)?,
        }),
        Kind::RefundReversal => Body::RefundReversal { reverses: CompactString::from(f.id(REVERSES)?) },
    };
    Ok(Instruction { id, merchant_id, amount, currency, event_time, fee, body })
}

#[cfg(test)]
mod differential;
#[cfg(test)]
mod tests;
