//! JSONL file source: reads fixed-size blocks and cuts them at line boundaries, so memory stays
//! bounded by the block size (plus the longest line) however large the file is.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use crate::{RawBatch, RawRecord};

/// Reads a JSONL file as `RawBatch`es of whole lines, numbering lines from 1.
/// A trailing `\r` is stripped (CRLF files); a last line without `\n` is still a record.
#[derive(Debug)]
pub struct JsonlReader<R> {
    source: R,
    block_bytes: usize,
    /// Bytes read but not yet handed out (a partial last line).
    pending: Vec<u8>,
    next_line: u64,
    eof: bool,
}

impl JsonlReader<File> {
    /// Opens `path` for reading in blocks of about `block_bytes`.
    pub fn open(path: &Path, block_bytes: usize) -> io::Result<Self> {
        Ok(JsonlReader::new(File::open(path)?, block_bytes))
    }
}

impl<R: Read> JsonlReader<R> {
    /// Wraps any reader.
    pub fn new(source: R, block_bytes: usize) -> Self {
        assert!(block_bytes > 0, "block size must be positive");
        JsonlReader { source, block_bytes, pending: Vec::new(), next_line: 1, eof: false }
    }

    /// Number of lines handed out so far.
    pub fn lines_read(&self) -> u64 {
        self.next_line - 1
    }

    fn fill(&mut self) -> io::Result<()> {
        let target = self.pending.len() + self.block_bytes;
        while self.pending.len() < target {
            let start = self.pending.len();
            self.pending.resize(target, 0);
            let n = match self.source.read(&mut self.pending[start..]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
                Err(e) => {
                    self.pending.truncate(start);
                    return Err(e);
                }
            };
            self.pending.truncate(start + n);
            if n == 0 {
                self.eof = true;
                break;
            }
        }
        Ok(())
    }

    fn next_batch(&mut self) -> io::Result<Option<RawBatch>> {
        loop {
            if !self.eof {
                self.fill()?;
            }
            let cut = match memchr::memrchr(b'\n', &self.pending) {
                Some(i) => i + 1,
                None if self.eof => self.pending.len(),
                // A line longer than a block: keep reading until it ends.
                None => continue,
            };
            if cut == 0 {
                return Ok(None);
            }
            let rest = self.pending.split_off(cut);
            let bytes = std::mem::replace(&mut self.pending, rest);
            return Ok(Some(self.split_lines(bytes)));
        }
    }

    fn split_lines(&mut self, bytes: Vec<u8>) -> RawBatch {
        let mut records = Vec::with_capacity(bytes.len() / 200 + 1);
        let mut start = 0usize;
        while start < bytes.len() {
            let end = memchr::memchr(b'\n', &bytes[start..]).map_or(bytes.len(), |i| start + i);
            let mut line_end = end;
            if line_end > start && bytes[line_end - 1] == b'\r' {
                line_end -= 1;
            }
            let len = u32::try_from(line_end - start).expect("line shorter than 4 GiB");
            records.push(RawRecord { position: self.next_line, start: start as u32, len });
            self.next_line += 1;
            start = end + 1;
        }
        RawBatch { bytes, records }
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
    fn counts_lines_read() {
        let mut reader = JsonlReader::new(&b"1\n2\n3\n"[..], 2);
        while reader.next().is_some() {}
        assert_eq!(reader.lines_read(), 3);
    }
}
