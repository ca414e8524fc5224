//! Exact money: integer nano-units in `i64`, parsed from and printed as plain decimal strings.
//!
//! No float ever touches an amount. Parsing refuses what it cannot represent exactly (more
//! decimals than the scale, signs where none make sense, exponents, blanks) instead of rounding.
use std::{fmt, str::FromStr};

/// Nano-units in one unit of currency.
pub const NANOS_PER_UNIT: i64 = 1_000_000_000;
/// Micro-units in a multiplier of 1.
pub const MICROS_PER_UNIT: i64 = 1_000_000;

/// Why a decimal string is not an acceptable amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// Not of the form `123` or `123.45` (with an optional leading `-`).
    #[error("{0:?} is not a plain decimal number")]
    NotDecimal(String),
    /// More fractional digits than can be represented exactly.
    #[error("{input:?} has more than {max} decimal places")]
    TooPrecise {
        /// The refused input.
        input: String,
        /// The number of decimal places allowed.
        max: u32,
    },
    /// Larger than the representable range.
    #[error("{0:?} is too large")]
    TooLarge(String),
    /// Negative where only zero or more makes sense.
    #[error("{0:?} must not be negative")]
    Negative(String),
}

/// Parses a plain decimal (`-?[0-9]+(\.[0-9]+)?`) into an integer scaled by `10^scale`.
fn parse_scaled(input: &str, scale: u32) -> Result<i64, AmountError> {
    let not_decimal = || AmountError::NotDecimal(input.to_owned());
    let (negative, digits) = match input.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, input),
    };
    let (whole, fraction) = match digits.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (digits, ""),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) {
        return Err(not_decimal());
    }
    if digits.contains('.') && fraction.is_empty() {
        return Err(not_decimal());
    }
    if fraction.len() > scale as usize {
        return Err(AmountError::TooPrecise { input: input.to_owned(), max: scale });
    }
    let too_large = || AmountError::TooLarge(input.to_owned());
    let mut value: i128 = 0;
    for b in whole.bytes().chain(fraction.bytes()) {
        value = value * 10 + i128::from(b - b'0');
        if value > i128::from(i64::MAX) + 1 {
            return Err(too_large());
        }
    }
    for _ in fraction.len()..scale as usize {
        value *= 10;
    }
    let value = if negative { -value } else { value };
    i64::try_from(value).map_err(|_| too_large())
}

/// Prints an integer scaled by `10^scale` as the shortest exact decimal.
fn format_scaled(value: i64, scale: u32, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let unit = 10u64.pow(scale);
    let magnitude = value.unsigned_abs();
    let (whole, fraction) = (magnitude / unit, magnitude % unit);
    if value < 0 {
        f.write_str("-")?;
    }
    if fraction == 0 {
        return write!(f, "{whole}");
    }
    let digits = format!("{fraction:0width$}", width = scale as usize);
    write!(f, "{whole}.{}", digits.trim_end_matches('0'))
}

/// An amount of money in nano-units (1e-9 of the deployment's currency).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(i64);

impl Money {
    /// No money.
    pub const ZERO: Money = Money(0);
    /// The largest representable amount.
    pub const MAX: Money = Money(i64::MAX);

    /// An amount of `nanos` nano-units.
    pub const fn from_nanos(nanos: i64) -> Money {
        Money(nanos)
    }

    /// The amount in nano-units.
    pub const fn nanos(self) -> i64 {
        self.0
    }

    /// Parses a decimal string with at most 9 decimal places, sign allowed.
    pub fn parse(input: &str) -> Result<Money, AmountError> {
        parse_scaled(input, 9).map(Money)
    }

    /// Parses a decimal string that must be zero or more.
    pub fn parse_non_negative(input: &str) -> Result<Money, AmountError> {
        let money = Money::parse(input)?;
        if money.0 < 0 {
            return Err(AmountError::Negative(input.to_owned()));
        }
        Ok(money)
    }

    /// `self + other`, or `None` on overflow.
    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).map(Money)
    }

    /// `self - other`, or `None` on overflow.
    pub fn checked_sub(self, other: Money) -> Option<Money> {
        self.0.checked_sub(other.0).map(Money)
    }

    /// `self + other`, clamped to the representable range.
    pub fn saturating_add(self, other: Money) -> Money {
        Money(self.0.saturating_add(other.0))
    }

    /// `self - other`, clamped to the representable range.
    pub fn saturating_sub(self, other: Money) -> Money {
        Money(self.0.saturating_sub(other.0))
    }

    /// Whether the amount is below zero.
    pub const fn is_negative(self) -> bool {
        self.0 < 0
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        format_scaled(self.0, 9, f)
    }
}

impl FromStr for Money {
    type Err = AmountError;

    fn from_str(s: &str) -> Result<Money, AmountError> {
        Money::parse(s)
    }
}

/// A group's price multiplier in micro-units (1x = 1_000_000), never negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Multiplier(i64);

impl Multiplier {
    /// Prices unchanged.
    pub const ONE: Multiplier = Multiplier(MICROS_PER_UNIT);

    /// A multiplier of `micros` micro-units; `None` when negative.
    pub const fn from_micros(micros: i64) -> Option<Multiplier> {
        if micros < 0 { None } else { Some(Multiplier(micros)) }
    }

    /// The multiplier in micro-units.
    pub const fn micros(self) -> i64 {
        self.0
    }

    /// Parses a non-negative decimal string with at most 6 decimal places.
    pub fn parse(input: &str) -> Result<Multiplier, AmountError> {
        let micros = parse_scaled(input, 6)?;
        Multiplier::from_micros(micros).ok_or_else(|| AmountError::Negative(input.to_owned()))
    }
}

impl Default for Multiplier {
    fn default() -> Multiplier {
        Multiplier::ONE
    }
}

impl fmt::Display for Multiplier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        format_scaled(self.0, 6, f)
    }
}

impl FromStr for Multiplier {
    type Err = AmountError;

    fn from_str(s: &str) -> Result<Multiplier, AmountError> {
        Multiplier::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn parses_plain_decimals() {
        assert_eq!(Money::parse("10"), Ok(Money(10 * NANOS_PER_UNIT)));
        assert_eq!(Money::parse("0.15"), Ok(Money(150_000_000)));
        assert_eq!(Money::parse("9.999986"), Ok(Money(9_999_986_000)));
        assert_eq!(Money::parse("0.000000001"), Ok(Money(1)));
        assert_eq!(Money::parse("-2.5"), Ok(Money(-2_500_000_000)));
        assert_eq!(Money::parse("007.10"), Ok(Money(7_100_000_000)));
        assert_eq!(Money::parse("9223372036.854775807"), Ok(Money::MAX));
        assert_eq!(Money::parse("-9223372036.854775808"), Ok(Money(i64::MIN)));
    }

    #[test]
    fn refuses_what_it_cannot_represent_exactly() {
        for bad in
            ["", "-", ".5", "5.", "1e3", "1,5", " 1", "1 ", "+1", "0x10", "1.2.3", "--1", "NaN", "inf", "１"]
        {
            assert!(matches!(Money::parse(bad), Err(AmountError::NotDecimal(_))), "{bad:?}");
        }
        assert!(matches!(Money::parse("0.0000000001"), Err(AmountError::TooPrecise { .. })));
        assert!(matches!(Money::parse("9223372036.854775808"), Err(AmountError::TooLarge(_))));
        assert!(matches!(Money::parse("99999999999999999999999"), Err(AmountError::TooLarge(_))));
        assert!(matches!(Money::parse_non_negative("-1"), Err(AmountError::Negative(_))));
        assert!(matches!(Multiplier::parse("-0.5"), Err(AmountError::Negative(_))));
        assert!(matches!(Multiplier::parse("1.0000001"), Err(AmountError::TooPrecise { .. })));
    }

    #[test]
    fn prints_the_shortest_exact_decimal() {
        assert_eq!(Money(10 * NANOS_PER_UNIT).to_string(), "10");
        assert_eq!(Money(150_000_000).to_string(), "0.15");
        assert_eq!(Money(1).to_string(), "0.000000001");
        assert_eq!(Money(-1).to_string(), "-0.000000001");
        assert_eq!(Money(0).to_string(), "0");
        assert_eq!(Money(i64::MIN).to_string(), "-9223372036.854775808");
        assert_eq!(Multiplier::ONE.to_string(), "1");
        assert_eq!(Multiplier(1_250_000).to_string(), "1.25");
    }

    proptest! {
        #[test]
        fn print_then_parse_is_identity(nanos in any::<i64>()) {
            let money = Money::from_nanos(nanos);
            prop_assert_eq!(Money::parse(&money.to_string()), Ok(money));
        }

        #[test]
        fn multiplier_print_then_parse_is_identity(micros in 0..=i64::MAX) {
            let multiplier = Multiplier(micros);
            prop_assert_eq!(Multiplier::parse(&multiplier.to_string()), Ok(multiplier));
        }

        #[test]
        fn parse_then_print_is_canonical(whole in 0u64..9_000_000_000, fraction in 0u32..1_000_000_000, digits in 1usize..=9) {
            let fraction = format!("{fraction:09}")[..digits].to_owned();
            let input = format!("{whole}.{fraction}");
            let parsed = Money::parse(&input).expect("in range");
            // Printing drops trailing zeros only, so the value read back is the same.
            prop_assert_eq!(Money::parse(&parsed.to_string()), Ok(parsed));
            let canonical = input.trim_end_matches('0').trim_end_matches('.');
            prop_assert_eq!(parsed.to_string(), canonical);
        }

        #[test]
        fn parse_never_panics(input in "\\PC*") {
            let _ = Money::parse(&input);
            let _ = Multiplier::parse(&input);
        }
    }
}
