use serde_json::{Value, json};

use super::*;
use crate::convert::testing::{fixture, json};

fn convert(body: &[u8], cap: u64) -> Result<Value, ConvertError> {
    let target = Target { upstream_model: "claude-sonnet-4-5", max_output_tokens: cap };
    request(body, &target).map(|bytes| json(&bytes))
}

fn convert_value(body: Value) -> Result<Value, ConvertError> {
    convert(body.to_string().as_bytes(), 0)
}

#[test]
fn converts_the_documented_request_shapes() {
    assert_eq!(
        convert(&fixture("chat.request.json"), 8192).expect("converts"),
        json(&fixture("chat.request.messages.json"))
    );
}

#[test]
fn fills_max_tokens_and_sizes_the_thinking_budget() {
    let hi = json!([{"role": "user", "content": "hi"}]);
    let converted = convert_value(json!({"model": "m", "messages": hi})).expect("converts");
    assert_eq!(converted["max_tokens"], 4096);
    assert_eq!(converted["messages"], json!([{"role": "user", "content": [{"type": "text", "text": "hi"}]}]));
    let converted =
        convert(json!({"model": "m", "messages": hi}).to_string().as_bytes(), 64000).expect("converts");
    assert_eq!(converted["max_tokens"], 64000);
    let converted =
        convert_value(json!({"model": "m", "messages": hi, "max_tokens": 2000, "reasoning_effort": "high"}))
            .expect("converts");
    assert_eq!(converted["thinking"], json!({"type": "enabled", "budget_tokens": 1999}));
    let converted =
        convert_value(json!({"model": "m", "messages": hi, "max_tokens": 1000, "reasoning_effort": "low"}))
            .expect("converts");
    assert!(converted.get("thinking").is_none());
    let converted = convert_value(json!({"model": "m", "messages": hi, "reasoning_effort": "minimal"}))
        .expect("converts");
    assert!(converted.get("thinking").is_none());
    // Continuing a tool call: Anthropic would want the signed thinking of the turn.
    let looped = json!([{"role": "user", "content": "hi"},
        {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c", "content": "ok"}]);
    let converted = convert_value(json!({"model": "m", "messages": looped, "reasoning_effort": "high"}))
        .expect("converts");
    assert!(converted.get("thinking").is_none());
}

#[test]
fn refuses_what_messages_cannot_express_naming_the_field() {
    let hi = json!([{"role": "user", "content": "hi"}]);
    let cases = [
        (json!({"model": "m", "messages": hi, "n": 2}), "n"),
        (json!({"model": "m", "messages": hi, "logprobs": true}), "logprobs"),
        (json!({"model": "m", "messages": hi, "top_logprobs": 3}), "top_logprobs"),
        (json!({"model": "m", "messages": hi, "logit_bias": {"50256": -100}}), "logit_bias"),
        (json!({"model": "m", "messages": hi, "presence_penalty": 0.5}), "presence_penalty"),
        (json!({"model": "m", "messages": hi, "frequency_penalty": 1}), "frequency_penalty"),
        (
            json!({"model": "m", "messages": hi, "response_format": {"type": "json_object"}}),
            "response_format",
        ),
        (json!({"model": "m", "messages": hi, "modalities": ["text", "audio"]}), "modalities"),
        (json!({"model": "m", "messages": hi, "audio": {"voice": "alloy"}}), "audio"),
        (json!({"model": "m", "messages": hi, "functions": []}), "functions"),
        (
            json!({"model": "m", "messages": hi, "tools": [{"type": "custom", "custom": {"name": "x"}}]}),
            "tools[0]",
        ),
        (
            json!({"model": "m", "messages": [{"role": "function", "name": "f", "content": "x"}]}),
            "messages[0].role",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}}]}]}),
            "messages[0].content[0].type",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}]}),
            "messages[0].content[0].file",
        ),
        (
            json!({"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{\"a\":"}}]}]}),
            "messages[0].tool_calls[0].function.arguments",
        ),
        (
            json!({"model": "m", "messages": hi, "tool_choice": {"type": "allowed_tools", "allowed_tools": {}}}),
            "tool_choice",
        ),
    ];
    for (body, field) in cases {
        let error = convert_value(body.clone()).expect_err(&body.to_string());
        assert_eq!(error.field, field, "{}", error.message);
        assert!(error.message.contains(field), "{}", error.message);
    }
}

#[test]
fn converts_tool_choice_modes() {
    let base = |choice: Value, parallel: Option<bool>| {
        let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}], "tool_choice": choice});
        if let Some(parallel) = parallel {
            body["parallel_tool_calls"] = json!(parallel);
        }
        convert_value(body).expect("converts")["tool_choice"].clone()
    };
    assert_eq!(base(json!("auto"), None), json!({"type": "auto"}));
    assert_eq!(base(json!("none"), Some(false)), json!({"type": "none"}));
    assert_eq!(
        base(json!({"type": "function", "function": {"name": "f"}}), None),
        json!({"type": "tool", "name": "f"})
    );
    assert_eq!(base(Value::Null, Some(false)), json!({"type": "auto", "disable_parallel_tool_use": true}));
    assert_eq!(base(Value::Null, Some(true)), Value::Null);
}
