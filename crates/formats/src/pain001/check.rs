//! The check of a credit file the encoder just wrote, before it is published: one scan of its
//! bytes (no XML tree, no allocation per transfer) that recounts and re-adds every transfer and
//! compares them with the `NbOfTxs` and `CtrlSum` the file states, in the group header and in
//! every payment, checks each amount's currency and scale, and that every `EndToEndId` is unique.
//!
//! It catches an encoder that drops, repeats or mis-adds a transfer, at a few percent of the
//! encoding's cost, where the full reader (`read.rs`) cost more than the encoding itself. It
//! does not check that the XML is well-formed: the official XSD test does that for the encoder,
//! and `verify` runs the full reader on every file on disk.

use clearhouse_domain::Currency;
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

use crate::ids::UniqueIds;
use crate::marks::Marks;

/// The kinds of mark the scan looks for: `<` and `>`.
const OPEN: usize = 0;
const CLOSE: usize = 1;

/// What a checked file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    /// Transfers.
    pub records: u64,
    /// Their sum.
    pub total: Decimal,
}

/// Counts and sums stated by a group header or payment, against what its transfers give.
#[derive(Default)]
struct Tally {
    stated_count: Option<Vec<u8>>,
    stated_sum: Option<Vec<u8>>,
    count: u64,
    sum: i128,
}

impl Tally {
    fn compare(&self, currency: Currency, at: &str) -> Result<(), String> {
        let count = self.stated_count.as_deref().and_then(|t| std::str::from_utf8(t).ok()?.parse::<u64>().ok());
        if count != Some(self.count) {
            let stated = self.stated_count.as_deref().map(lossy);
            return Err(format!("{at}: NbOfTxs {stated:?} but {} transfers", self.count));
        }
        if self.stated_sum.as_deref().and_then(|t| minor_units(t, currency)) != Some(self.sum) {
            let sum = Decimal::from_i128_with_scale(self.sum, currency.minor_units());
            let stated = self.stated_sum.as_deref().map(lossy);
            return Err(format!("{at}: CtrlSum {stated:?} but the transfers add up to {sum}"));
        }
        Ok(())
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Checks `bytes` as a credit file in `currency`; see the module docs.
pub fn check(bytes: &[u8], currency: Currency) -> Result<Checked, String> {
    let mut scan = Scan::new(currency);
    scan.feed(bytes)?;
    scan.finish().map(|(checked, _)| checked)
}

/// The check of a credit file as it is written: fed its bytes in pieces of any size (each
/// element is scanned once its tag and text are complete), then finished. It hashes what it is fed, so the encoder's bytes are hashed
/// once, on their way to the file.
pub struct Scan {
    currency: Currency,
    amount_tag: String,
    group: Tally,
    in_group: bool,
    payment: Option<Tally>,
    payments: usize,
    ids: UniqueIds,
    /// The bytes fed so far from the first element not yet complete (its text runs to the
    /// next `<`), usually a few bytes.
    carry: Vec<u8>,
    hasher: Sha256,
}

impl Scan {
    /// A scan of a file in `currency` not yet fed any byte.
    pub fn new(currency: Currency) -> Scan {
        Scan::expecting(currency, 0)
    }

    /// [`Scan::new`] with room for the EndToEndIds of `transfers` transfers (what the encoder
    /// writes; a wrong number only costs the list a growth or some room).
    pub fn expecting(currency: Currency, transfers: usize) -> Scan {
        Scan {
            currency,
            amount_tag: format!("InstdAmt Ccy=\"{}\"", currency.code()),
            group: Tally::default(),
            in_group: false,
            payment: None,
            payments: 0,
            ids: UniqueIds::with_capacity(transfers),
            carry: Vec::new(),
            hasher: Sha256::new(),
        }
    }

    /// Scans the next `bytes` of the file.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.hasher.update(bytes);
        let mut rest = bytes;
        if !self.carry.is_empty() {
            // The carried element: its tag ends at the first `>` after its `<`, its text at the
            // first `<` after that.
            let close = match memchr::memchr(b'>', &self.carry[1..]) {
                Some(_) => Some(0),
                None => memchr::memchr(b'>', rest).map(|at| at + 1),
            };
            let Some(end) = close.and_then(|from| memchr::memchr(b'<', &rest[from..]).map(|at| from + at)) else {
                self.carry.extend_from_slice(rest);
                return Ok(());
            };
            let mut element = std::mem::take(&mut self.carry);
            element.extend_from_slice(&rest[..end]);
            self.scan(&element, true)?;
            rest = &rest[end..];
        }
        let done = self.scan(rest, false)?;
        self.carry.extend_from_slice(&rest[done..]);
        Ok(())
    }

    /// Scans the elements of `bytes` whose tag and text are complete in it (all of them when
    /// `last`, the text of the last one running to the end); returns where the first element
    /// left for the next bytes starts. Exactly the scan of the whole file, however it is split.
    fn scan(&mut self, bytes: &[u8], last: bool) -> Result<usize, String> {
        let currency = self.currency;
        let mut at = 0;
        let mut marks = Marks::new(bytes, b'<', b'>');
        // The `<` that ended the last element's text: the next element's, found once.
        let mut next_open = None;
        let done = loop {
            let open = match next_open.take() {
                Some(open) => open,
                None => match marks.find(OPEN, at) {
                    Some(open) => open,
                    None => break bytes.len(),
                },
            };
            let start = open + 1;
            let Some(close) = marks.find(CLOSE, start) else {
                if last {
                    return Err("unterminated tag".to_owned());
                }
                break start - 1;
            };
            let tag = &bytes[start..close];
            let after = close + 1;
            let text_end = match marks.find(OPEN, after) {
                Some(end) => {
                    next_open = Some(end);
                    end
                }
                None if last => bytes.len(),
                None => break start - 1,
            };
            at = after;
            let text = &bytes[after..text_end];
            match tag {
                b"GrpHdr" => self.in_group = true,
                b"/GrpHdr" => self.in_group = false,
                b"PmtInf" if self.payment.is_none() => self.payment = Some(Tally::default()),
                b"/PmtInf" => {
                    self.payments += 1;
                    let done = self.payment.take().ok_or("</PmtInf> without <PmtInf>")?;
                    done.compare(currency, &format!("PmtInf {}", self.payments))?;
                    self.group.count += done.count;
                    self.group.sum = self.group.sum.checked_add(done.sum).ok_or("sum overflows")?;
                }
                b"PmtInf" => return Err("nested PmtInf".to_owned()),
                b"NbOfTxs" | b"CtrlSum" => {
                    let tally = match self.in_group {
                        true => &mut self.group,
                        false => self.payment.as_mut().ok_or("NbOfTxs or CtrlSum outside GrpHdr and PmtInf")?,
                    };
                    match tag {
                        b"NbOfTxs" => tally.stated_count = Some(text.to_vec()),
                        _ => tally.stated_sum = Some(text.to_vec()),
                    }
                }
                b"EndToEndId" if !self.ids.push(text) => {
                    return Err(format!("EndToEndId {:?} is empty or too long", lossy(text)));
                }
                t if t.starts_with(b"InstdAmt") => {
                    let (true, Some(p)) = (t == self.amount_tag.as_bytes(), self.payment.as_mut()) else {
                        return Err(format!("<{}> outside a payment or not in {currency}", lossy(t)));
                    };
                    let value = minor_units(text, currency).filter(|&v| v > 0).ok_or_else(|| {
                        let scale = currency.minor_units();
                        format!("amount {:?} is not a positive {currency} amount with {scale} decimals", lossy(text))
                    })?;
                    p.count += 1;
                    p.sum = p.sum.checked_add(value).ok_or("sum overflows")?;
                }
                _ => {}
            }
        };
        // Every byte is checked once: the elements scanned here and what came before them.
        super::read::check_xml_chars(&bytes[..done])?;
        Ok(done)
    }

    /// Checks the end of the file (every element closed, the group header's counts and the ids
    /// unique); returns what the file holds and the SHA-256 (hex) of all of it.
    pub fn finish(mut self) -> Result<(Checked, String), String> {
        let carry = std::mem::take(&mut self.carry);
        self.scan(&carry, true)?;
        if self.payment.is_some() || self.in_group {
            return Err("the file ends inside an element".to_owned());
        }
        let currency = self.currency;
        self.group.compare(currency, "GrpHdr")?;
        if self.ids.len() as u64 != self.group.count {
            return Err(format!("{} EndToEndIds for {} transfers", self.ids.len(), self.group.count));
        }
        if !self.ids.all_distinct() {
            return Err("an EndToEndId is repeated".to_owned());
        }
        let checked = Checked {
            records: self.group.count,
            total: Decimal::from_i128_with_scale(self.group.sum, currency.minor_units()),
        };
        Ok((checked, hex::encode(self.hasher.finalize())))
    }
}

/// `text` as an integer count of `currency`'s minor units when it is a plain decimal with
/// exactly its fraction digits (`Currency::parse_minor`), not negative, and of at most 18 digits
/// in all (ISO 20022's limit).
fn minor_units(text: &[u8], currency: Currency) -> Option<i128> {
    let digits = text.iter().filter(|b| b.is_ascii_digit()).count();
    let value = currency.parse_minor(std::str::from_utf8(text).ok()?)?;
    (value >= 0 && digits <= 18).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cny() -> Currency {
        Currency::from_code("CNY").expect("CNY")
    }

    const FILE: &str = concat!(
        "<Document><CstmrCdtTrfInitn>\n<GrpHdr><MsgId>M</MsgId><NbOfTxs>2</NbOfTxs><CtrlSum>3.50</CtrlSum></GrpHdr>\n",
        "<PmtInf><NbOfTxs>2</NbOfTxs><CtrlSum>3.50</CtrlSum>\n",
        "<CdtTrfTxInf><PmtId><EndToEndId>A</EndToEndId></PmtId><Amt><InstdAmt Ccy=\"CNY\">1.25</InstdAmt></Amt></CdtTrfTxInf>\n",
        "<CdtTrfTxInf><PmtId><EndToEndId>B</EndToEndId></PmtId><Amt><InstdAmt Ccy=\"CNY\">2.25</InstdAmt></Amt></CdtTrfTxInf>\n",
        "</PmtInf>\n</CstmrCdtTrfInitn></Document>\n"
    );

    #[test]
    fn counts_and_sums_the_transfers() {
        let checked = check(FILE.as_bytes(), cny()).expect("valid");
        assert_eq!(checked, Checked { records: 2, total: Decimal::new(350, 2) });
    }

    #[test]
    fn every_inconsistency_is_caught() {
        let cases = [
            ("<InstdAmt Ccy=\"CNY\">2.25<", "<InstdAmt Ccy=\"CNY\">2.26<", "CtrlSum"),
            ("<EndToEndId>B<", "<EndToEndId>A<", "repeated"),
            ("<EndToEndId>B<", "<EndToEndId><", "empty"),
            ("<InstdAmt Ccy=\"CNY\">1.25", "<InstdAmt Ccy=\"JPY\">1.25", "not in CNY"),
            ("1.25</InstdAmt>", "1.250</InstdAmt>", "2 decimals"),
            ("<GrpHdr><MsgId>M</MsgId><NbOfTxs>2", "<GrpHdr><MsgId>M</MsgId><NbOfTxs>3", "GrpHdr: NbOfTxs"),
            ("</PmtInf>\n", "", "ends inside"),
        ];
        for (from, to, expected) in cases {
            let bad = FILE.replacen(from, to, 1);
            assert_ne!(bad, FILE, "{from}");
            let error = check(bad.as_bytes(), cny()).expect_err(from);
            assert!(error.contains(expected), "{from}: {error}");
        }
        let dropped: String = FILE.lines().filter(|l| !l.contains(">B<")).map(|l| format!("{l}\n")).collect();
        assert!(check(dropped.as_bytes(), cny()).expect_err("dropped").contains("NbOfTxs"));
    }

    #[test]
    fn minor_units_take_exactly_the_currency_scale() {
        let jpy = Currency::from_code("JPY").expect("JPY");
        assert_eq!(minor_units(b"12.34", cny()), Some(1234));
        assert_eq!(minor_units(b"1234", jpy), Some(1234));
        for bad in [&b"12.3"[..], b"12.345", b".34", b"1,34", b"-1.00", b"12", b"1e2.00", b"1234567890123456789.00"] {
            assert_eq!(minor_units(bad, cny()), None, "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(minor_units(b"12.3", jpy), None);
    }
}
