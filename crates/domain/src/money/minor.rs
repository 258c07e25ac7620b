//! Amounts as integers of a currency's minor units, for the netting state and the encoders.
//!
//! Netting adds millions of amounts, and every amount of a batch has its currency's scale, so
//! inside the engine an amount is an `i64` count of minor units (cents, yen, fils) and a sum an
//! `i128`: one machine add each, no scale bookkeeping, and a sum of every instruction that can
//! exist cannot overflow. `rust_decimal` stays at the boundaries, where amounts are parsed and
//! where totals are handed to manifests and checked (`Totals`).

use rust_decimal::Decimal;

use super::Currency;

/// An amount in its currency's minor units (at most 10^15 for any valid instruction).
pub type Minor = i64;

/// A sum of [`Minor`] amounts.
pub type MinorSum = i128;

/// An amount's text, as [`Currency::minor_text`] writes it.
#[derive(Debug, Clone, Copy)]
pub struct MinorText {
    bytes: [u8; 42],
    start: u8,
}

impl MinorText {
    fn push_front(&mut self, byte: u8) {
        self.start -= 1;
        self.bytes[usize::from(self.start)] = byte;
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits, a point and a sign were written.
        std::str::from_utf8(&self.bytes[usize::from(self.start)..]).unwrap_or_default()
    }
}

/// 10^0 to 10^3: a scale step between an amount as parsed and its currency's minor units
/// (currencies have at most three).
const POWERS_OF_TEN: [i128; 4] = [1, 10, 100, 1_000];

impl Currency {
    /// `amount` in this currency's minor units; `None` when it has more fraction digits than the
    /// currency allows or does not fit a [`MinorSum`].
    pub fn to_minor(&self, amount: Decimal) -> Option<MinorSum> {
        let (scale, minor) = (amount.scale(), self.minor_units());
        if scale > minor {
            return None;
        }
        amount.mantissa().checked_mul(POWERS_OF_TEN[(minor - scale) as usize])
    }

    /// The instruction-sized `amount` in minor units. Panics when it has more fraction digits
    /// than the currency or is out of range, which the parser refuses before netting.
    pub fn minor(&self, amount: Decimal) -> Minor {
        self.to_minor(amount)
            .and_then(|m| Minor::try_from(m).ok())
            .unwrap_or_else(|| panic!("amount {amount} is not a valid {self} instruction amount"))
    }

    /// `minor` minor units as a `Decimal` with exactly this currency's scale. Panics beyond
    /// 2^96 minor units, which no sum of valid instructions reaches.
    pub fn from_minor(&self, minor: MinorSum) -> Decimal {
        Decimal::try_from_i128_with_scale(minor, self.minor_units())
            .unwrap_or_else(|_| panic!("{minor} minor units of {self} out of range"))
    }

    /// Appends `minor` minor units written with exactly this currency's minor units: the same
    /// text as [`Currency::format`] of the same amount ("12.30", "-0.50", "1200", "0.000").
    pub fn write_minor(&self, minor: MinorSum, out: &mut String) {
        out.push_str(self.minor_text(minor).as_str());
    }

    /// `minor` minor units as [`Currency::write_minor`] writes them, on the stack (for writers
    /// of bytes, such as the credit file's).
    pub fn minor_text(&self, minor: MinorSum) -> MinorText {
        let units = self.minor_units() as usize;
        let mut text = MinorText { bytes: [0; 42], start: 42 };
        let mut rest = minor.unsigned_abs();
        // At least one integer digit and every fraction digit, zeros included. An i128 has at
        // most 39 digits; with the point and the sign, 41 bytes.
        let mut digits = 0;
        while rest > 0 || digits <= units {
            if digits == units && units > 0 {
                text.push_front(b'.');
            }
            // Every real amount fits 64 bits, where dividing by ten is a multiplication; a
            // 128-bit division is a library call.
            let digit = match u64::try_from(rest) {
                Ok(small) => {
                    rest = u128::from(small / 10);
                    small % 10
                }
                Err(_) => {
                    let digit = (rest % 10) as u64;
                    rest /= 10;
                    digit
                }
            };
            text.push_front(b'0' + digit as u8);
            digits += 1;
        }
        if minor < 0 {
            text.push_front(b'-');
        }
        text
    }

    /// Reads back an amount in the shape [`Currency::write_minor`] writes: an optional `-`, 1 to
    /// 18 integer digits, and exactly the currency's minor units after a point (none for a
    /// currency without minor units). `None` for anything else, including `-0`, which the
    /// writer never produces: a reader falls back to its general parser for those.
    pub fn parse_minor(&self, text: &str) -> Option<MinorSum> {
        let units = self.minor_units() as usize;
        let bytes = text.as_bytes();
        let (negative, unsigned) = match bytes.split_first() {
            Some((b'-', rest)) => (true, rest),
            _ => (false, bytes),
        };
        let (int, frac) = match units {
            0 => (unsigned, &[][..]),
            _ => {
                let point = unsigned.len().checked_sub(units + 1)?;
                (&unsigned[..point], unsigned[point..].strip_prefix(b".")?)
            }
        };
        if int.is_empty() || int.len() > 18 || !int.iter().chain(frac).all(u8::is_ascii_digit) {
            return None;
        }
        let value = int.iter().chain(frac).fold(0i128, |v, d| v * 10 + i128::from(d - b'0'));
        match (negative, value) {
            (true, 0) => None,
            (true, v) => Some(-v),
            (false, v) => Some(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rust_decimal::Decimal;

    use crate::money::Currency;

    fn write(currency: Currency, minor: i128) -> String {
        let mut out = String::new();
        currency.write_minor(minor, &mut out);
        out
    }

    #[test]
    fn writes_like_format() {
        let [cny, jpy, kwd] = ["CNY", "JPY", "KWD"].map(|c| Currency::from_code(c).expect("known"));
        assert_eq!(write(cny, 1230), "12.30");
        assert_eq!(write(cny, -50), "-0.50");
        assert_eq!(write(cny, 0), "0.00");
        assert_eq!(write(jpy, 1200), "1200");
        assert_eq!(write(jpy, 0), "0");
        assert_eq!(write(kwd, 5), "0.005");
        assert_eq!(write(kwd, i128::MIN).len(), 41, "the widest value still fits");
    }

    #[test]
    fn every_currency_scale_step_is_in_the_table() {
        for (code, minor) in crate::money::CURRENCIES {
            assert!(usize::from(*minor) < super::POWERS_OF_TEN.len(), "{code}");
        }
    }

    #[test]
    fn converts_exactly() {
        let cny = Currency::from_code("CNY").expect("CNY");
        assert_eq!(cny.to_minor(Decimal::new(123, 1)), Some(1230));
        assert_eq!(cny.to_minor(Decimal::new(1234, 3)), None, "more fraction digits than CNY");
        assert_eq!(cny.from_minor(1230), Decimal::new(1230, 2));
        assert_eq!(cny.minor(Decimal::new(5, 0)), 500);
        for (text, parsed) in [("12.30", Some(1230)), ("-0.50", Some(-50)), ("007.00", Some(700)), ("-0.00", None)] {
            assert_eq!(cny.parse_minor(text), parsed, "{text}");
        }
        for bad in ["", "-", ".00", "1.0", "1.000", "1,00", "+1.00", "1e2", "1234567890123456789.00"] {
            assert_eq!(cny.parse_minor(bad), None, "{bad}");
        }
    }

    proptest! {
        /// Every amount a batch can hold writes the same as the `Decimal` formatter and comes
        /// back to the same number of minor units.
        #[test]
        fn agrees_with_decimal(minor in -(10i128.pow(27))..10i128.pow(27), currency in 0usize..3) {
            let currency = Currency::from_code(["CNY", "JPY", "KWD"][currency]).expect("known");
            let decimal = currency.from_minor(minor);
            prop_assert_eq!(write(currency, minor), currency.format(decimal));
            prop_assert_eq!(currency.to_minor(decimal), Some(minor));
            let within = minor.unsigned_abs() < 10u128.pow(18 + currency.minor_units());
            prop_assert_eq!(currency.parse_minor(&write(currency, minor)), within.then_some(minor));
        }

        /// Whatever it accepts, the general `Decimal` parser reads as the same amount, with the
        /// currency's scale.
        #[test]
        fn parse_agrees_with_decimal(text in "-?[0-9]{0,20}(\\.[0-9]{0,4})?", currency in 0usize..3) {
            let currency = Currency::from_code(["CNY", "JPY", "KWD"][currency]).expect("known");
            if let Some(minor) = currency.parse_minor(&text) {
                let decimal: Decimal = text.parse().expect("a decimal");
                prop_assert_eq!(decimal.scale(), currency.minor_units());
                prop_assert_eq!(currency.to_minor(decimal), Some(minor));
            }
        }
    }
}
