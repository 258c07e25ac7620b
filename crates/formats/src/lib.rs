//! Output formats: the clearing file, the ISO 20022 pain.001 credit file, the window manifest
//! and the file-mode evidence, plus the atomic store they are written to and the verifier that
//! reads them back.
//!
//! Each encoder has a reader next to it (what `verify` runs), and every file is checked as it is
//! written, before it is published: each block the encoder writes goes through the clearing
//! file's reader or the credit file's scan (which recounts and re-adds its transfers), which
//! also hashes it, on its way to the file. A bug in an encoder stops the run instead of reaching
//! a bank.

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
use std::io::Write as _;

use clearhouse_domain::{Calendar, Currency, Payee, SettledBatch, Window, WindowId};
use jiff::civil::Date;
use sha2::{Digest, Sha256};

pub use clearhouse_storage::Draft;
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

/// A window's file, written through its check into a draft, not yet published.
#[derive(Debug)]
pub struct DraftFile {
    /// File name.
    pub name: String,
    /// What was written.
    pub draft: Draft,
    /// SHA-256 of the content (hex), computed once as it was written.
    pub sha256: String,
}

/// Makes the draft each of a window's files is written into (called from more than one thread).
pub type NewDraft<'a> = dyn Fn() -> Result<Draft, StoreError> + Sync + 'a;

fn write_error(name: &str) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: name.into(), source }
}

fn encode_clearing(
    meta: &WindowMeta,
    currency: Currency,
    group: &[&SettledBatch],
    new_draft: &NewDraft<'_>,
) -> Result<(DraftFile, u64), StoreError> {
    let name = clearing_name(meta.id, currency);
    let mut draft = new_draft()?;
    let encoded = clearing::encode(meta, currency, group, &mut draft).map_err(write_error(&name))?;
    Ok((DraftFile { name, draft, sha256: encoded.sha256 }, encoded.records))
}

fn encode_pain001(
    meta: &WindowMeta,
    currency: Currency,
    group: &[&SettledBatch],
    (debtor, new_draft): (&Payee, &NewDraft<'_>),
) -> Result<Vec<(DraftFile, u64)>, StoreError> {
    let mut total = rust_decimal::Decimal::ZERO;
    let mut out = Vec::new();
    for part in pain001::parts(currency, group) {
        let name = pain001_name(meta.id, currency, part.number());
        let mut draft = new_draft()?;
        let encoded = pain001::encode(meta, currency, &part, debtor, &mut draft).map_err(write_error(&name))?;
        total += encoded.total;
        out.push((DraftFile { name, draft, sha256: encoded.sha256 }, encoded.records));
    }
    let expected: rust_decimal::Decimal = group.iter().flat_map(|b| b.credits.amounts(0..b.credits.len())).sum();
    assert_eq!(total, expected, "pain.001 total differs from the credits");
    Ok(out)
}

/// Writes every file of a closed window into drafts from `new_draft`, manifest last, each
/// checked as it is written (see [`clearing::encode`] and [`pain001::encode`]). `batches` must
/// be sorted by merchant and currency.
pub fn encode_window(
    meta: &WindowMeta,
    batches: &[SettledBatch],
    fences: Fences,
    (debtor, new_draft): (&Payee, &NewDraft<'_>),
) -> Result<Vec<DraftFile>, StoreError> {
    let mut by_currency: BTreeMap<Currency, Vec<&SettledBatch>> = BTreeMap::new();
    for batch in batches {
        assert_eq!(batch.window, meta.id, "batch of another window");
        by_currency.entry(batch.currency).or_default().push(batch);
    }
    let mut files = Vec::new();
    let mut listed = Vec::new();
    for (currency, group) in by_currency {
        // The two files are independent: encode and write them on two threads.
        let (clearing, pain) = std::thread::scope(|scope| {
            let pain = scope.spawn(|| encode_pain001(meta, currency, &group, (debtor, new_draft)));
            let clearing = encode_clearing(meta, currency, &group, new_draft);
            (clearing, pain.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
        });
        for (file, records) in std::iter::once(clearing?).chain(pain?) {
            listed.push(ManifestFile { path: file.name.clone(), sha256: file.sha256.clone(), records });
            files.push(file);
        }
    }
    let name = manifest_name(meta.id);
    let bytes = Manifest::new(meta, fences, batches, listed).to_bytes();
    let mut draft = new_draft()?;
    draft.write_all(&bytes).map_err(write_error(&name))?;
    files.push(DraftFile { name, draft, sha256: sha256_hex(&bytes) });
    Ok(files)
}

/// Every file of a closed window in memory, manifest last; see [`encode_window`].
pub fn window_files(meta: &WindowMeta, batches: &[SettledBatch], fences: Fences, debtor: &Payee) -> Vec<OutputFile> {
    let in_memory = || Ok(Draft::memory());
    let files = encode_window(meta, batches, fences, (debtor, &in_memory))
        .unwrap_or_else(|e| unreachable!("writing to memory cannot fail: {e}"));
    let file =
        |f: DraftFile| OutputFile { name: f.name, bytes: f.draft.into_bytes().unwrap_or_default(), sha256: f.sha256 };
    files.into_iter().map(file).collect()
}
