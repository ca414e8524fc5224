//! Protocol conversion: a client's protocol served through an upstream that speaks another.
//!
//! Pure functions and state machines (no I/O, no async, no policy) between the wire types of
//! Anthropic Messages, OpenAI Chat Completions and the OpenAI Responses API:
//! - [`Conversion::MessagesToChat`]: Claude Code and the anthropic SDK on OpenAI-compatible
//!   upstreams ([`messages_chat`]);
//! - [`Conversion::ResponsesToChat`]: Codex CLI and the openai SDK's Responses API on Chat-only
//!   upstreams ([`responses_chat`]);
//! - [`Conversion::ChatToMessages`]: the openai SDK's chat on Anthropic upstreams
//!   ([`chat_messages`]).
//!
//! Each direction converts the request, the whole answer, the stream (event by event, nothing
//! held back) and upstream errors. What the target cannot express is a [`ConvertError`] naming
//! the field; what is dropped is dropped only where that is safe, and each direction's module
//! doc says which fields and why.
//!
//! Usage follows INTERFACE.md: a converted Chat or Responses answer counts every prompt token in
//! `prompt_tokens` / `input_tokens` with the cache reads in `cached_tokens`; a converted Messages
//! answer has `input_tokens` = prompt − cached and the cached ones in `cache_read_input_tokens`
//! — the same figures the data plane bills from the upstream's own usage.
pub mod chat_messages;
mod chat_stream;
mod error;
pub mod messages_chat;
pub mod responses_chat;
#[cfg(test)]
mod roundtrip_tests;
mod sse;
#[cfg(test)]
mod testing;
mod usage;
mod wire;

use bytes::BytesMut;

pub use error::ConvertError;

/// A client protocol served through an upstream that speaks another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversion {
    /// An Anthropic Messages client on an OpenAI Chat Completions upstream.
    MessagesToChat,
    /// An OpenAI Chat Completions client on an Anthropic Messages upstream.
    ChatToMessages,
    /// An OpenAI Responses client on an OpenAI Chat Completions upstream.
    ResponsesToChat,
}

/// What the request conversion needs to know beyond the body.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// Name to put in the upstream body (after alias and model map).
    pub upstream_model: &'a str,
    /// Fills a required `max_tokens` the client left out (0: the model has no declared cap).
    pub max_output_tokens: u64,
}

/// What a stream's (or a whole answer's) conversion needs to know of its request.
#[derive(Debug, Clone, Default)]
pub struct StreamContext {
    /// The model as the client asked for it.
    pub model: String,
    /// The request id (ids of the converted answer are derived from it).
    pub id: String,
    /// Responses → Chat: the request's `custom` tools, whose calls go back as
    /// `custom_tool_call` items (see [`Conversion::context`]).
    pub custom_tools: Vec<String>,
    /// Chat → Messages: whether the client asked for a usage chunk
    /// (`stream_options.include_usage`) at the end of its stream.
    pub include_usage: bool,
}

impl Conversion {
    /// The context a request's answer is converted in: the model as the client asked for it,
    /// the request id, and what the answer's conversion needs to know of the client's body.
    pub fn context(self, body: &[u8], model: impl Into<String>, id: impl Into<String>) -> StreamContext {
        let mut context = StreamContext { model: model.into(), id: id.into(), ..StreamContext::default() };
        match self {
            Conversion::ResponsesToChat => context.custom_tools = responses_chat::custom_tools(body),
            Conversion::ChatToMessages => context.include_usage = chat_messages::include_usage(body),
            Conversion::MessagesToChat => {}
        }
        context
    }

    /// Client request body → upstream request body. For a streamed request to a Chat upstream
    /// it sets `stream_options.include_usage: true`.
    pub fn request(self, body: &[u8], target: &Target<'_>) -> Result<Vec<u8>, ConvertError> {
        match self {
            Conversion::MessagesToChat => messages_chat::request(body, target),
            Conversion::ResponsesToChat => responses_chat::request(body, target),
            Conversion::ChatToMessages => chat_messages::request(body, target),
        }
    }

    /// Whole upstream 200 answer → the client's answer. Responses → Chat needs the request's
    /// custom tools to answer their calls as such: use [`Conversion::answer_in`] there.
    pub fn answer(self, body: &[u8]) -> Result<Vec<u8>, ConvertError> {
        self.answer_in(body, &StreamContext::default())
    }

    /// Whole upstream 200 answer → the client's answer, in the request's context.
    pub fn answer_in(self, body: &[u8], context: &StreamContext) -> Result<Vec<u8>, ConvertError> {
        match self {
            Conversion::MessagesToChat => messages_chat::answer(body),
            Conversion::ResponsesToChat => responses_chat::answer(body, context),
            Conversion::ChatToMessages => chat_messages::answer(body),
        }
    }

    /// Upstream error answer (any shape, any status) → the client's error shape, the upstream's
    /// message kept word for word.
    pub fn error(self, status: u16, body: &[u8]) -> Vec<u8> {
        let upstream = error::UpstreamError::read(status, body);
        match self {
            Conversion::MessagesToChat => upstream.anthropic_body(),
            Conversion::ChatToMessages | Conversion::ResponsesToChat => upstream.openai_body(),
        }
    }

    /// A state machine for one streamed answer.
    pub fn stream(self, context: StreamContext) -> StreamConverter {
        let inner = match self {
            Conversion::MessagesToChat => Inner::MessagesChat(messages_chat::stream(context)),
            Conversion::ResponsesToChat => Inner::ResponsesChat(responses_chat::stream(context)),
            Conversion::ChatToMessages => {
                let include_usage = context.include_usage;
                Inner::ChatMessages(chat_messages::stream(context, include_usage))
            }
        };
        StreamConverter { inner }
    }
}

/// Runs a whole upstream stream, as it arrived in `chunks`, through a new converter, which is
/// closed with `fail(failure)` when the upstream did not finish it: the converter and the
/// client's bytes (for the converters' tests and the fuzzer; the request path feeds events as
/// they come).
pub fn convert_chunks<'a>(
    conversion: Conversion,
    context: StreamContext,
    chunks: impl IntoIterator<Item = &'a [u8]>,
    failure: &str,
) -> (StreamConverter, BytesMut) {
    let mut converter = conversion.stream(context);
    let mut parser = crate::proxy::stream::Parser::default();
    let mut out = BytesMut::new();
    for chunk in chunks {
        parser.push(chunk);
        while let Some(event) = parser.next_event() {
            converter.event(event.name.as_deref(), &event.data, &mut out);
        }
    }
    if !converter.is_finished() {
        converter.fail(failure, &mut out);
    }
    (converter, out)
}

/// A state machine turning one upstream stream into the client's, event by event.
pub struct StreamConverter {
    inner: Inner,
}

// One converter per stream, made once: boxing the larger ones would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Inner {
    MessagesChat(messages_chat::Stream),
    ResponsesChat(responses_chat::Stream),
    ChatMessages(chat_messages::Stream),
}

impl StreamConverter {
    /// One upstream SSE event (its `event:` name and joined `data:`; both empty for a
    /// comment/keep-alive, which becomes the client protocol's ping) → client SSE bytes
    /// appended to `out` (possibly none, possibly several events). Never buffers beyond the
    /// event: what can be sent is sent.
    pub fn event(&mut self, name: Option<&[u8]>, data: &[u8], out: &mut BytesMut) {
        match &mut self.inner {
            Inner::MessagesChat(stream) => stream.event(name, data, out),
            Inner::ResponsesChat(stream) => stream.event(name, data, out),
            Inner::ChatMessages(stream) => stream.event(name, data, out),
        }
    }

    /// The upstream stream ended without its terminal event, or broke: a client-protocol error
    /// event closing the stream (e.g. Anthropic `event: error`, Responses `response.failed`).
    /// A Chat stream that already gave its `finish_reason` lacks only its usage chunk or
    /// `[DONE]`: it is closed as the complete answer it is.
    pub fn fail(&mut self, message: &str, out: &mut BytesMut) {
        match &mut self.inner {
            Inner::MessagesChat(stream) => stream.fail(message, out),
            Inner::ResponsesChat(stream) => stream.fail(message, out),
            Inner::ChatMessages(stream) => stream.fail(message, out),
        }
    }

    /// Whether the client's stream has had its terminal event (nothing more will be written).
    pub fn is_finished(&self) -> bool {
        match &self.inner {
            Inner::MessagesChat(stream) => stream.is_finished(),
            Inner::ResponsesChat(stream) => stream.is_finished(),
            Inner::ChatMessages(stream) => stream.is_finished(),
        }
    }

    /// Whether the client's stream closed with the complete answer (not with an error event,
    /// nor still open): what billing calls `ok`.
    pub fn is_complete(&self) -> bool {
        let failed = match &self.inner {
            Inner::MessagesChat(stream) => stream.is_failed(),
            Inner::ResponsesChat(stream) => stream.is_failed(),
            Inner::ChatMessages(stream) => stream.is_failed(),
        };
        self.is_finished() && !failed
    }
}
