//! OpenAI Responses API: requests (what a Chat upstream can be given). Answers and stream
//! events are written by the converter itself.
use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::TextOr;

/// A Responses request. Every top-level field is known: one that is not is refused by name.
/// Fields the conversion drops are read only to be accepted.
#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request<'a> {
    /// The model.
    #[serde(borrow)]
    pub model: Cow<'a, str>,
    /// A string (one user message) or input items.
    #[serde(borrow, default)]
    pub input: Option<TextOr<'a, Item<'a>>>,
    /// The system prompt.
    #[serde(borrow, default)]
    pub instructions: Option<Cow<'a, str>>,
    /// Tool definitions.
    #[serde(borrow, default)]
    pub tools: Option<Vec<Tool<'a>>>,
    /// `"auto"`, `"none"`, `"required"` or an object naming a tool.
    #[serde(borrow, default)]
    pub tool_choice: Option<&'a RawValue>,
    /// Whether several tool calls may come in one answer.
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    /// The output cap.
    #[serde(default)]
    pub max_output_tokens: Option<u64>,
    /// Sampling temperature, copied as written.
    #[serde(borrow, default)]
    pub temperature: Option<&'a RawValue>,
    /// Nucleus sampling, copied as written.
    #[serde(borrow, default)]
    pub top_p: Option<&'a RawValue>,
    /// Whether to stream.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Whether OpenAI keeps the response.
    #[serde(default)]
    pub store: Option<bool>,
    /// Extra output to include.
    #[serde(borrow, default)]
    pub include: Option<Vec<Cow<'a, str>>>,
    /// Prompt-cache routing hint.
    #[serde(borrow, default)]
    pub prompt_cache_key: Option<&'a RawValue>,
    /// How long OpenAI keeps the prompt cache.
    #[serde(borrow, default)]
    pub prompt_cache_retention: Option<&'a RawValue>,
    /// Reasoning options (`effort`, `summary`).
    #[serde(borrow, default)]
    pub reasoning: Option<&'a RawValue>,
    /// Text output options (`format`, `verbosity`).
    #[serde(borrow, default)]
    pub text: Option<TextOptions<'a>>,
    /// A stored response to continue from.
    #[serde(borrow, default)]
    pub previous_response_id: Option<Cow<'a, str>>,
    /// A stored conversation to continue.
    #[serde(borrow, default)]
    pub conversation: Option<&'a RawValue>,
    /// A stored prompt template.
    #[serde(borrow, default)]
    pub prompt: Option<&'a RawValue>,
    /// Run in the background.
    #[serde(default)]
    pub background: Option<bool>,
    /// Tags for the stored response.
    #[serde(borrow, default)]
    pub metadata: Option<&'a RawValue>,
    /// An end-user id.
    #[serde(borrow, default)]
    pub user: Option<&'a RawValue>,
    /// An end-user id (the newer name).
    #[serde(borrow, default)]
    pub safety_identifier: Option<&'a RawValue>,
    /// Priority tier.
    #[serde(borrow, default)]
    pub service_tier: Option<&'a RawValue>,
    /// `auto` or `disabled`.
    #[serde(borrow, default)]
    pub truncation: Option<Cow<'a, str>>,
    /// Log probabilities per token.
    #[serde(borrow, default)]
    pub top_logprobs: Option<&'a RawValue>,
    /// Stream options (`include_obfuscation`).
    #[serde(borrow, default)]
    pub stream_options: Option<&'a RawValue>,
    /// Most tool calls in one response.
    #[serde(borrow, default)]
    pub max_tool_calls: Option<&'a RawValue>,
    /// Codex's telemetry ids.
    #[serde(borrow, default)]
    pub client_metadata: Option<&'a RawValue>,
}

/// `text` (`verbosity` is read only to be accepted).
#[allow(dead_code)]
#[derive(Debug, Deserialize)]
pub struct TextOptions<'a> {
    /// `{"type":"text"}`, `{"type":"json_object"}` or `{"type":"json_schema", …}`.
    #[serde(borrow, default)]
    pub format: Option<&'a RawValue>,
    /// `low`, `medium`, `high`.
    #[serde(borrow, default)]
    pub verbosity: Option<Cow<'a, str>>,
}

/// An input item of any type, flat.
#[derive(Debug, Deserialize)]
pub struct Item<'a> {
    /// `message` (or absent, with a `role`), `function_call`, `function_call_output`,
    /// `custom_tool_call`, `custom_tool_call_output`, `reasoning`, `web_search_call` …
    #[serde(rename = "type", borrow, default)]
    pub kind: Option<Cow<'a, str>>,
    /// Messages.
    #[serde(borrow, default)]
    pub role: Option<Cow<'a, str>>,
    /// Messages: a string or parts; reasoning: `reasoning_text` parts.
    #[serde(borrow, default)]
    pub content: Option<TextOr<'a, Part<'a>>>,
    /// Calls.
    #[serde(borrow, default)]
    pub call_id: Option<Cow<'a, str>>,
    /// Calls.
    #[serde(borrow, default)]
    pub name: Option<Cow<'a, str>>,
    /// `function_call`.
    #[serde(borrow, default)]
    pub arguments: Option<Cow<'a, str>>,
    /// `custom_tool_call`.
    #[serde(borrow, default)]
    pub input: Option<Cow<'a, str>>,
    /// Call outputs: a string or parts.
    #[serde(borrow, default)]
    pub output: Option<TextOr<'a, Part<'a>>>,
    /// `reasoning`.
    #[serde(borrow, default)]
    pub summary: Option<Vec<Part<'a>>>,
}

/// A content part of any type, flat.
#[derive(Debug, Deserialize)]
pub struct Part<'a> {
    /// `input_text`, `output_text`, `input_image`, `input_file`, `refusal`, `summary_text`,
    /// `reasoning_text`.
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    /// Text parts.
    #[serde(borrow, default)]
    pub text: Option<Cow<'a, str>>,
    /// `refusal`.
    #[serde(borrow, default)]
    pub refusal: Option<Cow<'a, str>>,
    /// `input_image`: a URL or a `data:` URL.
    #[serde(borrow, default)]
    pub image_url: Option<Cow<'a, str>>,
    /// `input_image`: `low`, `high`, `auto`.
    #[serde(borrow, default)]
    pub detail: Option<Cow<'a, str>>,
    /// `input_file`: a `data:` URL.
    #[serde(borrow, default)]
    pub file_data: Option<Cow<'a, str>>,
    /// `input_file`.
    #[serde(borrow, default)]
    pub filename: Option<Cow<'a, str>>,
}

/// A tool definition of any type, flat.
#[derive(Debug, Deserialize)]
pub struct Tool<'a> {
    /// `function`, `custom`, `namespace`, `web_search`, `file_search` …
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    /// `function`, `custom`, `namespace`.
    #[serde(borrow, default)]
    pub name: Option<Cow<'a, str>>,
    /// What it does.
    #[serde(borrow, default)]
    pub description: Option<Cow<'a, str>>,
    /// `function`: JSON Schema of its arguments.
    #[serde(borrow, default)]
    pub parameters: Option<&'a RawValue>,
    /// `function`.
    #[serde(default)]
    pub strict: Option<bool>,
    /// `custom`: `{"type":"text"}` or a grammar.
    #[serde(borrow, default)]
    pub format: Option<&'a RawValue>,
    /// `namespace`: its tools.
    #[serde(borrow, default)]
    pub tools: Option<Vec<Tool<'a>>>,
}
