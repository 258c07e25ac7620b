//! Field accessors that turn each schema rule into the matching reject reason.

use jiff::Timestamp;
use rust_decimal::Decimal;

use super::json::Json;
use super::scan::Flat;
use crate::instruction::{Payee, PayeePart};
use crate::money::{parse_amount, AmountError, Currency};
use crate::reject::{Reject, RejectReason};

/// Accepted instants: 1970-01-01T00:00:00Z (inclusive) to 9000-01-01T00:00:00Z (exclusive), so
/// window and business-day arithmetic never runs off the calendar's range.
const EARLIEST_TIME: i64 = 0;
pub(super) const LATEST_TIME: i64 = 221_845_392_000;

/// A schema field: its slot (`json::KEYS`) and the name used in messages (dotted for payee
/// parts). The rules look fields up by slot, never by comparing names.
#[derive(Clone, Copy)]
pub(super) struct Field {
    slot: usize,
    pub(super) name: &'static str,
}

macro_rules! fields {
    ($($constant:ident = $slot:literal $name:literal),* $(,)?) => {
        $(pub(super) const $constant: Field = Field { slot: $slot, name: $name };)*
        #[cfg(test)]
        const ALL: &[Field] = &[$($constant),*];
    };
}

fields! {
    ID = 0 "id", TYPE = 1 "type", MERCHANT_ID = 2 "merchant_id", AMOUNT = 3 "amount",
    CURRENCY = 4 "currency", EVENT_TIME = 5 "event_time", FEE = 6 "fee",
    ORIGINAL_TRANSACTION_ID = 7 "original_transaction_id", ORIGINAL_AMOUNT = 8 "original_amount",
    ORIGINAL_TIME = 9 "original_time", PAYEE = 10 "payee", REVERSES = 11 "reverses",
    PAYEE_NAME = 12 "payee.name", PAYEE_ACCOUNT = 13 "payee.account", PAYEE_BANK = 14 "payee.bank",
}

/// An object whose fields are read: the reference tree's, or the fast decoder's flat message
/// or its payee. Both give the same answers for the same message, so the rules below are
/// written once for both.
#[derive(Clone, Copy)]
pub(super) enum Node<'j> {
    Tree(&'j Json<'j>),
    Flat(&'j Flat<'j>),
    Payee(&'j [Option<&'j str>; 3]),
}

/// A field's value as the rules see it.
enum Value<'j> {
    Str(&'j str),
    Obj(Node<'j>),
    Other(&'static str),
}

impl<'j> Node<'j> {
    fn get(self, field: Field) -> Option<Value<'j>> {
        match self {
            Node::Tree(json) => json.get_slot(field.slot).map(|value| match value {
                Json::Str(s) => Value::Str(s),
                Json::Obj(_) => Value::Obj(Node::Tree(value)),
                other => Value::Other(other.type_name()),
            }),
            Node::Flat(flat) if field.slot == PAYEE.slot => flat.payee().map(|parts| Value::Obj(Node::Payee(parts))),
            Node::Flat(flat) => flat.str_slot(field.slot).map(Value::Str),
            Node::Payee(parts) => {
                field.slot.checked_sub(PAYEE_NAME.slot).and_then(|i| parts.get(i).copied().flatten()).map(Value::Str)
            }
        }
    }
}

/// Read access to one JSON object's fields.
pub(super) struct Fields<'j> {
    node: Node<'j>,
}

impl<'j> Fields<'j> {
    pub(super) fn new(node: Node<'j>) -> Self {
        Fields { node }
    }

    /// The string at `field`, when present.
    fn str_at(&self, field: Field) -> Result<Option<&'j str>, Reject> {
        let label = field.name;
        let found = |kind| Err(invalid(label, format!("{label} must be a string, found {kind}")));
        match self.node.get(field) {
            None => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s)),
            Some(Value::Obj(_)) => found("object"),
            Some(Value::Other(kind)) => found(kind),
        }
    }

    fn optional_str(&self, field: Field) -> Result<Option<&'j str>, Reject> {
        self.str_at(field)
    }

    pub(super) fn required_str(&self, field: Field) -> Result<&'j str, Reject> {
        self.str_at(field)?.ok_or_else(|| missing(field.name))
    }

    /// An identifier: 1-64 characters of `[A-Za-z0-9._:-]`.
    pub(super) fn id(&self, field: Field) -> Result<&'j str, Reject> {
        let name = field.name;
        let value = self.required_str(field)?;
        if is_valid_id(value) {
            Ok(value)
        } else {
            Err(invalid(name, format!("{name} must be 1-64 characters of [A-Za-z0-9._:-], got {value:?}")))
        }
    }

    pub(super) fn merchant_id(&self, field: Field) -> Result<&'j str, Reject> {
        let name = field.name;
        let value = self.required_str(field)?;
        if is_valid_merchant_id(value) {
            Ok(value)
        } else {
            Err(invalid(name, format!("{name} must be 1-32 characters of [A-Za-z0-9_-], got {value:?}")))
        }
    }

    pub(super) fn currency(&self, field: Field) -> Result<Currency, Reject> {
        let name = field.name;
        let code = self.required_str(field)?;
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(invalid(name, format!("{name} must be an ISO 4217 alpha-3 code, got {code:?}")));
        }
        Currency::from_code(code).ok_or_else(|| {
            Reject::field(RejectReason::UnsupportedCurrency, name, format!("currency {code} is not supported"))
        })
    }

    pub(super) fn amount(&self, field: Field, currency: Currency, allow_zero: bool) -> Result<Decimal, Reject> {
        let name = field.name;
        let text = self.required_str(field)?;
        amount_of(name, text, currency, allow_zero)
    }

    pub(super) fn optional_amount(&self, field: Field, currency: Currency) -> Result<Option<Decimal>, Reject> {
        let name = field.name;
        self.optional_str(field)?.map(|text| amount_of(name, text, currency, true)).transpose()
    }

    pub(super) fn time(&self, field: Field) -> Result<Timestamp, Reject> {
        let name = field.name;
        let text = self.required_str(field)?;
        let time = parse_rfc3339(text)
            .ok_or_else(|| invalid(name, format!("{name} must be an RFC 3339 time with offset, got {text:?}")))?;
        if !(EARLIEST_TIME..LATEST_TIME).contains(&time.as_second()) {
            return Err(invalid(name, format!("{name} {text} is outside 1970-01-01 to 9000-01-01")));
        }
        Ok(time)
    }

    pub(super) fn payee(&self, field: Field) -> Result<Payee, Reject> {
        let name = field.name;
        let node = match self.node.get(field).ok_or_else(|| missing(name))? {
            Value::Obj(node) => node,
            Value::Str(_) => return Err(invalid(name, format!("{name} must be an object, found string"))),
            Value::Other(kind) => return Err(invalid(name, format!("{name} must be an object, found {kind}"))),
        };
        let payee = Fields { node };
        let name_text = payee.required_str(PAYEE_NAME)?;
        let account = payee.required_str(PAYEE_ACCOUNT)?;
        let bank = payee.required_str(PAYEE_BANK)?;
        Payee::validated(name_text, account, bank).map_err(|e| {
            let label = match e.part {
                PayeePart::Name => "payee.name",
                PayeePart::Account => "payee.account",
                PayeePart::Bank => "payee.bank",
            };
            invalid(label, format!("{label}: {}", e.message))
        })
    }
}

fn amount_of(name: &'static str, text: &str, currency: Currency, allow_zero: bool) -> Result<Decimal, Reject> {
    parse_amount(text, currency, allow_zero).map_err(|e| match e {
        AmountError::Syntax => invalid(name, format!("{name} must be a plain decimal string, got {text:?}")),
        AmountError::Scale => Reject::field(
            RejectReason::AmountScale,
            name,
            format!("{name} {text} has more than {} fraction digits for {currency}", currency.minor_units()),
        ),
        AmountError::NotPositive if allow_zero => invalid(name, format!("{name} must not be negative, got {text}")),
        AmountError::NotPositive => Reject::field(
            RejectReason::AmountNotPositive,
            name,
            format!("{name} must be greater than zero, got {text}"),
        ),
        AmountError::TooLarge => {
            Reject::field(RejectReason::AmountTooLarge, name, format!("{name} {text} exceeds 1000000000000"))
        }
    })
}

fn missing(name: &'static str) -> Reject {
    Reject::field(RejectReason::MissingField, name, format!("{name} is required"))
}

fn invalid(name: &'static str, message: impl Into<String>) -> Reject {
    Reject::field(RejectReason::InvalidField, name, message)
}

/// `[A-Za-z0-9._:-]{1,64}`.
pub fn is_valid_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// `[A-Za-z0-9_-]{1,32}`.
pub fn is_valid_merchant_id(s: &str) -> bool {
    (1..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

/// Strict RFC 3339: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, then parsed by jiff.
pub fn parse_rfc3339(text: &str) -> Option<Timestamp> {
    let b = text.as_bytes();
    let digits = |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    let at = |i: usize, set: &[u8]| b.get(i).is_some_and(|c| set.contains(c));
    let shape = digits(0..4)
        && at(4, b"-")
        && digits(5..7)
        && at(7, b"-")
        && digits(8..10)
        && at(10, b"Tt")
        && digits(11..13)
        && at(13, b":")
        && digits(14..16)
        && at(16, b":")
        && digits(17..19);
    if !shape {
        return None;
    }
    let mut i = 19;
    if at(i, b".") {
        let n = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 || n > 9 {
            return None;
        }
        i += 1 + n;
    }
    let offset_ok = match b.get(i..) {
        Some([b'Z' | b'z']) => true,
        Some([b'+' | b'-', ..]) => b.len() == i + 6 && digits(i + 1..i + 3) && at(i + 3, b":") && digits(i + 4..i + 6),
        _ => false,
    };
    if !offset_ok {
        return None;
    }
    civil_timestamp(b).or_else(|| text.parse::<Timestamp>().ok())
}

/// The instant of a string of the strict shape above, computed directly: days from the civil
/// date (proleptic Gregorian), then the time of day, fraction and offset. `None` for what it does
/// not decide itself (an invalid date, a leap second, an offset of 24 hours or more): jiff then
/// parses the text as before, so the answer is always jiff's (a proptest checks they agree).
fn civil_timestamp(b: &[u8]) -> Option<Timestamp> {
    let num = |r: std::ops::Range<usize>| b[r].iter().fold(0i64, |n, &d| n * 10 + i64::from(d - b'0'));
    let (year, month, day) = (num(0..4), num(5..7), num(8..10));
    let (hour, minute, second) = (num(11..13), num(14..16), num(17..19));
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if !(1..=month_days).contains(&day) || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let (mut at, mut nanos) = (19, 0i32);
    if b[at] == b'.' {
        let digits = b[at + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        let fraction = num(at + 1..at + 1 + digits);
        nanos = i32::try_from(fraction * 10i64.pow(9 - digits as u32)).ok()?;
        at += 1 + digits;
    }
    let offset = match b[at] {
        b'Z' | b'z' => 0,
        sign => {
            let (h, m) = (num(at + 1..at + 3), num(at + 4..at + 6));
            if h > 23 || m > 59 {
                return None;
            }
            (h * 3600 + m * 60) * if sign == b'-' { -1 } else { 1 }
        }
    };
    // Days from 1970-01-01 to the civil date (H. Hinnant's `days_from_civil`).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Timestamp::new(days * 86_400 + hour * 3600 + minute * 60 + second - offset, nanos).ok()
}

#[cfg(test)]
mod tests {
    use super::super::json::KEYS;
    use super::*;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(20_000))]

        /// The direct computation gives jiff's instant for every string of the strict shape,
        /// valid or not (impossible dates, leap seconds, odd offsets and fractions included).
        #[test]
        fn civil_timestamps_agree_with_jiff(
            y in 0..10_000u32, mo in 0..14u32, d in 0..33u32, h in 0..26u32, mi in 0..61u32, s in 0..62u32,
            fraction in proptest::option::of("[0-9]{1,9}"), offset in proptest::option::of((proptest::bool::ANY, 0..26u32, 0..61u32)),
        ) {
            let mut text = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}");
            if let Some(f) = fraction {
                text += &format!(".{f}");
            }
            text += &match offset {
                None => "Z".to_owned(),
                Some((minus, oh, om)) => format!("{}{oh:02}:{om:02}", if minus { '-' } else { '+' }),
            };
            proptest::prop_assert_eq!(parse_rfc3339(&text), text.parse::<Timestamp>().ok(), "{}", text);
        }
    }

    #[test]
    fn each_field_names_its_slot() {
        for field in ALL {
            assert_eq!(field.name.rsplit('.').next(), Some(KEYS[field.slot]));
        }
    }
}
