//! The credit file reader: the whole XML parsed (quick-xml) and every count, sum, currency and
//! `EndToEndId` checked. `verify` runs it on files on disk; the encoder's own pre-publish check is
//! the lighter scan in `check.rs`.

use clearhouse_domain::Currency;
use quick_xml::events::Event;
use quick_xml::Reader;
use rust_decimal::Decimal;

use crate::ids::{first_repeated, MAX_ID_BYTES};

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
    let ids = || out.payments.iter().flat_map(|p| &p.transfers).map(|(e2e, _)| e2e.as_str());
    if let Some(bad) = ids().find(|e2e| e2e.is_empty() || e2e.len() > MAX_ID_BYTES) {
        return Err(format!("EndToEndId {bad:?} is empty or too long"));
    }
    if let Some(repeated) = first_repeated(ids()) {
        return Err(format!("EndToEndId {repeated:?} is repeated"));
    }
    Ok(out)
}

/// XML 1.0 allows only certain characters; quick-xml does not check, a bank's parser does.
pub(super) fn check_xml_chars(bytes: &[u8]) -> Result<(), String> {
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
