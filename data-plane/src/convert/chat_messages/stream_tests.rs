use bytes::BytesMut;
use serde_json::{Value, json};

use crate::convert::{
    Conversion, StreamContext,
    testing::{Events, assert_split_invariant, context, convert_events, events, fixture},
};

const CONVERSION: Conversion = Conversion::ChatToMessages;

/// The chunks' deltas (or the whole event for others), `created` left out.
fn deltas(events: &Events) -> Vec<Value> {
    events
        .iter()
        .map(|(_, data)| match data.get("choices").and_then(|c| c.get(0)) {
            Some(choice) => json!({"delta": choice["delta"], "finish_reason": choice["finish_reason"]}),
            None => data.clone(),
        })
        .collect()
}

#[test]
fn converts_a_stream_with_thinking_text_tools_and_cached_usage() {
    let upstream = fixture("messages.stream.sse");
    let events = convert_events(CONVERSION, &upstream);
    assert_eq!(
        deltas(&events),
        [
            json!({"delta": {"role": "assistant", "content": ""}, "finish_reason": null}),
            json!("ping"),
            json!({"delta": {"reasoning_content": "I need the weather."}, "finish_reason": null}),
            json!({"delta": {"content": "Okay, let's check"}, "finish_reason": null}),
            json!({"delta": {"content": " the weather for San Francisco, CA:"}, "finish_reason": null}),
            json!({"delta": {"tool_calls": [{"index": 0, "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}, "finish_reason": null}),
            json!({"delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{\"location\":"}}]}, "finish_reason": null}),
            json!({"delta": {"tool_calls": [{"index": 0, "function": {"arguments": " \"San Francisco, CA\"}"}}]}, "finish_reason": null}),
            json!({"delta": {}, "finish_reason": "tool_calls"}),
            json!({"id": "chatcmpl-req1", "object": "chat.completion.chunk", "created": events[9].1["created"], "model": "client-model", "choices": [],
                "usage": {"prompt_tokens": 2572, "completion_tokens": 89, "total_tokens": 2661, "prompt_tokens_details": {"cached_tokens": 2000}}}),
            json!("[DONE]"),
        ]
    );
    let first = &events[0].1;
    assert_eq!(
        (first["id"].as_str(), first["object"].as_str(), first["model"].as_str()),
        (Some("chatcmpl-req1"), Some("chat.completion.chunk"), Some("client-model"))
    );
    assert_split_invariant(CONVERSION, &upstream);
}

#[test]
fn no_usage_chunk_unless_asked_and_every_stop_reason_maps() {
    for (stop, finish) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
    ] {
        let upstream = format!(
            "event: message_start\ndata: {}\n\nevent: message_delta\ndata: {}\n\nevent: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n",
            json!({"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 3, "output_tokens": 1}}}),
            json!({"type": "message_delta", "delta": {"stop_reason": stop}, "usage": {"output_tokens": 5}}),
        );
        let mut converter = CONVERSION.stream(StreamContext { include_usage: false, ..context() });
        let mut out = BytesMut::new();
        let mut parser = crate::proxy::stream::Parser::default();
        parser.push(upstream.as_bytes());
        while let Some(event) = parser.next_event() {
            converter.event(event.name.as_deref(), &event.data, &mut out);
        }
        let events = events(&out);
        assert_eq!(events.len(), 3, "{stop}");
        assert_eq!(events[1].1["choices"][0]["finish_reason"], finish, "{stop}");
        assert_eq!(events[2].1, json!("[DONE]"));
        assert!(converter.is_finished());
    }
}

#[test]
fn errors_and_broken_streams_end_with_an_error_chunk() {
    let overloaded = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}}\n\nevent: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
    let events = convert_events(CONVERSION, overloaded.as_bytes());
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].1["error"]["message"], "Overloaded");
    assert_eq!(events[1].1["error"]["code"], "overloaded_error");
    let broken = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\"}}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n";
    let events = convert_events(CONVERSION, broken.as_bytes());
    assert_eq!(
        events.last().expect("last").1["error"]["message"],
        "the upstream closed the stream without finishing it"
    );
    // A stream that gave its stop reason lacks only message_stop: completed.
    let nearly = "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":2}}\n\n";
    let events = convert_events(CONVERSION, nearly.as_bytes());
    assert_eq!(events.last().expect("last").1, json!("[DONE]"));
}
