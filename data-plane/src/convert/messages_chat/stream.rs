//! A Chat Completions stream → Messages stream events: `message_start`, then
//! `content_block_start` / `content_block_delta` (`thinking_delta`, `text_delta`,
//! `input_json_delta`) / `content_block_stop` per block, `message_delta` with the stop reason
//! and usage, `message_stop`; keep-alives become `ping`, failures `event: error`.
use bytes::BytesMut;
use serde::Serialize;
use serde_json::json;

use super::stop_reason;
use crate::convert::{
    StreamContext,
    chat_stream::{ChatStream, Piece, Writer},
    sse, usage,
    wire::chat,
};

/// The stream converter of this direction.
pub type Stream = ChatStream<Anthropic>;

/// A converter for one stream.
pub fn stream(context: StreamContext) -> Stream {
    let prefix = format!("toolu_{}_", context.id);
    ChatStream::new(Anthropic { context, next_index: 0, open: None, tool_blocks: Vec::new() }, prefix)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Thinking,
    Text,
    Tool(usize),
}

/// Writes Messages events.
pub struct Anthropic {
    context: StreamContext,
    next_index: usize,
    open: Option<(Open, usize)>,
    /// The block index of each tool call, by ordinal.
    tool_blocks: Vec<usize>,
}

#[derive(Serialize)]
struct BlockDelta<D> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: usize,
    delta: D,
}

#[derive(Serialize)]
struct TextDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
}

#[derive(Serialize)]
struct ThinkingDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    thinking: &'a str,
}

#[derive(Serialize)]
struct JsonDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    partial_json: &'a str,
}

impl Anthropic {
    fn close(&mut self, out: &mut BytesMut) {
        if let Some((_, index)) = self.open.take() {
            sse::event(out, "content_block_stop", &json!({"type": "content_block_stop", "index": index}));
        }
    }

    /// Opens a block of this kind unless it is the open one; its index.
    fn open(&mut self, kind: Open, start: serde_json::Value, out: &mut BytesMut) -> usize {
        if let Some((open, index)) = self.open
            && open == kind
        {
            return index;
        }
        self.close(out);
        let index = self.next_index;
        self.next_index += 1;
        sse::event(
            out,
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": start}),
        );
        self.open = Some((kind, index));
        index
    }

    fn delta(out: &mut BytesMut, index: usize, delta: impl Serialize) {
        sse::event(out, "content_block_delta", &BlockDelta { kind: "content_block_delta", index, delta });
    }
}

impl Writer for Anthropic {
    fn start(&mut self, out: &mut BytesMut) {
        let message = json!({
            "type": "message_start",
            "message": {
                "id": format!("msg_{}", self.context.id),
                "type": "message",
                "role": "assistant",
                "model": self.context.model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            },
        });
        sse::event(out, "message_start", &message);
    }

    fn ping(&mut self, out: &mut BytesMut) {
        sse::event(out, "ping", &json!({"type": "ping"}));
    }

    fn piece(&mut self, piece: Piece<'_>, out: &mut BytesMut) {
        match piece {
            Piece::Reasoning(thinking) => {
                let index = self.open(Open::Thinking, json!({"type": "thinking", "thinking": ""}), out);
                Self::delta(out, index, ThinkingDelta { kind: "thinking_delta", thinking });
            }
            Piece::Text(text) | Piece::Refusal(text) => {
                let index = self.open(Open::Text, json!({"type": "text", "text": ""}), out);
                Self::delta(out, index, TextDelta { kind: "text_delta", text });
            }
            Piece::ToolStart { ordinal, id, name } => {
                let start = json!({"type": "tool_use", "id": id, "name": name, "input": {}});
                let index = self.open(Open::Tool(ordinal), start, out);
                self.tool_blocks.push(index);
            }
            Piece::ToolArgs { ordinal, delta } => {
                // A fragment for a call that is no longer the open block (upstreams that
                // interleave parallel calls) still goes to that call's block.
                if let Some(&index) = self.tool_blocks.get(ordinal) {
                    Self::delta(out, index, JsonDelta { kind: "input_json_delta", partial_json: delta });
                }
            }
        }
    }

    fn finish(&mut self, reason: Option<&str>, usage: Option<&chat::Usage>, out: &mut BytesMut) {
        self.close(out);
        let usage = usage::chat_to_messages(&usage.copied().unwrap_or_default());
        let delta = json!({
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason(reason, !self.tool_blocks.is_empty()), "stop_sequence": null},
            "usage": usage,
        });
        sse::event(out, "message_delta", &delta);
        sse::event(out, "message_stop", &json!({"type": "message_stop"}));
    }

    fn error(&mut self, message: &str, out: &mut BytesMut) {
        let error = json!({"type": "error", "error": {"type": "api_error", "message": message}});
        sse::event(out, "error", &error);
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
