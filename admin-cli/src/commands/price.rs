//! Prices as flags (`--input-price …` or `--per-call …`) and as display values.
use clap::Args;
use router_proto::{Money, pb};
use serde::Serialize;

use crate::{
    args,
    output::{self, or_unset},
};

/// Price flags shared by `model set` and `model-group add`: per 1M tokens or per call.
#[derive(Debug, Clone, Default, Args)]
pub struct PriceArgs {
    /// Price per 1M input tokens (not read from or written to a cache).
    #[arg(long, value_name = "X", value_parser = args::money, requires = "output_price")]
    pub input_price: Option<Money>,
    /// Price per 1M output tokens.
    #[arg(long, value_name = "Y", value_parser = args::money, requires = "input_price")]
    pub output_price: Option<Money>,
    /// Price per 1M input tokens read from a cache (default: the input price).
    #[arg(long, value_name = "Z", value_parser = args::money, requires = "input_price")]
    pub cached_input_price: Option<Money>,
    /// Price per 1M input tokens written to a cache (default: the input price).
    #[arg(long, value_name = "W", value_parser = args::money, requires = "input_price")]
    pub cache_write_price: Option<Money>,
    /// Price per request, instead of per token.
    #[arg(
        long,
        value_name = "X",
        value_parser = args::money,
        conflicts_with_all = ["input_price", "output_price", "cached_input_price", "cache_write_price"],
    )]
    pub per_call: Option<Money>,
}

impl PriceArgs {
    /// The price the flags describe; `None` when no price flag was given.
    pub fn to_proto(&self) -> Option<pb::Price> {
        let billing = match (self.per_call, self.input_price, self.output_price) {
            (Some(per_call), _, _) => pb::price::Billing::PerCallNanos(per_call.nanos()),
            (None, Some(input), Some(output)) => pb::price::Billing::Tokens(pb::TokenPrice {
                input_nanos: input.nanos(),
                output_nanos: output.nanos(),
                cached_input_nanos: self.cached_input_price.map(Money::nanos),
                cache_write_nanos: self.cache_write_price.map(Money::nanos),
            }),
            // clap's `requires` makes input and output come together; nothing else is a price.
            _ => return None,
        };
        Some(pb::Price { billing: Some(billing) })
    }
}

/// A price for display; fields that do not apply to its kind of billing are null.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PriceView {
    /// `tokens`, `per_call`, or null when there is no price.
    pub billing: Option<&'static str>,
    /// Per 1M input tokens.
    pub input_price: Option<String>,
    /// Per 1M output tokens.
    pub output_price: Option<String>,
    /// Per 1M cached input tokens; null: billed at the input price.
    pub cached_input_price: Option<String>,
    /// Per 1M cache-write tokens; null: billed at the input price.
    pub cache_write_price: Option<String>,
    /// Per request.
    pub per_call_price: Option<String>,
}

impl PriceView {
    /// The display form of an optional proto price.
    pub fn new(price: Option<&pb::Price>) -> PriceView {
        match price.and_then(|price| price.billing.as_ref()) {
            None => PriceView::default(),
            Some(pb::price::Billing::Tokens(tokens)) => PriceView {
                billing: Some("tokens"),
                input_price: Some(output::money(tokens.input_nanos)),
                output_price: Some(output::money(tokens.output_nanos)),
                cached_input_price: output::opt_money(tokens.cached_input_nanos),
                cache_write_price: output::opt_money(tokens.cache_write_nanos),
                per_call_price: None,
            },
            Some(pb::price::Billing::PerCallNanos(nanos)) => PriceView {
                billing: Some("per_call"),
                per_call_price: Some(output::money(*nanos)),
                ..PriceView::default()
            },
        }
    }

    /// The price's fields for text output.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("billing", or_unset(self.billing.as_ref())),
            ("input_price", or_unset(self.input_price.as_ref())),
            ("output_price", or_unset(self.output_price.as_ref())),
            ("cached_input_price", or_unset(self.cached_input_price.as_ref())),
            ("cache_write_price", or_unset(self.cache_write_price.as_ref())),
            ("per_call_price", or_unset(self.per_call_price.as_ref())),
        ]
    }
}

/// Table columns for a price, in order.
pub const PRICE_COLUMNS: [&str; 6] =
    ["billing", "input_price", "output_price", "cached_input_price", "cache_write_price", "per_call_price"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_prices_become_nanos() {
        let args = PriceArgs {
            input_price: Some(Money::from_nanos(2_500_000_000)),
            output_price: Some(Money::from_nanos(10_000_000_000)),
            cached_input_price: Some(Money::from_nanos(1_250_000_000)),
            ..PriceArgs::default()
        };
        let expected = pb::price::Billing::Tokens(pb::TokenPrice {
            input_nanos: 2_500_000_000,
            output_nanos: 10_000_000_000,
            cached_input_nanos: Some(1_250_000_000),
            cache_write_nanos: None,
        });
        assert_eq!(args.to_proto(), Some(pb::Price { billing: Some(expected) }));
        assert_eq!(PriceArgs::default().to_proto(), None);
    }

    #[test]
    fn views_null_what_does_not_apply() {
        let price = pb::Price { billing: Some(pb::price::Billing::PerCallNanos(20_000_000)) };
        let view = PriceView::new(Some(&price));
        assert_eq!(
            serde_json::to_value(&view).expect("views serialize"),
            serde_json::json!({
                "billing": "per_call",
                "input_price": null,
                "output_price": null,
                "cached_input_price": null,
                "cache_write_price": null,
                "per_call_price": "0.02",
            })
        );
        assert_eq!(PriceView::new(None), PriceView::default());
    }
}
