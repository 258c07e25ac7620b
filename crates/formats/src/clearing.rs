//! The clearing file: one per window and currency, pipe-separated, one record per line.
//! Layout in `docs/clearing-file.md`. Every total in it can be recomputed from its detail
//! records, which is exactly what `check` does, both before a file is written and in `verify`.

use std::fmt::Write as _;

use clearhouse_domain::{Currency, DetailView, Effect, Kind, SettledBatch, Totals};
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

use crate::WindowMeta;

/// Format tag in the header record.
pub const FORMAT: &str = "CLEARHOUSE-CLEARING";
/// Layout version in the header record.
pub const VERSION: &str = "1";

/// An encoded clearing file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// File content.
    pub bytes: Vec<u8>,
    /// Records covered by the trailer hash (every line but the trailer).
    pub records: u64,
    /// SHA-256 of the whole file (hex): the trailer's hash state carried on over the trailer,
    /// so every byte is hashed once.
    pub sha256: String,
    /// SHA-256 of every line but the trailer (hex), as the trailer states it.
    pub body_sha256: String,
}

/// Encodes the batches of one currency of a window.
pub fn encode(meta: &WindowMeta, currency: Currency, batches: &[&SettledBatch]) -> Encoded {
    let mut out = String::with_capacity(256 + batches.iter().map(|b| b.details.len() * 128).sum::<usize>());
    let _ = writeln!(
        out,
        "H|{FORMAT}|{VERSION}|{}|{}|{}|{}|{}|{currency}",
        meta.id, meta.start_local, meta.end_local, meta.timezone, meta.settlement_date
    );
    let mut sum = [Decimal::ZERO; 9];
    let mut details = 0u64;
    for batch in batches {
        assert_eq!(batch.currency, currency, "batch in the wrong currency file");
        let _ = writeln!(out, "B|{}|{currency}", batch.merchant_id);
        for d in batch.details.iter() {
            detail_record(&mut out, currency, batch, &d);
        }
        details += batch.details.len() as u64;
        let t = &batch.totals;
        let c = &batch.counts;
        let amounts = totals_array(t);
        for (s, a) in sum.iter_mut().zip(amounts) {
            *s += a;
        }
        let _ = writeln!(
            out,
            "C|{}|{currency}|{}|{}|{}|{}|{}|{}",
            batch.merchant_id,
            c.captures,
            c.refunds,
            c.reversals,
            c.late,
            amounts.map(|a| currency.format(a)).join("|"),
            batch.refund_credit_count()
        );
    }
    // Header, then per batch its header, details and control record.
    let records = 1 + 2 * batches.len() as u64 + details;
    let mut hasher = Sha256::new();
    hasher.update(out.as_bytes());
    let body_sha256 = hex::encode(hasher.clone().finalize());
    let body = out.len();
    let totals = sum.map(|a| currency.format(a)).join("|");
    let _ = writeln!(out, "T|{}|{details}|{totals}|{body_sha256}", batches.len());
    hasher.update(&out.as_bytes()[body..]);
    Encoded { bytes: out.into_bytes(), records, sha256: hex::encode(hasher.finalize()), body_sha256 }
}

/// Appends one detail record: `D|id|type|time|amount|fee|reference|effect|late from|credit`.
/// Written field by field (amounts from their minor units), because it runs once per
/// instruction and a formatting machine per field costs more than the rest of the line.
fn detail_record(out: &mut String, currency: Currency, batch: &SettledBatch, d: &DetailView<'_>) {
    out.push_str("D|");
    out.push_str(d.id);
    out.push('|');
    out.push_str(d.kind.as_str());
    out.push('|');
    let _ = write!(out, "{}", d.event_time);
    out.push('|');
    currency.write_minor(d.amount.into(), out);
    out.push('|');
    currency.write_minor(d.fee.into(), out);
    out.push('|');
    out.push_str(d.reference.unwrap_or("-"));
    out.push('|');
    out.push_str(d.effect.code());
    out.push('|');
    match d.late_from {
        Some(window) => {
            let _ = write!(out, "{window}");
        }
        None => out.push('-'),
    }
    out.push('|');
    out.push_str(d.credit.and_then(|c| batch.credits.end_to_end_id(c as usize)).unwrap_or("-"));
    out.push('\n');
}

/// The nine amounts of a control record, in file order.
fn totals_array(t: &Totals) -> [Decimal; 9] {
    [t.captures, t.refunds, t.recoveries, t.fees, t.carried_in, t.net, t.payout, t.carried_out, t.refund_credits]
}

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
    read_with(bytes, None)
}

/// The check of a file before it is published: everything [`read`] checks, except that the
/// trailer's hash is compared with `body_sha256`, the hash the encoder computed over these same
/// bytes, instead of being computed a second time (`verify` runs [`read`], which computes it).
pub fn check(bytes: &[u8], body_sha256: &str) -> Result<ReadFile, ClearingError> {
    read_with(bytes, Some(body_sha256))
}

/// [`read`], taking the body's hash as `stated` when given.
fn read_with(bytes: &[u8], stated: Option<&str>) -> Result<ReadFile, ClearingError> {
    let text = std::str::from_utf8(bytes).or_else(|_| err(0, "not UTF-8"))?;
    if !text.ends_with('\n') {
        return err(text.lines().count(), "file does not end with a newline (truncated?)");
    }
    let lines: Vec<&str> = text.lines().collect();
    let header: Vec<&str> = lines.first().map(|l| l.split('|').collect()).unwrap_or_default();
    if header.len() != 9 || header[0] != "H" || header[1] != FORMAT || header[2] != VERSION {
        return err(1, format!("expected a {FORMAT} v{VERSION} header record"));
    }
    let currency =
        Currency::from_code(header[8]).map_or_else(|| err(1, format!("unknown currency {}", header[8])), Ok)?;
    let mut reader = BatchReader { currency, batches: Vec::new(), current: None, details: 0 };
    let last = lines.len();
    for (n, line) in lines.iter().enumerate().skip(1).take(last.saturating_sub(2)) {
        reader.record(n + 1, line)?;
    }
    if reader.current.is_some() {
        return err(last, "batch without a control record");
    }
    let trailer_start = text.len() - lines[last - 1].len() - 1;
    check_trailer(last, lines[last - 1], (&text[..trailer_start], stated), &reader)?;
    Ok(ReadFile {
        window_id: header[3].to_owned(),
        currency,
        settlement_date: header[7].to_owned(),
        batches: reader.batches,
        records: (last - 1) as u64,
    })
}

/// Running recomputation of the current batch from its details.
#[derive(Default)]
struct Recount {
    merchant_id: String,
    counts: [u64; 4],
    captures: Decimal,
    refunds: Decimal,
    recoveries: Decimal,
    fees: Decimal,
    end_to_end_ids: std::collections::BTreeSet<String>,
}

struct BatchReader {
    currency: Currency,
    batches: Vec<ReadBatch>,
    current: Option<Recount>,
    details: u64,
}

impl BatchReader {
    fn amount(&self, line: usize, text: &str) -> Result<Decimal, ClearingError> {
        // The shape the encoder writes, read without the general parser (same value, same scale).
        if let Some(minor) = self.currency.parse_minor(text) {
            return Ok(self.currency.from_minor(minor));
        }
        let value = crate::bounded_amount(text).map_or_else(|| err(line, format!("{text:?} is not an amount")), Ok)?;
        if value.scale() != self.currency.minor_units() {
            return err(line, format!("{text} does not have exactly {} decimals", self.currency.minor_units()));
        }
        Ok(value)
    }

    fn record(&mut self, line: usize, text: &str) -> Result<(), ClearingError> {
        let mut fields = [""; 17];
        let mut count = 0;
        for part in text.split('|') {
            if count < fields.len() {
                fields[count] = part;
            }
            count += 1;
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
        let amount = self.amount(line, f[4])?;
        let fee = self.amount(line, f[5])?;
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
                if !r.end_to_end_ids.contains(e2e) {
                    r.end_to_end_ids.insert(e2e.to_owned());
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
            if from_details != stated {
                return err(line, format!("control {name} {stated} but the details sum to {from_details}"));
            }
        }
        if !totals.is_conserved() {
            return err(line, format!("batch {} does not balance (conservation violated)", r.merchant_id));
        }
        let distinct: Vec<String> = r.end_to_end_ids.into_iter().collect();
        let refund_credit_count: u64 = f[16].parse().unwrap_or(u64::MAX);
        if refund_credit_count != distinct.len() as u64 {
            return err(line, format!("refund credit count {} but the details name {} credits", f[16], distinct.len()));
        }
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

/// Checks the trailer against the batches read and the hash of the lines it covers (`stated`
/// when the caller computed it over these bytes already).
fn check_trailer(
    line: usize,
    trailer: &str,
    (covered, stated): (&str, Option<&str>),
    reader: &BatchReader,
) -> Result<(), ClearingError> {
    let f: Vec<&str> = trailer.split('|').collect();
    if f.len() != 13 || f[0] != "T" {
        return err(line, "expected the trailer record");
    }
    let hash = stated.map_or_else(|| hex::encode(Sha256::digest(covered.as_bytes())), str::to_owned);
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
