//! OpenAI Chat Completions clients (the openai SDK, most apps) on Anthropic Messages
//! upstreams.
//!
//! What converts: `system` and `developer` messages → the top-level `system` (in order,
//! wherever they stand: Messages has no system turns); `user` text, images (`data:` URL →
//! base64, else URL) and PDF files (`file_data`) → blocks; assistant text and `tool_calls` →
//! `text` and `tool_use` blocks (ids kept, arguments parsed into `input`); `tool` messages →
//! `tool_result` blocks, consecutive ones in one user turn; `tools` (functions) →
//! tools with `input_schema`; `tool_choice` (`auto`, `none`, `required` → `any`, a named
//! function → `tool`) and `parallel_tool_calls: false` → `disable_parallel_tool_use`;
//! `max_completion_tokens` / `max_tokens` → `max_tokens` (required by Anthropic: the model's
//! `max_output_tokens`, or 4096 when it has none, when the client gives none);
//! `stop` → `stop_sequences`; `temperature`, `top_p`, `top_k`; `reasoning_effort` → `thinking`
//! with a budget (`low` 1024, `medium` 4096, `high` 16384 tokens, below `max_tokens`; `none` and
//! `minimal` → no thinking); `user` / `safety_identifier` → `metadata.user_id`; `stream`.
//!
//! Refused (a [`ConvertError`](super::ConvertError) naming the field): `n` above 1,
//! `logprobs`, `top_logprobs`, a non-empty `logit_bias`, non-zero `presence_penalty` /
//! `frequency_penalty`, `response_format` other than `text`, audio output (`modalities`),
//! tools other than functions, audio input, files by id, `function` messages, unknown
//! top-level fields (`functions`, `audio`, `prediction`, `web_search_options` …).
//!
//! Dropped, because nothing the answer depends on is lost:
//! - `reasoning_content` on assistant messages: Anthropic takes back only thinking blocks with
//!   Anthropic's signature, which a Chat client never has (and it ignores earlier turns'
//!   thinking anyway); for the same reason thinking is not asked for on a request that
//!   continues a tool call (its last message is a `tool` result), where Anthropic would demand
//!   the signed thinking of the turn being continued;
//! - `name` on messages: Messages has no participant names;
//! - `strict` on tools: Anthropic follows a tool's schema without it;
//! - `seed`: best-effort determinism that OpenAI does not guarantee either;
//! - `store`, `metadata`, `service_tier`, `prompt_cache_key`, `verbosity`: storage, tags,
//!   scheduling and routing hints of OpenAI's own, and a length hint.
//!
//! The answer: `text` blocks → `content`, `thinking` → `reasoning_content` (signatures and
//! `redacted_thinking` are dropped: Chat has nowhere to carry them), `tool_use` →
//! `tool_calls`; `stop_reason` → `finish_reason` (`end_turn`, `stop_sequence`, `pause_turn` →
//! `stop`, `max_tokens` and `model_context_window_exceeded` → `length`, `tool_use` →
//! `tool_calls`, `refusal` → `content_filter`); usage with every prompt token (uncached, cache
//! reads and cache writes) in `prompt_tokens` and the reads in `cached_tokens`. A stream ends
//! with a usage chunk when the client asked for one (`stream_options.include_usage`).
mod answer;
mod request;
mod stream;

pub use answer::answer;
pub use request::request;
pub use stream::{Stream, stream};

/// The Messages `stop_reason` → the Chat `finish_reason`.
pub fn finish_reason(stop: Option<&str>) -> &'static str {
    match stop {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        _ => "stop",
    }
}

/// Whether a request asks for a usage chunk at the end of its stream.
pub fn include_usage(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Options {
        stream_options: Option<crate::convert::wire::chat::StreamOptions>,
    }
    serde_json::from_slice::<Options>(body)
        .ok()
        .and_then(|o| o.stream_options)
        .and_then(|o| o.include_usage)
        .unwrap_or(false)
}
