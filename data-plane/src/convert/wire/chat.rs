//! OpenAI Chat Completions: requests, answers and stream chunks.
use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::TextOr;
use crate::convert::ConvertError;

/// A Chat Completions request. Every top-level field is known: one that is not is refused by
/// name when converting to another protocol.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Request<'a> {
    /// The model.
    #[serde(borrow)]
    pub model: Cow<'a, str>,
    /// The conversation.
    #[serde(borrow)]
    pub messages: Vec<Message<'a>>,
    /// The output cap (older name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// The output cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u64>,
    /// Stop sequences: one string or several.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<TextOr<'a, Cow<'a, str>>>,
    /// Whether to stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Stream options (`include_usage`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Sampling temperature, copied as written.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<&'a RawValue>,
    /// Nucleus sampling, copied as written.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<&'a RawValue>,
    /// Top-k (not OpenAI's; vLLM, OpenRouter and others take it).
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<&'a RawValue>,
    /// Tool definitions.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool<'a>>>,
    /// `"auto"`, `"none"`, `"required"` or `{"type":"function","function":{"name":…}}`.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<&'a RawValue>,
    /// Whether several tool calls may come in one answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// Number of choices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u64>,
    /// An end-user id.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub user: Option<Cow<'a, str>>,
    /// An end-user id (the newer name).
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub safety_identifier: Option<Cow<'a, str>>,
    /// Reasoning effort: `minimal`, `low`, `medium`, `high` …
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<Cow<'a, str>>,
    /// `{"type":"text"|"json_object"|"json_schema", …}`.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<&'a RawValue>,
    /// Sampling seed.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<&'a RawValue>,
    /// Presence penalty.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<&'a RawValue>,
    /// Frequency penalty.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<&'a RawValue>,
    /// Token biases.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub logit_bias: Option<&'a RawValue>,
    /// Whether to return log probabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<bool>,
    /// How many log probabilities per token.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<&'a RawValue>,
    /// Whether OpenAI stores the completion.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub store: Option<&'a RawValue>,
    /// Tags for stored completions.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<&'a RawValue>,
    /// Priority tier.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<&'a RawValue>,
    /// Prompt-cache routing hint.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub prompt_cache_key: Option<&'a RawValue>,
    /// Output modalities.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub modalities: Option<Vec<Cow<'a, str>>>,
    /// Answer verbosity (`low`, `medium`, `high`).
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub verbosity: Option<Cow<'a, str>>,
}

/// `stream_options`.
#[derive(Debug, Default, Clone, Copy, Deserialize, Serialize)]
pub struct StreamOptions {
    /// Ask for a last chunk with the usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
}

/// One message.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct Message<'a> {
    /// `system`, `developer`, `user`, `assistant`, `tool`.
    #[serde(borrow)]
    pub role: Cow<'a, str>,
    /// A string or content parts; absent or null on assistant tool-call turns.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub content: Option<TextOr<'a, Part<'a>>>,
    /// A participant name.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Cow<'a, str>>,
    /// The assistant's tool calls.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall<'a>>>,
    /// The call a `tool` message answers.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<Cow<'a, str>>,
    /// The assistant's reasoning (DeepSeek, vLLM, Kimi, GLM).
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<Cow<'a, str>>,
    /// The assistant's reasoning (OpenRouter's name).
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<Cow<'a, str>>,
    /// The assistant's refusal.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<Cow<'a, str>>,
}

/// A content part of any type, flat.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct Part<'a> {
    /// `text`, `image_url`, `file`, `input_audio`, `refusal`.
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    /// `text`.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub text: Option<Cow<'a, str>>,
    /// `image_url`.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<ImageUrl<'a>>,
    /// `file`.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub file: Option<File<'a>>,
    /// `refusal`.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<Cow<'a, str>>,
}

/// An image: an `http(s)` URL or a `data:` URL.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct ImageUrl<'a> {
    /// The URL.
    #[serde(borrow)]
    pub url: Cow<'a, str>,
    /// `low`, `high`, `auto`.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<Cow<'a, str>>,
}

/// A file part.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct File<'a> {
    /// A `data:` URL.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub file_data: Option<Cow<'a, str>>,
    /// An uploaded file.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub file_id: Option<Cow<'a, str>>,
    /// Its name.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<Cow<'a, str>>,
}

/// A tool call made by the assistant.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct ToolCall<'a> {
    /// The call id, echoed by the `tool` message that answers it.
    #[serde(borrow, default)]
    pub id: Cow<'a, str>,
    /// `function`.
    #[serde(rename = "type", borrow, default = "function_kind")]
    pub kind: Cow<'a, str>,
    /// The function and its arguments.
    #[serde(borrow)]
    pub function: FunctionCall<'a>,
}

fn function_kind() -> Cow<'static, str> {
    Cow::Borrowed("function")
}

/// A called function.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct FunctionCall<'a> {
    /// Its name.
    #[serde(borrow, default)]
    pub name: Cow<'a, str>,
    /// Its arguments: a JSON object as a string.
    #[serde(borrow, default)]
    pub arguments: Cow<'a, str>,
}

/// A tool definition.
#[derive(Debug, Deserialize, Serialize)]
pub struct Tool<'a> {
    /// `function` (others, such as `custom`, are OpenAI's own).
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    /// The function.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub function: Option<Function<'a>>,
}

/// A function definition.
#[derive(Debug, Deserialize, Serialize)]
pub struct Function<'a> {
    /// Its name.
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    /// What it does.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Cow<'a, str>>,
    /// JSON Schema of its arguments.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<&'a RawValue>,
    /// Whether arguments must follow the schema exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// A whole Chat answer.
#[derive(Debug, Deserialize)]
pub struct Response<'a> {
    /// `chatcmpl-…`.
    #[serde(borrow, default)]
    pub id: Cow<'a, str>,
    /// When it was made (Unix seconds).
    #[serde(default)]
    pub created: Option<u64>,
    /// The model that answered.
    #[serde(borrow, default)]
    pub model: Cow<'a, str>,
    /// The choices (one: conversions never ask for more).
    #[serde(borrow, default)]
    pub choices: Vec<Choice<'a>>,
    /// Usage.
    #[serde(default)]
    pub usage: Option<Usage>,
}

impl<'a> Response<'a> {
    /// Reads an upstream's whole answer, which must have a choice: `choices[0]` is the answer
    /// (conversions ask for one).
    pub fn parse(body: &'a [u8]) -> Result<Response<'a>, ConvertError> {
        let response: Response<'a> = serde_json::from_slice(body)
            .map_err(|e| ConvertError::invalid("", format_args!("the upstream answer is not valid: {e}")))?;
        if response.choices.is_empty() {
            return Err(ConvertError::invalid("choices", "the upstream answer has no choice"));
        }
        Ok(response)
    }
}

impl Message<'_> {
    /// The assistant's reasoning, under either field name, if it has any.
    pub fn reasoning_text(&self) -> Option<&str> {
        self.reasoning_content.as_deref().or(self.reasoning.as_deref()).filter(|r| !r.is_empty())
    }
}

/// One choice of a whole answer.
#[derive(Debug, Deserialize)]
pub struct Choice<'a> {
    /// The answer.
    #[serde(borrow)]
    pub message: Message<'a>,
    /// Why it stopped.
    #[serde(borrow, default)]
    pub finish_reason: Option<Cow<'a, str>>,
}

/// Usage as OpenAI counts it: `prompt_tokens` includes the cached ones.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub struct Usage {
    /// Every prompt token.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Output, reasoning included.
    #[serde(default)]
    pub completion_tokens: u64,
    /// Prompt plus completion.
    #[serde(default)]
    pub total_tokens: u64,
    /// Cached prompt tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptDetails>,
    /// DeepSeek's cache reads (it reports them here instead of in `prompt_tokens_details`).
    #[serde(default, skip_serializing)]
    pub prompt_cache_hit_tokens: Option<u64>,
    /// Reasoning tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens_details: Option<CompletionDetails>,
}

/// `prompt_tokens_details`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub struct PromptDetails {
    /// Prompt tokens read from the cache.
    #[serde(default)]
    pub cached_tokens: Option<u64>,
}

/// `completion_tokens_details`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub struct CompletionDetails {
    /// Reasoning tokens.
    #[serde(default)]
    pub reasoning_tokens: Option<u64>,
}

/// One stream chunk.
#[derive(Debug, Deserialize)]
pub struct Chunk<'a> {
    /// The choices' deltas (empty in the usage chunk).
    #[serde(borrow, default)]
    pub choices: Vec<ChunkChoice<'a>>,
    /// Usage (the last chunk, when asked for; some upstreams put it on every chunk).
    #[serde(default)]
    pub usage: Option<Usage>,
    /// A mid-stream error.
    #[serde(borrow, default)]
    pub error: Option<&'a RawValue>,
}

/// One choice's delta.
#[derive(Debug, Deserialize)]
pub struct ChunkChoice<'a> {
    /// Which choice.
    #[serde(default)]
    pub index: u32,
    /// What it adds.
    #[serde(borrow, default)]
    pub delta: Option<Delta<'a>>,
    /// Why it stopped, on its last chunk.
    #[serde(borrow, default)]
    pub finish_reason: Option<Cow<'a, str>>,
}

/// What a chunk adds.
#[derive(Debug, Deserialize)]
pub struct Delta<'a> {
    /// Text.
    #[serde(borrow, default)]
    pub content: Option<Cow<'a, str>>,
    /// Reasoning (DeepSeek's name).
    #[serde(borrow, default)]
    pub reasoning_content: Option<Cow<'a, str>>,
    /// Reasoning (OpenRouter's name).
    #[serde(borrow, default)]
    pub reasoning: Option<Cow<'a, str>>,
    /// A refusal.
    #[serde(borrow, default)]
    pub refusal: Option<Cow<'a, str>>,
    /// Tool-call pieces.
    #[serde(borrow, default)]
    pub tool_calls: Option<Vec<ToolCallDelta<'a>>>,
}

/// A piece of a streamed tool call: only its first piece carries the id and name.
#[derive(Debug, Deserialize)]
pub struct ToolCallDelta<'a> {
    /// Which call.
    #[serde(default)]
    pub index: Option<u32>,
    /// The call id (first piece).
    #[serde(borrow, default)]
    pub id: Option<Cow<'a, str>>,
    /// Name (first piece) and an arguments fragment.
    #[serde(borrow, default)]
    pub function: Option<FunctionDelta<'a>>,
}

/// A function-call piece.
#[derive(Debug, Deserialize)]
pub struct FunctionDelta<'a> {
    /// The name (first piece).
    #[serde(borrow, default)]
    pub name: Option<Cow<'a, str>>,
    /// An arguments fragment (any split, mid-JSON included).
    #[serde(borrow, default)]
    pub arguments: Option<Cow<'a, str>>,
}
