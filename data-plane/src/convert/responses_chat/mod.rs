//! OpenAI Responses clients (Codex CLI, the openai SDK's Responses API) on Chat Completions
//! upstreams that lack `/responses`.
//!
//! What converts: `instructions` → a `system` message; `input` (a string, or items): messages
//! (`developer` → `system`, since few Chat servers know `developer`) with text, images by URL
//! or `data:` URL and files by `file_data`; `function_call` / `function_call_output` →
//! assistant `tool_calls` / `tool` messages (call ids kept); `reasoning` items (summary and
//! reasoning text) → the assistant's `reasoning_content`; tools: `function` (with `strict`),
//! `custom` (free-form, e.g. Codex's `apply_patch`) → a function taking one string `input`
//! whose calls go back as `custom_tool_call` items with the decoded input, `namespace` →
//! its tools, flattened; `tool_choice`, `parallel_tool_calls`, `max_output_tokens` →
//! `max_tokens` (capped at the model's `max_output_tokens`), `temperature`, `top_p`,
//! `text.format` → `response_format`; `stream` (with `stream_options.include_usage`).
//!
//! Refused (a [`ConvertError`](super::ConvertError) naming the field): `previous_response_id`
//! and `conversation` (state a stateless Chat upstream does not keep: send the history in
//! `input`), `prompt` templates, `background: true`, `max_tool_calls`, `top_logprobs`,
//! `include` values other than `reasoning.encrypted_content`, files by id or URL, tools other
//! than those above (`file_search`, `code_interpreter`, `computer_use_preview`, `mcp`,
//! `image_generation`, `local_shell` …), input items of other types, unknown top-level fields.
//!
//! Dropped, because nothing the answer depends on is lost:
//! - `web_search` tools: run by OpenAI's servers, never by the client, so a Chat upstream has
//!   no search to offer; Codex sends one with every request (refusing it would make Codex
//!   unusable on every Chat upstream), and without it the model answers from what it knows —
//!   no call is ever made that could not be served. `web_search_call` items in the history are
//!   dropped too: their findings are in the assistant text after them, which is kept;
//! - `store`: the gateway keeps no responses (so a later `previous_response_id` is refused);
//! - `include: ["reasoning.encrypted_content"]`: OpenAI's encrypted reasoning exists only on
//!   OpenAI; reasoning comes back as summary text, which Codex shows and resends;
//! - `reasoning` (`effort`, `summary`) and `text.verbosity`: Chat has no common knob for them
//!   (whether and how long a Chat model reasons is the model's own); its reasoning is returned
//!   as a `reasoning` item either way;
//! - `prompt_cache_key`, `prompt_cache_retention`: cache routing hints (the data plane uses the
//!   key for session affinity before converting);
//! - `metadata`, `user`, `safety_identifier`, `client_metadata`: ids and tags for OpenAI's own
//!   records, not inputs to the model; `service_tier`, `truncation`, `stream_options`.
//!
//! The answer: `reasoning_content` → a `reasoning` item (summary text), text and refusals →
//! a `message` item, tool calls → `function_call` / `custom_tool_call` items; `finish_reason`
//! `length` → status `incomplete` (`max_output_tokens`), `content_filter` → `incomplete`
//! (`content_filter`), else `completed`; usage with every prompt token in `input_tokens` and
//! the cached ones in `input_tokens_details.cached_tokens`.
mod answer;
mod custom;
mod output;
mod request;
mod stream;

pub use answer::answer;
pub use request::{custom_tools, request};
pub use stream::{Stream, stream};
