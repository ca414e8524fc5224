//! `/v1/models` (the priced models a key can reach) and the public price table
//! (`/api/pricing` as JSON, `/pricing` as a web page), all answered from the cached policy.
use http::{HeaderMap, Response, StatusCode};
use router_proto::{Money, Tariff};
use serde_json::{Value, json};

use maud::{DOCTYPE, Markup, PreEscaped, html};
use router_proto::Multiplier;

use super::json;
use crate::{
    body::ResponseBody,
    console::{
        STYLE,
        i18n::{Lang, Text},
    },
    policy::{GroupInfo, ModelInfo, Policy},
    proxy::auth::Caller,
};

/// When the models were "created", for clients that insist on a date.
const CREATED_UNIX: i64 = 1_735_689_600;
const CREATED_RFC3339: &str = "2025-01-01T00:00:00Z";

/// The names a key can call, by name: priced models and exact aliases of them (an alias is
/// listed when its target is reachable).
fn reachable<'p>(policy: &'p Policy, caller: &Caller<'_>) -> Vec<&'p str> {
    let reaches = |m: &ModelInfo| {
        caller.group.reaches(m)
            && (caller.key.models.is_empty()
                || caller.key.models.iter().any(|k| **k == *m.name || m.model_group.as_ref() == Some(k)))
    };
    let models = policy.catalog.models().into_iter().filter(|m| reaches(m)).map(|m| &*m.name);
    let aliases = policy.catalog.aliases().into_iter().filter(|(_, m)| reaches(m)).map(|(name, _)| name);
    let mut names: Vec<&str> = models.chain(aliases).collect();
    names.sort_unstable();
    names
}

/// `GET /v1/models`: OpenAI's list shape, or Anthropic's when the request names an
/// `anthropic-version`.
pub fn list_models(policy: &Policy, caller: &Caller<'_>, headers: &HeaderMap) -> Response<ResponseBody> {
    let models = reachable(policy, caller);
    if headers.contains_key("anthropic-version") {
        let data: Vec<Value> = models.iter().map(|name| anthropic_model(name)).collect();
        let (first, last) = (models.first(), models.last());
        return json(
            StatusCode::OK,
            &json!({"data": data, "has_more": false, "first_id": first, "last_id": last}),
        );
    }
    let data: Vec<Value> = models.iter().map(|name| openai_model(name)).collect();
    json(StatusCode::OK, &json!({"object": "list", "data": data}))
}

fn openai_model(name: &str) -> Value {
    json!({"id": name, "object": "model", "created": CREATED_UNIX, "owned_by": "code-router"})
}

fn anthropic_model(name: &str) -> Value {
    json!({"type": "model", "id": name, "display_name": name, "created_at": CREATED_RFC3339})
}

/// `GET /v1/models/{id}`.
pub fn get_model(
    policy: &Policy,
    caller: &Caller<'_>,
    id: &str,
    anthropic: bool,
) -> Option<Response<ResponseBody>> {
    let name = reachable(policy, caller).into_iter().find(|name| *name == id)?;
    let body = if anthropic { anthropic_model(name) } else { openai_model(name) };
    Some(json(StatusCode::OK, &body))
}

fn price(value: Option<Money>) -> Value {
    value.map_or(Value::Null, |m| Value::String(m.to_string()))
}

/// The price table as JSON: the same shape as `routerctl pricing --json`.
pub fn pricing_json(policy: &Policy) -> Value {
    let groups = policy.catalog.groups();
    let data: Vec<Value> = policy
        .catalog
        .models()
        .into_iter()
        .map(|model| {
            let reaching: Vec<Value> = groups
                .iter()
                .filter(|g| g.reaches(model))
                .map(|g| json!({"name": g.name, "multiplier": g.multiplier.to_string()}))
                .collect();
            let (billing, input, output, cached, write, per_call) = match model.tariff {
                Tariff::Tokens(p) => {
                    ("tokens", Some(p.input), Some(p.output), p.cached_input, p.cache_write, None)
                }
                Tariff::PerCall(p) => ("per_call", None, None, None, None, Some(p)),
            };
            json!({
                "model": model.name,
                "billing": billing,
                "input_price": price(input),
                "output_price": price(output),
                "cached_input_price": price(cached),
                "cache_write_price": price(write),
                "per_call_price": price(per_call),
                "model_group": model.model_group,
                "groups": reaching,
            })
        })
        .collect();
    json!({"currency": policy.catalog.currency, "unit": "per 1M tokens; per-call prices per request", "data": data})
}

/// `price × multiplier` at full precision (a multiplier has 6 decimal places, so the product
/// may have up to 15).
pub fn scaled_price(price: Money, multiplier: Multiplier) -> String {
    if multiplier == Multiplier::ONE {
        return price.to_string();
    }
    let product = i128::from(price.nanos()) * i128::from(multiplier.micros());
    let scale: i128 = 1_000_000_000_000_000;
    let sign = if product < 0 { "-" } else { "" };
    let (whole, fraction) = (product.abs() / scale, product.abs() % scale);
    if fraction == 0 {
        return format!("{sign}{whole}");
    }
    let digits = format!("{fraction:015}");
    format!("{sign}{whole}.{}", digits.trim_end_matches('0'))
}

/// The price table shared by `/pricing` and the console's Pricing page. Public (`group`
/// `None`): every priced model, with the groups that reach it. For a signed-in account: the
/// models its group reaches, at the group's prices (multiplier applied).
pub fn pricing_table(policy: &Policy, group: Option<&GroupInfo>, text: &Text) -> Markup {
    let groups = policy.catalog.groups();
    let models: Vec<&std::sync::Arc<ModelInfo>> =
        policy.catalog.models().into_iter().filter(|m| group.is_none_or(|g| g.reaches(m))).collect();
    let multiplier = group.map_or(Multiplier::ONE, |g| g.multiplier);
    let cell = |price: Option<Money>| price.map_or_else(|| "—".to_owned(), |p| scaled_price(p, multiplier));
    html! {
        div.table-wrap {
            table #pricing {
                thead {
                    tr {
                        th scope="col" { (text.model) }
                        th scope="col" { (text.billing) }
                        th scope="col" { (text.input) }
                        th scope="col" { (text.output) }
                        th scope="col" { (text.cached_input) }
                        th scope="col" { (text.cache_write) }
                        th scope="col" { (text.per_call) }
                        th scope="col" { (text.model_group) }
                        th scope="col" { (text.groups) }
                    }
                }
                tbody {
                    @for model in &models {
                        @let (billing, input, output, cached, write, per_call) = match model.tariff {
                            Tariff::Tokens(p) => (text.per_token, Some(p.input), Some(p.output), p.cached_input, p.cache_write, None),
                            Tariff::PerCall(p) => (text.per_call, None, None, None, None, Some(p)),
                        };
                        @let reaching: Vec<String> = match group {
                            Some(g) => vec![format!("{} ×{}", g.name, g.multiplier)],
                            None => groups.iter().filter(|g| g.reaches(model)).map(|g| format!("{} ×{}", g.name, g.multiplier)).collect(),
                        };
                        tr data-test="price-row" data-model=(model.name) {
                            td.model { (model.name) }
                            td { (billing) }
                            td.num { (cell(input)) }
                            td.num { (cell(output)) }
                            td.num { (cell(cached)) }
                            td.num { (cell(write)) }
                            td.num { (cell(per_call)) }
                            td { (model.model_group.as_deref().unwrap_or("—")) }
                            td { (reaching.join(", ")) }
                        }
                    }
                    @if models.is_empty() {
                        tr { td colspan="9" { (text.no_models) } }
                    }
                }
            }
        }
    }
}

/// The note above a price table: the currency and the units.
pub fn pricing_note(currency: &str, text: &Text) -> Markup {
    html! { p.note { (text.prices_in) (currency) (text.sentence_end) " " (text.pricing_note) } }
}

/// The public price table as a small self-contained web page, in the language the browser
/// asks for.
pub fn pricing_page(policy: &Policy, lang: Lang) -> String {
    let text = lang.text();
    html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (text.pricing) " · Code Router" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                main.page {
                    h1 { (text.pricing) }
                    (pricing_note(&policy.catalog.currency, text))
                    (pricing_table(policy, None, text))
                    p { a href="/console" { (text.console) " →" } }
                }
            }
        }
    }
    .into_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_prices_keep_every_digit() {
        let price = |s: &str| Money::parse(s).unwrap_or_default();
        let times = |s: &str| Multiplier::parse(s).unwrap_or_default();
        assert_eq!(scaled_price(price("0.15"), Multiplier::ONE), "0.15");
        assert_eq!(scaled_price(price("0.15"), times("1.5")), "0.225");
        assert_eq!(scaled_price(price("0.6"), times("1.5")), "0.9");
        assert_eq!(scaled_price(price("0.000000001"), times("0.000001")), "0.000000000000001");
        assert_eq!(scaled_price(price("3"), times("2")), "6");
        assert_eq!(scaled_price(price("0"), times("0.5")), "0");
    }
}
