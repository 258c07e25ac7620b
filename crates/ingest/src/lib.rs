//! Input sources. Every source hands the engine the same thing: `RawBatch`es of undecoded
//! messages, each with its source position, in source order. Decoding is the engine's job, so a
//! source never has to understand (or can corrupt) an instruction.

mod file;

pub use file::{JsonlReader, KEPT_PREFIX_BYTES, MAX_BLOCK_BYTES, MAX_LINE_BYTES};

/// One undecoded message inside a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawRecord {
    /// Source position: the 1-based line number in a file.
    pub position: u64,
    /// Byte offset of the message in `RawBatch::bytes`.
    pub start: u32,
    /// Length in bytes of what is kept (line terminator excluded): the whole message, or for an
    /// oversized one only its first [`KEPT_PREFIX_BYTES`].
    pub len: u32,
    /// 0, or 1 + the index in [`RawBatch::oversized`] of what the source knows of a message too
    /// large to keep whole.
    pub oversized: u32,
}

/// A message over [`MAX_LINE_BYTES`]: not kept, but measured and hashed on its way past.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Oversized {
    /// Its full length in bytes.
    pub len: u64,
    /// SHA-256 of its full bytes.
    pub sha256: [u8; 32],
}

/// A contiguous run of messages sharing one buffer (one allocation per batch, not per message).
#[derive(Debug, Default, Clone)]
pub struct RawBatch {
    /// The messages' bytes.
    pub bytes: Vec<u8>,
    /// The messages, in source order.
    pub records: Vec<RawRecord>,
    /// Messages too large to keep, referred to by [`RawRecord::oversized`].
    pub oversized: Vec<Oversized>,
}

impl RawBatch {
    /// The bytes of `record`.
    pub fn payload(&self, record: &RawRecord) -> &[u8] {
        &self.bytes[record.start as usize..(record.start + record.len) as usize]
    }

    /// Bytes of the source the batch stands for: every message's full length (an oversized
    /// one's as measured, not its kept prefix) plus one terminator each.
    pub fn source_bytes(&self) -> u64 {
        let len = |r: &RawRecord| self.oversized(r).map_or(u64::from(r.len), |o| o.len);
        self.records.iter().map(|r| len(r) + 1).sum()
    }

    /// What the source measured of `record` when it was too large to keep whole.
    pub fn oversized(&self, record: &RawRecord) -> Option<&Oversized> {
        record.oversized.checked_sub(1).and_then(|i| self.oversized.get(i as usize))
    }
}
