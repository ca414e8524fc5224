//! Writing server-sent events.
use bytes::{BufMut, BytesMut};
use serde::Serialize;

/// Appends `data: {json}` and the blank line.
pub fn data(out: &mut BytesMut, payload: &impl Serialize) {
    out.extend_from_slice(b"data: ");
    json(out, payload);
    out.extend_from_slice(b"\n\n");
}

/// Appends `event: {name}`, `data: {json}` and the blank line.
pub fn event(out: &mut BytesMut, name: &str, payload: &impl Serialize) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    json(out, payload);
    out.extend_from_slice(b"\n\n");
}

/// Appends an SSE comment (a keep-alive every SSE client ignores).
pub fn comment(out: &mut BytesMut, text: &str) {
    out.extend_from_slice(b": ");
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\n\n");
}

/// Appends OpenAI's end of stream.
pub fn done(out: &mut BytesMut) {
    out.extend_from_slice(b"data: [DONE]\n\n");
}

fn json(out: &mut BytesMut, payload: &impl Serialize) {
    // Our payloads are plain structs with string keys, written to memory: this cannot fail.
    let _ = serde_json::to_writer((&mut *out).writer(), payload);
}
