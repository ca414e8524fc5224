//! Anthropic Messages clients (Claude Code, the anthropic SDK) on OpenAI Chat Completions
//! upstreams (DeepSeek, OpenRouter, vLLM, Kimi, GLM …).
//!
//! What converts: `system` (string or text blocks, joined) → a `system` message; `messages`
//! with text, images (base64 → `data:` URL, URL → URL), PDF documents (base64 → a `file` part)
//! and plain-text documents; `tool_use` → `tool_calls` (ids kept, `input` as the arguments
//! string); `tool_result` → `tool` messages (ids kept; images in a result follow in a `user`
//! message, since a Chat `tool` message holds only text); `thinking` → the assistant's
//! `reasoning_content`; `tools` → functions; `tool_choice` (`auto`, `any` → `required`,
//! `tool` → a named function, `none`; `disable_parallel_tool_use` → `parallel_tool_calls:
//! false`); `stop_sequences` → `stop`; `max_tokens` (capped at the model's
//! `max_output_tokens` when one is set); `temperature`, `top_p`, `top_k`;
//! `output_config.format` / `output_format` (JSON schema) → `response_format`.
//!
//! Refused (a [`ConvertError`](super::ConvertError) naming the field): Anthropic server tools
//! (`web_search_*`, `code_execution_*`, `bash_*`, `text_editor_*`, `computer_*` …: their
//! schema and execution live at Anthropic), server-tool blocks in the history, documents by
//! URL or file id, unknown block types, unknown top-level fields (`mcp_servers`, `container` …).
//!
//! Dropped, because nothing the answer depends on is lost:
//! - `cache_control` on any block or tool: a caching hint; OpenAI-compatible upstreams cache
//!   prompts by themselves, and billing reads their own cache counts;
//! - `metadata` (`user_id`): an opaque id for abuse tracking, not an input to the model;
//! - `context_management`: server-side editing that only *removes* old thinking or tool
//!   results from the context; without it the upstream sees the whole conversation the client
//!   sent;
//! - `service_tier`: scheduling priority;
//! - `thinking` and `output_config.effort`: Chat has no common switch or budget for reasoning —
//!   whether a Chat model reasons is the model's own (`deepseek-reasoner`, `*-thinking`), and
//!   its `reasoning_content` comes back as `thinking` blocks either way;
//! - `redacted_thinking` blocks and thinking `signature`s: opaque to anyone but Anthropic;
//! - `is_error` on a tool result: Chat has no such flag; the result's text is sent as is
//!   (Claude Code's error results say so in their text).
//!
//! The answer: `reasoning_content` (or OpenRouter's `reasoning`) → a `thinking` block with no
//! `signature` (none is ever invented: a Messages client resends the block, and it converts
//! back into `reasoning_content`); text and refusals → `text`; `tool_calls` → `tool_use`
//! blocks; `finish_reason` → `stop_reason` (`stop` → `end_turn`, `length` → `max_tokens`,
//! `tool_calls` → `tool_use`, `content_filter` → `refusal`); usage with `input_tokens` =
//! prompt − cached and the cached in `cache_read_input_tokens`.
mod answer;
mod request;
mod stream;

pub use answer::answer;
pub use request::{compact_json, request};
pub use stream::{Stream, stream};

/// The Chat `finish_reason` → the Messages `stop_reason`.
pub fn stop_reason(finish: Option<&str>, has_tool_calls: bool) -> &'static str {
    match finish {
        Some("length" | "max_tokens" | "insufficient_system_resource") => "max_tokens",
        Some("content_filter") => "refusal",
        Some("tool_calls" | "function_call") => "tool_use",
        _ if has_tool_calls => "tool_use",
        Some("stop_sequence") => "stop_sequence",
        _ => "end_turn",
    }
}
