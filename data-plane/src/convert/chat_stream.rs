//! Reading a Chat Completions stream chunk by chunk into what any client protocol's writer
//! needs: text, reasoning and tool-call pieces in order, then the finish with its usage.
//!
//! Chat's peculiarities handled here once: only the first piece of a tool call carries its id
//! and name (later pieces only `index` and an arguments fragment); the usage chunk comes after
//! the `finish_reason` chunk (or on it, or never); `[DONE]` may be missing; errors arrive as a
//! chunk with an `error` member.
use std::borrow::Cow;

use bytes::BytesMut;

use super::{error::UpstreamError, wire::chat};

/// A piece of the answer, in the order the upstream produced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Reasoning text.
    Reasoning(&'a str),
    /// Answer text.
    Text(&'a str),
    /// A refusal's text.
    Refusal(&'a str),
    /// A new tool call; `ordinal` counts calls from 0 in the order they started.
    ToolStart { ordinal: usize, id: &'a str, name: &'a str },
    /// A fragment of a tool call's JSON arguments.
    ToolArgs { ordinal: usize, delta: &'a str },
}

/// What a client protocol writes for each step of a Chat stream.
pub trait Writer {
    /// The stream's opening events (on the first upstream event, whatever it is).
    fn start(&mut self, out: &mut BytesMut);
    /// A keep-alive.
    fn ping(&mut self, out: &mut BytesMut);
    /// A piece of the answer.
    fn piece(&mut self, piece: Piece<'_>, out: &mut BytesMut);
    /// The answer is complete: Chat's `finish_reason` (if any came) and usage (if any came).
    fn finish(&mut self, reason: Option<&str>, usage: Option<&chat::Usage>, out: &mut BytesMut);
    /// The stream failed with this message.
    fn error(&mut self, message: &str, out: &mut BytesMut);
}

struct Call {
    chat_index: u32,
    id: String,
}

/// A Chat stream driving a client protocol's [`Writer`].
pub struct ChatStream<W> {
    /// The client protocol's writer.
    pub writer: W,
    id_prefix: String,
    started: bool,
    done: bool,
    failed: bool,
    calls: Vec<Call>,
    finish: Option<String>,
    usage: Option<chat::Usage>,
}

impl<W: Writer> ChatStream<W> {
    /// A stream whose generated tool-call ids (for upstreams that send none) start with
    /// `id_prefix`.
    pub fn new(writer: W, id_prefix: String) -> ChatStream<W> {
        ChatStream {
            writer,
            id_prefix,
            started: false,
            done: false,
            failed: false,
            calls: Vec::new(),
            finish: None,
            usage: None,
        }
    }

    /// Whether the client's stream is closed.
    pub fn is_finished(&self) -> bool {
        self.done
    }

    /// Whether it closed with an error event rather than the complete answer.
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// One upstream event.
    pub fn event(&mut self, name: Option<&[u8]>, data: &[u8], out: &mut BytesMut) {
        if self.done {
            return;
        }
        if !self.started {
            self.started = true;
            self.writer.start(out);
        }
        if data.is_empty() {
            if name.is_none() {
                self.writer.ping(out);
            }
            return;
        }
        if data == b"[DONE]" {
            self.complete(out);
            return;
        }
        let chunk: chat::Chunk<'_> = match serde_json::from_slice(data) {
            Ok(chunk) => chunk,
            Err(error) => {
                let message = format!("the upstream sent an unreadable stream event: {error}");
                self.writer.error(&message, out);
                self.done = true;
                self.failed = true;
                return;
            }
        };
        if chunk.error.is_some() {
            self.writer.error(&UpstreamError::read(500, data).message, out);
            self.done = true;
            self.failed = true;
            return;
        }
        for choice in chunk.choices.iter().filter(|c| c.index == 0) {
            if let Some(delta) = &choice.delta {
                self.delta(delta, out);
            }
            if let Some(reason) = &choice.finish_reason {
                self.finish = Some(reason.clone().into_owned());
            }
        }
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage);
            if self.finish.is_some() {
                self.complete(out);
            }
        }
    }

    fn delta(&mut self, delta: &chat::Delta<'_>, out: &mut BytesMut) {
        let reasoning = delta.reasoning_content.as_deref().or(delta.reasoning.as_deref());
        if let Some(text) = reasoning.filter(|t| !t.is_empty()) {
            self.writer.piece(Piece::Reasoning(text), out);
        }
        if let Some(text) = delta.content.as_deref().filter(|t| !t.is_empty()) {
            self.writer.piece(Piece::Text(text), out);
        }
        if let Some(text) = delta.refusal.as_deref().filter(|t| !t.is_empty()) {
            self.writer.piece(Piece::Refusal(text), out);
        }
        for (position, call) in delta.tool_calls.iter().flatten().enumerate() {
            let chat_index = call.index.unwrap_or(position as u32);
            let id = call.id.as_deref().filter(|id| !id.is_empty());
            let known = self.calls.iter().rposition(|c| c.chat_index == chat_index);
            // A new index, or a new id at a known index (some upstreams number every call 0).
            let ordinal = match known {
                Some(ordinal) if id.is_none_or(|id| id == self.calls[ordinal].id) => ordinal,
                _ => {
                    let ordinal = self.calls.len();
                    let id = id.map_or_else(|| format!("{}{ordinal}", self.id_prefix), str::to_owned);
                    let name = call.function.as_ref().and_then(|f| f.name.as_deref()).unwrap_or("");
                    self.writer.piece(Piece::ToolStart { ordinal, id: &id, name }, out);
                    self.calls.push(Call { chat_index, id });
                    ordinal
                }
            };
            let arguments = call.function.as_ref().and_then(|f| f.arguments.as_ref()).map(Cow::as_ref);
            if let Some(delta) = arguments.filter(|a| !a.is_empty()) {
                self.writer.piece(Piece::ToolArgs { ordinal, delta }, out);
            }
        }
    }

    fn complete(&mut self, out: &mut BytesMut) {
        if !self.done {
            self.done = true;
            self.writer.finish(self.finish.as_deref(), self.usage.as_ref(), out);
        }
    }

    /// The upstream stream ended early or broke. One that already gave its `finish_reason`
    /// lacks only its usage chunk or `[DONE]`: it is completed as the whole answer it is.
    pub fn fail(&mut self, message: &str, out: &mut BytesMut) {
        if self.done {
            return;
        }
        if !self.started {
            self.started = true;
            self.writer.start(out);
        }
        if self.finish.is_some() {
            self.complete(out);
        } else {
            self.writer.error(message, out);
            self.done = true;
            self.failed = true;
        }
    }
}
