//! The clearing file: one per window and currency, pipe-separated, one record per line.
//! Layout in `docs/clearing-file.md`. Every total in it can be recomputed from its detail
//! records, which is exactly what [`Check`] does, both as a file is written and in `verify`.

mod read;

use std::fmt::Write as _;
use std::io::{self, Write};

use clearhouse_domain::{Currency, DetailView, SettledBatch, Totals};
use rust_decimal::Decimal;

use crate::WindowMeta;

pub use read::{read, read_hashed, Check, ClearingError, ReadBatch, ReadFile};

/// Format tag in the header record.
pub const FORMAT: &str = "CLEARHOUSE-CLEARING";
/// Layout version in the header record.
pub const VERSION: &str = "1";

/// Bytes an encoder gathers before writing them out (and checking and hashing them): large
/// enough that a write is not a system call per record, small enough to stay in cache.
pub(crate) const BLOCK_BYTES: usize = 1 << 16;

/// What encoding a clearing file wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// Records covered by the trailer hash (every line but the trailer).
    pub records: u64,
    /// SHA-256 of the whole file (hex), computed once over the bytes as they were written.
    pub sha256: String,
}

/// Encodes the batches of one currency of a window into `out`, block by block. Every block
/// is read back by the file's reader ([`Check`]) before it is written, which also hashes it,
/// and the whole file is checked at its end: a file that does not read back as what was
/// encoded stops the run (a panic naming it) instead of reaching a bank.
pub fn encode(
    meta: &WindowMeta,
    currency: Currency,
    batches: &[&SettledBatch],
    out: &mut dyn Write,
) -> io::Result<Encoded> {
    let mut w =
        Blocks { buf: String::with_capacity(BLOCK_BYTES + 4096), check: Check::without_ids(), out, meta, currency };
    let _ = writeln!(
        w.buf,
        "H|{FORMAT}|{VERSION}|{}|{}|{}|{}|{}|{currency}",
        meta.id, meta.start_local, meta.end_local, meta.timezone, meta.settlement_date
    );
    let mut sum = [Decimal::ZERO; 9];
    let mut details = 0u64;
    for batch in batches {
        assert_eq!(batch.currency, currency, "batch in the wrong currency file");
        let _ = writeln!(w.buf, "B|{}|{currency}", batch.merchant_id);
        for d in batch.details.iter() {
            detail_record(&mut w.buf, currency, batch, &d);
            w.write_if_full()?;
        }
        details += batch.details.len() as u64;
        let t = &batch.totals;
        let c = &batch.counts;
        let amounts = totals_array(t);
        for (s, a) in sum.iter_mut().zip(amounts) {
            *s += a;
        }
        let _ = write!(
            w.buf,
            "C|{}|{currency}|{}|{}|{}|{}|",
            batch.merchant_id, c.captures, c.refunds, c.reversals, c.late
        );
        for amount in amounts {
            let minor = currency.to_minor(amount).expect("a total has its currency's scale");
            currency.write_minor(minor, &mut w.buf);
            w.buf.push('|');
        }
        let _ = writeln!(w.buf, "{}", batch.refund_credit_count());
    }
    // Header, then per batch its header, details and control record.
    let records = 1 + 2 * batches.len() as u64 + details;
    w.write()?;
    let body_sha256 = w.check.sha256_so_far();
    let totals = sum.map(|a| currency.format(a)).join("|");
    let _ = writeln!(w.buf, "T|{}|{details}|{totals}|{body_sha256}", batches.len());
    w.write()?;
    let Blocks { check, meta, .. } = w;
    let (read, sha256) = check.finish().unwrap_or_else(|e| fails(meta, currency, e));
    assert_eq!((read.batches.len(), read.records), (batches.len(), records), "clearing file read-back differs");
    Ok(Encoded { records, sha256 })
}

/// The encoder's output: a block being filled, the check each block goes through, and where it
/// then goes.
struct Blocks<'a> {
    buf: String,
    check: Check,
    out: &'a mut dyn Write,
    meta: &'a WindowMeta,
    currency: Currency,
}

impl Blocks<'_> {
    fn write_if_full(&mut self) -> io::Result<()> {
        if self.buf.len() >= BLOCK_BYTES {
            self.write()?;
        }
        Ok(())
    }

    fn write(&mut self) -> io::Result<()> {
        if let Err(e) = self.check.feed(self.buf.as_bytes()) {
            fails(self.meta, self.currency, e);
        }
        self.out.write_all(self.buf.as_bytes())?;
        self.buf.clear();
        Ok(())
    }
}

fn fails(meta: &WindowMeta, currency: Currency, e: ClearingError) -> ! {
    panic!("clearing file for {} {currency} fails its own check: {e}", meta.id)
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
