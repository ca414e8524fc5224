//! Fuzz target bodies: each takes arbitrary bytes, must not panic, and asserts what its parser
//! promises. Shared by the libFuzzer targets in `fuzz/` (`cargo +nightly fuzz run NAME`) and by
//! the stable test that replays their seed corpora and every crash found
//! (`data-plane/tests/fuzz_corpus.rs`), so a fixed crash stays fixed in the normal suite.
use std::{
    fs,
    path::PathBuf,
    sync::{
        Once,
        atomic::{AtomicU64, Ordering},
    },
};

use bytes::Bytes;
use router_proto::{
    TokenUsage,
    cost::{self, Tariff, TokenPrices},
    money::{Money, Multiplier},
};

use crate::{
    convert::{self, Conversion, Target},
    proxy::{
        request,
        sanity::Bounds,
        stream::Parser,
        tokenize,
        usage::{self, Dialect, StreamUsage},
    },
    report::{
        crc32::crc32,
        spool::{Position, Reader},
    },
};

/// A target's body: arbitrary bytes in, a panic on a broken promise.
pub type Body = fn(&[u8]);

/// Every target, by the name of its `fuzz/fuzz_targets/` file and corpus directory.
pub const TARGETS: [(&str, Body); 8] = [
    ("request_fields", request_fields),
    ("sse_events", sse_events),
    ("usage", usage),
    ("convert_request", convert_request),
    ("convert_answer", convert_answer),
    ("convert_stream", convert_stream),
    ("money", money),
    ("spool_reader", spool_reader),
];

const CONVERSIONS: [Conversion; 3] =
    [Conversion::MessagesToChat, Conversion::ChatToMessages, Conversion::ResponsesToChat];
const DIALECTS: [Dialect; 3] = [Dialect::OpenAi, Dialect::Responses, Dialect::Anthropic];

/// The first byte picks a variant, the rest is the input.
fn pick<T: Copy, const N: usize>(data: &[u8], choices: [T; N]) -> Option<(T, &[u8])> {
    let (first, rest) = data.split_first()?;
    Some((choices[usize::from(*first) % N], rest))
}

/// Asserts `bytes` is JSON (RFC 8259: numbers of any size, which `serde_json::Value` cannot
/// hold, are valid and pass through the gateway untouched).
fn json(bytes: &[u8], what: &str) {
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
        panic!("{what} is not JSON ({e}): {:?}", String::from_utf8_lossy(bytes));
    }
}

/// The `error.message` of an OpenAI- or Anthropic-shaped error body.
#[derive(serde::Deserialize)]
#[allow(dead_code)] // read only to check that they are there
struct ErrorBody {
    error: ErrorMessage,
}

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct ErrorMessage {
    message: String,
}

/// The request-field extractor: a body it reads is an object whose `model` it found, and the
/// spliced body (new model, usage asked for) reads back with the same fields.
pub fn request_fields(data: &[u8]) {
    let Ok(fields) = request::fields(data) else { return };
    assert!(!fields.model.is_empty() && fields.choices >= 1);
    let spliced = request::splice(data, Some("fuzz/model"), true).expect("a body `fields` read splices");
    json(&spliced, "a spliced body");
    let again = request::fields(&spliced).expect("a spliced body reads");
    assert_eq!(again.model, "fuzz/model");
    assert_eq!(
        (again.stream, again.max_output_tokens, again.choices, &again.session),
        (fields.stream, fields.max_output_tokens, fields.choices, &fields.session)
    );
    assert!(again.include_usage);
}

/// The first byte's bits say where `stream` is cut into chunks (a cut every `1 + first % 61`
/// bytes, so every split phase is reached).
fn chunks(data: &[u8]) -> (Vec<&[u8]>, &[u8]) {
    let Some((first, stream)) = data.split_first() else { return (Vec::new(), data) };
    let step = 1 + usize::from(*first) % 61;
    (stream.chunks(step).collect(), stream)
}

struct Parsed {
    events: Vec<(Bytes, Option<Bytes>, Bytes)>,
    pending: usize,
}

fn parse(chunks: &[&[u8]]) -> Parsed {
    let mut parser = Parser::default();
    let mut events = Vec::new();
    for chunk in chunks {
        parser.push(chunk);
        while let Some(event) = parser.next_event() {
            events.push((event.raw, event.name, event.data));
        }
    }
    Parsed { events, pending: parser.pending() }
}

/// The SSE splitter: chunking never changes the events, and the events' bytes plus what is
/// pending are exactly the input.
pub fn sse_events(data: &[u8]) {
    let (pieces, stream) = chunks(data);
    let whole = parse(&[stream]);
    let split = parse(&pieces);
    assert!(whole.events == split.events && whole.pending == split.pending, "chunking changed the events");
    let raw: usize = whole.events.iter().map(|(raw, _, _)| raw.len()).sum();
    assert_eq!(raw + whole.pending, stream.len());
    let mut seen = StreamUsage::default();
    for (_, _, data) in &whole.events {
        for dialect in DIALECTS {
            seen.observe(usage::from_event(data, dialect));
        }
    }
    let _ = seen.get();
}

/// Usage read from an answer in every dialect, checked against the request's bounds and
/// priced: what is billed never exceeds what a request of this size and cap could cost.
pub fn usage(data: &[u8]) {
    static LOAD: Once = Once::new();
    LOAD.call_once(|| tokenize::load().expect("the tokenizer loads"));
    let Some((output_cap, answer)) =
        data.split_first_chunk::<2>().map(|(cap, rest)| (u64::from(u16::from_le_bytes(*cap)), rest))
    else {
        return;
    };
    let request = br#"{"model":"m","messages":[{"role":"user","content":"fuzz"}]}"#;
    let bounds = Bounds::new(request.len(), output_cap);
    let prices = TokenPrices {
        input: Money::from_nanos(3_000_000_000),
        output: Money::from_nanos(15_000_000_000),
        cached_input: Some(Money::from_nanos(300_000_000)),
        cache_write: None,
    };
    let most = TokenUsage {
        input: request.len() as u64 + crate::proxy::sanity::INPUT_OVERHEAD_TOKENS,
        output: output_cap,
        ..TokenUsage::default()
    };
    let ceiling = cost::cost(&Tariff::Tokens(prices), &most, Multiplier::ONE).expect("the ceiling prices");
    for dialect in DIALECTS {
        let reported = usage::from_body(answer, dialect);
        let text = usage::answer_text(&[Bytes::copy_from_slice(answer)], dialect);
        let local = || TokenUsage {
            input: tokenize::count_json_strings(request),
            output: tokenize::count(&text),
            ..TokenUsage::default()
        };
        let checked = bounds.check(request, reported, local).usage;
        assert!(checked.output <= output_cap, "billed output {} above the cap {output_cap}", checked.output);
        let billed =
            cost::cost(&Tariff::Tokens(prices), &checked, Multiplier::ONE).expect("checked usage prices");
        assert!(billed <= ceiling, "billed {billed} above what the request could cost ({ceiling})");
    }
}

const TARGET: Target<'static> = Target { upstream_model: "fuzz/upstream", max_output_tokens: 4096 };

/// Request conversion: a converted body is a JSON object for the target model that the
/// gateway's own extractor reads; a refusal is an error, never a panic.
pub fn convert_request(data: &[u8]) {
    let Some((conversion, body)) = pick(data, CONVERSIONS) else { return };
    let _ = conversion.context(body, "fuzz/model", "req_fuzz");
    let Ok(converted) = conversion.request(body, &TARGET) else { return };
    json(&converted, "a converted request");
    let fields = request::fields(&converted).expect("a converted request reads");
    assert_eq!(fields.model, TARGET.upstream_model);
}

/// Whole-answer and error conversion: what reaches the client is JSON, and an error keeps a
/// message.
pub fn convert_answer(data: &[u8]) {
    let Some((conversion, body)) = pick(data, CONVERSIONS) else { return };
    let context = conversion.context(b"{}", "fuzz/model", "req_fuzz");
    if let Ok(answer) = conversion.answer_in(body, &context) {
        json(&answer, "a converted answer");
    }
    let status = 400 + u16::from(data[0]) % 200;
    let error = conversion.error(status, body);
    json(&error, "a converted error");
    if let Err(e) = serde_json::from_slice::<ErrorBody>(&error) {
        panic!("{conversion:?}: an error without a message ({e}): {:?}", String::from_utf8_lossy(&error));
    }
}

/// Stream conversion fed event by event, then cut: every event written is SSE whose data is
/// JSON (or `[DONE]`), and the stream ends finished.
pub fn convert_stream(data: &[u8]) {
    let Some((conversion, rest)) = pick(data, CONVERSIONS) else { return };
    let (pieces, _) = chunks(rest);
    let context = conversion.context(b"{}", "fuzz/model", "req_fuzz");
    let (converter, out) =
        convert::convert_chunks(conversion, context, pieces, "the upstream stream ended early");
    assert!(converter.is_finished(), "{conversion:?}: not finished after fail");
    let mut written = Parser::default();
    written.push(&out);
    while let Some(event) = written.next_event() {
        if event.data.is_empty() || &event.data[..] == b"[DONE]" {
            continue;
        }
        json(&event.data, "a converted stream event");
    }
    assert_eq!(written.pending(), 0, "{conversion:?}: a converted event is not terminated");
}

/// Money and multipliers: what parses prints back to itself, and sums are exact or refused.
pub fn money(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (left, right) = text.split_once(' ').unwrap_or((text, "0"));
    if let Ok(amount) = Money::parse(left) {
        assert_eq!(amount.to_string().parse::<Money>(), Ok(amount), "{left:?}");
        if let Ok(other) = Money::parse(right) {
            let exact = i128::from(amount.nanos()) + i128::from(other.nanos());
            match amount.checked_add(other) {
                Some(sum) => assert_eq!(i128::from(sum.nanos()), exact),
                None => assert!(i64::try_from(exact).is_err()),
            }
            let saturated = amount.saturating_add(other).nanos();
            assert_eq!(i128::from(saturated), exact.clamp(i128::from(i64::MIN), i128::from(i64::MAX)));
        }
    }
    if let Ok(multiplier) = Multiplier::parse(left) {
        assert_eq!(multiplier.to_string().parse::<Multiplier>(), Ok(multiplier), "{left:?}");
    }
}

/// The spool reader on a sealed segment of arbitrary bytes: it stops at the first torn or
/// corrupt record without failing, and what it returns is exactly the intact records at the
/// segment's start. On the active segment corruption is an error, never a panic.
pub fn spool_reader(data: &[u8]) {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "router-fuzz-spool-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir_all(&dir).expect("a temporary directory");
    fs::write(dir.join(format!("usage-{:020}.spool", 0)), data).expect("the segment is written");
    let sealed = Reader::new(&dir, Position::default()).read(usize::MAX, Position { seq: 1, offset: 0 });
    let records = sealed.expect("a sealed segment reads");
    let mut framed = Vec::new();
    for payload in &records {
        framed.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        framed.extend_from_slice(&crc32(payload).to_le_bytes());
        framed.extend_from_slice(payload);
    }
    assert!(data.starts_with(&framed), "the records read are not the segment's first frames");
    let active = Reader::new(&dir, Position::default())
        .read(usize::MAX, Position { seq: 0, offset: data.len() as u64 });
    if let Ok(active) = active {
        assert_eq!(active, records);
    }
    let _ = fs::remove_dir_all(&dir);
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::TARGETS;

    /// Every file of `fuzz/<kind>/<target>/`.
    fn inputs(kind: &str, target: &str) -> Vec<(String, Vec<u8>)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz").join(kind).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
        let mut inputs: Vec<_> = entries
            .map(|entry| {
                let path = entry.expect("a corpus entry").path();
                (path.display().to_string(), std::fs::read(&path).expect("a corpus file reads"))
            })
            .collect();
        inputs.sort();
        inputs
    }

    /// The seed corpora and every crash the fuzzers found, on stable, in the normal suite.
    #[test]
    fn seeds_and_regressions_replay() {
        for (target, run) in TARGETS {
            let seeds = inputs("seeds", target);
            assert!(!seeds.is_empty(), "no seeds for {target} (fuzz/seeds.py writes them)");
            for (name, data) in seeds.iter().chain(&inputs("regressions", target)) {
                let outcome = std::panic::catch_unwind(|| run(data));
                assert!(outcome.is_ok(), "{target} fails on {name}");
            }
        }
    }
}
