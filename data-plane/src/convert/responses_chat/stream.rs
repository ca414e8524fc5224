//! A Chat Completions stream → the Responses event lifecycle: `response.created`,
//! `response.in_progress`, then per output item `response.output_item.added`, its parts and
//! deltas (`response.reasoning_summary_*`, `response.content_part.*`,
//! `response.output_text.*`, `response.refusal.*`, `response.function_call_arguments.*`,
//! `response.custom_tool_call_input.*`) and `response.output_item.done`; finally
//! `response.completed` (or `response.incomplete`) with usage, or `response.failed`. Every event
//! carries its `sequence_number`; keep-alives become SSE comments.
use bytes::BytesMut;
use serde::Serialize;
use serde_json::json;

use super::{
    custom,
    output::{Content, Failure, Item, Response, Summary, Usage, now},
};
use crate::convert::{
    StreamContext,
    chat_stream::{ChatStream, Piece, Writer},
    sse,
    wire::chat,
};

/// The stream converter of this direction.
pub type Stream = ChatStream<Responses>;

/// A converter for one stream.
pub fn stream(context: StreamContext) -> Stream {
    let prefix = format!("call_{}_", context.id);
    let response_id = format!("resp_{}", context.id);
    let writer = Responses {
        context,
        response_id,
        created_at: now(),
        sequence: 0,
        output: Vec::new(),
        open: Vec::new(),
        calls: Vec::new(),
        decoders: Vec::new(),
    };
    ChatStream::new(writer, prefix)
}

/// Writes Responses events.
pub struct Responses {
    context: StreamContext,
    response_id: String,
    created_at: u64,
    sequence: u64,
    /// Every item so far, in output order; open ones are updated as pieces arrive.
    output: Vec<Item>,
    /// The output indexes of the open items.
    open: Vec<usize>,
    /// The output index of each tool call, by ordinal.
    calls: Vec<usize>,
    /// The input decoder of each custom tool call, by output index.
    decoders: Vec<Option<custom::Input>>,
}

#[derive(Serialize)]
struct Delta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    sequence_number: u64,
    item_id: &'a str,
    output_index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary_index: Option<usize>,
    delta: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    logprobs: Option<[(); 0]>,
}

fn item_id(item: &Item) -> &str {
    match item {
        Item::Reasoning { id, .. }
        | Item::Message { id, .. }
        | Item::FunctionCall { id, .. }
        | Item::CustomToolCall { id, .. } => id,
    }
}

impl Responses {
    fn next(&mut self) -> u64 {
        let sequence = self.sequence;
        self.sequence += 1;
        sequence
    }

    fn emit(&mut self, out: &mut BytesMut, kind: &str, mut payload: serde_json::Value) {
        payload["type"] = json!(kind);
        payload["sequence_number"] = json!(self.next());
        sse::event(out, kind, &payload);
    }

    fn response(&self, status_from: Option<Option<&str>>) -> serde_json::Value {
        let mut response =
            Response::new(&self.response_id, self.created_at, &self.context.model, &self.output);
        if let Some(finish) = status_from {
            response = response.finished(finish);
        }
        serde_json::to_value(response).unwrap_or_default()
    }

    /// Opens a new item; its output index.
    fn add(&mut self, item: Item, out: &mut BytesMut) -> usize {
        let index = self.output.len();
        self.emit(out, "response.output_item.added", json!({"output_index": index, "item": item}));
        self.output.push(item);
        self.decoders.push(None);
        self.open.push(index);
        index
    }

    /// The open item of this kind (reasoning or message), closing the others.
    fn current(&mut self, message: bool, out: &mut BytesMut) -> usize {
        let matches = |item: &Item| {
            matches!((item, message), (Item::Message { .. }, true) | (Item::Reasoning { .. }, false))
        };
        if let Some(&index) = self.open.last()
            && matches(&self.output[index])
        {
            return index;
        }
        self.close_all(out);
        let id = format!("{}_{}", if message { "msg" } else { "rs" }, self.item_suffix());
        if message {
            self.add(Item::Message { id, status: "in_progress", role: "assistant", content: Vec::new() }, out)
        } else {
            let index = self.add(Item::Reasoning { id, summary: Vec::new() }, out);
            let item_id = item_id(&self.output[index]).to_owned();
            self.emit(
                out,
                "response.reasoning_summary_part.added",
                json!({"item_id": item_id, "output_index": index, "summary_index": 0, "part": {"type": "summary_text", "text": ""}}),
            );
            if let Item::Reasoning { summary, .. } = &mut self.output[index] {
                summary.push(Summary::new(String::new()));
            }
            index
        }
    }

    fn item_suffix(&self) -> String {
        format!("{}_{}", self.context.id, self.output.len())
    }

    fn reasoning(&mut self, text: &str, out: &mut BytesMut) {
        let index = self.current(false, out);
        let sequence = self.next();
        let delta = Delta {
            kind: "response.reasoning_summary_text.delta",
            sequence_number: sequence,
            item_id: item_id(&self.output[index]),
            output_index: index,
            content_index: None,
            summary_index: Some(0),
            delta: text,
            logprobs: None,
        };
        sse::event(out, delta.kind, &delta);
        if let Item::Reasoning { summary, .. } = &mut self.output[index]
            && let Some(part) = summary.last_mut()
        {
            part.text.push_str(text);
        }
    }

    fn message(&mut self, text: &str, refusal: bool, out: &mut BytesMut) {
        let index = self.current(true, out);
        let Item::Message { content, .. } = &self.output[index] else { return };
        let same_part = matches!(
            (content.last(), refusal),
            (Some(Content::OutputText { .. }), false) | (Some(Content::Refusal { .. }), true)
        );
        let mut content_index = content.len().saturating_sub(1);
        if !same_part {
            self.close_part(index, out);
            let part = if refusal {
                Content::Refusal { refusal: String::new() }
            } else {
                Content::text(String::new())
            };
            let item_id = item_id(&self.output[index]).to_owned();
            let Item::Message { content, .. } = &mut self.output[index] else { return };
            content_index = content.len();
            self.emit(
                out,
                "response.content_part.added",
                json!({"item_id": item_id, "output_index": index, "content_index": content_index, "part": part}),
            );
            if let Item::Message { content, .. } = &mut self.output[index] {
                content.push(part);
            }
        }
        let sequence = self.next();
        let delta = Delta {
            kind: if refusal { "response.refusal.delta" } else { "response.output_text.delta" },
            sequence_number: sequence,
            item_id: item_id(&self.output[index]),
            output_index: index,
            content_index: Some(content_index),
            summary_index: None,
            delta: text,
            logprobs: (!refusal).then_some([]),
        };
        sse::event(out, delta.kind, &delta);
        if let Item::Message { content, .. } = &mut self.output[index] {
            match content.last_mut() {
                Some(Content::OutputText { text: all, .. }) | Some(Content::Refusal { refusal: all }) => {
                    all.push_str(text)
                }
                None => {}
            }
        }
    }

    /// Closes the message's last content part, if it has one open.
    fn close_part(&mut self, index: usize, out: &mut BytesMut) {
        let Item::Message { id, content, .. } = &self.output[index] else { return };
        let Some(part) = content.last() else { return };
        let content_index = content.len() - 1;
        let (done, value) = match part {
            Content::OutputText { text, .. } => {
                ("response.output_text.done", json!({"text": text, "logprobs": []}))
            }
            Content::Refusal { refusal } => ("response.refusal.done", json!({"refusal": refusal})),
        };
        let mut payload = json!({"item_id": id, "output_index": index, "content_index": content_index});
        let part = json!(part);
        if let (Some(payload), Some(value)) = (payload.as_object_mut(), value.as_object()) {
            payload.extend(value.clone());
        }
        let item_id = id.clone();
        self.emit(out, done, payload);
        self.emit(
            out,
            "response.content_part.done",
            json!({"item_id": item_id, "output_index": index, "content_index": content_index, "part": part}),
        );
    }

    fn close(&mut self, index: usize, out: &mut BytesMut) {
        let item_id = item_id(&self.output[index]).to_owned();
        match &mut self.output[index] {
            Item::Reasoning { summary, .. } => {
                let text = summary.last().map(|s| s.text.clone()).unwrap_or_default();
                self.emit(
                    out,
                    "response.reasoning_summary_text.done",
                    json!({"item_id": item_id, "output_index": index, "summary_index": 0, "text": text}),
                );
                self.emit(
                    out,
                    "response.reasoning_summary_part.done",
                    json!({"item_id": item_id, "output_index": index, "summary_index": 0, "part": {"type": "summary_text", "text": text}}),
                );
            }
            Item::Message { status, .. } => {
                *status = "completed";
                self.close_part(index, out);
            }
            Item::FunctionCall { status, arguments, name, .. } => {
                *status = "completed";
                // No arguments at all is an empty object to clients that parse them.
                if arguments.trim().is_empty() {
                    *arguments = "{}".to_owned();
                }
                let payload =
                    json!({"item_id": item_id, "output_index": index, "name": name, "arguments": arguments});
                self.emit(out, "response.function_call_arguments.done", payload);
            }
            Item::CustomToolCall { status, input, .. } => {
                *status = "completed";
                if let Some(decoder) = self.decoders[index].take() {
                    *input = decoder.finish(input);
                }
                let payload = json!({"item_id": item_id, "output_index": index, "input": input});
                self.emit(out, "response.custom_tool_call_input.done", payload);
            }
        }
        let item = json!(self.output[index]);
        self.emit(out, "response.output_item.done", json!({"output_index": index, "item": item}));
    }

    fn close_all(&mut self, out: &mut BytesMut) {
        for index in std::mem::take(&mut self.open) {
            self.close(index, out);
        }
    }

    fn tool_start(&mut self, id: &str, name: &str, out: &mut BytesMut) {
        // Calls stay open together (upstreams may interleave parallel calls); text or
        // reasoning before them is done.
        let open_calls = self
            .open
            .iter()
            .all(|&i| matches!(self.output[i], Item::FunctionCall { .. } | Item::CustomToolCall { .. }));
        if !open_calls {
            self.close_all(out);
        }
        let suffix = self.item_suffix();
        let (call_id, name) = (id.to_owned(), name.to_owned());
        let index = if self.context.custom_tools.contains(&name) {
            let item = Item::CustomToolCall {
                id: format!("ctc_{suffix}"),
                status: "in_progress",
                call_id,
                name,
                input: String::new(),
            };
            let index = self.add(item, out);
            self.decoders[index] = Some(custom::Input::default());
            index
        } else {
            let item = Item::FunctionCall {
                id: format!("fc_{suffix}"),
                status: "in_progress",
                call_id,
                name,
                arguments: String::new(),
            };
            self.add(item, out)
        };
        self.calls.push(index);
    }

    fn tool_args(&mut self, ordinal: usize, fragment: &str, out: &mut BytesMut) {
        let Some(&index) = self.calls.get(ordinal) else { return };
        let decoded;
        let (kind, delta) = match &mut self.output[index] {
            Item::FunctionCall { arguments, .. } => {
                arguments.push_str(fragment);
                ("response.function_call_arguments.delta", fragment)
            }
            Item::CustomToolCall { input, .. } => {
                // The raw arguments are kept for a call that turns out not to be `{"input": …}`.
                input.push_str(fragment);
                decoded = self.decoders[index].as_mut().map(|d| d.push(fragment)).unwrap_or_default();
                ("response.custom_tool_call_input.delta", decoded.as_str())
            }
            _ => return,
        };
        if delta.is_empty() {
            return;
        }
        let sequence_number = self.sequence;
        self.sequence += 1;
        let event = Delta {
            kind,
            sequence_number,
            item_id: item_id(&self.output[index]),
            output_index: index,
            content_index: None,
            summary_index: None,
            delta,
            logprobs: None,
        };
        sse::event(out, kind, &event);
    }
}

impl Writer for Responses {
    fn start(&mut self, out: &mut BytesMut) {
        let response = self.response(None);
        self.emit(out, "response.created", json!({"response": response}));
        self.emit(out, "response.in_progress", json!({"response": response}));
    }

    fn ping(&mut self, out: &mut BytesMut) {
        sse::comment(out, "keep-alive");
    }

    fn piece(&mut self, piece: Piece<'_>, out: &mut BytesMut) {
        match piece {
            Piece::Reasoning(text) => self.reasoning(text, out),
            Piece::Text(text) => self.message(text, false, out),
            Piece::Refusal(text) => self.message(text, true, out),
            Piece::ToolStart { id, name, .. } => self.tool_start(id, name, out),
            Piece::ToolArgs { ordinal, delta } => self.tool_args(ordinal, delta, out),
        }
    }

    fn finish(&mut self, reason: Option<&str>, usage: Option<&chat::Usage>, out: &mut BytesMut) {
        self.close_all(out);
        let mut response = self.response(Some(reason));
        response["usage"] = json!(Usage::from_chat(&usage.copied().unwrap_or_default()));
        let kind =
            if response["status"] == "incomplete" { "response.incomplete" } else { "response.completed" };
        self.emit(out, kind, json!({"response": response}));
    }

    fn error(&mut self, message: &str, out: &mut BytesMut) {
        let mut response = self.response(None);
        response["status"] = json!("failed");
        response["error"] = json!(Failure { code: "server_error", message });
        self.emit(out, "response.failed", json!({"response": response}));
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
