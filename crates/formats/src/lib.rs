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
mod ids;
pub mod manifest;
mod marks;
pub mod pain001;
pub mod store;
pub mod trace;
pub mod verify;
mod window;

use clearhouse_domain::{Calendar, Currency, Window, WindowId};
use jiff::civil::Date;
use sha2::{Digest, Sha256};

pub use clearhouse_storage::Draft;
pub use manifest::{Fences, Manifest, ManifestFile};
pub use store::{DirStore, MemStore, OutputStore, PutOutcome, StoreError};
pub use window::{encode_window, window_files, DraftFile, NewDraft};

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
