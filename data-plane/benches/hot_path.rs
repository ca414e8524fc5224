//! Micro-benchmarks of the data plane's per-request and per-chunk work:
//! `cargo bench -p router-data-plane --bench hot_path`.
//!
//! - `key`: [`Policy::key`] in a policy of 100,000 keys, and the whole auth step
//!   ([`authenticate`]: header, SHA-256 of the secret, lookup, account and group), and the same
//!   behind the failed-auth back-off ([`admit`]);
//! - `request`: reading the request body's fields and splicing the body;
//! - `sse`: one streamed event through the SSE parser and the usage reader (an OpenAI content
//!   chunk, OpenAI's final usage chunk, Anthropic's `message_delta`);
//! - `usage`: usage from a whole (non-streamed) answer;
//! - `cost`: the cost of one request;
//! - `convert`: protocol conversion — one streamed event through each stream converter (what a
//!   converted stream adds per chunk), and the recorded Claude Code and Codex request bodies.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, header};
use router_data_plane::{
    convert::{Conversion, StreamContext, Target},
    policy::Policy,
    proxy::{
        auth::{admit, authenticate},
        backoff::Backoff,
        request,
        stream::{self, Parser},
        usage::{self, Dialect},
    },
};
use router_proto::{Money, Multiplier, Tariff, TokenPrices, TokenUsage, pb};
use sha2::{Digest, Sha256};

/// Keys in the benchmark policy.
const KEYS: usize = 100_000;

/// The secret of key `index`.
fn secret(index: usize) -> String {
    format!("sk-bench-{index:032x}")
}

fn sha256(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// A policy with one group, one account and [`KEYS`] keys on it.
fn policy() -> Policy {
    let keys = (0..KEYS)
        .map(|index| pb::PolicyKey {
            id: index as i64 + 1,
            hash: sha256(&secret(index)),
            account_id: 1,
            ..pb::PolicyKey::default()
        })
        .collect();
    let page = pb::SnapshotPage {
        version: 1,
        first: true,
        last: true,
        settings: Some(pb::Settings { currency: "USD".into() }),
        groups: vec![pb::Group {
            id: 1,
            name: "default".into(),
            multiplier_micros: 1_000_000,
            all_models: true,
            models: Vec::new(),
            ..pb::Group::default()
        }],
        accounts: vec![pb::PolicyAccount {
            id: 1,
            name: "bench".into(),
            group_id: 1,
            ..pb::PolicyAccount::default()
        }],
        keys,
        ..pb::SnapshotPage::default()
    };
    Policy::from_snapshot([page])
}

fn bearer(secret: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let value = HeaderValue::try_from(format!("Bearer {secret}")).expect("a valid header value");
    headers.insert(header::AUTHORIZATION, value);
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers
}

fn key(c: &mut Criterion) {
    let policy = policy();
    let present: [u8; 32] = sha256(&secret(KEYS / 2)).try_into().expect("32 bytes");
    let absent: [u8; 32] = sha256("sk-not-a-key").try_into().expect("32 bytes");
    assert!(policy.key(&present).is_some() && policy.key(&absent).is_none());

    let mut group = c.benchmark_group("key");
    group.bench_function("lookup hit (100k keys)", |b| b.iter(|| policy.key(black_box(&present))));
    group.bench_function("lookup miss (100k keys)", |b| b.iter(|| policy.key(black_box(&absent))));
    let known = bearer(&secret(KEYS / 3));
    let unknown = bearer("sk-not-a-key-0000000000000000000000000000");
    assert!(authenticate(&policy, &known, 0).is_ok());
    group.bench_function("authenticate hit (sha-256 + lookup)", |b| {
        b.iter(|| authenticate(black_box(&policy), black_box(&known), 0).map(|caller| caller.key.id))
    });
    group.bench_function("authenticate miss (401)", |b| {
        b.iter(|| authenticate(black_box(&policy), black_box(&unknown), 0).is_err())
    });
    // The same behind the failed-auth back-off (one address, its key remembered): what the
    // back-off adds to a successful request.
    let backoff = Backoff::new(20, std::time::Duration::from_secs(60));
    let peer: std::net::IpAddr = "192.0.2.1".parse().expect("ip");
    group.bench_function("admit hit (back-off + sha-256 + lookup)", |b| {
        b.iter(|| admit(black_box(&policy), black_box(&known), 0, &backoff, peer).map(|caller| caller.key.id))
    });
    group.finish();
}

/// A typical small chat request.
const CHAT: &[u8] = br#"{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Write a haiku about latency budgets in API gateways."}],"temperature":0.7,"max_tokens":256,"stream":true}"#;

/// A long conversation: `turns` user/assistant pairs of ~1 KiB each, with a tool definition.
fn long_chat(turns: usize) -> Vec<u8> {
    let text =
        "lorem ipsum dolor sit amet, \\\"quoted\\\" text with escapes\\n and unicode \\u00e9 ".repeat(14);
    let mut messages = Vec::new();
    for turn in 0..turns {
        messages.push(format!(r#"{{"role":"user","content":"{turn}: {text}"}}"#));
        messages.push(format!(r#"{{"role":"assistant","content":"{turn}: {text}"}}"#));
    }
    let tools = r#"[{"type":"function","function":{"name":"search","parameters":{"type":"object","properties":{"q":{"type":"string"}},"required":["q"]}}}]"#;
    format!(
        r#"{{"model":"gpt-4o","messages":[{}],"tools":{tools},"stream":true,"stream_options":{{"include_usage":false}},"max_completion_tokens":1024}}"#,
        messages.join(",")
    )
    .into_bytes()
}

fn request_body(c: &mut Criterion) {
    let long = long_chat(32);
    let mut group = c.benchmark_group("request");
    for (name, body) in [("small", CHAT), ("long", long.as_slice())] {
        assert!(request::fields(body).is_ok() && request::splice(body, Some("x"), true).is_ok());
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(format!("fields {name} ({} B)", body.len()), |b| {
            b.iter(|| request::fields(black_box(body)).map(|f| f.stream))
        });
        group.bench_function(format!("splice model + include_usage {name} ({} B)", body.len()), |b| {
            b.iter(|| request::splice(black_box(body), Some("gpt-4o-2024-08-06"), true).map(|b| b.len()))
        });
    }
    group.finish();
}

/// An OpenAI content chunk, as most events of a stream are.
const OPENAI_CONTENT: &[u8] = b"data: {\"id\":\"chatcmpl-AbC123\",\"object\":\"chat.completion.chunk\",\"created\":1735689600,\"model\":\"gpt-4o-mini\",\"system_fingerprint\":\"fp_0123456789\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" latency\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n";
/// OpenAI's final usage chunk (`stream_options.include_usage`).
const OPENAI_USAGE: &[u8] = b"data: {\"id\":\"chatcmpl-AbC123\",\"object\":\"chat.completion.chunk\",\"created\":1735689600,\"model\":\"gpt-4o-mini\",\"system_fingerprint\":\"fp_0123456789\",\"choices\":[],\"usage\":{\"prompt_tokens\":1234,\"completion_tokens\":456,\"total_tokens\":1690,\"prompt_tokens_details\":{\"cached_tokens\":1024,\"audio_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0,\"audio_tokens\":0,\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}}\n\n";
/// Anthropic's `message_delta` with the final output count.
const ANTHROPIC_DELTA: &[u8] = b"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":456}}\n\n";

/// What the stream does per event: split it off, read its usage, and (OpenAI) check whether it
/// is the usage chunk the gateway injected.
fn per_event(chunk: &[u8], dialect: Dialect) -> (usage::EventUsage, bool) {
    let mut parser = Parser::default();
    parser.push(chunk);
    let event = parser.next_event().expect("one complete event");
    let usage = usage::from_event(&event.data, dialect);
    let injected = dialect == Dialect::OpenAi && stream::is_injected_usage(&event);
    (usage, injected)
}

fn sse(c: &mut Criterion) {
    assert_eq!(per_event(OPENAI_CONTENT, Dialect::OpenAi).0, usage::EventUsage::None);
    assert!(matches!(per_event(OPENAI_USAGE, Dialect::OpenAi), (usage::EventUsage::Total(_), true)));
    assert!(matches!(
        per_event(ANTHROPIC_DELTA, Dialect::Anthropic).0,
        usage::EventUsage::Delta { output: 456, .. }
    ));
    let data = |chunk: &[u8]| {
        let mut parser = Parser::default();
        parser.push(chunk);
        parser.next_event().expect("one complete event").data
    };
    let mut group = c.benchmark_group("sse");
    for (name, chunk, dialect) in [
        ("openai content chunk", OPENAI_CONTENT, Dialect::OpenAi),
        ("openai final usage chunk", OPENAI_USAGE, Dialect::OpenAi),
        ("anthropic message_delta", ANTHROPIC_DELTA, Dialect::Anthropic),
    ] {
        group.bench_function(format!("{name}: parse event + usage"), |b| {
            b.iter(|| per_event(black_box(chunk), dialect))
        });
        group.bench_function(format!("{name}: parse event only"), |b| {
            b.iter(|| {
                let mut parser = Parser::default();
                parser.push(black_box(chunk));
                parser.next_event().map(|event| event.data.len())
            })
        });
        let payload = data(chunk);
        group.bench_function(format!("{name}: usage::from_event only"), |b| {
            b.iter(|| usage::from_event(black_box(&payload), dialect))
        });
    }
    // A realistic stream: 200 content chunks arriving 2 to a read, then the usage chunk.
    let stream: Vec<u8> = [OPENAI_CONTENT.repeat(200), OPENAI_USAGE.to_vec()].concat();
    let reads: Vec<&[u8]> = stream.chunks(OPENAI_CONTENT.len() * 2).collect();
    group.throughput(Throughput::Elements(201));
    group.bench_function("openai stream of 201 events: parse + usage + injected check", |b| {
        b.iter_batched_ref(
            Parser::default,
            |parser| {
                let mut total = usage::StreamUsage::default();
                let mut injected = 0;
                for read in &reads {
                    parser.push(read);
                    while let Some(event) = parser.next_event() {
                        total.observe(usage::from_event(&event.data, Dialect::OpenAi));
                        injected += usize::from(stream::is_injected_usage(&event));
                    }
                }
                (total.get(), injected)
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// A whole OpenAI chat completion.
const OPENAI_BODY: &[u8] = br#"{"id":"chatcmpl-AbC123","object":"chat.completion","created":1735689600,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Budgets of microseconds,\nqueues whisper at the edge,\np99 holds.","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":1234,"completion_tokens":456,"total_tokens":1690,"prompt_tokens_details":{"cached_tokens":1024,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0}},"system_fingerprint":"fp_0123456789"}"#;
/// A whole Anthropic message.
const ANTHROPIC_BODY: &[u8] = br#"{"id":"msg_01AbC","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"Budgets of microseconds,\nqueues whisper at the edge,\np99 holds."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":1234,"cache_creation_input_tokens":0,"cache_read_input_tokens":1024,"output_tokens":456}}"#;

fn body_usage(c: &mut Criterion) {
    let mut group = c.benchmark_group("usage");
    for (name, body, dialect) in
        [("openai", OPENAI_BODY, Dialect::OpenAi), ("anthropic", ANTHROPIC_BODY, Dialect::Anthropic)]
    {
        assert!(usage::from_body(body, dialect).is_some());
        group.bench_function(format!("from_body {name} ({} B)", body.len()), |b| {
            b.iter(|| usage::from_body(black_box(body), dialect))
        });
    }
    group.finish();
}

fn cost(c: &mut Criterion) {
    let money = |text: &str| Money::parse(text).expect("a valid amount");
    let tokens = Tariff::Tokens(TokenPrices {
        input: money("2.5"),
        output: money("10"),
        cached_input: Some(money("1.25")),
        cache_write: None,
    });
    let per_call = Tariff::PerCall(money("0.04"));
    let used = TokenUsage { input: 210, cached_input: 1024, cache_write: 0, output: 456 };
    let multiplier = Multiplier::parse("0.85").expect("a valid multiplier");
    let mut group = c.benchmark_group("cost");
    group.bench_function("tokens tariff", |b| {
        b.iter(|| router_proto::cost(black_box(&tokens), black_box(&used), black_box(multiplier)))
    });
    group.bench_function("per-call tariff", |b| {
        b.iter(|| router_proto::cost(black_box(&per_call), black_box(&used), black_box(multiplier)))
    });
    group.finish();
}

/// A Chat content chunk, as DeepSeek sends it.
const CHAT_CONTENT: &[u8] = br#"{"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"deepseek-chat","choices":[{"index":0,"delta":{"content":" queues whisper"},"logprobs":null,"finish_reason":null}]}"#;
/// A Chat tool-call arguments chunk.
const CHAT_ARGUMENTS: &[u8] = br#"{"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"deepseek-chat","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"tion\": \"Par"}}]},"finish_reason":null}]}"#;
/// An Anthropic text delta.
const ANTHROPIC_TEXT: &[u8] =
    br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" queues whisper"}}"#;

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/convert/fixtures").join(name);
    std::fs::read(&path).expect("fixture")
}

fn convert(c: &mut Criterion) {
    let mut group = c.benchmark_group("convert");
    let context =
        || StreamContext { model: "client-model".into(), id: "0193c7a2".into(), ..StreamContext::default() };
    for (name, conversion, start, chunk) in [
        ("messages<-chat text chunk", Conversion::MessagesToChat, CHAT_CONTENT, CHAT_CONTENT),
        ("messages<-chat tool arguments chunk", Conversion::MessagesToChat, CHAT_CONTENT, CHAT_ARGUMENTS),
        ("responses<-chat text chunk", Conversion::ResponsesToChat, CHAT_CONTENT, CHAT_CONTENT),
        ("chat<-messages text delta", Conversion::ChatToMessages, ANTHROPIC_TEXT, ANTHROPIC_TEXT),
    ] {
        group.bench_function(format!("{name}: one event"), |b| {
            b.iter_batched_ref(
                || {
                    // A stream already under way: its opening events are out.
                    let mut converter = conversion.stream(context());
                    converter.event(None, start, &mut BytesMut::new());
                    (converter, BytesMut::with_capacity(1024))
                },
                |(converter, out)| {
                    converter.event(None, black_box(chunk), out);
                    out.len()
                },
                BatchSize::SmallInput,
            )
        });
    }
    let target = Target { upstream_model: "deepseek-chat", max_output_tokens: 8192 };
    for (name, conversion, body) in [
        ("claude code request", Conversion::MessagesToChat, fixture("claude-code.request.json")),
        ("codex request", Conversion::ResponsesToChat, fixture("codex.request.json")),
    ] {
        assert!(conversion.request(&body, &target).is_ok());
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(format!("{name} ({} B)", body.len()), |b| {
            b.iter(|| conversion.request(black_box(&body), &target))
        });
    }
    group.finish();
}

criterion_group!(benches, key, request_body, sse, body_usage, cost, convert);
criterion_main!(benches);
