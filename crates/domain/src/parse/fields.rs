//! Field accessors that turn each schema rule into the matching reject reason.

use jiff::Timestamp;
use rust_decimal::Decimal;

use super::json::Json;
use crate::instruction::{Payee, PayeePart};
use crate::money::{parse_amount, AmountError, Currency};
use crate::reject::{Reject, RejectReason};

/// Accepted instants: 1970-01-01T00:00:00Z (inclusive) to 9000-01-01T00:00:00Z (exclusive), so
/// window and business-day arithmetic never runs off the calendar's range.
const EARLIEST_TIME: i64 = 0;
pub(super) const LATEST_TIME: i64 = 221_845_392_000;

/// Read access to one JSON object's fields.
pub(super) struct Fields<'j, 'a> {
    json: &'j Json<'a>,
}

impl<'j, 'a> Fields<'j, 'a> {
    pub(super) fn new(json: &'j Json<'a>) -> Self {
        Fields { json }
    }

    /// The string at `key`, reported as `label` (the dotted path) when wrong.
    fn str_at(&self, key: &str, label: &'static str) -> Result<Option<&'j str>, Reject> {
        match self.json.get(key) {
            None => Ok(None),
            Some(Json::Str(s)) => Ok(Some(s.as_ref())),
            Some(other) => Err(invalid(label, format!("{label} must be a string, found {}", other.type_name()))),
        }
    }

    fn optional_str(&self, name: &'static str) -> Result<Option<&'j str>, Reject> {
        self.str_at(name, name)
    }

    pub(super) fn required_str(&self, name: &'static str) -> Result<&'j str, Reject> {
        self.str_at(name, name)?.ok_or_else(|| missing(name))
    }

    /// An identifier: 1-64 characters of `[A-Za-z0-9._:-]`.
    pub(super) fn id(&self, name: &'static str) -> Result<&'j str, Reject> {
        let value = self.required_str(name)?;
        if is_valid_id(value) {
            Ok(value)
        } else {
            Err(invalid(name, format!("{name} must be 1-64 characters of [A-Za-z0-9._:-], got {value:?}")))
        }
    }

    pub(super) fn merchant_id(&self, name: &'static str) -> Result<&'j str, Reject> {
        let value = self.required_str(name)?;
        if is_valid_merchant_id(value) {
            Ok(value)
        } else {
            Err(invalid(name, format!("{name} must be 1-32 characters of [A-Za-z0-9_-], got {value:?}")))
        }
    }

    pub(super) fn currency(&self, name: &'static str) -> Result<Currency, Reject> {
        let code = self.required_str(name)?;
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(invalid(name, format!("{name} must be an ISO 4217 alpha-3 code, got {code:?}")));
        }
        Currency::from_code(code).ok_or_else(|| {
            Reject::field(RejectReason::UnsupportedCurrency, name, format!("currency {code} is not supported"))
        })
    }

    pub(super) fn amount(&self, name: &'static str, currency: Currency, allow_zero: bool) -> Result<Decimal, Reject> {
        let text = self.required_str(name)?;
        amount_of(name, text, currency, allow_zero)
    }

    pub(super) fn optional_amount(&self, name: &'static str, currency: Currency) -> Result<Option<Decimal>, Reject> {
        self.optional_str(name)?.map(|text| amount_of(name, text, currency, true)).transpose()
    }

    pub(super) fn time(&self, name: &'static str) -> Result<Timestamp, Reject> {
        let text = self.required_str(name)?;
        let time = parse_rfc3339(text)
            .ok_or_else(|| invalid(name, format!("{name} must be an RFC 3339 time with offset, got {text:?}")))?;
        if !(EARLIEST_TIME..LATEST_TIME).contains(&time.as_second()) {
            return Err(invalid(name, format!("{name} {text} is outside 1970-01-01 to 9000-01-01")));
        }
        Ok(time)
    }

    pub(super) fn payee(&self, name: &'static str) -> Result<Payee, Reject> {
        let json = self.json.get(name).ok_or_else(|| missing(name))?;
        if !matches!(json, Json::Obj(_)) {
            return Err(invalid(name, format!("{name} must be an object, found {}", json.type_name())));
        }
        let payee = Fields { json };
        let part = |key, label| payee.str_at(key, label)?.ok_or_else(|| missing(label));
        let name_text = part("name", "payee.name")?;
        let account = part("account", "payee.account")?;
        let bank = part("bank", "payee.bank")?;
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
    text.parse::<Timestamp>().ok()
}
