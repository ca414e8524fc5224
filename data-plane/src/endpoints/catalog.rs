//! `/v1/models` (the priced models a key can reach) and the public price table
//! (`/api/pricing` as JSON, `/pricing` as a web page), all answered from the cached policy.
use http::{HeaderMap, Response, StatusCode};
use router_proto::{Money, Tariff};
use serde_json::{Value, json};

use super::json;
use crate::{
    body::ResponseBody,
    policy::{ModelInfo, Policy},
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

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The price table as a small self-contained web page.
pub fn pricing_page(policy: &Policy) -> String {
    let table = pricing_json(policy);
    let currency = escape(table["currency"].as_str().unwrap_or(""));
    let cell = |v: &Value| v.as_str().map_or_else(|| "—".to_owned(), escape);
    let mut rows = String::new();
    for row in table["data"].as_array().into_iter().flatten() {
        let groups: Vec<String> = row["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|g| format!("{} ×{}", cell(&g["name"]), cell(&g["multiplier"])))
            .collect();
        let billing = if row["billing"] == "per_call" { "per call" } else { "per token" };
        rows.push_str(&format!(
            "<tr><td class=\"model\">{}</td><td>{billing}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            cell(&row["model"]),
            cell(&row["input_price"]),
            cell(&row["output_price"]),
            cell(&row["cached_input_price"]),
            cell(&row["cache_write_price"]),
            cell(&row["per_call_price"]),
            cell(&row["model_group"]),
            escape(&groups.join(", ")),
        ));
    }
    if rows.is_empty() {
        rows.push_str("<tr><td colspan=\"9\">No models are priced yet.</td></tr>\n");
    }
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Pricing · Code Router</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 72rem; padding: 0 1rem; color: #1f2328; }}
h1 {{ margin-bottom: .25rem; }}
p.note {{ color: #57606a; margin-top: 0; }}
table {{ border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }}
th, td {{ border-bottom: 1px solid #d0d7de; padding: .5rem .75rem; text-align: left; }}
th {{ background: #f6f8fa; }}
td.model {{ font-family: ui-monospace, monospace; }}
</style>
</head>
<body>
<h1>Pricing</h1>
<p class="note">Prices in {currency}. Token prices are per 1,000,000 tokens; per-call prices are per request. Each group's multiplier scales the prices for keys in that group. A model not reachable by your key's group is refused before any charge.</p>
<table id="pricing">
<thead><tr><th>Model</th><th>Billing</th><th>Input</th><th>Output</th><th>Cached input</th><th>Cache write</th><th>Per call</th><th>Model group</th><th>Groups</th></tr></thead>
<tbody>
{rows}</tbody>
</table>
</body>
</html>
"#
    )
}
