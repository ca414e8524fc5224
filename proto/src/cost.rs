//! The cost of one request, exactly as INTERFACE.md defines it: integer arithmetic with `i128`
//! intermediates and a single ceiling at the end.
use crate::money::{MICROS_PER_UNIT, Money, Multiplier};

/// Tokens per price unit: prices are per 1,000,000 tokens.
const TOKENS_PER_PRICE_UNIT: i128 = 1_000_000;

/// Token prices in nano-units per 1,000,000 tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenPrices {
    /// Prompt tokens neither read from nor written to a cache.
    pub input: Money,
    /// Completion tokens.
    pub output: Money,
    /// Prompt tokens read from a cache; `None`: billed at the input price.
    pub cached_input: Option<Money>,
    /// Prompt tokens written to a cache; `None`: billed at the input price.
    pub cache_write: Option<Money>,
}

/// How a model is billed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tariff {
    /// Per token, prices per 1,000,000 tokens.
    Tokens(TokenPrices),
    /// A flat price per request.
    PerCall(Money),
}

/// The tokens of one request, as billed (see INTERFACE.md, "Money").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenUsage {
    /// Prompt tokens neither read from nor written to a cache.
    pub input: u64,
    /// Prompt tokens read from a cache.
    pub cached_input: u64,
    /// Prompt tokens written to a cache.
    pub cache_write: u64,
    /// Completion tokens.
    pub output: u64,
}

/// Why a cost cannot be computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CostError {
    /// The cost does not fit the money type (absurd token counts or prices).
    #[error("cost is too large to represent")]
    Overflow,
    /// A price below zero.
    #[error("price must not be negative")]
    NegativePrice,
}

/// `ceil(numerator / denominator)` for a non-negative numerator and positive denominator.
fn div_ceil(numerator: i128, denominator: i128) -> i128 {
    debug_assert!(numerator >= 0 && denominator > 0);
    numerator / denominator + i128::from(numerator % denominator != 0)
}

/// The cost of one request: `ceil(Σ tokens × price / 1e6 × multiplier)`, or for a per-call
/// model `ceil(price × multiplier)`, rounded up once.
pub fn cost(tariff: &Tariff, usage: &TokenUsage, multiplier: Multiplier) -> Result<Money, CostError> {
    let multiplier = i128::from(multiplier.micros());
    let micros = i128::from(MICROS_PER_UNIT);
    let cost = match tariff {
        Tariff::PerCall(price) => {
            let price = non_negative(*price)?;
            div_ceil(price.checked_mul(multiplier).ok_or(CostError::Overflow)?, micros)
        }
        Tariff::Tokens(prices) => {
            let input = non_negative(prices.input)?;
            let lines = [
                (usage.input, input),
                (usage.cached_input, prices.cached_input.map_or(Ok(input), non_negative)?),
                (usage.cache_write, prices.cache_write.map_or(Ok(input), non_negative)?),
                (usage.output, non_negative(prices.output)?),
            ];
            let mut sum: i128 = 0;
            for (tokens, price) in lines {
                let line = i128::from(tokens).checked_mul(price).ok_or(CostError::Overflow)?;
                sum = sum.checked_add(line).ok_or(CostError::Overflow)?;
            }
            let scaled = sum.checked_mul(multiplier).ok_or(CostError::Overflow)?;
            div_ceil(scaled, TOKENS_PER_PRICE_UNIT * micros)
        }
    };
    i64::try_from(cost).map(Money::from_nanos).map_err(|_| CostError::Overflow)
}

fn non_negative(price: Money) -> Result<i128, CostError> {
    if price.is_negative() { Err(CostError::NegativePrice) } else { Ok(i128::from(price.nanos())) }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn prices(input: &str, output: &str) -> TokenPrices {
        TokenPrices {
            input: Money::parse(input).expect("valid"),
            output: Money::parse(output).expect("valid"),
            cached_input: None,
            cache_write: None,
        }
    }

    #[test]
    fn token_cost_follows_the_formula() {
        // 1000 in at 0.15/1M + 500 out at 0.6/1M = 0.00015 + 0.0003 = 0.00045
        let usage = TokenUsage { input: 1000, output: 500, ..TokenUsage::default() };
        let cost = cost(&Tariff::Tokens(prices("0.15", "0.6")), &usage, Multiplier::ONE);
        assert_eq!(cost, Ok(Money::parse("0.00045").expect("valid")));
    }

    #[test]
    fn rounds_up_once_at_the_end() {
        // 1 token at 0.000000001 per 1M = 1e-15 units: a single ceiling gives one nano.
        let usage = TokenUsage { input: 1, output: 1, ..TokenUsage::default() };
        let tariff = Tariff::Tokens(prices("0.000000001", "0.000000001"));
        assert_eq!(cost(&tariff, &usage, Multiplier::ONE), Ok(Money::from_nanos(1)));
        // 3 tokens at 1/1M with multiplier 0.333333: 3000 nanos × 0.333333 = 999.999 -> 1000.
        let usage = TokenUsage { input: 3, ..TokenUsage::default() };
        let multiplier = Multiplier::parse("0.333333").expect("valid");
        assert_eq!(cost(&Tariff::Tokens(prices("1", "1")), &usage, multiplier), Ok(Money::from_nanos(1000)));
    }

    #[test]
    fn cached_and_cache_write_default_to_input_price() {
        let usage =
            TokenUsage { input: 1_000_000, cached_input: 1_000_000, cache_write: 1_000_000, output: 0 };
        let mut tariff = prices("2", "8");
        assert_eq!(
            cost(&Tariff::Tokens(tariff), &usage, Multiplier::ONE),
            Ok(Money::parse("6").expect("valid"))
        );
        tariff.cached_input = Some(Money::parse("0.5").expect("valid"));
        tariff.cache_write = Some(Money::parse("2.5").expect("valid"));
        assert_eq!(
            cost(&Tariff::Tokens(tariff), &usage, Multiplier::ONE),
            Ok(Money::parse("5").expect("valid"))
        );
    }

    #[test]
    fn per_call_scales_by_the_multiplier() {
        let tariff = Tariff::PerCall(Money::parse("0.01").expect("valid"));
        let multiplier = Multiplier::parse("1.5").expect("valid");
        assert_eq!(
            cost(&tariff, &TokenUsage::default(), multiplier),
            Ok(Money::parse("0.015").expect("valid"))
        );
    }

    #[test]
    fn absurd_inputs_are_errors_not_panics() {
        let usage =
            TokenUsage { input: u64::MAX, cached_input: u64::MAX, cache_write: u64::MAX, output: u64::MAX };
        let tariff = Tariff::Tokens(TokenPrices {
            input: Money::MAX,
            output: Money::MAX,
            cached_input: None,
            cache_write: None,
        });
        let multiplier = Multiplier::from_micros(i64::MAX).expect("non-negative");
        assert_eq!(cost(&tariff, &usage, multiplier), Err(CostError::Overflow));
        let negative = Tariff::PerCall(Money::from_nanos(-1));
        assert_eq!(cost(&negative, &usage, Multiplier::ONE), Err(CostError::NegativePrice));
    }

    proptest! {
        #[test]
        fn never_rounds_down(
            tokens in proptest::array::uniform4(0u64..10_000_000),
            price_nanos in proptest::array::uniform4(0i64..100_000_000_000),
            multiplier_micros in 0i64..100_000_000,
        ) {
            let usage = TokenUsage { input: tokens[0], cached_input: tokens[1], cache_write: tokens[2], output: tokens[3] };
            let tariff = Tariff::Tokens(TokenPrices {
                input: Money::from_nanos(price_nanos[0]),
                cached_input: Some(Money::from_nanos(price_nanos[1])),
                cache_write: Some(Money::from_nanos(price_nanos[2])),
                output: Money::from_nanos(price_nanos[3]),
            });
            let multiplier = Multiplier::from_micros(multiplier_micros).expect("non-negative");
            let cost = cost(&tariff, &usage, multiplier).expect("in range").nanos();
            // Exact value as a fraction: cost × 1e12 must be at least it, and less than one nano above.
            let exact: i128 = tokens.iter().zip(price_nanos).map(|(t, p)| i128::from(*t) * i128::from(p)).sum::<i128>()
                * i128::from(multiplier_micros);
            let scale = 1_000_000_000_000i128;
            prop_assert!(i128::from(cost) * scale >= exact);
            prop_assert!((i128::from(cost) - 1) * scale < exact || cost == 0);
        }

        #[test]
        fn never_panics(
            tokens in proptest::array::uniform4(any::<u64>()),
            prices in proptest::array::uniform4(any::<i64>()),
            multiplier_micros in 0i64..=i64::MAX,
        ) {
            let usage = TokenUsage { input: tokens[0], cached_input: tokens[1], cache_write: tokens[2], output: tokens[3] };
            let tariff = Tariff::Tokens(TokenPrices {
                input: Money::from_nanos(prices[0]),
                cached_input: Some(Money::from_nanos(prices[1])),
                cache_write: Some(Money::from_nanos(prices[2])),
                output: Money::from_nanos(prices[3]),
            });
            let multiplier = Multiplier::from_micros(multiplier_micros).expect("non-negative");
            let _ = cost(&tariff, &usage, multiplier);
            let _ = cost(&Tariff::PerCall(Money::from_nanos(prices[0])), &usage, multiplier);
        }
    }
}
