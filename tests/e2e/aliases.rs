//! Model aliases (INTERFACE.md "Coding agents"): a name, or every name with a prefix, served
//! and billed as a priced model; exact names win over patterns, the longest pattern wins.
use std::time::{Duration, Instant};

use router_tests::{
    Gateway, eventually,
    http_client::{Answer, get, post_json},
    nanos,
};
use serde_json::{Value, json};

on_both_backends!(aliases_are_served_and_billed_as_their_target);

async fn messages(gw: &Gateway, key: &str, model: &str) -> Answer {
    let body = json!({"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]});
    let headers = [("x-api-key", key), ("anthropic-version", "2023-06-01")];
    post_json(&gw.url("/v1/messages"), &headers, &body).await.unwrap()
}

/// The usage record of the request answered by `answer`, once the control plane has it.
async fn record_of(gw: &Gateway, answer: &Answer) -> Value {
    let id = answer.headers.get("x-request-id").unwrap().to_str().unwrap().to_owned();
    eventually(Duration::from_secs(15), || async {
        let records = gw.cp.json(&["usage", "--limit", "1000"]);
        records.as_array().and_then(|r| r.iter().find(|r| r["request_id"] == id.as_str()).cloned())
    })
    .await
    .unwrap_or_else(|| panic!("no usage record for {id}"))
}

async fn model_ids(gw: &Gateway, headers: &[(&str, &str)]) -> Vec<String> {
    let answer = get(&gw.url("/v1/models"), headers).await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    let json = answer.json();
    let list = json["data"].as_array().unwrap();
    list.iter().map(|m| m["id"].as_str().unwrap().to_owned()).collect()
}

async fn aliases_are_served_and_billed_as_their_target(backend: router_tests::Backend) {
    let gw = Gateway::start(backend, &[]).await;
    gw.cp.json(&["model", "set", "claude-haiku", "--input-price", "1", "--output-price", "5"]);
    gw.cp.json(&["channel", "update", "claude", "--models", "claude-sonnet-4,claude-haiku"]);

    // Refused at creation: an unknown or unpriced target, a misplaced `*`, a model's own name.
    let unknown = gw.cp.fails(&["model", "alias", "claude-opus-*", "claude-nope"]);
    assert!(unknown.contains("not a priced model"), "{unknown}");
    let misplaced = gw.cp.fails(&["model", "alias", "claude-*-opus", "claude-sonnet-4"]);
    assert!(misplaced.contains("may only end"), "{misplaced}");
    let clash = gw.cp.fails(&["model", "alias", "claude-haiku", "claude-sonnet-4"]);
    assert!(clash.contains("is the name of a model"), "{clash}");
    assert!(gw.cp.json(&["model", "alias", "list"]).as_array().unwrap().is_empty());

    // Propagation: served by the data plane within a second of the command returning.
    let created = gw.cp.json(&["model", "alias", "claude-opus-*", "claude-sonnet-4"]);
    assert_eq!(created, json!({"name": "claude-opus-*", "target": "claude-sonnet-4", "pattern": true}));
    let since = Instant::now();
    let first = eventually(Duration::from_secs(1), || async {
        Some(messages(&gw, &gw.key, "claude-opus-4-8").await).filter(|a| a.status == 200)
    })
    .await
    .expect("the alias is served within a second");
    println!("alias served after {:?}", since.elapsed());
    gw.cp.json(&["model", "alias", "claude-*", "claude-haiku"]);
    gw.cp.json(&["model", "alias", "claude-opus-4-8-mini", "claude-haiku"]);
    gw.cp.json(&["model", "alias", "gpt-latest", "alias"]);
    let list = gw.cp.json(&["model", "alias", "list"]);
    let names: Vec<&str> = list.as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["claude-*", "claude-opus-*", "claude-opus-4-8-mini", "gpt-latest"]);
    let table = String::from_utf8(gw.cp.ctl(&["model", "alias", "list"]).stdout).unwrap();
    assert!(table.contains("claude-opus-4-8-mini") && table.contains("TARGET"), "{table}");
    let bearer = gw.bearer();
    eventually(Duration::from_secs(5), || async {
        model_ids(&gw, &[("authorization", &bearer)]).await.contains(&"gpt-latest".to_owned()).then_some(())
    })
    .await
    .expect("every alias reaches the data plane");

    // Served and billed as the target: the upstream gets the target's name, the record keeps
    // the name asked for.
    let direct = messages(&gw, &gw.key, "claude-sonnet-4").await;
    assert_eq!(direct.status, 200, "{}", direct.text());
    let direct = record_of(&gw, &direct).await;
    assert_eq!(record_of(&gw, &first).await["model"], "claude-sonnet-4");
    for (asked, served) in [
        ("claude-opus-4-8", "claude-sonnet-4"),
        ("claude-opus-4-8-mini", "claude-haiku"),
        ("claude-3-7-custom", "claude-haiku"),
    ] {
        let answer = messages(&gw, &gw.key, asked).await;
        assert_eq!(answer.status, 200, "{asked}: {}", answer.text());
        let record = record_of(&gw, &answer).await;
        assert_eq!(
            (record["model"].as_str(), record["requested_model"].as_str()),
            (Some(served), Some(asked))
        );
        let seen = gw.mock.seen();
        let upstream = seen.iter().rev().find(|s| s.uri.starts_with("/v1/messages")).unwrap();
        assert_eq!(upstream.body["model"], served, "{asked}");
        if served == "claude-sonnet-4" {
            assert_eq!(record["cost"], direct["cost"], "billed at the target's price");
        }
    }
    // An exact model name wins over every pattern; its record asks for itself.
    assert_eq!(direct["model"], "claude-sonnet-4");
    assert_eq!(direct["requested_model"], "claude-sonnet-4");
    // Prices (per 1M): sonnet 17 × $3 + 5 × $0.30 + 2 × $3.75 + 5 × $15 = $0.000135;
    // haiku (no cache prices: the input price) 24 × $1 + 5 × $5 = $0.000049.
    assert_eq!(nanos(&direct["cost"]), 135_000);
    let mini = messages(&gw, &gw.key, "claude-opus-4-8-mini").await;
    assert_eq!(nanos(&record_of(&gw, &mini).await["cost"]), 49_000);

    // The target after the channel's own model map: `alias` is mapped to gpt-4o-mini.
    let chat = json!({"model": "gpt-latest", "messages": [{"role": "user", "content": "hi"}]});
    let answer =
        post_json(&gw.url("/v1/chat/completions"), &[("authorization", &bearer)], &chat).await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(gw.mock.seen().last().unwrap().body["model"], "gpt-4o-mini");
    let record = record_of(&gw, &answer).await;
    assert_eq!(
        (record["model"].as_str(), record["requested_model"].as_str()),
        (Some("alias"), Some("gpt-latest"))
    );

    // /v1/models lists the exact aliases (never patterns), in both shapes.
    let ids = model_ids(&gw, &[("authorization", &bearer)]).await;
    for id in ["claude-opus-4-8-mini", "gpt-latest", "claude-sonnet-4"] {
        assert!(ids.contains(&id.to_owned()), "{id} missing from {ids:?}");
    }
    assert!(!ids.iter().any(|id| id.contains('*')), "{ids:?}");
    let anthropic = model_ids(&gw, &[("x-api-key", &gw.key), ("anthropic-version", "2023-06-01")]).await;
    assert!(anthropic.contains(&"claude-opus-4-8-mini".to_owned()), "{anthropic:?}");

    // Access checks apply to the target: a key for claude-haiku only may use an alias of it,
    // not an alias of claude-sonnet-4; its /v1/models lists only what it can reach.
    let limited = gw.cp.json(&["key", "create", "--account", "acme", "--models", "claude-haiku"]);
    let limited = limited["key"].as_str().unwrap().to_owned();
    let allowed = eventually(Duration::from_secs(5), || async {
        Some(messages(&gw, &limited, "claude-opus-4-8-mini").await).filter(|a| a.status != 401)
    })
    .await
    .unwrap();
    assert_eq!(allowed.status, 200, "{}", allowed.text());
    let refused = messages(&gw, &limited, "claude-opus-4-8").await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    let limited_ids = model_ids(&gw, &[("authorization", &format!("Bearer {limited}"))]).await;
    assert_eq!(limited_ids, ["claude-haiku", "claude-opus-4-8-mini"]);

    // Deleting the longer pattern hands its names to the shorter one; deleting the last one
    // leaves them unknown (404).
    gw.cp.json(&["model", "alias", "delete", "claude-opus-*"]);
    let moved = eventually(Duration::from_secs(1), || async {
        let answer = messages(&gw, &gw.key, "claude-opus-4-8").await;
        let record = record_of(&gw, &answer).await;
        (record["model"] == "claude-haiku").then_some(record)
    })
    .await
    .expect("the deletion reaches the data plane within a second");
    assert_eq!(moved["requested_model"], "claude-opus-4-8");
    gw.cp.json(&["model", "alias", "delete", "claude-*"]);
    let gone = eventually(Duration::from_secs(1), || async {
        Some(messages(&gw, &gw.key, "claude-opus-4-8").await).filter(|a| a.status == 404)
    })
    .await
    .expect("without a pattern the name is unknown");
    assert_eq!(gone.json()["error"]["type"], "not_found_error", "{}", gone.text());
    let missing = gw.cp.fails(&["model", "alias", "delete", "claude-*"]);
    assert!(missing.contains("not found"), "{missing}");
}
