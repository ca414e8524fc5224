use serde_json::{Value, json};

use super::*;
use crate::convert::testing::{fixture, json};

fn convert(body: &[u8], cap: u64) -> Result<Value, ConvertError> {
    let target = Target { upstream_model: "deepseek-chat", max_output_tokens: cap };
    request(body, &target).map(|bytes| json(&bytes))
}

fn convert_value(body: Value) -> Result<Value, ConvertError> {
    convert(body.to_string().as_bytes(), 0)
}

#[test]
fn converts_the_documented_request_shapes() {
    let converted = convert(&fixture("messages.request.json"), 8192).expect("converts");
    assert_eq!(converted, json(&fixture("messages.request.chat.json")));
}

#[test]
fn fills_and_caps_max_tokens_and_streams_with_usage_only_when_streaming() {
    let body = json!({"model": "m", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]});
    let converted = convert(body.to_string().as_bytes(), 8192).expect("converts");
    assert_eq!(converted["max_tokens"], 100);
    assert_eq!(converted["model"], "deepseek-chat");
    assert!(converted.get("stream").is_none() && converted.get("stream_options").is_none());
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": false});
    let converted = convert(body.to_string().as_bytes(), 4096).expect("converts");
    assert_eq!(converted["max_tokens"], 4096);
    assert_eq!(converted["stream"], false);
    assert!(converted.get("stream_options").is_none());
}

#[test]
fn converts_the_recorded_claude_code_request() {
    let body = fixture("claude-code.request.json");
    let original = json(&body);
    let converted = convert(&body, 8192).expect("converts");
    assert_eq!(converted["max_tokens"], 8192);
    assert_eq!(converted["stream_options"]["include_usage"], true);
    let tools = converted["tools"].as_array().expect("tools");
    assert_eq!(tools.len(), original["tools"].as_array().expect("tools").len());
    for (tool, was) in tools.iter().zip(original["tools"].as_array().expect("tools")) {
        assert_eq!(tool["type"], "function");
        assert_eq!(tool["function"]["name"], was["name"]);
        assert_eq!(tool["function"]["parameters"], was["input_schema"]);
    }
    let messages = converted["messages"].as_array().expect("messages");
    assert_eq!(messages[0]["role"], "system");
    let system = messages[0]["content"].as_str().expect("one string");
    for block in original["system"].as_array().expect("blocks") {
        assert!(system.contains(block["text"].as_str().expect("text")));
    }
    assert!(!converted.to_string().contains("cache_control"));
    assert!(converted.get("metadata").is_none() && converted.get("thinking").is_none());
}

#[test]
fn refuses_what_chat_cannot_express_naming_the_field() {
    let user = json!([{"role": "user", "content": "hi"}]);
    let cases = [
        (
            json!({"model": "m", "max_tokens": 9, "messages": user, "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 5}]}),
            "tools[0]",
        ),
        (json!({"model": "m", "max_tokens": 9, "messages": user, "mcp_servers": []}), "mcp_servers"),
        (json!({"model": "m", "max_tokens": 9, "messages": user, "container": "c"}), "container"),
        (
            json!({"model": "m", "max_tokens": 9, "messages": [{"role": "assistant", "content": [{"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}}]}]}),
            "messages[0].content[0].type",
        ),
        (
            json!({"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": [{"type": "document", "source": {"type": "url", "url": "https://x/a.pdf"}}]}]}),
            "messages[0].content[0].source.type",
        ),
        (
            json!({"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": [{"type": "search_result", "source": "s", "title": "t", "content": []}]}]}),
            "messages[0].content[0].type",
        ),
        (
            json!({"model": "m", "max_tokens": 9, "messages": user, "output_config": {"format": {"type": "grammar"}}}),
            "output_config.format.type",
        ),
        (
            json!({"model": "m", "max_tokens": 9, "messages": [{"role": "system", "content": "x"}]}),
            "messages[0].role",
        ),
        (
            json!({"model": "m", "max_tokens": 9, "messages": user, "tool_choice": {"type": "tool"}}),
            "tool_choice.name",
        ),
    ];
    for (body, field) in cases {
        let error = convert_value(body.clone()).expect_err(&body.to_string());
        assert_eq!(error.field, field, "{}", error.message);
        assert!(error.message.contains(field), "{}", error.message);
    }
    let error = convert(b"{not json", 0).expect_err("invalid");
    assert_eq!(error.field, "");
}

#[test]
fn converts_tool_choice_and_structured_output() {
    let base = |extra: Value| {
        let mut body = json!({"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"name": "f", "input_schema": {"type": "object"}}]});
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        convert_value(body).expect("converts")
    };
    assert_eq!(base(json!({"tool_choice": {"type": "auto"}}))["tool_choice"], "auto");
    assert_eq!(base(json!({"tool_choice": {"type": "none"}}))["tool_choice"], "none");
    let named = base(json!({"tool_choice": {"type": "tool", "name": "f"}}));
    assert_eq!(named["tool_choice"], json!({"type": "function", "function": {"name": "f"}}));
    assert!(named.get("parallel_tool_calls").is_none());
    let schema = json!({"type": "object", "properties": {"a": {"type": "string"}}});
    let structured = base(
        json!({"output_config": {"format": {"type": "json_schema", "schema": schema}, "effort": "high"}}),
    );
    assert_eq!(
        structured["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "output", "schema": schema, "strict": true}})
    );
}

#[test]
fn keeps_documents_and_empty_tool_turns() {
    let body = json!({"model": "m", "max_tokens": 9, "messages": [
        {"role": "user", "content": [
            {"type": "document", "title": "spec.pdf", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"}},
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "plain words"}}
        ]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {"a": [1, {"b": null}]}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1"}]}
    ]});
    let converted = convert_value(body).expect("converts");
    let messages = &converted["messages"];
    assert_eq!(
        messages[0]["content"],
        json!([
            {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0x", "filename": "spec.pdf"}},
            {"type": "text", "text": "plain words"}
        ])
    );
    assert!(messages[1].get("content").is_none());
    assert_eq!(messages[1]["tool_calls"][0]["function"]["arguments"], r#"{"a":[1,{"b":null}]}"#);
    assert_eq!(messages[2], json!({"role": "tool", "content": "", "tool_call_id": "t1"}));
    assert_eq!(messages.as_array().map(Vec::len), Some(3));
}

#[test]
fn compacts_json_outside_strings_only() {
    assert!(matches!(compact_json(r#"{"a":1}"#), Cow::Borrowed(_)));
    assert_eq!(
        compact_json("{ \"a b\" : [1, 2],\n \"c\\\" d\": \" x \" }"),
        "{\"a b\":[1,2],\"c\\\" d\":\" x \"}"
    );
}
