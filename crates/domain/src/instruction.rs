//! The validated instruction: what the netting state machine consumes.
//!
//! Parsing (see `parse`) turns untrusted JSON into these types or a `Reject`; once an
//! `Instruction` exists its fields are known to satisfy the schema rules, so netting only has to
//! check rules that depend on state.

use compact_str::CompactString;
use jiff::Timestamp;
use rust_decimal::Decimal;

use crate::money::Currency;

/// The kind of an instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum Kind {
    /// Money captured for the merchant.
    Capture,
    /// Money returned to a payee for an original transaction.
    Refund,
    /// Undoes a refund sent to the wrong place.
    RefundReversal,
}

impl Kind {
    /// The wire name (`capture`, `refund`, `refund_reversal`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Capture => "capture",
            Kind::Refund => "refund",
            Kind::RefundReversal => "refund_reversal",
        }
    }

    /// Parses the wire name.
    pub fn from_wire(s: &str) -> Option<Kind> {
        match s {
            "capture" => Some(Kind::Capture),
            "refund" => Some(Kind::Refund),
            "refund_reversal" => Some(Kind::RefundReversal),
            _ => None,
        }
    }
}

/// Who a refund pays: account (IBAN or domestic number) at a bank (BIC or bank code).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Payee {
    /// Account holder name.
    pub name: CompactString,
    /// IBAN or domestic account number.
    pub account: CompactString,
    /// BIC or domestic bank code.
    pub bank: CompactString,
}

/// A payee with borrowed strings (a closed batch's, from its window's string arena).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PayeeView<'a> {
    /// Account holder name.
    pub name: &'a str,
    /// IBAN or domestic account number.
    pub account: &'a str,
    /// BIC or domestic bank code.
    pub bank: &'a str,
}

impl PayeeView<'_> {
    /// True when `account` has the IBAN shape (then its check digits were verified).
    pub fn account_is_iban(&self) -> bool {
        looks_like_iban(self.account)
    }

    /// True when `bank` has the BIC shape (8 or 11 characters, letters at 5-6).
    pub fn bank_is_bic(&self) -> bool {
        looks_like_bic(self.bank)
    }

    /// The payee with strings of its own.
    pub fn to_payee(&self) -> Payee {
        Payee { name: self.name.into(), account: self.account.into(), bank: self.bank.into() }
    }
}

/// Which part of a payee (or any account holder) is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayeePart {
    /// The holder name.
    Name,
    /// The account number.
    Account,
    /// The bank identifier.
    Bank,
}

/// A refused payee: the part at fault and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PayeeError {
    /// The part at fault.
    pub part: PayeePart,
    /// Why.
    pub message: String,
}

impl Payee {
    /// The payee, borrowed.
    pub fn view(&self) -> PayeeView<'_> {
        PayeeView { name: &self.name, account: &self.account, bank: &self.bank }
    }

    /// Checks the rules every account holder must meet to appear in a pain.001 file: a name of
    /// 1-140 printable characters, an account of 1-34 letters/digits (IBAN check digits verified
    /// when it has the IBAN shape) and a bank id of 1-35 letters/digits.
    pub fn validated(name: &str, account: &str, bank: &str) -> Result<Payee, PayeeError> {
        let fail = |part, message: String| Err(PayeeError { part, message });
        if name.trim().is_empty() || name.chars().count() > 140 || !name.chars().all(is_xml_text) {
            return fail(
                PayeePart::Name,
                "name must be 1-140 printable characters that XML can carry (no control characters, U+FFFE or U+FFFF)"
                    .to_owned(),
            );
        }
        if !is_alnum(account, 34) {
            return fail(
                PayeePart::Account,
                "account must be 1-34 letters or digits (IBAN or domestic number)".to_owned(),
            );
        }
        if looks_like_iban(account) && !iban_checksum_ok(account) {
            return fail(PayeePart::Account, format!("account {} fails the IBAN check digits", mask(account)));
        }
        if !is_alnum(bank, 35) {
            return fail(PayeePart::Bank, "bank must be 1-35 letters or digits (BIC or bank code)".to_owned());
        }
        Ok(Payee { name: name.into(), account: account.into(), bank: bank.into() })
    }

    /// True when `account` has the IBAN shape (two letters, two check digits).
    pub fn account_is_iban(&self) -> bool {
        self.view().account_is_iban()
    }

    /// True when `bank` has the BIC shape (8 or 11 characters, letters at 5-6).
    pub fn bank_is_bic(&self) -> bool {
        self.view().bank_is_bic()
    }
}

/// A printable character that XML 1.0 text may hold: names go into pain.001 files, and one
/// U+FFFE makes the whole file ill-formed for the bank.
pub fn is_xml_text(c: char) -> bool {
    !c.is_control() && c != '\u{FFFE}' && c != '\u{FFFF}'
}

fn is_alnum(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Shows only the last four characters of an account number (for messages and logs).
pub fn mask(account: &str) -> String {
    let skip = account.chars().count().saturating_sub(4);
    format!("****{}", account.chars().skip(skip).collect::<String>())
}

/// ISO 13616 mod-97 check of an IBAN-shaped account.
fn iban_checksum_ok(iban: &str) -> bool {
    let rearranged = iban.bytes().skip(4).chain(iban.bytes().take(4));
    let mut rem: u32 = 0;
    for b in rearranged {
        let v = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            b'a'..=b'z' => u32::from(b - b'a') + 10,
            _ => return false,
        };
        rem = if v >= 10 { (rem * 100 + v) % 97 } else { (rem * 10 + v) % 97 };
    }
    rem == 1
}

/// Shape test for an IBAN: `[A-Z]{2}[0-9]{2}[A-Za-z0-9]{1,30}`.
pub fn looks_like_iban(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 5
        && b.len() <= 34
        && b[..2].iter().all(u8::is_ascii_uppercase)
        && b[2..4].iter().all(u8::is_ascii_digit)
        && b[4..].iter().all(u8::is_ascii_alphanumeric)
}

/// Shape test for a BIC: `[A-Z0-9]{4}[A-Z]{2}[A-Z0-9]{2}([A-Z0-9]{3})?`.
pub fn looks_like_bic(s: &str) -> bool {
    let b = s.as_bytes();
    let upper_or_digit = |c: &u8| c.is_ascii_uppercase() || c.is_ascii_digit();
    (b.len() == 8 || b.len() == 11)
        && b[..4].iter().all(upper_or_digit)
        && b[4..6].iter().all(u8::is_ascii_uppercase)
        && b[6..].iter().all(upper_or_digit)
}

/// Fields only a refund has.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RefundFields {
    /// The transaction being refunded.
    pub original_transaction_id: CompactString,
    /// The captured amount of the original.
    pub original_amount: Decimal,
    /// When the original happened.
    pub original_time: Timestamp,
    /// Who gets the money back.
    pub payee: Payee,
}

/// Kind-specific content.
///
/// A refund's fields are held inline, not boxed: two thirds of the traffic is refunds, and an
/// instruction lives only from its parse to its netting, in a batch, so the larger variant
/// costs a copy where a box cost an allocation and a free per refund.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[allow(clippy::large_enum_variant)]
pub enum Body {
    /// A capture has no extra fields.
    Capture,
    /// A refund.
    Refund(RefundFields),
    /// A reversal names the refund it undoes.
    RefundReversal {
        /// Id of the refund being reversed.
        reverses: CompactString,
    },
}

/// A schema-valid instruction.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Instruction {
    /// Globally unique id; the idempotency key.
    pub id: CompactString,
    /// Merchant the instruction belongs to (and the shard key).
    pub merchant_id: CompactString,
    /// Amount in `currency`, > 0, at most the currency's minor units.
    pub amount: Decimal,
    /// Settlement currency.
    pub currency: Currency,
    /// Decides the settlement window.
    pub event_time: Timestamp,
    /// Fee charged to the merchant (zero when absent).
    pub fee: Decimal,
    /// Kind-specific fields.
    pub body: Body,
}

impl Instruction {
    /// The instruction's kind.
    pub fn kind(&self) -> Kind {
        match self.body {
            Body::Capture => Kind::Capture,
            Body::Refund(_) => Kind::Refund,
            Body::RefundReversal { .. } => Kind::RefundReversal,
        }
    }

    /// The id this instruction refers to: the original transaction (refund), the reversed
    /// refund (reversal), or nothing (capture).
    pub fn reference(&self) -> Option<&str> {
        match &self.body {
            Body::Capture => None,
            Body::Refund(r) => Some(&r.original_transaction_id),
            Body::RefundReversal { reverses } => Some(reverses),
        }
    }

    /// The refund fields when this is a refund.
    pub fn refund(&self) -> Option<&RefundFields> {
        match &self.body {
            Body::Refund(r) => Some(r),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payee_rules() {
        assert!(Payee::validated("Li Lei", "DE89370400440532013000", "COBADEFFXXX").is_ok());
        assert_eq!(Payee::validated("Li", "DE00370400440532013000", "X").map_err(|e| e.part), Err(PayeePart::Account));
        assert_eq!(Payee::validated(" ", "1", "X").map_err(|e| e.part), Err(PayeePart::Name));
        assert_eq!(Payee::validated("Li", "1", "BK-1").map_err(|e| e.part), Err(PayeePart::Bank));
        assert_eq!(mask("6222021234567890"), "****7890");
        assert_eq!(mask("12"), "****12");
    }

    #[test]
    fn iban_and_bic_shapes() {
        assert!(looks_like_iban("DE89370400440532013000"));
        assert!(!looks_like_iban("6222021234567890"));
        assert!(!looks_like_iban("de89370400440532013000"));
        assert!(looks_like_bic("BKCHCNBJ"));
        assert!(looks_like_bic("BKCHCNBJ110"));
        assert!(!looks_like_bic("102100099996"));
        assert!(!looks_like_bic("bkchcnbj"));
    }
}
