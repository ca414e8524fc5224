//! Local token counting with a real tokenizer (tiktoken's o200k_base), for answers whose
//! upstream reports no usage and for streams cut short. Loaded once, before `/readyz` is ready.
//!
//! Counting is bounded in CPU per call (INTERFACE.md, "Hostile clients and lying upstreams"):
//! the tokenizer is given text in pieces (its pre-split regex is slow on long runs of one
//! character class, and a piece bounds such a run), at most [`MAX_COUNTED_BYTES`] of it; the
//! tokens of any text beyond that are extrapolated from the rate of the counted part. Callers
//! on the async threads run it through [`off_the_workers`].
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

/// Most bytes of one text counted exactly; the rest is extrapolated.
pub const MAX_COUNTED_BYTES: usize = 1 << 20;
/// Bytes the tokenizer is given at a time.
const PIECE_BYTES: usize = 16 << 10;

/// Tokens in `text`: counted exactly up to [`MAX_COUNTED_BYTES`], extrapolated (rounded up)
/// beyond; half its byte length if the tokenizer is somehow not loaded.
pub fn count(text: &str) -> u64 {
    let Some(bpe) = ENCODING.get() else { return (text.len() as u64).div_ceil(2) };
    let counted = floor_boundary(text, MAX_COUNTED_BYTES);
    let mut tokens = 0u64;
    let mut start = 0;
    while start < counted {
        let end = piece_end(text, start, counted);
        tokens += bpe.encode_ordinary(&text[start..end]).len() as u64;
        start = end;
    }
    if counted == text.len() || counted == 0 {
        return tokens;
    }
    // The same rate of tokens per byte over the rest.
    let total = u128::from(tokens) * text.len() as u128;
    u64::try_from(total.div_ceil(counted as u128)).unwrap_or(u64::MAX)
}

/// Where the piece starting at `start` ends: before the last space or newline of its final
/// stretch when there is one (the tokenizer joins a space to the word after it, so words are
/// not cut), at a character boundary in any case.
fn piece_end(text: &str, start: usize, limit: usize) -> usize {
    if limit - start <= PIECE_BYTES {
        return limit;
    }
    let hard = floor_boundary(text, start + PIECE_BYTES);
    let stretch = &text.as_bytes()[hard.saturating_sub(256).max(start)..hard];
    let end = match memchr::memrchr2(b' ', b'\n', stretch) {
        Some(at) => hard - stretch.len() + at,
        None => hard,
    };
    // A piece always advances, even over one character longer than a piece.
    if end > start { end } else { ceil_boundary(text, start + 1) }
}

/// The last character boundary of `text` at or before `at` (`str::floor_char_boundary`,
/// newer than the workspace's MSRV).
fn floor_boundary(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// The first character boundary of `text` at or after `at`.
fn ceil_boundary(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at += 1;
    }
    at
}

/// Runs `count` (CPU-bound) without holding up the other connections of this worker thread:
/// on the multi-threaded runtime the worker hands its other tasks over while it counts; anywhere
/// else (tests on a current-thread runtime) it simply runs.
pub fn off_the_workers<T>(count: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(count)
        }
        _ => count(),
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
/// A document that cannot be read as JSON is counted as text. Never more than one token per
/// two bytes of `json`: the request's input estimate (INTERFACE.md), which no honest prompt
/// exceeds.
pub fn count_json_strings(json: &[u8]) -> u64 {
    let bound = (json.len() as u64).div_ceil(2);
    let counted = match serde_json::from_slice::<serde_json::Value>(json) {
        Ok(value) => {
            let mut text = String::new();
            walk(&value, &mut text);
            count(&text)
        }
        Err(_) => count(&String::from_utf8_lossy(json)),
    };
    counted.min(bound)
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

    #[test]
    fn pieces_keep_the_count_and_bound_the_work() {
        load().expect("tokenizer");
        // Pieces end before a space: the count of ordinary text is what one call gives.
        let sentence = "The quick brown fox jumps over the lazy dog. ";
        let text = sentence.repeat(3 * PIECE_BYTES / sentence.len());
        let whole = ENCODING.get().expect("loaded").encode_ordinary(&text).len() as u64;
        assert_eq!(count(&text), whole);
        // Multi-byte characters are never cut, whatever the boundaries.
        let wide = "汉字テキスト".repeat(PIECE_BYTES / 6);
        assert!(count(&wide) > 0);
        // Beyond the counted bytes the rate is extrapolated: twice the text, twice the tokens.
        let long = sentence.repeat(MAX_COUNTED_BYTES / sentence.len());
        let longer = format!("{long}{long}");
        let (one, two) = (count(&long), count(&longer));
        assert!(two.abs_diff(2 * one) <= 2, "{one} then {two}");
        // A hostile prompt (16 MiB of spaces) is tokenized only as far as the counted bytes:
        // its count is exactly sixteen times theirs.
        let spaces = " ".repeat(16 * MAX_COUNTED_BYTES);
        let counted = count(&spaces[..MAX_COUNTED_BYTES]);
        assert!(counted > 0);
        assert_eq!(count(&spaces), 16 * counted);
    }

    /// With one worker thread, a count that waits for another task can only finish if the
    /// worker was handed over: without it, this test would wait forever (and fails at its
    /// deadline instead).
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn counting_hands_the_worker_over() {
        let counted = tokio::spawn(async {
            let (tell, told) = std::sync::mpsc::channel::<()>();
            // Queued on this very worker, behind the count.
            let other = tokio::spawn(async move { tell.send(()).expect("the counter waits") });
            let ran = off_the_workers(|| told.recv_timeout(std::time::Duration::from_secs(20)).is_ok());
            other.await.expect("joins");
            ran
        });
        assert!(counted.await.expect("joins"), "the other task never ran while counting");
    }

    #[test]
    fn local_counts_never_exceed_the_input_estimate() {
        load().expect("tokenizer");
        // JSON the parser refuses (nested too deep) is counted as text, not a token per byte.
        let deep = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
        assert!(count_json_strings(deep.as_bytes()) <= (deep.len() as u64).div_ceil(2));
        let digits = "7".repeat(10_000);
        assert!(count_json_strings(digits.as_bytes()) <= 5_000);
        assert_eq!(count_json_strings(b"{}"), 0);
    }
}
