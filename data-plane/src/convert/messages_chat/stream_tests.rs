use bytes::BytesMut;
use serde_json::{Value, json};

use crate::convert::{
    Conversion,
    testing::{assert_split_invariant, chunk, context, convert_events, fixture, golden, names},
};

const CONVERSION: Conversion = Conversion::MessagesToChat;

#[test]
fn converts_a_text_stream_with_cached_usage() {
    let upstream = fixture("chat.stream.text.sse");
    assert_eq!(convert_events(CONVERSION, &upstream), golden("messages.stream.text.json"));
    assert_split_invariant(CONVERSION, &upstream);
}

#[test]
fn converts_reasoning_and_parallel_tool_calls_split_mid_json() {
    let upstream = fixture("chat.stream.tools.sse");
    assert_eq!(convert_events(CONVERSION, &upstream), golden("messages.stream.tools.json"));
    assert_split_invariant(CONVERSION, &upstream);
}

#[test]
fn sends_each_event_as_soon_as_its_chunk_arrives() {
    let mut converter = CONVERSION.stream(context());
    let mut out = BytesMut::new();
    converter.event(
        None,
        br#"{"choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"}}]}"#,
        &mut out,
    );
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("event: message_start\n"), "{text}");
    assert!(text.contains(r#""text_delta","text":"Hi""#), "{text}");
    out.clear();
    converter.event(None, b"", &mut out);
    assert_eq!(&out[..], b"event: ping\ndata: {\"type\":\"ping\"}\n\n");
    assert!(!converter.is_finished());
}

#[test]
fn maps_every_finish_reason() {
    for (finish, stop) in [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
        ("function_call", "tool_use"),
        ("insufficient_system_resource", "max_tokens"),
        ("something_new", "end_turn"),
    ] {
        let upstream =
            chunk(json!({"choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": finish}]}))
                + "data: [DONE]\n\n";
        let events = convert_events(CONVERSION, upstream.as_bytes());
        let delta =
            events.iter().find(|(n, _)| n.as_deref() == Some("message_delta")).expect("message_delta");
        assert_eq!(delta.1["delta"]["stop_reason"], stop, "{finish}");
    }
}

#[test]
fn a_stream_missing_its_usage_chunk_and_done_still_completes() {
    let upstream =
        chunk(json!({"choices": [{"index": 0, "delta": {"content": "cut"}, "finish_reason": "length"}]}));
    let events = convert_events(CONVERSION, upstream.as_bytes());
    assert_eq!(
        names(&events),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(events[4].1["usage"]["output_tokens"], 0);
    assert_eq!(events[4].1["delta"]["stop_reason"], "max_tokens");
}

#[test]
fn a_broken_stream_ends_with_an_error_event() {
    let upstream = chunk(json!({"choices": [{"index": 0, "delta": {"content": "half"}}]}));
    let events = convert_events(CONVERSION, upstream.as_bytes());
    assert_eq!(names(&events), ["message_start", "content_block_start", "content_block_delta", "error"]);
    assert_eq!(
        events[3].1,
        json!({"type": "error", "error": {"type": "api_error", "message": "the upstream closed the stream without finishing it"}})
    );
}

#[test]
fn a_mid_stream_error_keeps_the_upstream_message() {
    let upstream = chunk(json!({"choices": [{"index": 0, "delta": {"content": "a"}}]}))
        + &chunk(
            json!({"error": {"message": "Rate limit reached for requests", "type": "requests", "code": "rate_limit_exceeded"}}),
        )
        + &chunk(json!({"choices": [{"index": 0, "delta": {"content": "ignored"}}]}));
    let events = convert_events(CONVERSION, upstream.as_bytes());
    assert_eq!(names(&events), ["message_start", "content_block_start", "content_block_delta", "error"]);
    assert_eq!(events[3].1["error"]["message"], "Rate limit reached for requests");
    let events = convert_events(CONVERSION, b"data: {not json\n\n");
    assert_eq!(names(&events), ["message_start", "error"]);
}

#[test]
fn tool_calls_without_ids_or_with_reused_indexes_stay_apart() {
    let upstream = chunk(
        json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"name": "a", "arguments": "{}"}}]}}]}),
    ) + &chunk(
        json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "x1", "function": {"name": "b", "arguments": "{\"k\""}}]}}]}),
    ) + &chunk(
        json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}}]}),
    ) + &chunk(
        json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "x2", "function": {"name": "c", "arguments": "{}"}}]}, "finish_reason": "tool_calls"}]}),
    ) + "data: [DONE]\n\n";
    let events = convert_events(CONVERSION, upstream.as_bytes());
    let starts: Vec<&Value> = events
        .iter()
        .filter(|(n, _)| n.as_deref() == Some("content_block_start"))
        .map(|(_, d)| &d["content_block"])
        .collect();
    assert_eq!(
        starts,
        [
            &json!({"type": "tool_use", "id": "toolu_req1_0", "name": "a", "input": {}}),
            &json!({"type": "tool_use", "id": "x1", "name": "b", "input": {}}),
            &json!({"type": "tool_use", "id": "x2", "name": "c", "input": {}}),
        ]
    );
    let second: Vec<&Value> = events
        .iter()
        .filter(|(_, d)| d["index"] == 1 && d["type"] == "content_block_delta")
        .map(|(_, d)| &d["delta"]["partial_json"])
        .collect();
    assert_eq!(second, [&json!("{\"k\""), &json!(":1}")]);
}

#[test]
fn ignores_other_choices_and_later_events() {
    let upstream = chunk(
        json!({"choices": [{"index": 1, "delta": {"content": "other"}}, {"index": 0, "delta": {"content": "mine"}}]}),
    ) + &chunk(
        json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}),
    ) + &chunk(json!({"choices": [{"index": 0, "delta": {"content": "late"}}]}))
        + "data: [DONE]\n\n";
    let events = convert_events(CONVERSION, upstream.as_bytes());
    let texts: Vec<&Value> = events.iter().filter_map(|(_, d)| d["delta"].get("text")).collect();
    assert_eq!(texts, [&json!("mine")]);
    assert_eq!(names(&events).last(), Some(&"message_stop"));
}
