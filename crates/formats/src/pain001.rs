//! ISO 20022 `pain.001.001.09` (CustomerCreditTransferInitiation): the bank credit file.
//!
//! Every id in it is derived from the window, currency and batch, never from the clock or a
//! random source, so a replay produces the same bytes and the bank can de-duplicate on
//! `MsgId` and `EndToEndId`. Validated against the official XSD in the test suite.

use std::collections::BTreeSet;
use std::io;

use clearhouse_domain::{Credit, CreditKind, Currency, Payee, SettledBatch};
use quick_xml::events::{BytesDecl, BytesText, Event};
use quick_xml::{Reader, Writer};
use rust_decimal::Decimal;

use crate::WindowMeta;

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
type Block<'a> = (&'a SettledBatch, &'a [Credit]);

/// Splits the paying batches' credits into payment blocks, and the blocks into files, so that no
/// `CtrlSum` exceeds the 18 digits ISO 20022 allows. A window normally gets one file with one
/// block per paying batch; only totals beyond 10^16 (in a two-decimal currency) split.
fn layout<'a>(batches: &[&'a SettledBatch], max: Decimal) -> Vec<Vec<Block<'a>>> {
    let mut blocks: Vec<(Block<'a>, Decimal)> = Vec::new();
    for batch in batches.iter().copied().filter(|b| !b.credits.is_empty()) {
        let (mut start, mut sum) = (0, Decimal::ZERO);
        for (i, credit) in batch.credits.iter().enumerate() {
            assert!(credit.amount <= max, "credit {} above the largest transfer amount", credit.end_to_end_id);
            if i > start && sum + credit.amount > max {
                blocks.push(((batch, &batch.credits[start..i]), sum));
                (start, sum) = (i, Decimal::ZERO);
            }
            sum += credit.amount;
        }
        blocks.push(((batch, &batch.credits[start..]), sum));
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
    let credits = blocks.iter().flat_map(|(_, credits)| credits.iter());
    let records = credits.clone().count() as u64;
    let total: Decimal = credits.map(|c| c.amount).sum();
    let mut writer = Writer::new_with_indent(Vec::with_capacity(4096), b' ', 2);
    let result: io::Result<()> = (|| {
        writer.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
        writer.create_element("Document").with_attribute(("xmlns", NAMESPACE)).write_inner_content(|w| {
            w.create_element("CstmrCdtTrfInitn").write_inner_content(|w| {
                w.create_element("GrpHdr").write_inner_content(|w| {
                    text(w, "MsgId", &message_id(meta, currency, part))?;
                    text(w, "CreDtTm", &meta.end_local)?;
                    text(w, "NbOfTxs", &records.to_string())?;
                    text(w, "CtrlSum", &currency.format(total))?;
                    w.create_element("InitgPty").write_inner_content(|w| text(w, "Nm", &debtor.name))?;
                    Ok(())
                })?;
                for (n, block) in blocks.iter().enumerate() {
                    payment(w, meta, currency, block, first_block + n, debtor)?;
                }
                Ok(())
            })?;
            Ok(())
        })?;
        Ok(())
    })();
    result.expect("writing XML to memory cannot fail");
    let mut bytes = writer.into_inner();
    bytes.push(b'\n');
    Encoded { bytes, records, total }
}

fn text<W: io::Write>(w: &mut Writer<W>, name: &str, value: &str) -> io::Result<()> {
    w.create_element(name).write_text_content(BytesText::new(value))?;
    Ok(())
}

fn payment<W: io::Write>(
    w: &mut Writer<W>,
    meta: &WindowMeta,
    currency: Currency,
    (batch, credits): &Block<'_>,
    n: usize,
    debtor: &Payee,
) -> io::Result<()> {
    let sum: Decimal = credits.iter().map(|c| c.amount).sum();
    w.create_element("PmtInf").write_inner_content(|w| {
        text(w, "PmtInfId", &format!("{}-{currency}-{n:05}", meta.id))?;
        text(w, "PmtMtd", "TRF")?;
        text(w, "BtchBookg", "true")?;
        text(w, "NbOfTxs", &credits.len().to_string())?;
        text(w, "CtrlSum", &currency.format(sum))?;
        w.create_element("ReqdExctnDt").write_inner_content(|w| text(w, "Dt", &meta.settlement_date.to_string()))?;
        w.create_element("Dbtr").write_inner_content(|w| text(w, "Nm", &debtor.name))?;
        account(w, "DbtrAcct", debtor)?;
        agent(w, "DbtrAgt", debtor)?;
        for credit in credits.iter() {
            transfer(w, currency, batch, credit)?;
        }
        Ok(())
    })?;
    Ok(())
}

fn transfer<W: io::Write>(
    w: &mut Writer<W>,
    currency: Currency,
    batch: &SettledBatch,
    credit: &Credit,
) -> io::Result<()> {
    let remittance = match credit.kind {
        CreditKind::Refund => format!("Refund from merchant {} ({} refunds)", batch.merchant_id, credit.refunds),
        CreditKind::Payout => format!("Settlement payout to merchant {} window {}", batch.merchant_id, batch.window),
    };
    w.create_element("CdtTrfTxInf").write_inner_content(|w| {
        w.create_element("PmtId").write_inner_content(|w| text(w, "EndToEndId", &credit.end_to_end_id))?;
        w.create_element("Amt").write_inner_content(|w| {
            w.create_element("InstdAmt")
                .with_attribute(("Ccy", currency.code()))
                .write_text_content(BytesText::new(&currency.format(credit.amount)))?;
            Ok(())
        })?;
        agent(w, "CdtrAgt", &credit.creditor)?;
        w.create_element("Cdtr").write_inner_content(|w| text(w, "Nm", &credit.creditor.name))?;
        account(w, "CdtrAcct", &credit.creditor)?;
        w.create_element("RmtInf").write_inner_content(|w| text(w, "Ustrd", &remittance))?;
        Ok(())
    })?;
    Ok(())
}

fn account<W: io::Write>(w: &mut Writer<W>, element: &str, party: &Payee) -> io::Result<()> {
    w.create_element(element).write_inner_content(|w| {
        w.create_element("Id").write_inner_content(|w| {
            if party.account_is_iban() {
                text(w, "IBAN", &party.account)
            } else {
                w.create_element("Othr").write_inner_content(|w| text(w, "Id", &party.account))?;
                Ok(())
            }
        })?;
        Ok(())
    })?;
    Ok(())
}

fn agent<W: io::Write>(w: &mut Writer<W>, element: &str, party: &Payee) -> io::Result<()> {
    w.create_element(element).write_inner_content(|w| {
        w.create_element("FinInstnId").write_inner_content(|w| {
            if party.bank_is_bic() {
                text(w, "BICFI", &party.bank)
            } else {
                w.create_element("ClrSysMmbId").write_inner_content(|w| text(w, "MmbId", &party.bank))?;
                Ok(())
            }
        })?;
        Ok(())
    })?;
    Ok(())
}

/// One `PmtInf` read back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadPayment {
    /// `PmtInfId`.
    pub id: String,
    /// `ReqdExctnDt/Dt`.
    pub execution_date: String,
    /// `(EndToEndId, amount)` per transfer.
    pub transfers: Vec<(String, Decimal)>,
    /// Sum of the transfers.
    pub total: Decimal,
}

/// A credit file read back and checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadPain {
    /// `GrpHdr/MsgId`.
    pub message_id: String,
    /// Payments in file order.
    pub payments: Vec<ReadPayment>,
    /// Sum of all transfers.
    pub total: Decimal,
}

#[derive(Default)]
struct Tally {
    stated: Vec<(String, String)>,
}

/// The elements the reader looks at; everything else is `Other`. Keeps the element path
/// allocation-free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    GrpHdr,
    MsgId,
    NbOfTxs,
    CtrlSum,
    PmtInf,
    PmtInfId,
    ReqdExctnDt,
    Dt,
    PmtId,
    EndToEndId,
    Amt,
    InstdAmt,
    Other,
}

impl Tag {
    fn of(name: &[u8]) -> Tag {
        match name {
            b"GrpHdr" => Tag::GrpHdr,
            b"MsgId" => Tag::MsgId,
            b"NbOfTxs" => Tag::NbOfTxs,
            b"CtrlSum" => Tag::CtrlSum,
            b"PmtInf" => Tag::PmtInf,
            b"PmtInfId" => Tag::PmtInfId,
            b"ReqdExctnDt" => Tag::ReqdExctnDt,
            b"Dt" => Tag::Dt,
            b"PmtId" => Tag::PmtId,
            b"EndToEndId" => Tag::EndToEndId,
            b"Amt" => Tag::Amt,
            b"InstdAmt" => Tag::InstdAmt,
            _ => Tag::Other,
        }
    }
}

/// Reads a credit file and checks `NbOfTxs`/`CtrlSum` at both levels, the currency of every
/// amount and the uniqueness of `EndToEndId`s.
pub fn read(bytes: &[u8], currency: Currency) -> Result<ReadPain, String> {
    check_xml_chars(bytes)?;
    let mut reader = Reader::from_reader(bytes);
    reader.config_mut().trim_text(true);
    let mut path: Vec<Tag> = Vec::new();
    let mut out = ReadPain::default();
    let mut group = Tally::default();
    let mut payment_counts: Vec<Tally> = Vec::new();
    let mut pending_e2e = String::new();
    loop {
        match reader.read_event().map_err(|e| format!("XML error at byte {}: {e}", reader.buffer_position()))? {
            Event::Start(e) => {
                let name = Tag::of(e.local_name().as_ref());
                if name == Tag::PmtInf {
                    out.payments.push(ReadPayment::default());
                    payment_counts.push(Tally::default());
                }
                if name == Tag::InstdAmt {
                    let ccy = e.try_get_attribute("Ccy").map_err(|e| e.to_string())?.map(|a| a.value.into_owned());
                    if ccy.as_deref() != Some(currency.code().as_bytes()) {
                        return Err(format!("InstdAmt in a currency other than {currency}"));
                    }
                }
                path.push(name);
            }
            Event::End(_) => {
                path.pop();
            }
            Event::Text(t) => {
                let value = t.decode().map_err(|e| e.to_string())?;
                let n = path.len();
                let (parent, element) = (n.checked_sub(2).map(|i| path[i]), path.last().copied());
                match (parent, element) {
                    (Some(Tag::GrpHdr), Some(Tag::MsgId)) => out.message_id = value.into_owned(),
                    (Some(Tag::GrpHdr), Some(tag @ (Tag::NbOfTxs | Tag::CtrlSum))) => {
                        group.stated.push((format!("{tag:?}"), value.into_owned()))
                    }
                    (Some(Tag::PmtInf), Some(tag @ (Tag::NbOfTxs | Tag::CtrlSum))) => {
                        last(&mut payment_counts)?.stated.push((format!("{tag:?}"), value.into_owned()))
                    }
                    (Some(Tag::PmtInf), Some(Tag::PmtInfId)) => last(&mut out.payments)?.id = value.into_owned(),
                    (Some(Tag::ReqdExctnDt), Some(Tag::Dt)) => {
                        last(&mut out.payments)?.execution_date = value.into_owned()
                    }
                    (Some(Tag::PmtId), Some(Tag::EndToEndId)) => pending_e2e = value.into_owned(),
                    (Some(Tag::Amt), Some(Tag::InstdAmt)) => {
                        let amount = amount(&value, currency)?;
                        let payment = last(&mut out.payments)?;
                        payment.transfers.push((std::mem::take(&mut pending_e2e), amount));
                        payment.total += amount;
                        out.total += amount;
                    }
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    check_counts(&group, out.payments.iter().map(|p| p.transfers.len()).sum(), out.total, currency, "GrpHdr")?;
    for (payment, tally) in out.payments.iter().zip(&payment_counts) {
        check_counts(tally, payment.transfers.len(), payment.total, currency, &payment.id)?;
    }
    let mut seen = BTreeSet::new();
    for (e2e, _) in out.payments.iter().flat_map(|p| &p.transfers) {
        if e2e.is_empty() || e2e.len() > 35 || !seen.insert(e2e.clone()) {
            return Err(format!("EndToEndId {e2e:?} is empty, too long or repeated"));
        }
    }
    Ok(out)
}

/// XML 1.0 allows only certain characters; quick-xml does not check, a bank's parser does.
fn check_xml_chars(bytes: &[u8]) -> Result<(), String> {
    // Fast path (vectorised): printable ASCII and newlines, which is what nearly every file is.
    let plain = |chunk: &[u8]| !chunk.iter().fold(false, |odd, &b| odd | ((b < 0x20 && b != b'\n') | (b >= 0x7f)));
    if bytes.chunks(4096).all(plain) {
        return Ok(());
    }
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    let allowed = |c: char| matches!(c, '\t' | '\n' | '\r') || clearhouse_domain::is_xml_text(c);
    match text.char_indices().find(|(_, c)| !allowed(*c)) {
        Some((at, c)) => Err(format!("not well-formed XML: character U+{:04X} at byte {at}", u32::from(c))),
        None => Ok(()),
    }
}

fn last<T>(items: &mut [T]) -> Result<&mut T, String> {
    items.last_mut().ok_or_else(|| "element outside PmtInf".to_owned())
}

fn amount(text: &str, currency: Currency) -> Result<Decimal, String> {
    let value = crate::bounded_amount(text).ok_or_else(|| format!("{text:?} is not an amount"))?;
    if value > currency.max_transfer_amount() {
        return Err(format!("amount {text} has more than the 18 digits ISO 20022 allows"));
    }
    if value.scale() != currency.minor_units() || value <= Decimal::ZERO {
        return Err(format!(
            "amount {text} is not a positive {currency} amount with {} decimals",
            currency.minor_units()
        ));
    }
    Ok(value)
}

fn check_counts(tally: &Tally, transfers: usize, total: Decimal, currency: Currency, at: &str) -> Result<(), String> {
    if total > currency.max_transfer_amount() {
        return Err(format!("{at}: CtrlSum {} has more than the 18 digits ISO 20022 allows", currency.format(total)));
    }
    for (tag, value) in &tally.stated {
        let ok = match tag.as_str() {
            "NbOfTxs" => value == &transfers.to_string(),
            _ => value == &currency.format(total),
        };
        if !ok {
            return Err(format!(
                "{at}: {tag} says {value} but the transfers give {}",
                if tag == "NbOfTxs" { transfers.to_string() } else { currency.format(total) }
            ));
        }
    }
    if tally.stated.len() != 2 {
        return Err(format!("{at}: NbOfTxs and CtrlSum are both required"));
    }
    Ok(())
}
