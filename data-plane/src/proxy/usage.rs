//! Reading token usage from upstream answers: OpenAI chat/completions/embeddings bodies and
//! stream chunks, Responses API bodies and events, Anthropic messages and events — normalized
//! to the billing definitions of INTERFACE.md (`input` excludes cached and cache-write tokens);
//! and, for answers that report none, the text to count locally.
use bytes::Bytes;
use router_proto::TokenUsage;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
struct Details {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

/// The usage object of every protocol, with every field any of them uses.
#[derive(Debug, Default, Deserialize)]
struct RawUsage {
    // OpenAI chat / completions / embeddings.
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    prompt_tokens_details: Option<Details>,
    // DeepSeek reports its cache reads here instead of in `prompt_tokens_details`.
    prompt_cache_hit_tokens: Option<u64>,
    // Responses API and Anthropic.
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    input_tokens_details: Option<Details>,
    // Anthropic.
    cache_read_input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
}

/// Which protocol's definitions apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// OpenAI chat, completions, embeddings.
    OpenAi,
    /// OpenAI Responses API.
    Responses,
    /// Anthropic Messages.
    Anthropic,
}

impl RawUsage {
    fn normalize(&self, dialect: Dialect) -> TokenUsage {
        match dialect {
            Dialect::OpenAi => {
                let prompt = self.prompt_tokens.or(self.input_tokens).unwrap_or(0);
                let cached = self
                    .prompt_tokens_details
                    .as_ref()
                    .and_then(|d| d.cached_tokens)
                    .or(self.prompt_cache_hit_tokens)
                    .unwrap_or(0)
                    .min(prompt);
                TokenUsage {
                    input: prompt - cached,
                    cached_input: cached,
                    cache_write: 0,
                    output: self.completion_tokens.or(self.output_tokens).unwrap_or(0),
                }
            }
            Dialect::Responses => {
                let prompt = self.input_tokens.unwrap_or(0);
                let cached =
                    self.input_tokens_details.as_ref().and_then(|d| d.cached_tokens).unwrap_or(0).min(prompt);
                TokenUsage {
                    input: prompt - cached,
                    cached_input: cached,
                    cache_write: 0,
                    output: self.output_tokens.unwrap_or(0),
                }
            }
            Dialect::Anthropic => TokenUsage {
                input: self.input_tokens.unwrap_or(0),
                cached_input: self.cache_read_input_tokens.unwrap_or(0),
                cache_write: self.cache_creation_input_tokens.unwrap_or(0),
                output: self.output_tokens.unwrap_or(0),
            },
        }
    }
}

#[derive(Deserialize)]
struct WithUsage {
    usage: Option<RawUsage>,
}

/// Usage from a whole (non-streamed) JSON answer; `None` when it carries none.
pub fn from_body(body: &[u8], dialect: Dialect) -> Option<TokenUsage> {
    let parsed: WithUsage = serde_json::from_slice(body).ok()?;
    parsed.usage.map(|u| u.normalize(dialect))
}

/// What one stream event says about usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventUsage {
    /// Nothing.
    None,
    /// The whole usage (OpenAI's last chunk, Responses' `response.completed`).
    Total(TokenUsage),
    /// Anthropic's `message_start`: input side, output so far.
    Start(TokenUsage),
    /// Anthropic's `message_delta`: cumulative output (and input, if the upstream repeats it).
    Delta { output: u64, input: Option<TokenUsage> },
}

#[derive(Deserialize)]
struct AnthropicEvent {
    #[serde(rename = "type")]
    kind: Option<String>,
    message: Option<WithUsage>,
    usage: Option<RawUsage>,
    response: Option<WithUsage>,
}

/// Whether `data` might carry usage: a cheap scan that spares parsing most chunks.
fn mentions_usage(data: &[u8]) -> bool {
    let finder = memchr::memmem::find_iter(data, b"\"usage\"");
    for at in finder {
        let rest = &data[at + 7..];
        let value = rest.iter().find(|b| !(b.is_ascii_whitespace() || **b == b':'));
        if value == Some(&b'{') {
            return true;
        }
    }
    false
}

/// Usage carried by one stream event's `data` payload.
pub fn from_event(data: &[u8], dialect: Dialect) -> EventUsage {
    if !mentions_usage(data) {
        return EventUsage::None;
    }
    match dialect {
        Dialect::OpenAi => match serde_json::from_slice::<WithUsage>(data) {
            Ok(WithUsage { usage: Some(usage) }) => EventUsage::Total(usage.normalize(dialect)),
            _ => EventUsage::None,
        },
        Dialect::Responses => match serde_json::from_slice::<AnthropicEvent>(data) {
            Ok(AnthropicEvent { response: Some(WithUsage { usage: Some(usage) }), .. }) => {
                EventUsage::Total(usage.normalize(dialect))
            }
            _ => EventUsage::None,
        },
        Dialect::Anthropic => {
            let Ok(event) = serde_json::from_slice::<AnthropicEvent>(data) else { return EventUsage::None };
            match event.kind.as_deref() {
                Some("message_start") => match event.message.and_then(|m| m.usage) {
                    Some(usage) => EventUsage::Start(usage.normalize(dialect)),
                    None => EventUsage::None,
                },
                Some("message_delta") => match event.usage {
                    Some(usage) => {
                        let has_input = usage.input_tokens.is_some();
                        let normalized = usage.normalize(dialect);
                        EventUsage::Delta {
                            output: normalized.output,
                            input: has_input.then_some(normalized),
                        }
                    }
                    None => EventUsage::None,
                },
                _ => EventUsage::None,
            }
        }
    }
}

/// Accumulates usage over a stream's events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamUsage {
    usage: TokenUsage,
    seen: bool,
}

impl StreamUsage {
    /// Takes in one event's usage.
    pub fn observe(&mut self, event: EventUsage) {
        match event {
            EventUsage::None => {}
            EventUsage::Total(usage) | EventUsage::Start(usage) => {
                self.usage = usage;
                self.seen = true;
            }
            EventUsage::Delta { output, input } => {
                if let Some(input) = input {
                    self.usage.input = input.input;
                    self.usage.cached_input = input.cached_input;
                    self.usage.cache_write = input.cache_write;
                }
                self.usage.output = output;
                self.seen = true;
            }
        }
    }

    /// The usage reported, if any was.
    pub fn get(&self) -> Option<TokenUsage> {
        self.seen.then_some(self.usage)
    }
}

/// The text of an answer (stream payloads or a whole body), for counting tokens locally.
pub fn answer_text(raw: &[Bytes], dialect: Dialect) -> String {
    fn push_str(value: Option<&serde_json::Value>, text: &mut String) {
        if let Some(s) = value.and_then(serde_json::Value::as_str) {
            text.push_str(s);
        }
    }
    let mut text = String::new();
    for payload in raw {
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(payload) else { continue };
        match dialect {
            Dialect::OpenAi => {
                for choice in value["choices"].as_array().into_iter().flatten() {
                    push_str(choice.get("text"), &mut text);
                    for part in [&choice["delta"], &choice["message"]] {
                        push_str(part.get("content"), &mut text);
                        for call in part["tool_calls"].as_array().into_iter().flatten() {
                            push_str(call["function"].get("arguments"), &mut text);
                        }
                    }
                }
            }
            Dialect::Anthropic => {
                push_str(value["delta"].get("text"), &mut text);
                push_str(value["delta"].get("partial_json"), &mut text);
                for block in value["content"].as_array().into_iter().flatten() {
                    push_str(block.get("text"), &mut text);
                }
            }
            Dialect::Responses => {
                push_str(value.get("delta"), &mut text);
                push_str(value.get("output_text"), &mut text);
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_prompt_tokens_include_cached_ones() {
        let body = br#"{"id":"x","usage":{"prompt_tokens":100,"completion_tokens":20,"prompt_tokens_details":{"cached_tokens":30}}}"#;
        assert_eq!(
            from_body(body, Dialect::OpenAi),
            Some(TokenUsage { input: 70, cached_input: 30, cache_write: 0, output: 20 })
        );
        let deepseek = br#"{"usage":{"prompt_tokens":100,"completion_tokens":20,"prompt_cache_hit_tokens":64,"prompt_cache_miss_tokens":36}}"#;
        assert_eq!(
            from_body(deepseek, Dialect::OpenAi),
            Some(TokenUsage { input: 36, cached_input: 64, cache_write: 0, output: 20 })
        );
        let embeddings = br#"{"data":[],"usage":{"prompt_tokens":8,"total_tokens":8}}"#;
        assert_eq!(
            from_body(embeddings, Dialect::OpenAi),
            Some(TokenUsage { input: 8, ..TokenUsage::default() })
        );
        assert_eq!(from_body(br#"{"id":"x"}"#, Dialect::OpenAi), None);
        assert_eq!(from_body(b"not json", Dialect::OpenAi), None);
    }

    #[test]
    fn responses_input_tokens_include_cached_ones() {
        let body =
            br#"{"usage":{"input_tokens":50,"input_tokens_details":{"cached_tokens":10},"output_tokens":5}}"#;
        assert_eq!(
            from_body(body, Dialect::Responses),
            Some(TokenUsage { input: 40, cached_input: 10, cache_write: 0, output: 5 })
        );
        let event = br#"{"type":"response.completed","response":{"id":"r","usage":{"input_tokens":7,"output_tokens":3}}}"#;
        assert_eq!(
            from_event(event, Dialect::Responses),
            EventUsage::Total(TokenUsage { input: 7, output: 3, ..TokenUsage::default() })
        );
    }

    #[test]
    fn anthropic_input_tokens_exclude_cache_reads_and_writes() {
        let body = br#"{"usage":{"input_tokens":10,"cache_read_input_tokens":200,"cache_creation_input_tokens":50,"output_tokens":9}}"#;
        assert_eq!(
            from_body(body, Dialect::Anthropic),
            Some(TokenUsage { input: 10, cached_input: 200, cache_write: 50, output: 9 })
        );
        let mut stream = StreamUsage::default();
        stream.observe(from_event(br#"{"type":"message_start","message":{"usage":{"input_tokens":12,"cache_read_input_tokens":3,"output_tokens":1}}}"#, Dialect::Anthropic));
        stream.observe(from_event(
            br#"{"type":"content_block_delta","delta":{"text":"hi"}}"#,
            Dialect::Anthropic,
        ));
        stream.observe(from_event(
            br#"{"type":"message_delta","delta":{},"usage":{"output_tokens":42}}"#,
            Dialect::Anthropic,
        ));
        assert_eq!(stream.get(), Some(TokenUsage { input: 12, cached_input: 3, cache_write: 0, output: 42 }));
    }

    #[test]
    fn openai_stream_usage_is_in_the_last_chunk_only() {
        assert_eq!(
            from_event(br#"{"choices":[{"delta":{"content":"usage"}}],"usage":null}"#, Dialect::OpenAi),
            EventUsage::None
        );
        let last = br#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2}}"#;
        assert_eq!(
            from_event(last, Dialect::OpenAi),
            EventUsage::Total(TokenUsage { input: 5, output: 2, ..TokenUsage::default() })
        );
        assert!(mentions_usage(br#"{"usage" : {"a":1}}"#));
        assert!(!mentions_usage(br#"{"text":"\"usage\" is a word"}"#));
    }

    #[test]
    fn extracts_answer_text_per_dialect() {
        let openai = [
            Bytes::from_static(br#"{"choices":[{"delta":{"content":"Hel"}}]}"#),
            Bytes::from_static(br#"{"choices":[{"delta":{"content":"lo"}}]}"#),
        ];
        assert_eq!(answer_text(&openai, Dialect::OpenAi), "Hello");
        let anthropic = [Bytes::from_static(
            br#"{"type":"content_block_delta","delta":{"type":"text_delta","text":"Hi"}}"#,
        )];
        assert_eq!(answer_text(&anthropic, Dialect::Anthropic), "Hi");
        let responses = [Bytes::from_static(br#"{"type":"response.output_text.delta","delta":"Yo"}"#)];
        assert_eq!(answer_text(&responses, Dialect::Responses), "Yo");
    }
}
