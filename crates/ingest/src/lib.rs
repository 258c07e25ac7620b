//! Input sources. Every source hands the engine the same thing: `RawBatch`es of undecoded
//! messages, each with its source position, in source order. Decoding is the engine's job, so a
//! source never has to understand (or can corrupt) an instruction.

mod file;

pub use file::JsonlReader;

/// One undecoded message inside a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawRecord {
    /// Source position: the 1-based line number in a file.
    pub position: u64,
    /// Byte offset of the message in `RawBatch::bytes`.
    pub start: u32,
    /// Message length in bytes (line terminator excluded).
    pub len: u32,
}

/// A contiguous run of messages sharing one buffer (one allocation per batch, not per message).
#[derive(Debug, Default, Clone)]
pub struct RawBatch {
    /// The messages' bytes.
    pub bytes: Vec<u8>,
    /// The messages, in source order.
    pub records: Vec<RawRecord>,
}

impl RawBatch {
    /// The bytes of `record`.
    pub fn payload(&self, record: &RawRecord) -> &[u8] {
        &self.bytes[record.start as usize..(record.start + record.len) as usize]
    }
}
