//! Channel protocols (`--protocols`, `--messages-base-url`): defaults by type, validation,
//! listing, apply/export, and the data plane routing each endpoint by what a channel speaks.
use router_tests::{
    Backend, Gateway,
    http_client::{post_json, post_stream},
};
use serde_json::{Value, json};

on_both_backends!(channels_declare_their_protocols, endpoints_route_by_channel_protocols);

/// The upstream key of the channels these tests add.
const KEY: &str = "sk-upstream-0123456789";

fn add(gw: &Gateway, name: &str, kind: &str, base: &str, models: &str, extra: &[&str]) -> Value {
    gw.cp.add_channel(name, kind, base, KEY, models, extra)
}

async fn channels_declare_their_protocols(backend: Backend) {
    let gw = Gateway::start(backend, &[]).await;
    // The gateway's own channels: the defaults of their types.
    assert_eq!(
        gw.cp.json(&["channel", "show", "main"])["protocols"],
        json!(["chat", "completions", "embeddings", "responses"])
    );
    assert_eq!(gw.cp.json(&["channel", "show", "claude"])["protocols"], json!(["messages"]));
    let gemini = add(
        &gw,
        "gem",
        "gemini",
        "https://generativelanguage.googleapis.com/v1beta/openai",
        "gemini-2.5-pro",
        &[],
    );
    assert_eq!(gemini["protocols"], json!(["chat", "embeddings"]));
    assert_eq!(gemini["messages_base_url"], Value::Null);
    let deepseek = add(
        &gw,
        "ds",
        "openai",
        "https://api.deepseek.com/v1",
        "deepseek-chat",
        &["--protocols", "messages, chat", "--messages-base-url", "https://api.deepseek.com/anthropic/"],
    );
    assert_eq!(deepseek["protocols"], json!(["chat", "messages"]), "canonical order");
    assert_eq!(deepseek["messages_base_url"], "https://api.deepseek.com/anthropic");
    let listed = gw.cp.json(&["channel", "list"]);
    let ds = listed.as_array().unwrap().iter().find(|c| c["name"] == "ds").unwrap();
    assert_eq!(ds["protocols"], json!(["chat", "messages"]));
    let table = String::from_utf8_lossy(&gw.cp.ctl(&["channel", "list"]).stdout).into_owned();
    assert!(table.contains("PROTOCOLS") || table.contains("protocols"), "{table}");
    assert!(table.contains("chat,messages"), "{table}");

    // Refused clearly, nothing changed.
    let error = gw.cp.fails(&["channel", "update", "claude", "--protocols", "chat"]);
    assert!(error.contains("anthropic channel cannot speak chat"), "{error}");
    let error = gw.cp.fails(&["channel", "update", "claude", "--protocols", "chat,grpc"]);
    assert!(error.contains("unknown protocol \"grpc\""), "{error}");
    let error = gw.cp.fails(&["channel", "update", "gem", "--protocols", "responses"]);
    assert!(error.contains("gemini channel cannot speak responses"), "{error}");
    let error = gw.cp.fails(&["channel", "update", "ds", "--type", "anthropic"]);
    assert!(error.contains("cannot speak chat"), "{error}");
    let error = gw.cp.fails(&["channel", "update", "main", "--messages-base-url", "https://h"]);
    assert!(error.contains("messages base URL"), "{error}");
    let error = gw.cp.fails(&["channel", "update", "ds", "--protocols", "chat"]);
    assert!(error.contains("messages base URL"), "a base URL for a protocol it no longer speaks: {error}");
    assert_eq!(gw.cp.json(&["channel", "show", "ds"])["protocols"], json!(["chat", "messages"]));
    assert_eq!(gw.cp.json(&["channel", "show", "claude"])["protocols"], json!(["messages"]));

    // Updates: a new list, then back to the type's defaults.
    let updated = gw.cp.json(&[
        "channel",
        "update",
        "ds",
        "--protocols",
        "chat,embeddings",
        "--messages-base-url",
        "none",
    ]);
    assert_eq!(
        (updated["protocols"].clone(), updated["messages_base_url"].clone()),
        (json!(["chat", "embeddings"]), Value::Null)
    );
    let reset = gw.cp.json(&["channel", "update", "ds", "--protocols", "default"]);
    assert_eq!(reset["protocols"], json!(["chat", "completions", "embeddings", "responses"]));
    // A list equal to the type's defaults follows the type.
    gw.cp.json(&["channel", "update", "gem", "--type", "openai"]);
    assert_eq!(
        gw.cp.json(&["channel", "show", "gem"])["protocols"],
        json!(["chat", "completions", "embeddings", "responses"])
    );
    gw.cp.json(&[
        "channel",
        "update",
        "ds",
        "--protocols",
        "chat,messages",
        "--messages-base-url",
        "https://api.deepseek.com/anthropic",
    ]);

    // Export carries what was declared (and only that), and applies back byte for byte.
    let exported = String::from_utf8_lossy(&gw.cp.ctl(&["export", "--with-secrets"]).stdout).into_owned();
    assert!(exported.contains("protocols = [\"chat\", \"messages\"]"), "{exported}");
    assert!(exported.contains("messages_base_url = \"https://api.deepseek.com/anthropic\""), "{exported}");
    assert_eq!(exported.matches("protocols =").count(), 1, "defaults stay implicit: {exported}");
    let path = gw.db.dir.join("exported.toml");
    std::fs::write(&path, &exported).unwrap();
    let other_db = router_tests::TestDb::create(backend).await.unwrap();
    let other = router_tests::ControlPlane::start(&other_db).unwrap();
    let applied = other.ctl(&["apply", "-f", &path.display().to_string()]);
    assert!(applied.status.success(), "{}", String::from_utf8_lossy(&applied.stderr));
    assert_eq!(other.json(&["channel", "show", "ds"])["protocols"], json!(["chat", "messages"]));
    assert_eq!(String::from_utf8_lossy(&other.ctl(&["export", "--with-secrets"]).stdout), exported);
    // Applying it again changes nothing; a bad protocol in a file is refused, naming it.
    let again = other.json(&["apply", "-f", &path.display().to_string()]);
    assert!(again.as_array().unwrap().iter().all(|c| c["action"] == "unchanged"), "{again}");
    let bad = exported.replace("protocols = [\"chat\", \"messages\"]", "protocols = [\"chat\", \"telnet\"]");
    let bad_path = gw.db.dir.join("bad.toml");
    std::fs::write(&bad_path, bad).unwrap();
    let error = other.fails(&["apply", "-f", &bad_path.display().to_string()]);
    assert!(error.contains("unknown protocol \"telnet\""), "{error}");
}

async fn endpoints_route_by_channel_protocols(backend: Backend) {
    let gw = Gateway::start(backend, &[]).await;
    let base = format!("{}/v1", gw.mock.url);
    // Higher priority than `main`, but it speaks only chat: responses still go to `main`.
    add(&gw, "chatonly", "openai", &base, "gpt-4o-mini", &["--protocols", "chat", "--priority", "10"]);
    // An OpenAI-compatible server that also speaks Messages, beside its other endpoints …
    add(&gw, "ds", "openai", &base, "deepseek-chat", &["--protocols", "chat,messages"]);
    // … and one whose Anthropic API lives elsewhere.
    let anthropic_base = format!("{}/anthropic", gw.mock.url);
    add(
        &gw,
        "kimi",
        "openai",
        &base,
        "kimi-k2",
        &["--protocols", "chat,messages", "--messages-base-url", &anthropic_base],
    );
    for model in ["deepseek-chat", "kimi-k2"] {
        gw.cp.json(&["model", "set", model, "--input-price", "1", "--output-price", "2"]);
    }
    let auth = gw.bearer();
    let responses = json!({"model": "gpt-4o-mini", "input": "hi"});
    let answer = router_tests::eventually(std::time::Duration::from_secs(5), || async {
        let answer =
            post_json(&gw.url("/v1/responses"), &[("authorization", &auth)], &responses).await.ok()?;
        let chat = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
        let chat =
            post_json(&gw.url("/v1/chat/completions"), &[("authorization", &auth)], &chat).await.ok()?;
        let messages =
            json!({"model": "kimi-k2", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]});
        let messages = post_json(&gw.url("/v1/messages"), &[("x-api-key", &gw.key)], &messages).await.ok()?;
        (answer.status == 200 && chat.status == 200 && messages.status == 200).then_some(answer)
    })
    .await
    .expect("the data plane has the new channels");
    assert_eq!(answer.json()["output"][0]["content"][0]["text"], "tok0 tok1 tok2 tok3 tok4 ");
    let mut stream = post_stream(
        &gw.url("/v1/messages"),
        &[("x-api-key", &gw.key)],
        &json!({"model": "deepseek-chat", "max_tokens": 16, "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await
    .unwrap();
    assert_eq!(stream.status, 200);
    let text = stream.rest().await;
    assert!(text.contains("event: message_stop"), "{text}");

    let seen = gw.mock.seen();
    let uris: Vec<&str> = seen.iter().map(|s| s.uri.as_str()).collect();
    assert_eq!(
        uris[uris.len() - 2..],
        ["/anthropic/v1/messages", "/v1/messages"],
        "Messages at --messages-base-url, else beside the channel's other endpoints"
    );
    for request in &seen[seen.len() - 2..] {
        assert_eq!(request.headers.get("x-api-key").unwrap(), KEY);
        assert!(request.headers.get("authorization").is_none());
        assert_eq!(request.headers.get("anthropic-version").unwrap(), "2023-06-01");
    }
    // Native Messages usage, billed in Anthropic's terms: 17 input, 5 cache reads, 2 writes.
    let records = gw.usage(seen.len()).await;
    let channels: Vec<(&str, &str)> = records
        .iter()
        .map(|r| (r["channel"].as_str().unwrap(), r["endpoint"].as_str().unwrap_or_default()))
        .collect();
    assert_eq!(channels[0].0, "ds");
    let last_responses = records.iter().find(|r| r["request_id"] == answer.request_id()).unwrap();
    assert_eq!(last_responses["channel"], "main", "only channels listing responses serve it natively");
    assert!(records.iter().any(|r| r["channel"] == "chatonly"), "chat goes to the higher-priority channel");
    assert!(records.iter().all(|r| r["status"] == "ok"), "{records:?}");
    assert_eq!(
        (
            records[0]["input_tokens"].as_i64(),
            records[0]["cached_input_tokens"].as_i64(),
            records[0]["cache_write_tokens"].as_i64()
        ),
        (Some(17), Some(5), Some(2))
    );
}
