//! Output formats: the clearing file, the ISO 20022 pain.001 credit file, the window manifest
//! and the file-mode evidence, plus the atomic store they are written to and the verifier that
//! reads them back.
//!
//! Each encoder has a reader next to it (what `verify` runs), and every file is checked in memory
//! before it is published (the clearing file by its reader, taking the hash the encoder
//! computed over the same bytes; the credit file by a scan that recounts and re-adds its
//! transfers): a bug in an encoder stops the run instead of reaching a
//! bank.

pub mod clearing;
pub mod compare;
pub mod events;
pub mod evidence;
pub mod manifest;
pub mod pain001;
pub mod store;
pub mod trace;
pub mod verify;

use std::collections::BTreeMap;

use clearhouse_domain::{Calendar, Currency, Payee, SettledBatch, Window, WindowId};
use jiff::civil::Date;
use sha2::{Digest, Sha256};

pub use manifest::{Fences, Manifest, ManifestFile};
pub use store::{DirStore, MemStore, OutputStore, PutOutcome, StoreError};

/// What the headers of a window's files say about the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowMeta {
    /// Window id.
    pub id: WindowId,
    /// Local start with UTC offset (RFC 3339).
    pub start_local: String,
    /// Local end with UTC offset (RFC 3339).
    pub end_local: String,
    /// IANA timezone.
    pub timezone: String,
    /// Settlement (value) date.
    pub settlement_date: Date,
}

impl WindowMeta {
    /// Describes `window` on `calendar`.
    pub fn new(calendar: &Calendar, window: &Window) -> WindowMeta {
        WindowMeta {
            id: window.id,
            start_local: calendar.local_rfc3339(window.start),
            end_local: calendar.local_rfc3339(window.end),
            timezone: calendar.timezone_name().to_owned(),
            settlement_date: calendar.settlement_date(window),
        }
    }
}

/// A file ready to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFile {
    /// File name.
    pub name: String,
    /// Content.
    pub bytes: Vec<u8>,
    /// SHA-256 of the content (hex), computed once for the manifest and the run's seal.
    pub sha256: String,
}

impl OutputFile {
    /// A file and its hash.
    pub fn new(name: String, bytes: Vec<u8>) -> OutputFile {
        let sha256 = sha256_hex(&bytes);
        OutputFile { name, bytes, sha256 }
    }
}

/// Name of a window's clearing file.
pub fn clearing_name(window: WindowId, currency: Currency) -> String {
    format!("clearing-{window}-{currency}.txt")
}

/// Name of a window's `part`-th (1-based) credit file in `currency`; a window has more than one
/// only when its credits add up to more than a control sum can hold.
pub fn pain001_name(window: WindowId, currency: Currency, part: usize) -> String {
    match part {
        1 => format!("pain001-{window}-{currency}.xml"),
        n => format!("pain001-{window}-{currency}-{n}.xml"),
    }
}

/// Name of a window's manifest.
pub fn manifest_name(window: WindowId) -> String {
    format!("manifest-{window}.json")
}

/// An amount read back from a file, when it is a decimal of magnitude at most 10^18: far above
/// any real total (an instruction is at most 10^12), and small enough that summing ten billion of
/// them cannot overflow a `Decimal`. A larger one is a damaged or forged file, reported as such
/// instead of overflowing a sum.
pub(crate) fn bounded_amount(text: &str) -> Option<rust_decimal::Decimal> {
    let value: rust_decimal::Decimal = text.parse().ok()?;
    (value.abs() <= rust_decimal::Decimal::from(1_000_000_000_000_000_000_u64)).then_some(value)
}

/// SHA-256 of `bytes` as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn encode_clearing(meta: &WindowMeta, currency: Currency, group: &[&SettledBatch]) -> (OutputFile, u64) {
    let clearing = clearing::encode(meta, currency, group);
    let read = clearing::check(&clearing.bytes, &clearing.body_sha256)
        .unwrap_or_else(|e| panic!("clearing file for {} {currency} fails its own check: {e}", meta.id));
    assert_eq!(read.batches.len(), group.len(), "clearing file read-back lost batches");
    let file = OutputFile { name: clearing_name(meta.id, currency), bytes: clearing.bytes, sha256: clearing.sha256 };
    debug_assert_eq!(file.sha256, sha256_hex(&file.bytes));
    (file, clearing.records)
}

fn encode_pain001(
    meta: &WindowMeta,
    currency: Currency,
    group: &[&SettledBatch],
    debtor: &Payee,
) -> Vec<(OutputFile, u64)> {
    let files = pain001::encode(meta, currency, group, debtor);
    let mut total = rust_decimal::Decimal::ZERO;
    let mut out = Vec::with_capacity(files.len());
    for (i, pain) in files.into_iter().enumerate() {
        let back = pain001::check(&pain.bytes, currency)
            .unwrap_or_else(|e| panic!("pain.001 for {} {currency} fails its own check: {e}", meta.id));
        assert_eq!((back.records, back.total), (pain.records, pain.total), "pain.001 check differs from the encoder");
        total += back.total;
        // Hashed here, on the encoder's thread, rather than after the join.
        out.push((OutputFile::new(pain001_name(meta.id, currency, i + 1), pain.bytes), pain.records));
    }
    let expected: rust_decimal::Decimal = group.iter().flat_map(|b| b.credits.amounts(0..b.credits.len())).sum();
    assert_eq!(total, expected, "pain.001 total differs from the credits");
    out
}

/// Every file of a closed window, manifest last. `batches` must be sorted by merchant and
/// currency. Each file is read back and checked before it is returned.
pub fn window_files(meta: &WindowMeta, batches: &[SettledBatch], fences: Fences, debtor: &Payee) -> Vec<OutputFile> {
    let mut by_currency: BTreeMap<Currency, Vec<&SettledBatch>> = BTreeMap::new();
    for batch in batches {
        assert_eq!(batch.window, meta.id, "batch of another window");
        by_currency.entry(batch.currency).or_default().push(batch);
    }
    let mut files = Vec::new();
    let mut listed = Vec::new();
    for (currency, group) in by_currency {
        // The two files are independent: encode and check them on two threads.
        let (clearing, pain) = std::thread::scope(|scope| {
            let pain = scope.spawn(|| encode_pain001(meta, currency, &group, debtor));
            let clearing = encode_clearing(meta, currency, &group);
            (clearing, pain.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
        });
        for (file, records) in std::iter::once(clearing).chain(pain) {
            listed.push(ManifestFile { path: file.name.clone(), sha256: file.sha256.clone(), records });
            files.push(file);
        }
    }
    let manifest = Manifest::new(meta, fences, batches, listed);
    files.push(OutputFile::new(manifest_name(meta.id), manifest.to_bytes()));
    files
}
