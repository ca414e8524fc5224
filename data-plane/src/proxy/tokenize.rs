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

/// Tokens in every string of a JSON document (keys excluded): the prompt side of a request.
pub fn count_json_strings(json: &[u8]) -> u64 {
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
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(json) else { return json.len() as u64 };
    let mut text = String::new();
    walk(&value, &mut text);
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
    }
}
