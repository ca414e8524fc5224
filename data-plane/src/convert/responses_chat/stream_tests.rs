use bytes::BytesMut;
use serde_json::{Value, json};

use crate::convert::{
    Conversion,
    testing::{Events, assert_split_invariant, chunk, context, convert_events, fixture, golden, names},
};

const CONVERSION: Conversion = Conversion::ResponsesToChat;

/// The events with `created_at` (the clock) blanked.
fn steady(mut events: Events) -> Events {
    for (_, data) in &mut events {
        if let Some(response) = data.get_mut("response").and_then(Value::as_object_mut) {
            response.insert("created_at".to_owned(), json!(0));
        }
    }
    events
}

/// Every event but comments carries the next sequence number and its own name as `type`.
fn assert_sequenced(events: &Events) {
    let numbered: Vec<&(Option<String>, Value)> =
        events.iter().filter(|(n, _)| n.as_deref() != Some(":")).collect();
    for (i, (name, data)) in numbered.iter().enumerate() {
        assert_eq!(data["sequence_number"], i, "{name:?}");
        assert_eq!(data["type"].as_str(), name.as_deref());
    }
}

#[test]
fn converts_a_text_stream_with_cached_usage() {
    let upstream = fixture("chat.stream.text.sse");
    let events = steady(convert_events(CONVERSION, &upstream));
    assert_sequenced(&events);
    assert_eq!(events, golden("responses.stream.text.json"));
    assert_split_invariant(CONVERSION, &upstream);
}

#[test]
fn converts_reasoning_text_and_parallel_calls() {
    let upstream = fixture("chat.stream.tools.sse");
    let events = steady(convert_events(CONVERSION, &upstream));
    assert_sequenced(&events);
    assert_eq!(events, golden("responses.stream.tools.json"));
    assert_split_invariant(CONVERSION, &upstream);
}

#[test]
fn streams_custom_tool_input_decoded() {
    let upstream = fixture("chat.stream.custom.sse");
    let events = steady(convert_events(CONVERSION, &upstream));
    assert_sequenced(&events);
    let deltas: String = events
        .iter()
        .filter(|(n, _)| n.as_deref() == Some("response.custom_tool_call_input.delta"))
        .map(|(_, d)| d["delta"].as_str().expect("delta"))
        .collect();
    let patch = "*** Begin Patch\n*** Add File: café.txt\n+\"hi\"\n*** End Patch";
    assert_eq!(deltas, patch);
    let done = events.iter().find(|(n, _)| n.as_deref() == Some("response.output_item.done")).expect("done");
    assert_eq!(
        done.1["item"],
        json!({"type": "custom_tool_call", "id": "ctc_req1_0", "status": "completed", "call_id": "call_p", "name": "apply_patch", "input": patch})
    );
    let completed = &events.last().expect("last").1;
    assert_eq!(completed["type"], "response.completed");
    assert_eq!(completed["response"]["output"][0]["input"], patch);
    assert_eq!(
        completed["response"]["usage"],
        json!({"input_tokens": 10, "input_tokens_details": {"cached_tokens": 4}, "output_tokens": 30, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 40})
    );
    assert_split_invariant(CONVERSION, &upstream);
}

#[test]
fn sends_the_lifecycle_start_on_the_first_chunk() {
    let mut converter = CONVERSION.stream(context());
    let mut out = BytesMut::new();
    converter.event(
        None,
        br#"{"choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"}}]}"#,
        &mut out,
    );
    let text = String::from_utf8_lossy(&out).into_owned();
    let events = crate::convert::testing::events(text.as_bytes());
    assert_eq!(
        names(&events),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta"
        ]
    );
    out.clear();
    converter.event(None, b"", &mut out);
    assert_eq!(&out[..], b": keep-alive\n\n");
}

#[test]
fn truncated_filtered_and_broken_streams() {
    let length =
        chunk(json!({"choices": [{"index": 0, "delta": {"content": "cut"}, "finish_reason": "length"}]}));
    let events = convert_events(CONVERSION, length.as_bytes());
    let last = &events.last().expect("last").1;
    assert_eq!(last["type"], "response.incomplete");
    assert_eq!(last["response"]["status"], "incomplete");
    assert_eq!(last["response"]["incomplete_details"]["reason"], "max_output_tokens");
    let filtered = chunk(
        json!({"choices": [{"index": 0, "delta": {"refusal": "No."}, "finish_reason": "content_filter"}]}),
    ) + "data: [DONE]\n\n";
    let events = convert_events(CONVERSION, filtered.as_bytes());
    assert!(
        names(&events).contains(&"response.refusal.delta")
            && names(&events).contains(&"response.refusal.done")
    );
    assert_eq!(events.last().expect("last").1["response"]["incomplete_details"]["reason"], "content_filter");
    assert_eq!(
        events.last().expect("last").1["response"]["output"][0]["content"][0],
        json!({"type": "refusal", "refusal": "No."})
    );

    let broken = chunk(json!({"choices": [{"index": 0, "delta": {"content": "half"}}]}));
    let events = convert_events(CONVERSION, broken.as_bytes());
    let last = &events.last().expect("last").1;
    assert_eq!(last["type"], "response.failed");
    assert_eq!(last["response"]["status"], "failed");
    assert_eq!(
        last["response"]["error"],
        json!({"code": "server_error", "message": "the upstream closed the stream without finishing it"})
    );
    assert_sequenced(&events);

    let error = chunk(json!({"error": {"message": "Insufficient Balance", "type": "unknown_error"}}));
    let events = convert_events(CONVERSION, error.as_bytes());
    assert_eq!(names(&events), ["response.created", "response.in_progress", "response.failed"]);
    assert_eq!(events[2].1["response"]["error"]["message"], "Insufficient Balance");
}
