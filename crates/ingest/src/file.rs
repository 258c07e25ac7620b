//! JSONL file source: reads fixed-size blocks and hands out whole lines, so memory stays bounded
//! by the block size plus one maximum line however large the file or a line in it is.
//!
//! A line longer than [`MAX_LINE_BYTES`] (the spec's 64 KiB message limit) is never buffered: its
//! first [`KEPT_PREFIX_BYTES`] are kept, and the rest is counted and hashed as it streams past, so
//! a hostile multi-gigabyte line costs linear time and constant memory, and its reject still
//! identifies it (length and SHA-256).

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::{Oversized, RawBatch, RawRecord};

/// Longest line handed out whole (the spec's message limit, 64 KiB).
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// How much of an oversized line is kept for its reject record.
pub const KEPT_PREFIX_BYTES: usize = 1024;
/// Largest block size: batch offsets are 32-bit, and a block is held in memory by each stage.
pub const MAX_BLOCK_BYTES: usize = 256 * 1024 * 1024;

/// An oversized line being skipped.
struct Skipping {
    prefix: Vec<u8>,
    len: u64,
    hasher: Sha256,
}

impl Skipping {
    fn absorb(&mut self, bytes: &[u8]) {
        let room = KEPT_PREFIX_BYTES.saturating_sub(self.prefix.len());
        self.prefix.extend_from_slice(&bytes[..room.min(bytes.len())]);
        self.len += bytes.len() as u64;
        self.hasher.update(bytes);
    }
}

/// Reads a JSONL file as `RawBatch`es of whole lines, numbering lines from 1.
/// A trailing `\r` is stripped (CRLF files); a last line without `\n` is still a record.
pub struct JsonlReader<R> {
    source: R,
    block_bytes: usize,
    /// Read buffer (one block).
    buf: Vec<u8>,
    /// The start of the current line, while it is short enough to keep.
    pending: Vec<u8>,
    /// The current line, once it is too long to keep.
    skipping: Option<Skipping>,
    next_line: u64,
    eof: bool,
}

impl<R> std::fmt::Debug for JsonlReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonlReader")
            .field("block_bytes", &self.block_bytes)
            .field("next_line", &self.next_line)
            .finish()
    }
}

impl JsonlReader<File> {
    /// Opens `path` for reading in blocks of about `block_bytes`.
    pub fn open(path: &Path, block_bytes: usize) -> io::Result<Self> {
        Ok(JsonlReader::new(File::open(path)?, block_bytes))
    }
}

impl<R: Read> JsonlReader<R> {
    /// Wraps any reader; `block_bytes` is clamped to 1..=[`MAX_BLOCK_BYTES`] (the configuration
    /// refuses values outside its range before they get here).
    pub fn new(source: R, block_bytes: usize) -> Self {
        let block_bytes = block_bytes.clamp(1, MAX_BLOCK_BYTES);
        JsonlReader {
            source,
            block_bytes,
            buf: vec![0; block_bytes],
            pending: Vec::new(),
            skipping: None,
            next_line: 1,
            eof: false,
        }
    }

    /// Number of lines handed out so far.
    pub fn lines_read(&self) -> u64 {
        self.next_line - 1
    }

    fn read_block(&mut self) -> io::Result<usize> {
        loop {
            match self.source.read(&mut self.buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// One block read per batch (more only while no line has ended yet), so a batch holds about
    /// `block_bytes` and its buffer is sized exactly once.
    fn next_batch(&mut self) -> io::Result<Option<RawBatch>> {
        let mut batch = RawBatch::default();
        while batch.records.is_empty() && !self.eof {
            let n = self.read_block()?;
            if n == 0 {
                self.eof = true;
                self.end_line(&mut batch);
                break;
            }
            batch.bytes.reserve_exact(self.pending.len().min(MAX_LINE_BYTES) + n);
            batch.records.reserve(n / 128 + 1);
            let chunk = std::mem::take(&mut self.buf);
            let mut rest = &chunk[..n];
            while !rest.is_empty() {
                let newline = memchr::memchr(b'\n', rest);
                let (line, after) = match newline {
                    Some(i) => (&rest[..i], &rest[i + 1..]),
                    None => (rest, &rest[rest.len()..]),
                };
                self.take(line);
                if newline.is_some() {
                    self.end_line(&mut batch);
                }
                rest = after;
            }
            self.buf = chunk;
        }
        Ok((!batch.records.is_empty()).then_some(batch))
    }

    /// Adds bytes of the current line.
    fn take(&mut self, bytes: &[u8]) {
        if let Some(skip) = &mut self.skipping {
            skip.absorb(bytes);
        } else if self.pending.len() + bytes.len() > MAX_LINE_BYTES {
            let mut skip = Skipping { prefix: Vec::with_capacity(KEPT_PREFIX_BYTES), len: 0, hasher: Sha256::new() };
            skip.absorb(&std::mem::take(&mut self.pending));
            skip.absorb(bytes);
            self.skipping = Some(skip);
        } else {
            self.pending.extend_from_slice(bytes);
        }
    }

    /// Ends the current line (at a newline, or at the end of input if it has bytes).
    fn end_line(&mut self, batch: &mut RawBatch) {
        let start = batch.bytes.len() as u32;
        if let Some(skip) = self.skipping.take() {
            batch.bytes.extend_from_slice(&skip.prefix);
            batch.oversized.push(Oversized { len: skip.len, sha256: skip.hasher.finalize().into() });
            let oversized = batch.oversized.len() as u32;
            batch.records.push(RawRecord { position: self.next_line, start, len: skip.prefix.len() as u32, oversized });
        } else {
            if self.eof && self.pending.is_empty() {
                return;
            }
            let line = self.pending.strip_suffix(b"\r").unwrap_or(&self.pending);
            batch.bytes.extend_from_slice(line);
            batch.records.push(RawRecord { position: self.next_line, start, len: line.len() as u32, oversized: 0 });
            self.pending.clear();
        }
        self.next_line += 1;
    }
}

impl<R: Read> Iterator for JsonlReader<R> {
    type Item = io::Result<RawBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_batch().transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], block: usize) -> Vec<(u64, Vec<u8>)> {
        let reader = JsonlReader::new(input, block);
        let mut out = Vec::new();
        for batch in reader {
            let batch = batch.expect("read");
            for r in &batch.records {
                out.push((r.position, batch.payload(r).to_vec()));
            }
        }
        out
    }

    #[test]
    fn splits_lines_across_any_block_size() {
        let input = b"a\r\nbb\n\nccc\nlast";
        let expected: Vec<(u64, Vec<u8>)> =
            vec![(1, b"a".to_vec()), (2, b"bb".to_vec()), (3, vec![]), (4, b"ccc".to_vec()), (5, b"last".to_vec())];
        for block in 1..20 {
            assert_eq!(lines(input, block), expected, "block {block}");
        }
    }

    #[test]
    fn trailing_newline_adds_no_record_and_empty_input_has_none() {
        assert_eq!(lines(b"x\n", 4), vec![(1, b"x".to_vec())]);
        assert!(lines(b"", 4).is_empty());
    }

    #[test]
    fn an_oversized_line_is_measured_hashed_and_cut_to_its_prefix() {
        let long = vec![b'x'; MAX_LINE_BYTES * 3 + 7];
        let mut input = b"a\n".to_vec();
        input.extend_from_slice(&long);
        input.extend_from_slice(b"\nb\n");
        for block in [1000, 4096, 1 << 20] {
            let mut reader = JsonlReader::new(&input[..], block);
            let mut seen = Vec::new();
            for batch in reader.by_ref() {
                let batch = batch.expect("read");
                for r in &batch.records {
                    let over = batch.oversized(r).map(|o| (o.len, o.sha256));
                    seen.push((r.position, batch.payload(r).len(), over));
                }
            }
            let sha: [u8; 32] = Sha256::digest(&long).into();
            let expected = vec![(1, 1, None), (2, KEPT_PREFIX_BYTES, Some((long.len() as u64, sha))), (3, 1, None)];
            assert_eq!(seen, expected, "block {block}");
        }
    }

    #[test]
    fn a_line_of_exactly_the_limit_is_kept_whole() {
        let line = vec![b'y'; MAX_LINE_BYTES];
        assert_eq!(lines(&line, 4096), vec![(1, line.clone())]);
    }

    #[test]
    fn counts_lines_read() {
        let mut reader = JsonlReader::new(&b"1\n2\n3\n"[..], 2);
        while reader.next().is_some() {}
        assert_eq!(reader.lines_read(), 3);
    }
}
