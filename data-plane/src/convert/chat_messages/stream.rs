//! A Messages stream → Chat Completions chunks: a first chunk with the role, then
//! `content` / `reasoning_content` / `tool_calls` deltas (a call's id and name in its first
//! piece, then its `input_json_delta` fragments as `arguments`), the `finish_reason` chunk, a
//! usage chunk when the client asked for one, and `[DONE]`. Pings become SSE comments,
//! `event: error` an error chunk.
use bytes::BytesMut;
use serde::Serialize;
use serde_json::json;

use super::{answer::now, finish_reason};
use crate::convert::{StreamContext, error::UpstreamError, sse, usage, wire::messages};

/// A converter for one stream; a usage chunk ends it when `include_usage`.
pub fn stream(context: StreamContext, include_usage: bool) -> Stream {
    Stream {
        id: format!("chatcmpl-{}", context.id),
        context,
        include_usage,
        created: now(),
        tools: Vec::new(),
        usage: messages::Usage::default(),
        finish: None,
        done: false,
        failed: false,
    }
}

/// The stream converter of this direction.
pub struct Stream {
    context: StreamContext,
    id: String,
    include_usage: bool,
    created: u64,
    /// The Anthropic block index of each tool call, by Chat tool index.
    tools: Vec<usize>,
    usage: messages::Usage,
    finish: Option<&'static str>,
    done: bool,
    failed: bool,
}

#[derive(Serialize)]
struct Chunk<'a, D> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [ChunkChoice<D>; 1],
}

#[derive(Serialize)]
struct ChunkChoice<D> {
    index: u32,
    delta: D,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize)]
struct Content<'a> {
    content: &'a str,
}

#[derive(Serialize)]
struct Reasoning<'a> {
    reasoning_content: &'a str,
}

#[derive(Serialize)]
struct ToolCalls<'a> {
    tool_calls: [ToolCall<'a>; 1],
}

#[derive(Serialize)]
struct ToolCall<'a> {
    index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: Function<'a>,
}

#[derive(Serialize)]
struct Function<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

impl Stream {
    /// Whether the client's stream is closed.
    pub fn is_finished(&self) -> bool {
        self.done
    }

    /// Whether it closed with an error event rather than the complete answer.
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    fn chunk<D: Serialize>(&self, out: &mut BytesMut, delta: D, finish_reason: Option<&'static str>) {
        let chunk = Chunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.context.model,
            choices: [ChunkChoice { index: 0, delta, logprobs: None, finish_reason }],
        };
        sse::data(out, &chunk);
    }

    /// One upstream event.
    pub fn event(&mut self, name: Option<&[u8]>, data: &[u8], out: &mut BytesMut) {
        if self.done {
            return;
        }
        if data.is_empty() {
            if name.is_none() {
                sse::comment(out, "ping");
            }
            return;
        }
        let event: messages::Event<'_> = match serde_json::from_slice(data) {
            Ok(event) => event,
            Err(error) => {
                let message = format!("the upstream sent an unreadable stream event: {error}");
                self.error(&UpstreamError::new(message), out);
                return;
            }
        };
        match event.kind.as_ref() {
            "message_start" => {
                if let Some(usage) = event.message.as_ref().and_then(|m| m.usage) {
                    self.usage = usage;
                }
                self.chunk(out, json!({"role": "assistant", "content": ""}), None);
            }
            "content_block_start" => {
                let Some(block) = &event.content_block else { return };
                match block.kind.as_ref() {
                    "tool_use" => {
                        let index = self.tools.len();
                        self.tools.push(event.index.unwrap_or(usize::MAX));
                        let call = ToolCall {
                            index,
                            id: block.id.as_deref(),
                            kind: Some("function"),
                            function: Function { name: block.name.as_deref(), arguments: "" },
                        };
                        self.chunk(out, ToolCalls { tool_calls: [call] }, None);
                    }
                    "text" => {
                        if let Some(text) = block.text.as_deref().filter(|t| !t.is_empty()) {
                            self.chunk(out, Content { content: text }, None);
                        }
                    }
                    _ => {}
                }
            }
            "content_block_delta" => {
                let Some(delta) = &event.delta else { return };
                match delta.kind.as_deref() {
                    Some("text_delta") => {
                        if let Some(text) = delta.text.as_deref() {
                            self.chunk(out, Content { content: text }, None);
                        }
                    }
                    Some("thinking_delta") => {
                        if let Some(thinking) = delta.thinking.as_deref() {
                            self.chunk(out, Reasoning { reasoning_content: thinking }, None);
                        }
                    }
                    Some("input_json_delta") => {
                        let block = event.index.unwrap_or(usize::MAX);
                        let fragment = delta.partial_json.as_deref().unwrap_or("");
                        if let Some(index) = self.tools.iter().position(|&b| b == block)
                            && !fragment.is_empty()
                        {
                            let call = ToolCall {
                                index,
                                id: None,
                                kind: None,
                                function: Function { name: None, arguments: fragment },
                            };
                            self.chunk(out, ToolCalls { tool_calls: [call] }, None);
                        }
                    }
                    // Signatures and citations have no Chat form.
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(usage) = event.usage {
                    self.usage.output_tokens = usage.output_tokens;
                    // Newer streams repeat the input side here: the last figures win.
                    if usage.input_tokens > 0 || usage.cache_read_input_tokens.is_some() {
                        self.usage.input_tokens = usage.input_tokens;
                        self.usage.cache_read_input_tokens = usage.cache_read_input_tokens;
                        self.usage.cache_creation_input_tokens = usage.cache_creation_input_tokens;
                    }
                }
                let stop = event.delta.as_ref().and_then(|d| d.stop_reason.as_deref());
                let finish = finish_reason(stop);
                self.finish = Some(finish);
                self.chunk(out, json!({}), Some(finish));
            }
            "message_stop" => self.complete(out),
            "ping" => sse::comment(out, "ping"),
            "error" => self.error(&UpstreamError::read(500, data), out),
            // `content_block_stop` and events added later.
            _ => {}
        }
    }

    fn complete(&mut self, out: &mut BytesMut) {
        if self.include_usage {
            let chunk = json!({
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.context.model,
                "choices": [],
                "usage": usage::messages_to_chat(&self.usage),
            });
            sse::data(out, &chunk);
        }
        sse::done(out);
        self.done = true;
    }

    fn error(&mut self, error: &UpstreamError, out: &mut BytesMut) {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&error.openai_body());
        out.extend_from_slice(b"\n\n");
        self.done = true;
        self.failed = true;
    }

    /// The upstream stream ended early or broke. One that already gave its stop reason lacks
    /// only `message_stop`: it is completed as the whole answer it is.
    pub fn fail(&mut self, message: &str, out: &mut BytesMut) {
        if self.done {
            return;
        }
        if self.finish.is_some() {
            self.complete(out);
        } else {
            self.error(&UpstreamError::new(message.to_owned()), out);
        }
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
