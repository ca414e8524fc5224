//! Usage mapped between protocols exactly as the data plane bills it (`proxy/usage.rs`):
//! OpenAI's `prompt_tokens` includes the cached tokens, Anthropic's `input_tokens` excludes
//! cache reads and cache writes.
use super::wire::{chat, messages};

/// OpenAI-counted usage → Anthropic's: `input_tokens` = prompt − cached.
pub fn chat_to_messages(usage: &chat::Usage) -> messages::Usage {
    let cached = cached_tokens(usage);
    messages::Usage {
        input_tokens: usage.prompt_tokens - cached,
        output_tokens: usage.completion_tokens,
        cache_read_input_tokens: Some(cached),
        cache_creation_input_tokens: Some(0),
    }
}

/// Anthropic-counted usage → OpenAI's: every prompt token (uncached, cache reads, cache writes)
/// in `prompt_tokens`, the reads in `cached_tokens`.
pub fn messages_to_chat(usage: &messages::Usage) -> chat::Usage {
    let read = usage.cache_read_input_tokens.unwrap_or(0);
    let prompt = usage.input_tokens + read + usage.cache_creation_input_tokens.unwrap_or(0);
    chat::Usage {
        prompt_tokens: prompt,
        completion_tokens: usage.output_tokens,
        total_tokens: prompt + usage.output_tokens,
        prompt_tokens_details: Some(chat::PromptDetails { cached_tokens: Some(read) }),
        prompt_cache_hit_tokens: None,
        completion_tokens_details: None,
    }
}

/// The cached prompt tokens, never more than the prompt (as billing bounds them).
pub fn cached_tokens(usage: &chat::Usage) -> u64 {
    usage
        .prompt_tokens_details
        .and_then(|d| d.cached_tokens)
        .or(usage.prompt_cache_hit_tokens)
        .unwrap_or(0)
        .min(usage.prompt_tokens)
}

/// The reasoning tokens an OpenAI usage reports (part of the completion tokens).
pub fn reasoning_tokens(usage: &chat::Usage) -> u64 {
    usage.completion_tokens_details.and_then(|d| d.reasoning_tokens).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use router_proto::TokenUsage;

    use super::*;
    use crate::proxy::usage::{Dialect, from_body};

    /// The client's figures, read back the way billing reads the upstream's, give the same bill.
    #[test]
    fn mapped_usage_bills_what_the_upstream_usage_bills() {
        let upstream = br#"{"usage":{"prompt_tokens":1200,"completion_tokens":80,"prompt_tokens_details":{"cached_tokens":1000}}}"#;
        let billed = from_body(upstream, Dialect::OpenAi).expect("usage");
        let parsed: chat::Usage = serde_json::from_value(
            serde_json::from_slice::<serde_json::Value>(upstream).expect("json")["usage"].clone(),
        )
        .expect("usage");
        let client = serde_json::json!({"usage": chat_to_messages(&parsed)}).to_string();
        assert_eq!(from_body(client.as_bytes(), Dialect::Anthropic), Some(billed));
        assert_eq!(billed, TokenUsage { input: 200, cached_input: 1000, cache_write: 0, output: 80 });

        let upstream = messages::Usage {
            input_tokens: 10,
            output_tokens: 9,
            cache_read_input_tokens: Some(200),
            cache_creation_input_tokens: Some(50),
        };
        let chat = messages_to_chat(&upstream);
        assert_eq!((chat.prompt_tokens, chat.total_tokens), (260, 269));
        let client = serde_json::json!({"usage": chat}).to_string();
        let seen = from_body(client.as_bytes(), Dialect::OpenAi).expect("usage");
        // The client sees cache writes as ordinary prompt tokens: same total input.
        assert_eq!((seen.input + seen.cached_input, seen.cached_input, seen.output), (260, 200, 9));
    }

    #[test]
    fn deepseek_cache_hits_are_cached_tokens_on_both_sides() {
        let upstream = br#"{"usage":{"prompt_tokens":100,"completion_tokens":7,"prompt_cache_hit_tokens":64,"prompt_cache_miss_tokens":36}}"#;
        let billed = from_body(upstream, Dialect::OpenAi).expect("usage");
        let parsed: chat::Usage = serde_json::from_value(
            serde_json::from_slice::<serde_json::Value>(upstream).expect("json")["usage"].clone(),
        )
        .expect("usage");
        let client = serde_json::json!({"usage": chat_to_messages(&parsed)}).to_string();
        assert_eq!(from_body(client.as_bytes(), Dialect::Anthropic), Some(billed));
        assert_eq!(billed.cached_input, 64);
    }

    #[test]
    fn cached_tokens_never_exceed_the_prompt() {
        let usage = chat::Usage {
            prompt_tokens: 5,
            prompt_tokens_details: Some(chat::PromptDetails { cached_tokens: Some(9) }),
            ..chat::Usage::default()
        };
        assert_eq!(chat_to_messages(&usage).input_tokens, 0);
        assert_eq!(chat_to_messages(&usage).cache_read_input_tokens, Some(5));
    }
}
