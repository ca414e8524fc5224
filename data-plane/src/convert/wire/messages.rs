//! Anthropic Messages: requests, answers and stream events.
use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::TextOr;

/// A Messages request. Every top-level field is known: one that is not is refused by name.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Request<'a> {
    /// The model.
    #[serde(borrow)]
    pub model: Cow<'a, str>,
    /// The conversation.
    #[serde(borrow)]
    pub messages: Vec<Message<'a>>,
    /// The system prompt: a string or text blocks.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub system: Option<TextOr<'a, Block<'a>>>,
    /// The output cap (required by Anthropic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// Stop sequences.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<Cow<'a, str>>>,
    /// Whether to stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Sampling temperature, copied as written.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<&'a RawValue>,
    /// Nucleus sampling, copied as written.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<&'a RawValue>,
    /// Top-k sampling, copied as written.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<&'a RawValue>,
    /// Tool definitions.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool<'a>>>,
    /// How the model may use tools.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice<'a>>,
    /// Extended thinking.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<Thinking<'a>>,
    /// Request metadata (`user_id`).
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata<'a>>,
    /// Server-side context editing (beta).
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub context_management: Option<&'a RawValue>,
    /// Priority tier.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<&'a RawValue>,
    /// Output options: `format` (structured output), `effort`.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub output_config: Option<OutputConfig<'a>>,
    /// Structured output (the beta's name for `output_config.format`).
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub output_format: Option<&'a RawValue>,
}

/// One turn.
#[derive(Debug, Deserialize, Serialize)]
pub struct Message<'a> {
    /// `user` or `assistant`.
    #[serde(borrow)]
    pub role: Cow<'a, str>,
    /// A string or content blocks.
    #[serde(borrow)]
    pub content: TextOr<'a, Block<'a>>,
}

/// A content block of any type, flat: which fields matter depends on `kind`.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct Block<'a> {
    /// `text`, `image`, `document`, `tool_use`, `tool_result`, `thinking`, `redacted_thinking` …
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    /// `text`.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub text: Option<Cow<'a, str>>,
    /// `image`, `document` (other block types may have a `source` of another shape).
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceField<'a>>,
    /// `tool_use`.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Cow<'a, str>>,
    /// `tool_use`.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Cow<'a, str>>,
    /// `tool_use`: the arguments object.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub input: Option<&'a RawValue>,
    /// `tool_result`.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub tool_use_id: Option<Cow<'a, str>>,
    /// `tool_result`: a string or blocks.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub content: Option<TextOr<'a, Block<'a>>>,
    /// `tool_result`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_error: Option<bool>,
    /// `thinking`.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<Cow<'a, str>>,
    /// `thinking`.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<Cow<'a, str>>,
    /// `redacted_thinking`.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Cow<'a, str>>,
    /// `document`.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub title: Option<Cow<'a, str>>,
}

/// A block's `source`: a media source, or something else (`search_result` has a string).
#[derive(Debug, Deserialize, Serialize)]
#[serde(untagged)]
pub enum SourceField<'a> {
    /// An image's or document's source.
    #[serde(borrow)]
    Media(Source<'a>),
    /// Any other shape.
    Other(serde_json::Value),
}

/// An image's or document's source.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct Source<'a> {
    /// `base64`, `url`, `text`, `file` …
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    /// `base64`, `text`.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<Cow<'a, str>>,
    /// `base64`, `text`.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Cow<'a, str>>,
    /// `url`.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub url: Option<Cow<'a, str>>,
}

/// A tool definition: a client tool (no `type`, or `custom`) or a server tool.
#[derive(Debug, Deserialize, Serialize)]
pub struct Tool<'a> {
    /// Absent or `custom` for client tools; `web_search_20250305`, `bash_20250124` … otherwise.
    #[serde(rename = "type", borrow, default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<Cow<'a, str>>,
    /// The tool's name.
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    /// What it does.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Cow<'a, str>>,
    /// JSON Schema of its input.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<&'a RawValue>,
}

/// `tool_choice`.
#[derive(Debug, Deserialize, Serialize)]
pub struct ToolChoice<'a> {
    /// `auto`, `any`, `tool`, `none`.
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    /// The tool, for `tool`.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Cow<'a, str>>,
    /// At most one tool call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_parallel_tool_use: Option<bool>,
}

/// `thinking`.
#[derive(Debug, Deserialize, Serialize)]
pub struct Thinking<'a> {
    /// `enabled`, `disabled`, `adaptive`.
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    /// Thinking budget, for `enabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_tokens: Option<u64>,
}

/// `metadata`.
#[derive(Debug, Deserialize, Serialize)]
pub struct Metadata<'a> {
    /// An opaque end-user id.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Cow<'a, str>>,
}

/// `output_config`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig<'a> {
    /// Structured output: `{"type": "json_schema", "schema": …}`.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub format: Option<&'a RawValue>,
    /// How much effort to spend (`low`, `medium`, `high`).
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub effort: Option<Cow<'a, str>>,
}

/// A whole Messages answer.
#[derive(Debug, Deserialize)]
pub struct Response<'a> {
    /// `msg_…`.
    #[serde(borrow, default)]
    pub id: Cow<'a, str>,
    /// The model that answered.
    #[serde(borrow, default)]
    pub model: Cow<'a, str>,
    /// The content blocks.
    #[serde(borrow, default)]
    pub content: Vec<Block<'a>>,
    /// Why it stopped.
    #[serde(borrow, default)]
    pub stop_reason: Option<Cow<'a, str>>,
    /// Usage.
    #[serde(default)]
    pub usage: Option<Usage>,
}

/// Usage as Anthropic counts it: `input_tokens` excludes cache reads and writes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub struct Usage {
    /// Uncached input.
    #[serde(default)]
    pub input_tokens: u64,
    /// Output, thinking included.
    #[serde(default)]
    pub output_tokens: u64,
    /// Input read from the cache.
    #[serde(default)]
    pub cache_read_input_tokens: Option<u64>,
    /// Input written to the cache.
    #[serde(default)]
    pub cache_creation_input_tokens: Option<u64>,
}

/// One stream event of any type, flat.
#[derive(Debug, Deserialize)]
pub struct Event<'a> {
    /// `message_start`, `content_block_start`, `content_block_delta`, `message_delta` …
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    /// `message_start`.
    #[serde(borrow, default)]
    pub message: Option<Response<'a>>,
    /// `content_block_*`.
    #[serde(default)]
    pub index: Option<usize>,
    /// `content_block_start`.
    #[serde(borrow, default)]
    pub content_block: Option<Block<'a>>,
    /// `content_block_delta`, `message_delta`.
    #[serde(borrow, default)]
    pub delta: Option<Delta<'a>>,
    /// `message_delta`: cumulative usage.
    #[serde(default)]
    pub usage: Option<Usage>,
}

/// A delta of any type, flat.
#[derive(Debug, Deserialize)]
pub struct Delta<'a> {
    /// `text_delta`, `input_json_delta`, `thinking_delta`, `signature_delta`, `citations_delta`;
    /// absent in `message_delta`.
    #[serde(rename = "type", borrow, default)]
    pub kind: Option<Cow<'a, str>>,
    /// `text_delta`.
    #[serde(borrow, default)]
    pub text: Option<Cow<'a, str>>,
    /// `input_json_delta`.
    #[serde(borrow, default)]
    pub partial_json: Option<Cow<'a, str>>,
    /// `thinking_delta`.
    #[serde(borrow, default)]
    pub thinking: Option<Cow<'a, str>>,
    /// `message_delta`.
    #[serde(borrow, default)]
    pub stop_reason: Option<Cow<'a, str>>,
}
