//! ISO 20022 `pain.001.001.09` (CustomerCreditTransferInitiation): the bank credit file.
//!
//! Every id in it is derived from the window, currency and batch, never from the clock or a
//! random source, so a replay produces the same bytes and the bank can de-duplicate on
//! `MsgId` and `EndToEndId`. Validated against the official XSD in the test suite.

mod check;
mod read;

use std::ops::Range;

use clearhouse_domain::{CreditKind, CreditView, Currency, Payee, PayeeView, SettledBatch};
use rust_decimal::Decimal;

use crate::WindowMeta;

pub use check::check;
pub use read::{read, ReadPain, ReadPayment};

/// The message's XML namespace.
pub const NAMESPACE: &str = "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09";

/// An encoded credit file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// XML bytes.
    pub bytes: Vec<u8>,
    /// Number of credit transfers (`CdtTrfTxInf`).
    pub records: u64,
    /// Sum of the transfers.
    pub total: Decimal,
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

/// Encodes the window's credits in `currency`: one `PmtInf` per paying batch (split when its
/// control sum would pass 18 digits), normally in one file; empty when no batch pays anything (the
/// schema requires at least one transfer per file).
pub fn encode(meta: &WindowMeta, currency: Currency, batches: &[&SettledBatch], debtor: &Payee) -> Vec<Encoded> {
    let files = layout(batches, currency.max_transfer_amount());
    let mut block_no = 0;
    let mut out = Vec::with_capacity(files.len());
    for (i, blocks) in files.iter().enumerate() {
        let first_block = block_no + 1;
        block_no += blocks.len();
        out.push(encode_file(meta, currency, blocks, debtor, i + 1, first_block));
    }
    out
}

fn encode_file(
    meta: &WindowMeta,
    currency: Currency,
    blocks: &[Block<'_>],
    debtor: &Payee,
    part: usize,
    first_block: usize,
) -> Encoded {
    let amounts = blocks.iter().flat_map(|(batch, credits)| batch.credits.amounts(credits.clone()));
    let records: u64 = blocks.iter().map(|(_, credits)| credits.len() as u64).sum();
    let total: Decimal = amounts.sum();
    // About 560 bytes a transfer; sized once so the buffer never doubles past it.
    let mut x = Xml(Vec::with_capacity(2048 + 600 * records as usize));
    x.raw("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Document xmlns=\"");
    x.raw(NAMESPACE);
    x.raw("\"><CstmrCdtTrfInitn>\n<GrpHdr>");
    x.text("MsgId", &message_id(meta, currency, part));
    x.text("CreDtTm", &meta.end_local);
    x.text("NbOfTxs", &records.to_string());
    x.text("CtrlSum", &currency.format(total));
    x.raw("<InitgPty>");
    x.text("Nm", &debtor.name);
    x.raw("</InitgPty></GrpHdr>\n");
    for (n, block) in blocks.iter().enumerate() {
        payment(&mut x, meta, currency, block, first_block + n, debtor);
    }
    x.raw("</CstmrCdtTrfInitn></Document>\n");
    Encoded { bytes: x.0, records, total }
}

/// The compact writer: no indentation, one line per group header, payment header and transfer
/// (so the file diffs and greps line by line), text escaped by quick-xml.
struct Xml(Vec<u8>);

impl Xml {
    fn raw(&mut self, s: &str) {
        self.0.extend_from_slice(s.as_bytes());
    }

    fn text(&mut self, name: &str, value: &str) {
        self.0.push(b'<');
        self.raw(name);
        self.0.push(b'>');
        self.raw(&quick_xml::escape::escape(value));
        self.raw("</");
        self.raw(name);
        self.0.push(b'>');
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
        self.0.push(b'<');
        self.raw(name);
        self.0.push(b'>');
    }

    fn close(&mut self, name: &str) {
        self.raw("</");
        self.raw(name);
        self.0.push(b'>');
    }
}

fn payment(x: &mut Xml, meta: &WindowMeta, currency: Currency, (batch, range): &Block<'_>, n: usize, debtor: &Payee) {
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
    }
    x.raw("</PmtInf>\n");
}

fn transfer(x: &mut Xml, currency: Currency, batch: &SettledBatch, credit: &CreditView<'_>) {
    let remittance = match credit.kind {
        CreditKind::Refund => format!("Refund from merchant {} ({} refunds)", batch.merchant_id, credit.refunds),
        CreditKind::Payout => format!("Settlement payout to merchant {} window {}", batch.merchant_id, batch.window),
    };
    x.raw("<CdtTrfTxInf><PmtId>");
    x.text("EndToEndId", credit.end_to_end_id);
    x.raw("</PmtId><Amt><InstdAmt Ccy=\"");
    x.raw(currency.code());
    x.raw("\">");
    x.raw(&currency.format(credit.amount));
    x.raw("</InstdAmt></Amt>");
    x.agent("CdtrAgt", credit.creditor);
    x.raw("<Cdtr>");
    x.text("Nm", credit.creditor.name);
    x.raw("</Cdtr>");
    x.account("CdtrAcct", credit.creditor);
    x.raw("<RmtInf>");
    x.text("Ustrd", &remittance);
    x.raw("</RmtInf></CdtTrfTxInf>\n");
}
