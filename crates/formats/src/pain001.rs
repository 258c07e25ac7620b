//! ISO 20022 `pain.001.001.09` (CustomerCreditTransferInitiation): the bank credit file.
//!
//! Every id in it is derived from the window, currency and batch, never from the clock or a
//! random source, so a replay produces the same bytes and the bank can de-duplicate on
//! `MsgId` and `EndToEndId`. Validated against the official XSD in the test suite.

mod check;
mod read;

use std::io::{self, Write};
use std::ops::Range;

use clearhouse_domain::{CreditKind, CreditView, Currency, Payee, PayeeView, SettledBatch};
use rust_decimal::Decimal;

use crate::clearing::BLOCK_BYTES;
use crate::WindowMeta;

pub use check::{check, Checked, Scan};
pub use read::{read, ReadPain, ReadPayment};

/// The message's XML namespace.
pub const NAMESPACE: &str = "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09";

/// What encoding a credit file wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// Number of credit transfers (`CdtTrfTxInf`).
    pub records: u64,
    /// Sum of the transfers.
    pub total: Decimal,
    /// SHA-256 of the file (hex), computed once over the bytes as they were written.
    pub sha256: String,
}

/// `MsgId` of a window's `part`-th (1-based) credit file in `currency`.
pub fn message_id(meta: &WindowMeta, currency: Currency, part: usize) -> String {
    match part {
        1 => format!("CH-{}-{currency}", meta.id),
        n => format!("CH-{}-{currency}-{n}", meta.id),
    }
}

/// One `PmtInf`: some of a batch's credits.
type Block<'a> = (&'a SettledBatch, Range<usize>);

/// Splits the paying batches' credits into payment blocks, and the blocks into files, so that no
/// `CtrlSum` exceeds the 18 digits ISO 20022 allows. A window normally gets one file with one
/// block per paying batch; only totals beyond 10^16 (in a two-decimal currency) split.
fn layout<'a>(batches: &[&'a SettledBatch], max: Decimal) -> Vec<Vec<Block<'a>>> {
    let mut blocks: Vec<(Block<'a>, Decimal)> = Vec::new();
    for batch in batches.iter().copied().filter(|b| !b.credits.is_empty()) {
        let (mut start, mut sum) = (0, Decimal::ZERO);
        for (i, amount) in batch.credits.amounts(0..batch.credits.len()).enumerate() {
            assert!(amount <= max, "credit {:?} above the largest transfer amount", batch.credits.end_to_end_id(i));
            if i > start && sum + amount > max {
                blocks.push(((batch, start..i), sum));
                (start, sum) = (i, Decimal::ZERO);
            }
            sum += amount;
        }
        blocks.push(((batch, start..batch.credits.len()), sum));
    }
    let mut files: Vec<Vec<Block<'a>>> = Vec::new();
    let mut file_sum = Decimal::ZERO;
    for (block, sum) in blocks {
        match files.last_mut() {
            Some(file) if file_sum + sum <= max => file.push(block),
            _ => {
                files.push(vec![block]);
                file_sum = Decimal::ZERO;
            }
        }
        file_sum += sum;
    }
    files
}

/// One credit file of a window and currency: its payment blocks, its number (1-based) and the
/// number of its first block.
pub struct Part<'a> {
    blocks: Vec<Block<'a>>,
    number: usize,
    first_block: usize,
}

impl Part<'_> {
    /// The file's number among the window's files in its currency (1-based).
    pub fn number(&self) -> usize {
        self.number
    }
}

/// The window's credit files in `currency`: one `PmtInf` per paying batch (split when its
/// control sum would pass 18 digits), normally in one file; none when no batch pays anything (the
/// schema requires at least one transfer per file).
pub fn parts<'a>(currency: Currency, batches: &[&'a SettledBatch]) -> Vec<Part<'a>> {
    let mut first_block = 1;
    let files = layout(batches, currency.max_transfer_amount());
    let mut out = Vec::with_capacity(files.len());
    for (i, blocks) in files.into_iter().enumerate() {
        let next = first_block + blocks.len();
        out.push(Part { blocks, number: i + 1, first_block });
        first_block = next;
    }
    out
}

/// Encodes one credit file into `out`, block by block. Every block goes through the file's
/// pre-publish [`Scan`](check::Scan) before it is written (which hashes it), and the file's
/// counts and total are compared with the credits at its end: a file that does not add up
/// stops the run (a panic naming it) instead of reaching a bank.
pub fn encode(
    meta: &WindowMeta,
    currency: Currency,
    part: &Part<'_>,
    debtor: &Payee,
    out: &mut dyn Write,
) -> io::Result<Encoded> {
    let blocks = &part.blocks;
    let amounts = blocks.iter().flat_map(|(batch, credits)| batch.credits.amounts(credits.clone()));
    let records: u64 = blocks.iter().map(|(_, credits)| credits.len() as u64).sum();
    let total: Decimal = amounts.sum();
    let file = format!("{} {currency}", meta.id);
    let scan = Scan::expecting(currency, usize::try_from(records).unwrap_or(0));
    let mut x = Xml { buf: Vec::with_capacity(BLOCK_BYTES + 4096), scan, out, file: &file };
    x.raw("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Document xmlns=\"");
    x.raw(NAMESPACE);
    x.raw("\"><CstmrCdtTrfInitn>\n<GrpHdr>");
    x.text("MsgId", &message_id(meta, currency, part.number));
    x.text("CreDtTm", &meta.end_local);
    x.text("NbOfTxs", &records.to_string());
    x.text("CtrlSum", &currency.format(total));
    x.raw("<InitgPty>");
    x.text("Nm", &debtor.name);
    x.raw("</InitgPty></GrpHdr>\n");
    for (n, block) in blocks.iter().enumerate() {
        payment(&mut x, meta, currency, block, part.first_block + n, debtor)?;
    }
    x.raw("</CstmrCdtTrfInitn></Document>\n");
    x.write()?;
    let (checked, sha256) = x.scan.finish().unwrap_or_else(|e| panic!("pain.001 for {file} fails its own check: {e}"));
    assert_eq!((checked.records, checked.total), (records, total), "pain.001 check differs from the encoder");
    Ok(Encoded { records, total, sha256 })
}

/// The compact writer: no indentation, one line per group header, payment header and transfer
/// (so the file diffs and greps line by line), text escaped by quick-xml; written out through
/// the scan in blocks of whole lines.
struct Xml<'a> {
    buf: Vec<u8>,
    scan: Scan,
    out: &'a mut dyn Write,
    /// Window and currency, for the message of a failed check.
    file: &'a str,
}

impl Xml<'_> {
    fn raw(&mut self, s: &str) {
        self.buf.extend_from_slice(s.as_bytes());
    }

    /// Scans, hashes and writes what the buffer holds.
    fn write(&mut self) -> io::Result<()> {
        if let Err(e) = self.scan.feed(&self.buf) {
            panic!("pain.001 for {} fails its own check: {e}", self.file);
        }
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }

    fn text(&mut self, name: &str, value: &str) {
        self.buf.push(b'<');
        self.raw(name);
        self.buf.push(b'>');
        self.escaped(value);
        self.raw("</");
        self.raw(name);
        self.buf.push(b'>');
    }

    /// `value` as XML text.
    fn escaped(&mut self, value: &str) {
        self.raw(&quick_xml::escape::escape(value));
    }

    fn account(&mut self, element: &str, party: PayeeView<'_>) {
        self.open(element);
        self.raw("<Id>");
        if party.account_is_iban() {
            self.text("IBAN", party.account);
        } else {
            self.raw("<Othr>");
            self.text("Id", party.account);
            self.raw("</Othr>");
        }
        self.raw("</Id>");
        self.close(element);
    }

    fn agent(&mut self, element: &str, party: PayeeView<'_>) {
        self.open(element);
        self.raw("<FinInstnId>");
        if party.bank_is_bic() {
            self.text("BICFI", party.bank);
        } else {
            self.raw("<ClrSysMmbId>");
            self.text("MmbId", party.bank);
            self.raw("</ClrSysMmbId>");
        }
        self.raw("</FinInstnId>");
        self.close(element);
    }

    fn open(&mut self, name: &str) {
        self.buf.push(b'<');
        self.raw(name);
        self.buf.push(b'>');
    }

    fn close(&mut self, name: &str) {
        self.raw("</");
        self.raw(name);
        self.buf.push(b'>');
    }
}

fn payment(
    x: &mut Xml<'_>,
    meta: &WindowMeta,
    currency: Currency,
    (batch, range): &Block<'_>,
    n: usize,
    debtor: &Payee,
) -> io::Result<()> {
    let credits = batch.credits.range(range.clone());
    let sum: Decimal = batch.credits.amounts(range.clone()).sum();
    x.raw("<PmtInf>");
    x.text("PmtInfId", &format!("{}-{currency}-{n:05}", meta.id));
    x.text("PmtMtd", "TRF");
    x.text("BtchBookg", "true");
    x.text("NbOfTxs", &credits.len().to_string());
    x.text("CtrlSum", &currency.format(sum));
    x.raw("<ReqdExctnDt>");
    x.text("Dt", &meta.settlement_date.to_string());
    x.raw("</ReqdExctnDt><Dbtr>");
    x.text("Nm", &debtor.name);
    x.raw("</Dbtr>");
    x.account("DbtrAcct", debtor.view());
    x.agent("DbtrAgt", debtor.view());
    x.raw("\n");
    for credit in credits {
        transfer(x, currency, batch, &credit);
        if x.buf.len() >= BLOCK_BYTES {
            x.write()?;
        }
    }
    x.raw("</PmtInf>\n");
    Ok(())
}

fn transfer(x: &mut Xml<'_>, currency: Currency, batch: &SettledBatch, credit: &CreditView<'_>) {
    x.raw("<CdtTrfTxInf><PmtId>");
    x.text("EndToEndId", credit.end_to_end_id);
    x.raw("</PmtId><Amt><InstdAmt Ccy=\"");
    x.raw(currency.code());
    x.raw("\">");
    let minor = currency.to_minor(credit.amount).expect("a credit amount has its currency's scale");
    x.raw(currency.minor_text(minor).as_str());
    x.raw("</InstdAmt></Amt>");
    x.agent("CdtrAgt", credit.creditor);
    x.raw("<Cdtr>");
    x.text("Nm", credit.creditor.name);
    x.raw("</Cdtr>");
    x.account("CdtrAcct", credit.creditor);
    // The remittance text, escaped piece by piece: the same bytes as escaping it whole, since
    // escaping goes character by character and the fixed words and numbers hold none it changes.
    x.raw("<RmtInf><Ustrd>");
    match credit.kind {
        CreditKind::Refund => {
            x.raw("Refund from merchant ");
            x.escaped(&batch.merchant_id);
            x.raw(" (");
            x.raw(itoa::Buffer::new().format(credit.refunds));
            x.raw(" refunds)");
        }
        CreditKind::Payout => {
            x.raw("Settlement payout to merchant ");
            x.escaped(&batch.merchant_id);
            x.raw(&format!(" window {}", batch.window));
        }
    }
    x.raw("</Ustrd></RmtInf></CdtTrfTxInf>\n");
}
