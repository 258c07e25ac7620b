//! Money is a `rust_decimal::Decimal` paired with a `Currency` whose minor units decide the scale.
//!
//! Amounts arrive as strings and are parsed strictly (no exponents, signs other than a leading
//! `-`, separators or whitespace) so that "12.30" can never silently become something else, and
//! are always written with exactly the currency's minor units.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;

mod minor;

pub use minor::{Minor, MinorSum, MinorText};

/// Largest amount any single instruction may carry: 10^12 major units.
pub const MAX_AMOUNT: Decimal = Decimal::from_parts(0xD4A5_1000, 0xE8, 0, false, 0);

/// An ISO 4217 currency with known minor units.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Currency {
    code: [u8; 3],
    minor_units: u8,
}

/// ISO 4217 alpha codes and their minor units (the currencies an acquirer settles in).
const CURRENCIES: &[(&str, u8)] = &[
    ("AED", 2),
    ("AUD", 2),
    ("BHD", 3),
    ("BRL", 2),
    ("CAD", 2),
    ("CHF", 2),
    ("CLP", 0),
    ("CNY", 2),
    ("CZK", 2),
    ("DKK", 2),
    ("EUR", 2),
    ("GBP", 2),
    ("HKD", 2),
    ("HUF", 2),
    ("IDR", 2),
    ("ILS", 2),
    ("INR", 2),
    ("IQD", 3),
    ("ISK", 0),
    ("JOD", 3),
    ("JPY", 0),
    ("KRW", 0),
    ("KWD", 3),
    ("LYD", 3),
    ("MOP", 2),
    ("MXN", 2),
    ("MYR", 2),
    ("NOK", 2),
    ("NZD", 2),
    ("OMR", 3),
    ("PHP", 2),
    ("PLN", 2),
    ("QAR", 2),
    ("RUB", 2),
    ("SAR", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("THB", 2),
    ("TND", 3),
    ("TRY", 2),
    ("TWD", 2),
    ("UGX", 0),
    ("USD", 2),
    ("VND", 0),
    ("XAF", 0),
    ("XOF", 0),
    ("ZAR", 2),
];

impl serde::Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.code())
    }
}

impl<'de> serde::Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Currency, D::Error> {
        let code = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Currency::from_code(&code).ok_or_else(|| serde::de::Error::custom(format!("unknown currency {code}")))
    }
}

impl Currency {
    /// Looks up a currency by its alpha-3 code; `None` when the code is not in the table.
    pub fn from_code(code: &str) -> Option<Currency> {
        CURRENCIES.iter().find(|(c, _)| *c == code).map(|(c, minor)| Currency { code: bytes3(c), minor_units: *minor })
    }

    /// The alpha-3 code, e.g. `CNY`.
    pub fn code(&self) -> &str {
        // The table only holds ASCII codes.
        std::str::from_utf8(&self.code).unwrap_or("???")
    }

    /// The largest amount one bank credit transfer can carry: ISO 20022 amounts and control sums
    /// have at most 18 digits, written here with the currency's minor units
    /// (9999999999999999.99 for CNY). Larger credits are split, never truncated.
    pub fn max_transfer_amount(&self) -> Decimal {
        Decimal::from_i128_with_scale(999_999_999_999_999_999, self.minor_units())
    }

    /// Number of fraction digits (2 for CNY, 0 for JPY, 3 for KWD).
    pub fn minor_units(&self) -> u32 {
        u32::from(self.minor_units)
    }

    /// `amount` with exactly this currency's minor units ("12.30", "1200", "0.000").
    pub fn format(&self, amount: Decimal) -> String {
        self.display(amount).to_string()
    }

    /// Like [`Currency::format`], as a `Display` value (no allocation).
    pub fn display(&self, amount: Decimal) -> impl fmt::Display {
        let mut value = amount;
        assert!(
            value.scale() <= self.minor_units(),
            "amount {amount} has more fraction digits than {} allows",
            self.code()
        );
        value.rescale(self.minor_units());
        if value.is_zero() {
            value.set_sign_positive(true);
        }
        value
    }
}

fn bytes3(code: &str) -> [u8; 3] {
    let b = code.as_bytes();
    [b[0], b[1], b[2]]
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Why an amount string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmountError {
    /// Not a plain decimal (`123`, `12.30`, optionally with a leading `-`).
    Syntax,
    /// More fraction digits than the currency has minor units.
    Scale,
    /// Zero or negative where a positive amount is required (or negative where ≥ 0 is).
    NotPositive,
    /// Above [`MAX_AMOUNT`].
    TooLarge,
}

/// Parses a decimal amount string for `currency`.
///
/// `allow_zero` accepts `0` (fees); negative values are always refused.
pub fn parse_amount(text: &str, currency: Currency, allow_zero: bool) -> Result<Decimal, AmountError> {
    let fraction_digits = check_syntax(text)?;
    if fraction_digits > currency.minor_units() as usize {
        return Err(AmountError::Scale);
    }
    match small_amount(text, fraction_digits) {
        Some(signed) => judge_amount(signed, allow_zero),
        None => reference_amount(text, allow_zero),
    }
}

/// A syntactically valid amount of at most 18 digits (every amount up to [`MAX_AMOUNT`] at
/// any scale a currency has) as its sign and digits read as one integer, with its scale: what
/// `Decimal::from_str` would give, without its general parser (which was most of the cost of
/// an amount). `None` for longer texts, which take the reference path.
fn small_amount(text: &str, scale: usize) -> Option<(bool, u64, u32)> {
    let bytes = text.as_bytes();
    let (negative, unsigned) = match bytes.strip_prefix(b"-") {
        Some(rest) => (true, rest),
        None => (false, bytes),
    };
    if unsigned.len() > 18 + usize::from(scale > 0) {
        return None;
    }
    let digits = unsigned.iter().filter(|&&b| b != b'.');
    let mantissa = digits.fold(0u64, |m, &b| m * 10 + u64::from(b - b'0'));
    Some((negative, mantissa, u32::try_from(scale).ok()?))
}

/// [`parse_amount`]'s checks on an amount read by [`small_amount`], and its normalised value.
fn judge_amount(
    (negative, mut mantissa, mut scale): (bool, u64, u32),
    allow_zero: bool,
) -> Result<Decimal, AmountError> {
    if mantissa == 0 {
        return if allow_zero { Ok(Decimal::ZERO) } else { Err(AmountError::NotPositive) };
    }
    if negative {
        return Err(AmountError::NotPositive);
    }
    if u128::from(mantissa) > 1_000_000_000_000u128 * 10u128.pow(scale) {
        return Err(AmountError::TooLarge);
    }
    while scale > 0 && mantissa % 10 == 0 {
        mantissa /= 10;
        scale -= 1;
    }
    Ok(Decimal::from_i128_with_scale(i128::from(mantissa), scale))
}

/// [`parse_amount`] through `Decimal::from_str`: the definition the fast path is tested
/// against, and the path of texts too long for it.
fn reference_amount(text: &str, allow_zero: bool) -> Result<Decimal, AmountError> {
    let value = Decimal::from_str(text).map_err(|_| AmountError::TooLarge)?;
    if value.is_sign_negative() && !value.is_zero() || (value.is_zero() && !allow_zero) {
        return Err(AmountError::NotPositive);
    }
    if value > MAX_AMOUNT {
        return Err(AmountError::TooLarge);
    }
    Ok(value.normalize().max(Decimal::ZERO))
}

/// Accepts `-?[0-9]+(\.[0-9]+)?` of at most 40 bytes; returns the number of fraction digits.
fn check_syntax(text: &str) -> Result<usize, AmountError> {
    let bytes = text.as_bytes();
    if bytes.is_empty() || bytes.len() > 40 {
        return Err(AmountError::Syntax);
    }
    let unsigned = bytes.strip_prefix(b"-").unwrap_or(bytes);
    let (int, frac) = match unsigned.iter().position(|&b| b == b'.') {
        Some(dot) => (&unsigned[..dot], Some(&unsigned[dot + 1..])),
        None => (unsigned, None),
    };
    let digits = |part: &[u8]| !part.is_empty() && part.iter().all(u8::is_ascii_digit);
    if !digits(int) || frac.is_some_and(|f| !digits(f)) {
        return Err(AmountError::Syntax);
    }
    Ok(frac.map_or(0, <[u8]>::len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The integer path gives what `Decimal::from_str` gives, value, scale and error, on
        /// every amount it takes (short texts made common, zeros and signs included).
        #[test]
        fn the_fast_amount_is_the_reference_amount(
            negative in any::<bool>(),
            int in "[0-9]{1,20}",
            frac in proptest::option::of("[0-9]{1,4}"),
            allow_zero in any::<bool>(),
        ) {
            let text = format!("{}{int}{}", if negative { "-" } else { "" }, frac.as_deref().map(|f| format!(".{f}")).unwrap_or_default());
            let scale = frac.as_deref().map_or(0, str::len);
            if let Some(small) = small_amount(&text, scale) {
                let (fast, reference) = (judge_amount(small, allow_zero), reference_amount(&text, allow_zero));
                prop_assert_eq!(fast, reference, "{}", text);
                if let (Ok(fast), Ok(reference)) = (fast, reference) {
                    prop_assert_eq!(fast.scale(), reference.scale(), "{}", text);
                    prop_assert_eq!(fast.is_sign_negative(), reference.is_sign_negative(), "{}", text);
                }
            }
        }
    }

    #[test]
    fn amounts_at_the_edges_take_both_paths_alike() {
        let kwd = Currency::from_code("KWD").expect("KWD");
        for text in ["1000000000000", "1000000000000.001", "999999999999.999", "-0", "-0.000", "000.100", "0.001"] {
            let reference = check_syntax(text).and_then(|_| reference_amount(text, true));
            assert_eq!(parse_amount(text, kwd, true), reference, "{text}");
        }
        let long = "0000000000000000000000001.5";
        assert_eq!(small_amount(long, 1), None, "longer than 18 digits: the reference path");
        assert_eq!(parse_amount(long, kwd, false), Ok(Decimal::new(15, 1)));
    }

    fn cny() -> Currency {
        Currency::from_code("CNY").expect("CNY")
    }

    #[test]
    fn max_amount_is_ten_to_the_twelfth() {
        assert_eq!(MAX_AMOUNT, Decimal::from(1_000_000_000_000_i64));
    }

    #[test]
    fn parses_and_formats_with_minor_units() {
        let jpy = Currency::from_code("JPY").expect("JPY");
        let kwd = Currency::from_code("KWD").expect("KWD");
        assert_eq!(cny().format(parse_amount("12.3", cny(), false).unwrap()), "12.30");
        assert_eq!(jpy.format(parse_amount("1200", jpy, false).unwrap()), "1200");
        assert_eq!(kwd.format(parse_amount("0.005", kwd, false).unwrap()), "0.005");
        assert_eq!(cny().format(Decimal::ZERO), "0.00");
        assert_eq!(cny().format(-Decimal::ZERO), "0.00");
        assert_eq!(cny().format(Decimal::new(-1230, 2)), "-12.30");
    }

    #[test]
    fn refuses_bad_amounts_with_the_right_reason() {
        let jpy = Currency::from_code("JPY").expect("JPY");
        for bad in ["", "1e5", "+1", " 1", "1.", ".5", "1_000", "1,00", "0x10", "NaN", "1.2.3"] {
            assert_eq!(parse_amount(bad, cny(), false), Err(AmountError::Syntax), "{bad:?}");
        }
        assert_eq!(parse_amount("12.300", cny(), false), Err(AmountError::Scale));
        assert_eq!(parse_amount("1.5", jpy, false), Err(AmountError::Scale));
        assert_eq!(parse_amount("0", cny(), false), Err(AmountError::NotPositive));
        assert_eq!(parse_amount("-5.00", cny(), false), Err(AmountError::NotPositive));
        assert_eq!(parse_amount("-0.01", cny(), true), Err(AmountError::NotPositive));
        assert_eq!(parse_amount("0.00", cny(), true), Ok(Decimal::ZERO));
        assert_eq!(parse_amount("1000000000000.00", cny(), false), Ok(MAX_AMOUNT));
        assert_eq!(parse_amount("1000000000000.01", cny(), false), Err(AmountError::TooLarge));
        assert_eq!(parse_amount("99999999999999999999999999999999", cny(), false), Err(AmountError::TooLarge));
    }

    #[test]
    fn unknown_currency_is_none() {
        assert!(Currency::from_code("XXX").is_none());
        assert!(Currency::from_code("cny").is_none());
    }
}
