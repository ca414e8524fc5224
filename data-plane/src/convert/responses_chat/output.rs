//! The Responses objects a converted answer is made of: output items, the response, usage.
use serde::Serialize;

use crate::convert::{usage, wire::chat};

/// An output item.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Item {
    /// The model's reasoning, as summary text (what Responses clients show and resend).
    Reasoning { id: String, summary: Vec<Summary> },
    /// The answer's text.
    Message { id: String, status: &'static str, role: &'static str, content: Vec<Content> },
    /// A function call.
    FunctionCall { id: String, status: &'static str, call_id: String, name: String, arguments: String },
    /// A custom (free-form) tool call.
    CustomToolCall { id: String, status: &'static str, call_id: String, name: String, input: String },
}

/// A reasoning summary part.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    #[serde(rename = "type")]
    kind: &'static str,
    /// The text.
    pub text: String,
}

impl Summary {
    /// A `summary_text` part.
    pub fn new(text: String) -> Summary {
        Summary { kind: "summary_text", text }
    }
}

/// A message content part.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Content {
    /// Text.
    OutputText { text: String, annotations: [(); 0], logprobs: [(); 0] },
    /// A refusal.
    Refusal { refusal: String },
}

impl Content {
    /// A text part.
    pub fn text(text: String) -> Content {
        Content::OutputText { text, annotations: [], logprobs: [] }
    }
}

/// Usage as the Responses API counts it: `input_tokens` includes the cached ones.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Usage {
    input_tokens: u64,
    input_tokens_details: InputDetails,
    output_tokens: u64,
    output_tokens_details: OutputDetails,
    total_tokens: u64,
}

#[derive(Debug, Clone, Copy, Serialize)]
struct InputDetails {
    cached_tokens: u64,
}

#[derive(Debug, Clone, Copy, Serialize)]
struct OutputDetails {
    reasoning_tokens: u64,
}

impl Usage {
    /// From a Chat usage.
    pub fn from_chat(chat: &chat::Usage) -> Usage {
        Usage {
            input_tokens: chat.prompt_tokens,
            input_tokens_details: InputDetails { cached_tokens: usage::cached_tokens(chat) },
            output_tokens: chat.completion_tokens,
            output_tokens_details: OutputDetails { reasoning_tokens: usage::reasoning_tokens(chat) },
            total_tokens: chat.prompt_tokens + chat.completion_tokens,
        }
    }
}

/// Why a response is incomplete.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Incomplete {
    /// `max_output_tokens` or `content_filter`.
    pub reason: &'static str,
}

/// A failed response's error.
#[derive(Debug, Clone, Serialize)]
pub struct Failure<'a> {
    /// `server_error`.
    pub code: &'static str,
    /// The upstream's message.
    pub message: &'a str,
}

/// A response object.
#[derive(Debug, Serialize)]
pub struct Response<'a> {
    /// `resp_…`.
    pub id: &'a str,
    /// `response`.
    pub object: &'static str,
    /// Unix seconds.
    pub created_at: u64,
    /// `in_progress`, `completed`, `incomplete`, `failed`.
    pub status: &'static str,
    /// Why it failed.
    pub error: Option<Failure<'a>>,
    /// Why it is incomplete.
    pub incomplete_details: Option<Incomplete>,
    /// Not echoed.
    pub instructions: Option<()>,
    /// The model.
    pub model: &'a str,
    /// The output items.
    pub output: &'a [Item],
    /// Echoed defaults.
    pub parallel_tool_calls: bool,
    /// Echoed defaults.
    pub tool_choice: &'static str,
    /// Not echoed.
    pub tools: [(); 0],
    /// Usage, once known.
    pub usage: Option<Usage>,
    /// Not echoed.
    pub metadata: Empty,
}

/// `{}`.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Empty {}

impl<'a> Response<'a> {
    /// A response with these items.
    pub fn new(id: &'a str, created_at: u64, model: &'a str, output: &'a [Item]) -> Response<'a> {
        Response {
            id,
            object: "response",
            created_at,
            status: "in_progress",
            error: None,
            incomplete_details: None,
            instructions: None,
            model,
            output,
            parallel_tool_calls: true,
            tool_choice: "auto",
            tools: [],
            usage: None,
            metadata: Empty {},
        }
    }

    /// Sets the status a Chat `finish_reason` means.
    pub fn finished(mut self, finish: Option<&str>) -> Response<'a> {
        let reason = match finish {
            Some("length" | "insufficient_system_resource") => Some("max_output_tokens"),
            Some("content_filter") => Some("content_filter"),
            _ => None,
        };
        self.status = if reason.is_some() { "incomplete" } else { "completed" };
        self.incomplete_details = reason.map(|reason| Incomplete { reason });
        self
    }
}

/// Now, in Unix seconds.
pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
