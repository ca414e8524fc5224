use serde_json::{Value, json};

use super::*;
use crate::convert::testing::{fixture, json};

fn convert(body: &[u8]) -> Result<Value, ConvertError> {
    let target = Target { upstream_model: "deepseek-chat", max_output_tokens: 8192 };
    request(body, &target).map(|bytes| json(&bytes))
}

fn convert_value(body: Value) -> Result<Value, ConvertError> {
    convert(body.to_string().as_bytes())
}

#[test]
fn converts_the_documented_request_shapes() {
    assert_eq!(
        convert(&fixture("responses.request.json")).expect("converts"),
        json(&fixture("responses.request.chat.json"))
    );
    assert_eq!(custom_tools(&fixture("responses.request.json")), ["apply_patch"]);
}

#[test]
fn converts_the_recorded_codex_request() {
    let body = fixture("codex.request.json");
    let original = json(&body);
    let converted = convert(&body).expect("converts");
    let names: Vec<&str> = converted["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .map(|t| t["function"]["name"].as_str().expect("name"))
        .collect();
    assert!(names.contains(&"exec_command") && names.contains(&"spawn_agent"), "{names:?}");
    assert!(!names.iter().any(|n| n.contains("web_search")));
    let functions =
        original["tools"].as_array().expect("tools").iter().filter(|t| t["type"] == "function").count();
    let namespaced: usize = original["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter(|t| t["type"] == "namespace")
        .map(|t| t["tools"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(names.len(), functions + namespaced);
    let messages = converted["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), original["input"].as_array().expect("input").len());
    assert_eq!(messages[0]["role"], "system");
    assert_eq!(messages.last().expect("last")["content"], "say hi");
    assert_eq!(converted["stream_options"]["include_usage"], true);
    assert_eq!(converted["parallel_tool_calls"], true);
    for dropped in ["store", "include", "prompt_cache_key", "reasoning", "client_metadata"] {
        assert!(converted.get(dropped).is_none(), "{dropped}");
    }
}

#[test]
fn refuses_what_a_chat_upstream_cannot_do_naming_the_field() {
    let cases = [
        (json!({"model": "m", "input": "hi", "previous_response_id": "resp_1"}), "previous_response_id"),
        (json!({"model": "m", "input": "hi", "conversation": "conv_1"}), "conversation"),
        (json!({"model": "m", "input": "hi", "background": true}), "background"),
        (
            json!({"model": "m", "input": "hi", "include": ["reasoning.encrypted_content", "file_search_call.results"]}),
            "include[1]",
        ),
        (
            json!({"model": "m", "input": "hi", "tools": [{"type": "file_search", "vector_store_ids": ["v"]}]}),
            "tools[0]",
        ),
        (
            json!({"model": "m", "input": "hi", "tools": [{"type": "namespace", "name": "n", "tools": [{"type": "mcp", "server_label": "x"}]}]}),
            "tools[0].tools[0]",
        ),
        (
            json!({"model": "m", "input": "hi", "tools": [{"type": "web_search"}], "tool_choice": {"type": "web_search"}}),
            "tool_choice",
        ),
        (json!({"model": "m", "input": [{"type": "item_reference", "id": "x"}]}), "input[0].type"),
        (
            json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]}]}),
            "input[0].content[0].file_id",
        ),
        (json!({"model": "m", "input": "hi", "unknown_thing": 1}), "unknown_thing"),
        (json!({"model": "m", "input": "hi", "max_tool_calls": 3}), "max_tool_calls"),
    ];
    for (body, field) in cases {
        let error = convert_value(body.clone()).expect_err(&body.to_string());
        assert_eq!(error.field, field, "{}", error.message);
        assert!(error.message.contains(field), "{}", error.message);
    }
}

#[test]
fn a_string_input_is_one_user_message() {
    let converted = convert_value(json!({"model": "m", "input": "hi", "tool_choice": {"type": "function", "name": "f"},
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}], "text": {"format": {"type": "text"}}}))
    .expect("converts");
    assert_eq!(converted["messages"], json!([{"role": "user", "content": "hi"}]));
    assert_eq!(converted["tool_choice"], json!({"type": "function", "function": {"name": "f"}}));
    assert!(converted.get("response_format").is_none() && converted.get("stream").is_none());
    assert!(converted.get("max_tokens").is_none());
}
