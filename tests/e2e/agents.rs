//! Coding agents in daily use (INTERFACE.md "Coding agents"): refusals that tell SDKs not to
//! retry, admission of large-`max_tokens` requests, a base URL with a doubled `/v1`, and the
//! operator's provider-account headers kept from clients.
use std::{process::Command, sync::Arc, time::Duration};

use router_tests::{
    Backend, DataPlane, Gateway, eventually,
    http_client::{self, get, post_json, post_stream},
    mock::{ACCOUNT_HEADERS, Mode},
    nanos,
};
use serde_json::{Value, json};

/// A key of a new account with no money, once the data plane knows it (a key it has not yet
/// heard of is refused as invalid, 401, not as out of money).
async fn empty_account_key(gw: &Gateway) -> String {
    gw.cp.json(&["account", "add", "broke", "--balance", "0"]);
    let key = gw.cp.json(&["key", "create", "--account", "broke"])["key"].as_str().unwrap().to_owned();
    let bearer = format!("Bearer {key}");
    eventually(Duration::from_secs(15), || async {
        let models = get(&gw.url("/v1/models"), &[("authorization", &bearer)]).await.unwrap();
        (models.status == 200).then_some(())
    })
    .await
    .expect("the data plane learns of the new key");
    key
}

#[tokio::test(flavor = "multi_thread")]
async fn sdks_stop_at_final_refusals() {
    let gw = Gateway::start(Backend::Sqlite, &[]).await;
    let empty = empty_account_key(&gw).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/sdk/retry_check.py");
    let (url, key) = (gw.dp.url.clone(), gw.key.clone());
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script)
            .env("ROUTER_URL", url)
            .env("ROUTER_KEY", key)
            .env("ROUTER_EMPTY_KEY", empty)
            .output()
    })
    .await
    .unwrap()
    .expect("python3 runs (install the SDKs: pip install openai anthropic)");
    let report =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "retry checks failed:\n{report}");
    assert!(report.contains("all retry checks passed"), "{report}");
    assert_eq!(gw.mock.calls(), 0, "a refused request never goes upstream");
}

#[tokio::test(flavor = "multi_thread")]
async fn refusal_headers_doubled_v1_and_account_headers() {
    let gw = Gateway::start(Backend::Sqlite, &[]).await;
    let auth = gw.bearer();
    let chat = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
    // Each refusal a retry cannot fix says so, on both error shapes.
    let empty = format!("Bearer {}", empty_account_key(&gw).await);
    for (path, headers, body, status) in [
        ("/v1/chat/completions", vec![("authorization", "Bearer sk-wrong")], chat.clone(), 401),
        ("/v1/chat/completions", vec![("authorization", auth.as_str())], json!({"messages": []}), 400),
        ("/v1/chat/completions", vec![("authorization", auth.as_str())], json!({"model": "nope"}), 404),
        ("/v1/chat/completions", vec![("authorization", empty.as_str())], chat.clone(), 429),
        ("/v1/messages", vec![("x-api-key", "sk-wrong")], chat.clone(), 401),
        (
            "/v1/messages",
            vec![("authorization", empty.as_str())],
            json!({"model": "claude-sonnet-4", "max_tokens": 8, "messages": []}),
            429,
        ),
    ] {
        let answer = post_json(&gw.url(path), &headers, &body).await.unwrap();
        assert_eq!(answer.status, status, "{path}: {}", answer.text());
        assert_eq!(
            answer.headers.get("x-should-retry").map(|v| v.to_str().unwrap()),
            Some("false"),
            "{path} {status}"
        );
    }
    // An upstream's refusal of the request itself, passed through, says so too; a failure of
    // every channel does not (another try may find one healthy).
    gw.mock.set_mode(Mode::Fail(400));
    let answer =
        post_json(&gw.url("/v1/chat/completions"), &[("authorization", &auth)], &chat).await.unwrap();
    assert_eq!(
        (answer.status, answer.headers.get("x-should-retry").unwrap().to_str().unwrap()),
        (400, "false")
    );
    gw.mock.set_mode(Mode::Fail(500));
    let answer =
        post_json(&gw.url("/v1/chat/completions"), &[("authorization", &auth)], &chat).await.unwrap();
    assert_eq!(answer.status, 502);
    assert!(answer.headers.get("x-should-retry").is_none());
    gw.mock.set_mode(Mode::Normal);

    // A base URL given with a trailing /v1: every path works as without it.
    let answer =
        post_json(&gw.url("/v1/v1/chat/completions"), &[("authorization", &auth)], &chat).await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    let messages = json!({"model": "claude-sonnet-4", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]});
    let answer = post_json(
        &gw.url("/v1/v1/messages?beta=true"),
        &[("x-api-key", &gw.key), ("anthropic-version", "2023-06-01")],
        &messages,
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(gw.mock.seen().last().unwrap().uri, "/v1/messages?beta=true");
    let models = get(&gw.url("/v1/v1/models"), &[("authorization", &auth)]).await.unwrap();
    assert_eq!(models.status, 200);
    assert_eq!(models.json()["object"], "list");

    // The operator's provider-account headers never reach the client, whole or streamed;
    // the provider's request id does.
    let mut streamed = json!({"stream": true});
    streamed["model"] = json!("gpt-4o-mini");
    streamed["messages"] = chat["messages"].clone();
    let stream =
        post_stream(&gw.url("/v1/chat/completions"), &[("authorization", &auth)], &streamed).await.unwrap();
    for headers in [&answer.headers, &stream.headers] {
        for (name, _) in ACCOUNT_HEADERS.iter().filter(|(name, _)| *name != "request-id") {
            assert!(headers.get(*name).is_none(), "{name} reached the client: {headers:?}");
        }
        assert_eq!(headers.get("request-id").unwrap(), "req_mock");
    }
}

on_both_backends!(
    large_max_tokens_are_admitted_on_a_small_balance,
    concurrent_large_requests_stay_within_the_bound
);

/// A Claude Code turn: Messages, streamed, `max_tokens: 32000`, a system prompt of some size.
fn claude_code_turn() -> Value {
    json!({"model": "claude-sonnet-4", "max_tokens": 32000, "stream": true,
        "system": "You are Claude Code. ".repeat(40),
        "messages": [{"role": "user", "content": "fix the bug"}]})
}

async fn turn(dp: &str, key: &str) -> http_client::Answer {
    let headers = [("x-api-key", key), ("anthropic-version", "2023-06-01")];
    post_json(&format!("{dp}/v1/messages?beta=true"), &headers, &claude_code_turn()).await.unwrap()
}

/// A key of a new account holding `balance`, once every data plane in `planes` knows it.
async fn account_with(gw: &Gateway, name: &str, balance: &str, planes: &[&str]) -> String {
    gw.cp.json(&["account", "add", name, "--balance", balance]);
    let key = gw.cp.json(&["key", "create", "--account", name])["key"].as_str().unwrap().to_owned();
    let bearer = format!("Bearer {key}");
    for plane in planes {
        let url = format!("{plane}/v1/models");
        eventually(Duration::from_secs(5), || async {
            get(&url, &[("authorization", &bearer)]).await.ok().filter(|a| a.status == 200)
        })
        .await
        .unwrap_or_else(|| panic!("{plane} never learned the key of {name}"));
    }
    key
}

async fn records_of(gw: &Gateway, account: &str, n: usize) -> Vec<Value> {
    eventually(Duration::from_secs(15), || async {
        let records = gw.cp.json(&["usage", "--account", account, "--limit", "1000"]);
        let records = records.as_array().cloned().unwrap_or_default();
        (records.len() >= n).then_some(records)
    })
    .await
    .unwrap_or_else(|| panic!("fewer than {n} usage records for {account}"))
}

/// $0.30 left, a $3/$15 model, `max_tokens: 32000`: the whole cap would reserve $0.48, but a
/// turn that really costs $0.05 runs — and with `--reserve-output-tokens 0` it is refused.
async fn large_max_tokens_are_admitted_on_a_small_balance(backend: Backend) {
    let gw = Gateway::start(backend, &[]).await;
    gw.mock.set_mode(Mode::ClaimOutputTokens(3000));
    let key = account_with(&gw, "small", "0.30", &[&gw.dp.url]).await;
    let answer = turn(&gw.dp.url, &key).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(answer.text().contains("message_stop"));
    // 17 input × $3 + 5 cache reads × $0.30 + 2 cache writes × $3.75 + 3000 output × $15, per 1M.
    let record = records_of(&gw, "small", 1).await.remove(0);
    assert_eq!((record["cost"].as_str(), record["output_tokens"].as_i64()), (Some("0.04506"), Some(3000)));
    let account = gw.cp.json(&["account", "show", "small"]);
    assert_eq!(account["balance"], "0.25494", "billed its real cost");

    let strict_spool = gw.db.dir.join("strict-spool");
    let strict = DataPlane::start(&gw.cp, &strict_spool, &["--reserve-output-tokens", "0"]).await.unwrap();
    let other = account_with(&gw, "strict", "0.30", &[&strict.url]).await;
    let refused = turn(&strict.url, &other).await;
    assert_eq!(refused.status, 429, "{}", refused.text());
    assert_eq!(refused.json()["error"]["code"], "insufficient_quota");
    assert_eq!(refused.headers.get("x-should-retry").unwrap(), "false");
    // The same turn with room for the whole cap runs in strict mode too.
    let rich = account_with(&gw, "rich", "0.50", &[&strict.url]).await;
    assert_eq!(turn(&strict.url, &rich).await.status, 200);
}

/// Many concurrent turns on a small balance through two data planes, an upstream that uses
/// every one of the 32,000 tokens allowed: the balance ends below zero by no more than the
/// documented bound — at most, per request in flight when it ran out, what its output could
/// cost beyond the 4,096 tokens reserved.
async fn concurrent_large_requests_stay_within_the_bound(backend: Backend) {
    const CLIENTS: usize = 8;
    const MAX_PER_CLIENT: usize = 10;
    let gw = Gateway::start(backend, &[]).await;
    gw.mock.set_mode(Mode::ClaimOutputTokens(32_000));
    let second = gw.data_plane("spool-2").await;
    let key = Arc::new(account_with(&gw, "burst", "0.30", &[&gw.dp.url, &second.url]).await);
    let planes = Arc::new([gw.dp.url.clone(), second.url.clone()]);
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let (key, planes) = (Arc::clone(&key), Arc::clone(&planes));
        clients.push(tokio::spawn(async move {
            let mut served = 0;
            for n in 0..MAX_PER_CLIENT {
                let answer = turn(&planes[(client + n) % 2], &key).await;
                match answer.status {
                    200 => served += 1,
                    429 => break,
                    other => panic!("unexpected {other}: {}", answer.text()),
                }
            }
            served
        }));
    }
    let mut served = 0;
    for client in clients {
        served += client.await.unwrap();
    }
    assert!(served >= 1, "a turn that fits the reservation is admitted");
    assert!(served < CLIENTS * MAX_PER_CLIENT, "the balance stopped the clients");
    let records = records_of(&gw, "burst", served).await;
    assert_eq!(records.len(), served);
    let billed: i64 = records.iter().map(|r| nanos(&r["cost"])).sum();
    let balance = nanos(&gw.cp.json(&["account", "show", "burst"])["balance"]);
    assert_eq!(300_000_000 - balance, billed, "balance change == usage records");
    // Each request may cost (32,000 - 4,096) × $15 / 1M = $0.41856 beyond its reservation;
    // at most CLIENTS are in flight when the money runs out.
    let excess = (32_000 - 4_096) * 15_000;
    let overspend = -balance;
    println!(
        "served {served}, billed {billed} nano, balance {balance} nano (bound: -{})",
        CLIENTS as i64 * excess
    );
    assert!(overspend <= CLIENTS as i64 * excess, "overspent {overspend} nano-units");
}

/// A key valid for a few more seconds is served until it expires, then refused with 401 —
/// never `insufficient_quota` while its account has money (its lease is cut short at the
/// expiry, and a lease that short is still used).
#[tokio::test(flavor = "multi_thread")]
async fn a_key_expiring_soon_is_served_then_401() {
    let gw = Gateway::start(Backend::Sqlite, &[]).await;
    let expires = time::OffsetDateTime::now_utc() + time::Duration::seconds(6);
    let expires = expires.replace_nanosecond(0).unwrap();
    let at = expires.format(&time::format_description::well_known::Rfc3339).unwrap();
    let key = gw.cp.json(&["key", "create", "--account", "acme", "--expires-at", &at])["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let bearer = format!("Bearer {key}");
    let chat = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
    let url = gw.url("/v1/chat/completions");
    let seconds_left = || (expires - time::OffsetDateTime::now_utc()).as_seconds_f64();
    eventually(Duration::from_secs(5), || async {
        let answer = post_json(&url, &[("authorization", &bearer)], &chat).await.unwrap();
        (answer.status == 200).then_some(())
    })
    .await
    .expect("the key is served once it has propagated");
    let mut last_served = f64::MAX;
    let refused = loop {
        let left = seconds_left();
        assert!(left > -5.0, "the expired key was still served");
        let answer = post_json(&url, &[("authorization", &bearer)], &chat).await.unwrap();
        match answer.status {
            200 => last_served = left,
            401 => break left,
            other => panic!("{other} with {left:.2} s left: {}", answer.text()),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!("last served {last_served:.2} s before expiry; 401 at {refused:.2} s");
    assert!(last_served < 1.5, "served into its last seconds (last at {last_served:.2} s before expiry)");
    assert!(refused < 0.3, "refused only once expired ({refused:.2} s early)");
    let answer = post_json(&url, &[("authorization", &bearer)], &chat).await.unwrap();
    assert_eq!((answer.status, answer.json()["error"]["code"].as_str()), (401, Some("invalid_api_key")));
}
