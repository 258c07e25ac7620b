//! The check of a credit file the encoder just wrote, before it is published: one scan of its
//! bytes (no XML tree, no allocation per transfer) that recounts and re-adds every transfer and
//! compares them with the `NbOfTxs` and `CtrlSum` the file states, in the group header and in
//! every payment, checks each amount's currency and scale, and that every `EndToEndId` is unique.
//!
//! It catches an encoder that drops, repeats or mis-adds a transfer, at a few percent of the
//! encoding's cost, where the full reader (`read.rs`) cost more than the encoding itself. It
//! does not check that the XML is well-formed: the official XSD test does that for the encoder,
//! and `verify` runs the full reader on every file on disk.

use std::collections::HashSet;

use clearhouse_domain::Currency;
use rust_decimal::Decimal;

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
struct Tally<'a> {
    stated_count: Option<&'a [u8]>,
    stated_sum: Option<&'a [u8]>,
    count: u64,
    sum: i128,
}

impl Tally<'_> {
    fn compare(&self, currency: Currency, at: &str) -> Result<(), String> {
        let count = self.stated_count.and_then(|t| std::str::from_utf8(t).ok()?.parse::<u64>().ok());
        if count != Some(self.count) {
            return Err(format!("{at}: NbOfTxs {:?} but {} transfers", self.stated_count.map(lossy), self.count));
        }
        if self.stated_sum.and_then(|t| minor_units(t, currency)) != Some(self.sum) {
            let sum = Decimal::from_i128_with_scale(self.sum, currency.minor_units());
            return Err(format!("{at}: CtrlSum {:?} but the transfers add up to {sum}", self.stated_sum.map(lossy)));
        }
        Ok(())
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Checks `bytes` as a credit file in `currency`; see the module docs.
pub fn check(bytes: &[u8], currency: Currency) -> Result<Checked, String> {
    super::read::check_xml_chars(bytes)?;
    let scale = currency.minor_units();
    let amount_tag = format!("InstdAmt Ccy=\"{}\"", currency.code());
    let mut group = Tally::default();
    let (mut in_group, mut payment, mut payments) = (false, None::<Tally<'_>>, 0usize);
    // foldhash, randomly seeded, as in every other hot-path table (std's SipHash showed in profiles).
    let mut ids: HashSet<&[u8], foldhash::fast::RandomState> =
        HashSet::with_capacity_and_hasher(bytes.len() / 512, foldhash::fast::RandomState::default());
    let mut at = 0;
    while let Some(open) = memchr::memchr(b'<', &bytes[at..]) {
        let start = at + open + 1;
        let close = memchr::memchr(b'>', &bytes[start..]).ok_or("unterminated tag")?;
        let tag = &bytes[start..start + close];
        at = start + close + 1;
        let text = &bytes[at..at + memchr::memchr(b'<', &bytes[at..]).unwrap_or(bytes.len() - at)];
        match tag {
            b"GrpHdr" => in_group = true,
            b"/GrpHdr" => in_group = false,
            b"PmtInf" if payment.is_none() => payment = Some(Tally::default()),
            b"/PmtInf" => {
                payments += 1;
                let done = payment.take().ok_or("</PmtInf> without <PmtInf>")?;
                done.compare(currency, &format!("PmtInf {payments}"))?;
                group.count += done.count;
                group.sum = group.sum.checked_add(done.sum).ok_or("sum overflows")?;
            }
            b"PmtInf" => return Err("nested PmtInf".to_owned()),
            b"NbOfTxs" | b"CtrlSum" => {
                let tally = match in_group {
                    true => &mut group,
                    false => payment.as_mut().ok_or("NbOfTxs or CtrlSum outside GrpHdr and PmtInf")?,
                };
                match tag {
                    b"NbOfTxs" => tally.stated_count = Some(text),
                    _ => tally.stated_sum = Some(text),
                }
            }
            b"EndToEndId" if text.is_empty() || text.len() > 35 || !ids.insert(text) => {
                return Err(format!("EndToEndId {:?} is empty, too long or repeated", lossy(text)));
            }
            t if t.starts_with(b"InstdAmt") => {
                let (true, Some(p)) = (t == amount_tag.as_bytes(), payment.as_mut()) else {
                    return Err(format!("<{}> outside a payment or not in {currency}", lossy(t)));
                };
                let value = minor_units(text, currency).filter(|&v| v > 0).ok_or_else(|| {
                    format!("amount {:?} is not a positive {currency} amount with {scale} decimals", lossy(text))
                })?;
                p.count += 1;
                p.sum = p.sum.checked_add(value).ok_or("sum overflows")?;
            }
            _ => {}
        }
    }
    if payment.is_some() || in_group {
        return Err("the file ends inside an element".to_owned());
    }
    group.compare(currency, "GrpHdr")?;
    if ids.len() as u64 != group.count {
        return Err(format!("{} EndToEndIds for {} transfers", ids.len(), group.count));
    }
    Ok(Checked { records: group.count, total: Decimal::from_i128_with_scale(group.sum, scale) })
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
