//! What real clients do: the official SDKs, a browser on the pricing page, the extra
//! endpoints coding agents and chat front-ends call.
use std::process::Command;

use router_tests::{
    Backend, Gateway,
    http_client::{self, get, post_json},
};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn official_sdks_work_unmodified() {
    let gw = Gateway::start(Backend::Sqlite, &[]).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/sdk/sdk_check.py");
    let url = gw.dp.url.clone();
    let key = gw.key.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3").arg(script).env("ROUTER_URL", url).env("ROUTER_KEY", key).output()
    })
    .await
    .unwrap()
    .expect("python3 runs (install the SDKs: pip install openai anthropic)");
    let report =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "SDK checks failed:\n{report}");
    assert!(report.contains("all SDK checks passed"), "{report}");
    // Every billable SDK call left one usage record (count_tokens and refusals are free).
    let records = gw.cp.json(&["usage", "--limit", "100"]);
    assert!(records.as_array().is_some_and(|r| r.len() >= 9), "{records}");
}

#[tokio::test(flavor = "multi_thread")]
async fn pricing_page_renders_in_a_real_browser() {
    let gw = Gateway::start(Backend::Sqlite, &[]).await;
    let api = get(&gw.url("/api/pricing"), &[]).await.unwrap();
    assert_eq!(api.status, 200);
    let table = api.json();
    assert_eq!(table["currency"], "USD");
    let mini =
        table["data"].as_array().unwrap().iter().find(|r| r["model"] == "gpt-4o-mini").cloned().unwrap();
    assert_eq!((mini["input_price"].as_str(), mini["output_price"].as_str()), (Some("0.15"), Some("0.6")));
    assert_eq!(mini["groups"], json!([{"name": "default", "multiplier": "1"}]));

    let profile = gw.db.dir.join("chromium-profile");
    let url = gw.url("/pricing");
    let output = tokio::task::spawn_blocking(move || {
        Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(["--dump-dom", &url])
            .output()
    })
    .await
    .unwrap()
    .expect("chromium runs (apt-get install chromium)");
    let dom = String::from_utf8_lossy(&output.stdout);
    assert!(dom.contains("<table id=\"pricing\">"), "no table in the rendered page: {dom}");
    for expected in [
        "gpt-4o-mini",
        "claude-sonnet-4",
        "text-embedding-3-small",
        "0.15",
        "3.75",
        "default ×1",
        "Prices in USD",
    ] {
        assert!(dom.contains(expected), "{expected:?} missing from the rendered page");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_and_front_end_endpoints() {
    let gw = Gateway::start(Backend::Sqlite, &["--cors-origins", "https://chat.example"]).await;
    let auth = gw.bearer();
    // Claude Code probes the base URL and sends ?beta=true with x-api-key.
    let head = http_client::send(http::Method::HEAD, &gw.url("/"), &[], "").await.unwrap();
    assert_eq!(head.status, 200);
    let body = json!({"model": "claude-sonnet-4", "max_tokens": 16, "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "future_block", "x": 1}]}]});
    let answer = post_json(
        &gw.url("/v1/messages?beta=true"),
        &[
            ("x-api-key", &gw.key),
            ("anthropic-version", "2023-06-01"),
            ("anthropic-beta", "tools-2024-04-04"),
        ],
        &body,
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    let seen = gw.mock.seen().pop().unwrap();
    assert_eq!(seen.uri, "/v1/messages?beta=true");
    assert_eq!(seen.headers.get("x-api-key").unwrap(), "upstream-anthropic-secret");
    assert_eq!(seen.headers.get("anthropic-beta").unwrap(), "tools-2024-04-04");
    assert_eq!(seen.body["messages"][0]["content"][1]["type"], "future_block", "unknown blocks pass through");
    // Models in both shapes.
    let openai = get(&gw.url("/v1/models"), &[("authorization", &auth)]).await.unwrap().json();
    assert_eq!(openai["object"], "list");
    let anthropic =
        get(&gw.url("/v1/models"), &[("x-api-key", &gw.key), ("anthropic-version", "2023-06-01")])
            .await
            .unwrap()
            .json();
    assert!(
        anthropic["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["type"] == "model" && m["display_name"].is_string())
    );
    assert_eq!(anthropic["has_more"], false);
    // Key-holder endpoints, read through to the control plane (once the one billed request is in).
    gw.usage(1).await;
    let me = get(&gw.url("/api/me"), &[("authorization", &auth)]).await.unwrap();
    assert_eq!(me.status, 200, "{}", me.text());
    let me = me.json();
    assert_eq!((me["account"]["name"].as_str(), me["currency"].as_str()), (Some("acme"), Some("USD")));
    let balance_before = router_tests::nanos(&me["account"]["balance"]);
    let code = gw.cp.json(&["code", "create", "--amount", "2.5"])[0]["code"].as_str().unwrap().to_owned();
    let redeemed =
        post_json(&gw.url("/api/redeem"), &[("authorization", &auth)], &json!({"code": code})).await.unwrap();
    assert_eq!(redeemed.status, 200, "{}", redeemed.text());
    assert_eq!(router_tests::nanos(&redeemed.json()["balance"]), balance_before + 2_500_000_000);
    let again =
        post_json(&gw.url("/api/redeem"), &[("authorization", &auth)], &json!({"code": code})).await.unwrap();
    assert_eq!(again.status, 400, "a code works once");
    let usage = get(&gw.url("/api/me/usage"), &[("authorization", &auth)]).await.unwrap().json();
    assert!(usage["data"].as_array().is_some_and(|d| !d.is_empty()));
    let subscription =
        get(&gw.url("/v1/dashboard/billing/subscription"), &[("authorization", &auth)]).await.unwrap().json();
    assert_eq!(subscription["object"], "billing_subscription");
    assert!(subscription["hard_limit_usd"].as_f64().is_some_and(|v| v > 100.0));
    let billing =
        get(&gw.url("/v1/dashboard/billing/usage"), &[("authorization", &auth)]).await.unwrap().json();
    assert!(billing["total_usage"].is_number());
    // CORS: preflight answered, allowed origin echoed.
    let preflight = http_client::send(
        http::Method::OPTIONS,
        &gw.url("/v1/chat/completions"),
        &[
            ("origin", "https://chat.example"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "authorization, content-type"),
        ],
        "",
    )
    .await
    .unwrap();
    assert_eq!(preflight.status, 204);
    assert_eq!(preflight.headers.get("access-control-allow-origin").unwrap(), "https://chat.example");
    let foreign = http_client::send(
        http::Method::OPTIONS,
        &gw.url("/v1/chat/completions"),
        &[("origin", "https://evil.example")],
        "",
    )
    .await
    .unwrap();
    assert!(foreign.headers.get("access-control-allow-origin").is_none());
    // Health, readiness, metrics.
    assert_eq!(get(&gw.url("/healthz"), &[]).await.unwrap().status, 200);
    let metrics = get(&gw.url("/metrics"), &[]).await.unwrap().text();
    for name in [
        "router_requests_total",
        "router_policy_version",
        "router_spool_depth",
        "router_upstream_latency_seconds",
        "router_added_latency_seconds",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
}
