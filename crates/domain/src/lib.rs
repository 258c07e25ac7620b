//! Clearhouse's domain: everything that decides what an instruction means and what money moves,
//! with no I/O, no threads and no clock.
//!
//! Keeping this crate pure is what makes the engine testable and deterministic: the same
//! instructions fed in the same per-merchant order produce the same batches no matter how many
//! shards, which transport, or what time it is. The engine passes in the window placement (its
//! notion of time) and the policy (its configuration); files and brokers live in other crates.

pub mod calendar;
pub mod instruction;
pub mod money;
pub mod netting;
pub mod outcome;
pub mod parse;
pub mod policy;
pub mod reject;
pub mod sliced;

pub use calendar::{Calendar, CalendarError, Schedule, Window, WindowId};
pub use instruction::{is_xml_text, Body, Instruction, Kind, Payee, PayeeError, PayeePart, PayeeView, RefundFields};
pub use money::{Currency, Minor, MinorSum, MinorText, MAX_AMOUNT};
pub use netting::{
    Counts, Credit, CreditKind, CreditTooLarge, CreditView, Credits, Detail, DetailTooLarge, DetailView, Details,
    Effect, Netter, NetterState, Placement, SettledBatch, Totals,
};
pub use outcome::{DuplicateRecord, RejectRecord, Stats};
pub use parse::{parse, too_large, Fingerprint, Identity, Parsed, KEPT_PAYLOAD_BYTES, MAX_MESSAGE_BYTES};
pub use policy::{Merchant, Policy, RefundLimits};
pub use reject::{Reject, RejectReason};
pub use sliced::SlicedMap;
