//! Reading a clearing file back: what `verify` runs on every file on disk, and what checks each
//! file as it is written, before it is published.

use clearhouse_domain::{Currency, Effect, Kind, MinorSum, Totals};
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

use super::{totals_array, FORMAT, VERSION};
use crate::ids::{IdSet, MAX_ID_BYTES};

/// A batch as read back from a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadBatch {
    /// Merchant.
    pub merchant_id: String,
    /// Counts from the control record: captures, refunds, reversals, late.
    pub counts: [u64; 4],
    /// Amounts from the control record.
    pub totals: Totals,
    /// Refund credit count from the control record.
    pub refund_credit_count: u64,
    /// End-to-end ids named by refund details.
    pub end_to_end_ids: Vec<String>,
}

/// A clearing file read back and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadFile {
    /// Window id from the header.
    pub window_id: String,
    /// Currency from the header.
    pub currency: Currency,
    /// Settlement date from the header.
    pub settlement_date: String,
    /// Batches in file order.
    pub batches: Vec<ReadBatch>,
    /// Records covered by the trailer hash.
    pub records: u64,
}

/// A problem found in a clearing file: the 1-based line and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct ClearingError {
    /// 1-based line number.
    pub line: usize,
    /// Description.
    pub problem: String,
}

fn err<T>(line: usize, problem: impl Into<String>) -> Result<T, ClearingError> {
    Err(ClearingError { line, problem: problem.into() })
}

/// Parses `bytes` and checks every control total, conservation and the trailer hash.
pub fn read(bytes: &[u8]) -> Result<ReadFile, ClearingError> {
    read_hashed(bytes).map(|(file, _)| file)
}

/// [`read`], with the SHA-256 (hex) of all of `bytes`, which the read computes anyway (the
/// trailer states the hash of the lines before it).
pub fn read_hashed(bytes: &[u8]) -> Result<(ReadFile, String), ClearingError> {
    let mut check = Check::new();
    check.feed(bytes)?;
    check.finish()
}

/// A clearing file read as it is written: fed its bytes in pieces of any size (lines are
/// processed as they complete, so the encoder's check runs on each block it writes and nothing
/// holds the whole file), then finished. A file is read back this way in `verify` too, in one
/// piece.
pub struct Check {
    /// The header, and the batches read since, once the first line is read.
    file: Option<(Header, BatchReader)>,
    /// Lines completed so far.
    lines: usize,
    /// The last, incomplete line of the bytes fed so far.
    carry: Vec<u8>,
    /// SHA-256 of the lines fed, as they complete.
    hasher: Sha256,
    /// The trailer, its line number and the hash of the lines before it.
    trailer: Option<(usize, String, String)>,
    /// Whether the batches read keep their EndToEndIds.
    keep_ids: bool,
}

/// What a header record says.
struct Header {
    window_id: String,
    settlement_date: String,
}

impl Default for Check {
    fn default() -> Self {
        Check::new()
    }
}

impl Check {
    /// A check of a file not yet fed any byte.
    pub fn new() -> Check {
        Check { file: None, lines: 0, carry: Vec::new(), hasher: Sha256::new(), trailer: None, keep_ids: true }
    }

    /// The same check, whose batches read leave [`ReadBatch::end_to_end_ids`] empty: each
    /// batch's distinct ids are still counted against its control record, but not kept (what
    /// an encoder's check needs; `verify` compares the ids with the credit file's).
    pub fn without_ids() -> Check {
        Check { keep_ids: false, ..Check::new() }
    }

    /// Reads the next `bytes` of the file.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), ClearingError> {
        let mut rest = bytes;
        if !self.carry.is_empty() {
            let Some(end) = memchr::memchr(b'\n', rest) else {
                self.carry.extend_from_slice(rest);
                return Ok(());
            };
            let mut line = std::mem::take(&mut self.carry);
            line.extend_from_slice(&rest[..=end]);
            self.lines_of(&line)?;
            rest = &rest[end + 1..];
        }
        let whole = memchr::memrchr(b'\n', rest).map_or(0, |last| last + 1);
        self.lines_of(&rest[..whole])?;
        self.carry.extend_from_slice(&rest[whole..]);
        Ok(())
    }

    /// Reads whole lines (`block` ends with a newline, or is empty).
    fn lines_of(&mut self, block: &[u8]) -> Result<(), ClearingError> {
        let mut hashed = 0;
        let mut at = 0;
        // The block at once when it is all UTF-8 (one pass); else line by line, so the first
        // bad line is the one named however the file was split.
        let text = std::str::from_utf8(block).ok();
        for end in memchr::memchr_iter(b'\n', block) {
            self.lines += 1;
            let n = self.lines;
            let line = match text {
                // Lines start and end at newlines, which are characters of their own.
                Some(text) => &text[at..end],
                None => std::str::from_utf8(&block[at..end]).or_else(|_| err(n, "not UTF-8"))?,
            };
            if self.trailer.is_some() {
                return err(n, "record after the trailer");
            }
            match &mut self.file {
                None => self.file = Some(header(line, self.keep_ids)?),
                Some(_) if line.starts_with("T|") => {
                    self.hasher.update(&block[hashed..at]);
                    hashed = at;
                    let body = hex::encode(self.hasher.clone().finalize());
                    self.trailer = Some((n, line.to_owned(), body));
                }
                Some((_, reader)) => reader.record(n, line)?,
            }
            at = end + 1;
        }
        self.hasher.update(&block[hashed..]);
        Ok(())
    }

    /// The SHA-256 (hex) of every line fed so far: what an encoder that writes through this
    /// check states in its trailer, so each byte is hashed once, as it is written.
    pub fn sha256_so_far(&self) -> String {
        hex::encode(self.hasher.clone().finalize())
    }

    /// Checks the end of the file: it ends with a newline and a trailer whose counts and totals
    /// are those of the batches read, and whose hash is the one of the lines before it. Returns
    /// the file read and the SHA-256 (hex) of all of it.
    pub fn finish(self) -> Result<(ReadFile, String), ClearingError> {
        if !self.carry.is_empty() || self.lines == 0 {
            return err(
                self.lines + usize::from(!self.carry.is_empty()),
                "file does not end with a newline (truncated?)",
            );
        }
        // Lines were read, so the first was a header (or feeding failed).
        let Some((header, reader)) = self.file else {
            return err(1, format!("expected a {FORMAT} v{VERSION} header record"));
        };
        if reader.current.is_some() {
            return err(self.lines, "batch without a control record");
        }
        let Some((line, trailer, body)) = self.trailer else {
            return err(self.lines, "expected the trailer record");
        };
        check_trailer(line, &trailer, &body, &reader)?;
        let file = ReadFile {
            window_id: header.window_id,
            currency: reader.currency,
            settlement_date: header.settlement_date,
            batches: reader.batches,
            records: (line - 1) as u64,
        };
        Ok((file, hex::encode(self.hasher.finalize())))
    }
}

/// The header record, and a reader of the batches in its currency.
fn header(line: &str, keep_ids: bool) -> Result<(Header, BatchReader), ClearingError> {
    let header: Vec<&str> = line.split('|').collect();
    if header.len() != 9 || header[0] != "H" || header[1] != FORMAT || header[2] != VERSION {
        return err(1, format!("expected a {FORMAT} v{VERSION} header record"));
    }
    let currency =
        Currency::from_code(header[8]).map_or_else(|| err(1, format!("unknown currency {}", header[8])), Ok)?;
    let ids = IdSet::default();
    let reader = BatchReader { currency, batches: Vec::new(), current: None, ids, keep_ids, details: 0 };
    Ok((Header { window_id: header[3].to_owned(), settlement_date: header[7].to_owned() }, reader))
}

/// Running recomputation of the current batch from its details, in minor units (exact: a sum
/// of `i64` amounts fits an `i128` for any count of lines a file can have).
#[derive(Default)]
struct Recount {
    merchant_id: String,
    counts: [u64; 4],
    captures: MinorSum,
    refunds: MinorSum,
    recoveries: MinorSum,
    fees: MinorSum,
}

struct BatchReader {
    currency: Currency,
    batches: Vec<ReadBatch>,
    current: Option<Recount>,
    /// The EndToEndIds the current batch's details name (kept for the next batch's).
    ids: IdSet,
    /// Whether a batch read keeps them (else it only counts them).
    keep_ids: bool,
    details: u64,
}

impl BatchReader {
    fn amount(&self, line: usize, text: &str) -> Result<Decimal, ClearingError> {
        self.minor(line, text).map(|minor| self.currency.from_minor(minor))
    }

    /// An amount with exactly the currency's decimals, in minor units.
    fn minor(&self, line: usize, text: &str) -> Result<MinorSum, ClearingError> {
        // The shape the encoder writes, read without the general parser (same value, same scale).
        if let Some(minor) = self.currency.parse_minor(text) {
            return Ok(minor);
        }
        let value = crate::bounded_amount(text).map_or_else(|| err(line, format!("{text:?} is not an amount")), Ok)?;
        if value.scale() != self.currency.minor_units() {
            return err(line, format!("{text} does not have exactly {} decimals", self.currency.minor_units()));
        }
        // With the currency's scale, the mantissa is the amount in minor units.
        Ok(value.mantissa())
    }

    fn record(&mut self, line: usize, text: &str) -> Result<(), ClearingError> {
        let mut fields = [""; 17];
        let mut count = 0;
        let mut start = 0;
        // One search over the line for its separators (ASCII, so every field is a `str`).
        let ends = memchr::memchr_iter(b'|', text.as_bytes()).chain([text.len()]);
        for end in ends {
            if count < fields.len() {
                fields[count] = &text[start..end];
            }
            count += 1;
            start = end + 1;
        }
        let f = &fields[..count.min(fields.len())];
        match (f[0], count, self.current.is_some()) {
            ("B", 3, false) => {
                if self.batches.last().is_some_and(|b| b.merchant_id.as_str() >= f[1]) {
                    return err(line, format!("batch {} out of merchant order", f[1]));
                }
                self.current = Some(Recount { merchant_id: f[1].to_owned(), ..Recount::default() });
                Ok(())
            }
            ("D", 10, true) => self.detail(line, f),
            ("C", 17, true) => self.control(line, f),
            _ => err(line, format!("unexpected record {:?}", f[0])),
        }
    }

    fn detail(&mut self, line: usize, f: &[&str]) -> Result<(), ClearingError> {
        let amount = self.minor(line, f[4])?;
        let fee = self.minor(line, f[5])?;
        let kind = Kind::from_wire(f[2]).map_or_else(|| err(line, format!("unknown type {}", f[2])), Ok)?;
        let effect = Effect::from_code(f[7]).map_or_else(|| err(line, format!("unknown effect {}", f[7])), Ok)?;
        let r = self.current.as_mut().expect("inside a batch");
        r.fees += fee;
        match (kind, effect) {
            (Kind::Capture, Effect::Captured) => r.captures += amount,
            (Kind::Refund, Effect::Refunded) => r.refunds += amount,
            (Kind::Refund, Effect::RefundReversed) | (Kind::RefundReversal, Effect::NettedReversal) => {}
            (Kind::RefundReversal, Effect::Recovery) => r.recoveries += amount,
            _ => return err(line, format!("effect {} is impossible for a {}", f[7], f[2])),
        }
        let slot = match kind {
            Kind::Capture => 0,
            Kind::Refund => 1,
            Kind::RefundReversal => 2,
        };
        r.counts[slot] += 1;
        if f[8] != "-" {
            r.counts[3] += 1;
        }
        match (effect == Effect::Refunded, f[9]) {
            (true, "-") => return err(line, "paid refund without an EndToEndId"),
            (true, e2e) => {
                if self.ids.insert(e2e.as_bytes()).is_none() {
                    return err(line, format!("EndToEndId {e2e:?} is empty or longer than {MAX_ID_BYTES} characters"));
                }
            }
            (false, "-") => {}
            (false, _) => return err(line, "EndToEndId on a detail that moves no refund money"),
        }
        self.details += 1;
        Ok(())
    }

    fn control(&mut self, line: usize, f: &[&str]) -> Result<(), ClearingError> {
        let r = self.current.take().expect("inside a batch");
        if f[1] != r.merchant_id || f[2] != self.currency.code() {
            return err(line, format!("control record for {}/{} closes batch {}", f[1], f[2], r.merchant_id));
        }
        let counts: Vec<u64> = f[3..7].iter().map(|c| c.parse().unwrap_or(u64::MAX)).collect();
        if counts != r.counts {
            return err(line, format!("control counts {counts:?} but the details count {:?}", r.counts));
        }
        let a = f[7..16].iter().map(|x| self.amount(line, x)).collect::<Result<Vec<_>, _>>()?;
        let totals = Totals {
            captures: a[0],
            refunds: a[1],
            recoveries: a[2],
            fees: a[3],
            carried_in: a[4],
            net: a[5],
            payout: a[6],
            carried_out: a[7],
            refund_credits: a[8],
        };
        let recomputed = [
            ("captures", r.captures, totals.captures),
            ("refunds", r.refunds, totals.refunds),
            ("recoveries", r.recoveries, totals.recoveries),
            ("fees", r.fees, totals.fees),
        ];
        for (name, from_details, stated) in recomputed {
            let scale = self.currency.minor_units();
            let Ok(from_details) = Decimal::try_from_i128_with_scale(from_details, scale) else {
                return err(line, format!("the details' {name} add up beyond any amount"));
            };
            if from_details != stated {
                return err(line, format!("control {name} {stated} but the details sum to {from_details}"));
            }
        }
        if !totals.is_conserved() {
            return err(line, format!("batch {} does not balance (conservation violated)", r.merchant_id));
        }
        let refund_credit_count: u64 = f[16].parse().unwrap_or(u64::MAX);
        if refund_credit_count != self.ids.len() as u64 {
            let named = self.ids.len();
            return err(line, format!("refund credit count {} but the details name {named} credits", f[16]));
        }
        let distinct = self.ids.drain_sorted(self.keep_ids);
        self.batches.push(ReadBatch {
            merchant_id: r.merchant_id,
            counts: r.counts,
            totals,
            refund_credit_count,
            end_to_end_ids: distinct,
        });
        Ok(())
    }
}

/// Checks the trailer against the batches read and `hash`, the hash of the lines it covers.
fn check_trailer(line: usize, trailer: &str, hash: &str, reader: &BatchReader) -> Result<(), ClearingError> {
    let f: Vec<&str> = trailer.split('|').collect();
    if f.len() != 13 || f[0] != "T" {
        return err(line, "expected the trailer record");
    }
    if f[12] != hash {
        return err(line, format!("SHA-256 of the preceding lines is {hash}, trailer says {}", f[12]));
    }
    if f[1] != reader.batches.len().to_string() || f[2] != reader.details.to_string() {
        return err(
            line,
            format!(
                "trailer counts {}/{} but the file has {} batches and {} details",
                f[1],
                f[2],
                reader.batches.len(),
                reader.details
            ),
        );
    }
    let mut sums = [Decimal::ZERO; 9];
    for batch in &reader.batches {
        for (s, a) in sums.iter_mut().zip(totals_array(&batch.totals)) {
            *s += a;
        }
    }
    for (i, (stated, sum)) in f[3..12].iter().zip(sums).enumerate() {
        if reader.amount(line, stated)? != sum {
            return err(line, format!("trailer total #{} is {stated} but the batches sum to {sum}", i + 1));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn golden() -> String {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/golden/sample/clearing-20261120T1500Z-CNY.txt");
        std::fs::read_to_string(path).expect("golden clearing file")
    }

    #[test]
    fn the_check_counts_ids_that_verify_keeps() {
        let text = golden();
        let read = read(text.as_bytes()).expect("golden file reads");
        let mut check = Check::without_ids();
        check.feed(text.as_bytes()).expect("feeds");
        let (counted, _) = check.finish().expect("checks");
        for (kept, counted) in read.batches.iter().zip(&counted.batches) {
            assert_eq!(kept.end_to_end_ids.len() as u64, kept.refund_credit_count);
            assert!(counted.end_to_end_ids.is_empty());
            assert_eq!(counted.refund_credit_count, kept.refund_credit_count);
        }
        assert!(read.batches.iter().any(|b| b.refund_credit_count > 0), "the sample pays refunds");
    }

    #[test]
    fn the_hash_of_a_read_is_the_hash_of_every_byte() {
        let text = golden();
        let (read_back, hash) = read_hashed(text.as_bytes()).expect("golden file reads");
        assert_eq!(hash, crate::sha256_hex(text.as_bytes()), "what verify records for the seal");
        assert_eq!(read_back, read(text.as_bytes()).expect("reads"));
    }

    #[test]
    fn an_end_to_end_id_no_credit_file_may_hold_is_named() {
        let id = "20261120T1500ZRa6f94ee344e75180915d";
        let text = golden().replacen(id, &format!("{id}0"), 1);
        let error = read(text.as_bytes()).expect_err("a 36-character id");
        assert_eq!(error.line, 4);
        assert!(error.problem.contains("longer than 35"), "{}", error.problem);
        let empty = golden().replacen(&format!("|{id}\n"), "|\n", 1);
        let error = read(empty.as_bytes()).expect_err("an empty id on a paid refund");
        assert_eq!((error.line, error.problem.contains("empty")), (4, true), "{}", error.problem);
    }
}
