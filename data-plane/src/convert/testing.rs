//! Test helpers: running upstream SSE bytes through a converter, split anywhere.
use serde_json::Value;

use super::{Conversion, StreamContext};
use crate::proxy::stream::Parser;

/// The client events a converter writes: `(event name, data)`, data parsed as JSON when it is.
pub type Events = Vec<(Option<String>, Value)>;

/// A stream context for tests.
pub fn context() -> StreamContext {
    StreamContext {
        model: "client-model".to_owned(),
        id: "req1".to_owned(),
        custom_tools: vec!["apply_patch".to_owned()],
        include_usage: true,
    }
}

/// Feeds `chunks` (upstream bytes, split as they arrived) through a converter; the client
/// bytes written after each upstream event, and whether `fail` had to close the stream.
pub fn convert(conversion: Conversion, chunks: &[&[u8]]) -> Vec<u8> {
    let failure = "the upstream closed the stream without finishing it";
    super::convert_chunks(conversion, context(), chunks.iter().copied(), failure).1.to_vec()
}

/// Client SSE bytes → events (comments become `(Some(":"), text)`).
pub fn events(bytes: &[u8]) -> Events {
    let mut parser = Parser::default();
    parser.push(bytes);
    let mut events = Vec::new();
    while let Some(event) = parser.next_event() {
        let name = event.name.map(|n| String::from_utf8_lossy(&n).into_owned());
        if event.data.is_empty() && name.is_none() {
            let comment =
                String::from_utf8_lossy(&event.raw).trim().trim_start_matches(':').trim().to_owned();
            events.push((Some(":".to_owned()), Value::String(comment)));
            continue;
        }
        let data = serde_json::from_slice(&event.data)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&event.data).into_owned()));
        events.push((name, data));
    }
    events
}

/// Converts a whole upstream stream delivered in one piece.
pub fn convert_events(conversion: Conversion, upstream: &[u8]) -> Events {
    events(&convert(conversion, &[upstream]))
}

/// Client bytes with the clock (`created`, `created_at`) zeroed, for comparing runs.
fn without_clock(bytes: &[u8]) -> Events {
    let mut events = events(bytes);
    for (_, data) in &mut events {
        if let Some(object) = data.as_object_mut() {
            if object.contains_key("created") {
                object.insert("created".to_owned(), Value::from(0));
            }
            if let Some(response) = object.get_mut("response").and_then(Value::as_object_mut) {
                response.insert("created_at".to_owned(), Value::from(0));
            }
        }
    }
    events
}

/// Asserts the client gets the same events however the upstream bytes are split: at every
/// single boundary, and byte by byte.
pub fn assert_split_invariant(conversion: Conversion, upstream: &[u8]) {
    let whole = without_clock(&convert(conversion, &[upstream]));
    for at in 0..=upstream.len() {
        let (a, b) = upstream.split_at(at);
        assert_eq!(without_clock(&convert(conversion, &[a, b])), whole, "split at byte {at}");
    }
    let bytes: Vec<&[u8]> = upstream.chunks(1).collect();
    assert_eq!(without_clock(&convert(conversion, &bytes)), whole, "byte by byte");
}

/// Reads a fixture file under `convert/fixtures/`.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/convert/fixtures").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Parses JSON bytes.
pub fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

/// A Chat stream chunk's SSE bytes.
pub fn chunk(value: Value) -> String {
    format!("data: {value}\n\n")
}

/// The events' names.
pub fn names(events: &Events) -> Vec<&str> {
    events.iter().map(|(name, _)| name.as_deref().unwrap_or("")).collect()
}

/// Expected events from a fixture: an array of `[name, data]`.
pub fn golden(name: &str) -> Events {
    json(&fixture(name))
        .as_array()
        .map(|pairs| {
            pairs.iter().map(|pair| (pair[0].as_str().map(str::to_owned), pair[1].clone())).collect()
        })
        .unwrap_or_default()
}
