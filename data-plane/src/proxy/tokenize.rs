//! Local token counting with a real tokenizer (tiktoken's o200k_base), for answers whose
//! upstream reports no usage and for streams cut short. Loaded once, before `/readyz` is ready.
use std::sync::OnceLock;

use tiktoken_rs::CoreBPE;

static ENCODING: OnceLock<CoreBPE> = OnceLock::new();

/// Loads the tokenizer (a few hundred milliseconds; run it off the async threads).
pub fn load() -> anyhow::Result<()> {
    if ENCODING.get().is_none() {
        let bpe = tiktoken_rs::o200k_base().map_err(|e| anyhow::anyhow!("cannot load the tokenizer: {e}"))?;
        let _ = ENCODING.set(bpe);
    }
    Ok(())
}

/// Whether the tokenizer is loaded.
pub fn is_loaded() -> bool {
    ENCODING.get().is_some()
}

/// Tokens in `text` (a byte-length bound if the tokenizer is somehow not loaded).
pub fn count(text: &str) -> u64 {
    match ENCODING.get() {
        Some(bpe) => bpe.encode_ordinary(text).len() as u64,
        None => text.len() as u64,
    }
}

fn walk(value: &serde_json::Value, text: &mut String) {
    match value {
        serde_json::Value::String(s) => {
            text.push_str(s);
            text.push('\n');
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, text)),
        serde_json::Value::Object(map) => map.values().for_each(|v| walk(v, text)),
        _ => {}
    }
}

/// Tokens in every string of a JSON document (keys excluded): the prompt side of a request.
pub fn count_json_strings(json: &[u8]) -> u64 {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(json) else { return json.len() as u64 };
    let mut text = String::new();
    walk(&value, &mut text);
    count(&text)
}

/// Tokens of a Messages request's prompt — every string of its `system`, `messages` and
/// `tools` — for `count_tokens` answered locally.
pub fn count_prompt(json: &[u8]) -> u64 {
    let Ok(serde_json::Value::Object(request)) = serde_json::from_slice::<serde_json::Value>(json) else {
        return 0;
    };
    let mut text = String::new();
    for part in ["system", "messages", "tools"] {
        if let Some(value) = request.get(part) {
            walk(value, &mut text);
        }
    }
    count(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_real_tokens() {
        load().expect("tokenizer");
        assert_eq!(count(""), 0);
        assert_eq!(count("hello world"), 2);
        let n = count_json_strings(br#"{"model":"m","messages":[{"role":"user","content":"hello world"}]}"#);
        assert!((4..=8).contains(&n), "{n}");
        // The prompt alone: the model's name and roles are not part of it.
        let prompt = br#"{"model":"claude-sonnet-4","system":"hello world","messages":[{"role":"user","content":[{"type":"text","text":"hello world"}]}]}"#;
        let n = count_prompt(prompt);
        assert!(n >= 4 && n < count_json_strings(prompt), "{n}");
        assert_eq!(count_prompt(b"not json"), 0);
    }
}
