//! Coding agents in daily use (INTERFACE.md "Coding agents"): refusals that tell SDKs not to
//! retry, a base URL with a doubled `/v1`, and the operator's provider-account headers kept
//! from clients.
use std::process::Command;

use router_tests::{
    Backend,
    http_client::{get, post_json, post_stream},
    mock::{ACCOUNT_HEADERS, Mode},
};
use serde_json::json;

use crate::proxy::Gateway;

/// A key of a new account with no money.
fn empty_account_key(gw: &Gateway) -> String {
    gw.cp.json(&["account", "add", "broke", "--balance", "0"]);
    gw.cp.json(&["key", "create", "--account", "broke"])["key"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn sdks_stop_at_final_refusals() {
    let gw = Gateway::start(Backend::Sqlite, &[]).await;
    let empty = empty_account_key(&gw);
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
    let empty = format!("Bearer {}", empty_account_key(&gw));
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
