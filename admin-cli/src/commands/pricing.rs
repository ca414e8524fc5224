//! `routerctl pricing`: the public price table, as the data planes' `/api/pricing` shows it.
use router_proto::pb;
use serde::Serialize;

use super::price::{PRICE_COLUMNS, PriceView};
use crate::{
    client::Admin,
    error::Error,
    output::{self, Output, Record, or_unset},
};

/// Prints the price table.
pub async fn run(admin: &mut Admin, out: &mut Output) -> Result<(), Error> {
    let pricing = admin.get_pricing(pb::GetPricingRequest {}).await?.into_inner();
    let view = PricingView::new(&pricing);
    if out.is_json() {
        return out.json(&view);
    }
    out.text(&output::table(&view.data))?;
    out.text(&format!(
        "\nPrices in {}: token prices per 1M tokens, per-call prices per request; \
         each group's multiplier scales them.",
        view.currency
    ))
}

/// The price table for display.
#[derive(Debug, Serialize)]
pub struct PricingView {
    currency: String,
    data: Vec<PricingEntryView>,
}

impl PricingView {
    /// The display form of the proto price table.
    pub fn new(pricing: &pb::Pricing) -> PricingView {
        PricingView {
            currency: pricing.currency.clone(),
            data: pricing.models.iter().map(PricingEntryView::new).collect(),
        }
    }
}

/// One priced model.
#[derive(Debug, Serialize)]
pub struct PricingEntryView {
    model: String,
    #[serde(flatten)]
    price: PriceView,
    model_group: Option<String>,
    groups: Vec<GroupMultiplierView>,
}

/// A group that reaches a model, with its multiplier.
#[derive(Debug, Serialize)]
pub struct GroupMultiplierView {
    name: String,
    multiplier: String,
}

impl PricingEntryView {
    /// The display form of one proto pricing entry.
    pub fn new(entry: &pb::PricingEntry) -> PricingEntryView {
        PricingEntryView {
            model: entry.model.clone(),
            price: PriceView::new(entry.price.as_ref()),
            model_group: entry.model_group.clone(),
            groups: entry
                .groups
                .iter()
                .map(|group| GroupMultiplierView {
                    name: group.name.clone(),
                    multiplier: output::multiplier(group.multiplier_micros),
                })
                .collect(),
        }
    }
}

impl Record for PricingEntryView {
    const COLUMNS: &'static [&'static str] = &[
        "model",
        PRICE_COLUMNS[0],
        PRICE_COLUMNS[1],
        PRICE_COLUMNS[2],
        PRICE_COLUMNS[3],
        PRICE_COLUMNS[4],
        PRICE_COLUMNS[5],
        "model_group",
        "groups",
    ];

    fn fields(&self) -> Vec<(&'static str, String)> {
        let groups: Vec<String> =
            self.groups.iter().map(|group| format!("{}×{}", group.name, group.multiplier)).collect();
        let mut fields = vec![("model", self.model.clone())];
        fields.extend(self.price.fields());
        fields.push(("model_group", or_unset(self.model_group.as_ref())));
        fields.push(("groups", output::list(&groups, output::UNSET)));
        fields
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pricing_renders_as_json() {
        let pricing = pb::Pricing {
            currency: "USD".into(),
            models: vec![pb::PricingEntry {
                model: "gpt-4o".into(),
                price: Some(pb::Price {
                    billing: Some(pb::price::Billing::Tokens(pb::TokenPrice {
                        input_nanos: 2_500_000_000,
                        output_nanos: 10_000_000_000,
                        cached_input_nanos: None,
                        cache_write_nanos: None,
                    })),
                }),
                model_group: Some("openai".into()),
                groups: vec![pb::GroupMultiplier { name: "vip".into(), multiplier_micros: 800_000 }],
            }],
        };
        assert_eq!(
            serde_json::to_value(PricingView::new(&pricing)).expect("views serialize"),
            serde_json::json!({
                "currency": "USD",
                "data": [{
                    "model": "gpt-4o", "billing": "tokens", "input_price": "2.5",
                    "output_price": "10", "cached_input_price": null, "cache_write_price": null,
                    "per_call_price": null, "model_group": "openai",
                    "groups": [{"name": "vip", "multiplier": "0.8"}],
                }],
            })
        );
    }
}
