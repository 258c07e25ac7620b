//! File-mode evidence beside the window files: `rejected.jsonl` (every reject with its raw
//! payload), `duplicates.jsonl` (every identical re-delivery) and `summary.json` (the
//! accounting `input = accepted + rejected + duplicates`).
//!
//! `summary.json` is written last and is the run's seal: it lists the SHA-256 of every other
//! file of the run, so `verify` can vouch for every byte in the directory and tell a complete
//! run from one that was killed, refused part-way or tampered with.

use std::collections::BTreeMap;

use base64::Engine as _;
use clearhouse_domain::{DuplicateRecord, RejectRecord, Stats};
use serde::{Deserialize, Serialize};

/// Name of the reject file.
pub const REJECTED: &str = "rejected.jsonl";
/// Name of the duplicates file.
pub const DUPLICATES: &str = "duplicates.jsonl";
/// Name of the run summary.
pub const SUMMARY: &str = "summary.json";
/// Value of the summary's `format` field.
pub const SUMMARY_FORMAT: &str = "clearhouse.summary.v2";

/// Where an input came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// Input file name.
    pub file: String,
    /// 1-based line.
    pub line: u64,
}

/// One line of `rejected.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectLine {
    /// Source position.
    pub source: Source,
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

/// One line of `duplicates.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DuplicateLine {
    /// Source position of the re-delivery.
    pub source: Source,
    /// Instruction id.
    pub id: String,
    /// Line of the first delivery with the same content.
    pub first_line: u64,
}

/// `summary.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    /// [`SUMMARY_FORMAT`].
    pub format: String,
    /// Input file name.
    pub input: String,
    /// Messages read.
    pub instructions: u64,
    /// Netted into batches.
    pub accepted: u64,
    /// Rejected (all reasons).
    pub rejected: u64,
    /// Identical re-deliveries.
    pub duplicates: u64,
    /// Rejected per reason code.
    pub rejected_by_reason: BTreeMap<String, u64>,
    /// Window ids with output, oldest first.
    pub windows: Vec<String>,
    /// The seal: SHA-256 (hex) of every other file of the run, by name.
    pub files: BTreeMap<String, String>,
}

/// Encodes rejects as JSON lines.
pub fn rejects_jsonl(file: &str, rejects: &[RejectRecord]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rejects.len() * 400);
    for r in rejects {
        let (payload, payload_encoding) = encode_payload(&r.payload);
        let line = RejectLine {
            source: Source { file: file.to_owned(), line: r.position },
            id: r.id.as_ref().map(ToString::to_string),
            reason: r.reject.reason.code().to_owned(),
            field: r.reject.field.map(str::to_owned),
            message: r.reject.message.clone(),
            payload,
            payload_encoding: payload_encoding.to_owned(),
        };
        serde_json::to_writer(&mut out, &line).expect("serialize reject");
        out.push(b'\n');
    }
    out
}

/// A raw message as text: itself when it is UTF-8 (`utf-8`), else base64 (`base64`).
pub fn encode_payload(bytes: &[u8]) -> (String, &'static str) {
    match std::str::from_utf8(bytes) {
        Ok(text) => (text.to_owned(), "utf-8"),
        Err(_) => (base64::engine::general_purpose::STANDARD.encode(bytes), "base64"),
    }
}

/// Encodes duplicates as JSON lines.
pub fn duplicates_jsonl(file: &str, duplicates: &[DuplicateRecord]) -> Vec<u8> {
    let mut out = Vec::with_capacity(duplicates.len() * 100);
    for d in duplicates {
        let line = DuplicateLine {
            source: Source { file: file.to_owned(), line: d.position },
            id: d.id.to_string(),
            first_line: d.first_position,
        };
        serde_json::to_writer(&mut out, &line).expect("serialize duplicate");
        out.push(b'\n');
    }
    out
}

impl Summary {
    /// The summary of a run over `input` that wrote `files` (name to SHA-256).
    pub fn new(input: &str, stats: &Stats, windows: Vec<String>, files: BTreeMap<String, String>) -> Summary {
        Summary {
            format: SUMMARY_FORMAT.to_owned(),
            input: input.to_owned(),
            instructions: stats.input,
            accepted: stats.accepted,
            rejected: stats.rejected_total(),
            duplicates: stats.duplicates,
            rejected_by_reason: stats.rejected.iter().map(|(r, n)| (r.code().to_owned(), *n)).collect(),
            windows,
            files,
        }
    }

    /// Pretty JSON with a trailing newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("serialize summary");
        bytes.push(b'\n');
        bytes
    }
}
