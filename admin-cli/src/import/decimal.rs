//! Exact decimal arithmetic for the numbers new-api and one-api store: ratios and prices as
//! JSON numbers, quotas as integers. Every conversion either gives an exact integer count of
//! nano-units (or micro-units) or says it cannot, never rounds.

/// A decimal `mantissa × 10^-scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decimal {
    mantissa: i128,
    scale: u32,
}

impl Decimal {
    /// Parses `12`, `0.075`, `-1.5`, `1e-5`, `2.5E3` (a JSON number's text).
    pub fn parse(text: &str) -> Option<Decimal> {
        let text = text.trim();
        let (number, exponent) = match text.find(['e', 'E']) {
            Some(at) => (&text[..at], text[at + 1..].parse::<i32>().ok()?),
            None => (text, 0),
        };
        let (negative, digits) = match number.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, number),
        };
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        if whole.is_empty() || !whole.bytes().chain(fraction.bytes()).all(|b| b.is_ascii_digit()) {
            return None;
        }
        let mut mantissa: i128 = 0;
        for b in whole.bytes().chain(fraction.bytes()) {
            mantissa = mantissa.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
        }
        let mut scale = i64::try_from(fraction.len()).ok()? - i64::from(exponent);
        while scale < 0 {
            mantissa = mantissa.checked_mul(10)?;
            scale += 1;
        }
        Some(Decimal {
            mantissa: if negative { -mantissa } else { mantissa },
            scale: u32::try_from(scale).ok()?,
        })
    }

    /// An integer.
    pub fn integer(value: i64) -> Decimal {
        Decimal { mantissa: i128::from(value), scale: 0 }
    }

    /// `self × other`, exactly.
    pub fn times(self, other: Decimal) -> Option<Decimal> {
        Some(Decimal {
            mantissa: self.mantissa.checked_mul(other.mantissa)?,
            scale: self.scale.checked_add(other.scale)?,
        })
    }

    /// `self ÷ divisor` when that is exact at `max_scale` decimals or fewer.
    pub fn divided_by(self, divisor: i64, max_scale: u32) -> Option<Decimal> {
        if divisor == 0 {
            return None;
        }
        let scaled = self.mantissa.checked_mul(10_i128.checked_pow(max_scale)?)?;
        let divisor = i128::from(divisor);
        (scaled % divisor == 0).then(|| Decimal { mantissa: scaled / divisor, scale: self.scale + max_scale })
    }

    /// The value in units of `10^-scale` (9: nano-units, 6: micro-units) when that is an
    /// integer that fits an `i64`.
    pub fn in_units(self, scale: u32) -> Option<i64> {
        let value = if self.scale <= scale {
            self.mantissa.checked_mul(10_i128.checked_pow(scale - self.scale)?)?
        } else {
            let divisor = 10_i128.checked_pow(self.scale - scale)?;
            if self.mantissa % divisor != 0 {
                return None;
            }
            self.mantissa / divisor
        };
        i64::try_from(value).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nanos(text: &str) -> Option<i64> {
        Decimal::parse(text)?.in_units(9)
    }

    #[test]
    fn parses_json_numbers_exactly() {
        assert_eq!(nanos("0.075"), Some(75_000_000));
        assert_eq!(nanos("12"), Some(12_000_000_000));
        assert_eq!(nanos("1e-5"), Some(10_000));
        assert_eq!(nanos("2.5E3"), Some(2_500_000_000_000));
        assert_eq!(nanos("0.0000000001"), None);
        assert_eq!(nanos("-1.5"), Some(-1_500_000_000));
        for bad in ["", "abc", "1.2.3", ".5", "1e", "--1"] {
            assert_eq!(Decimal::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn products_and_quotients_are_exact_or_refused() {
        let two = Decimal::integer(2);
        let ratio = Decimal::parse("0.075").unwrap_or(two);
        let completion = Decimal::parse("4").unwrap_or(two);
        assert_eq!(
            two.times(ratio).and_then(|d| d.times(completion)).and_then(|d| d.in_units(9)),
            Some(600_000_000)
        );
        // 500,000 quota = 1 unit: 1 quota = 2,000 nano-units exactly.
        assert_eq!(Decimal::integer(1).divided_by(500_000, 9).and_then(|d| d.in_units(9)), Some(2000));
        assert_eq!(Decimal::integer(1).divided_by(3, 9), None);
        assert_eq!(Decimal::integer(7).divided_by(7, 9).and_then(|d| d.in_units(9)), Some(1_000_000_000));
    }
}
