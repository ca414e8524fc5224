//! Hostile requests (INTERFACE.md, "Hostile clients and lying upstreams"): credentials in the
//! query string never go upstream and are never read, invalid UTF-8 is refused, echoed fields
//! are cut, `Expect` stays between the client and the gateway.
use router_tests::{
    Backend, Gateway,
    http_client::{self, post_json},
};
use serde_json::json;

fn chat() -> serde_json::Value {
    json!({"model": "gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_in_the_query_string_never_go_upstream_nor_authenticate() {
    let gw = Gateway::start(Backend::Sqlite, &[]).await;
    let auth = gw.bearer();
    let url = gw.url(&format!(
        "/v1/chat/completions?api_key={0}&trace=1&key={0}&ACCESS_TOKEN={0}&api%5Fkey={0}",
        gw.key
    ));
    let answer =
        post_json(&url, &[("authorization", &auth), ("expect", "100-continue")], &chat()).await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    let seen = gw.mock.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].uri, "/v1/chat/completions?trace=1", "the query as sent upstream");
    assert!(seen[0].headers.get("expect").is_none(), "Expect was passed upstream");
    assert!(answer.headers.get("server").is_none_or(|v| v != "cloudflare"), "the upstream's server header");
    // A key in the query alone is no key.
    let url = gw.url(&format!("/v1/chat/completions?api_key={0}&key={0}&access_token={0}", gw.key));
    let answer = post_json(&url, &[], &chat()).await.unwrap();
    assert_eq!((answer.status, answer.json()["error"]["code"].as_str()), (401, Some("invalid_api_key")));
    assert_eq!(gw.mock.calls(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_utf8_is_refused_and_echoed_fields_are_cut() {
    let gw = Gateway::start(Backend::Sqlite, &[]).await;
    let auth = gw.bearer();
    let url = gw.url("/v1/chat/completions");
    // Invalid UTF-8 inside a member the gateway does not read.
    let mut body =
        br#"{"model":"gpt-4o-mini","max_tokens":5,"messages":[{"role":"user","content":"a"#.to_vec();
    body.extend_from_slice(&[0xff, 0xfe]);
    body.extend_from_slice(br#""}]}"#);
    let answer = http_client::send(
        http::Method::POST,
        &url,
        &[("authorization", &auth), ("content-type", "application/json")],
        body,
    )
    .await
    .unwrap();
    assert_eq!((answer.status, answer.json()["error"]["code"].as_str()), (400, Some("invalid_request")));
    assert_eq!(gw.mock.calls(), 0, "invalid UTF-8 reached the upstream");
    // A huge model name (and a huge wrong-typed field) are not sent back whole.
    let long = "m".repeat(100_000);
    for body in [json!({"model": long, "messages": []}), json!({"model": "gpt-4o-mini", "max_tokens": long})]
    {
        let answer = post_json(&url, &[("authorization", &auth)], &body).await.unwrap();
        assert!(answer.status == 404 || answer.status == 400, "{}", answer.status);
        let message = answer.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(message.chars().count() < 300, "an error echoed {} characters", message.len());
    }
    let answer =
        http_client::get(&gw.url(&format!("/v1/models/{}", &long[..10_000])), &[("authorization", &auth)])
            .await
            .unwrap();
    assert_eq!(answer.status, 404);
    assert!(answer.json()["error"]["message"].as_str().unwrap().len() < 300);
}
