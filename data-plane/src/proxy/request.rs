//! Step 2 of the request path, the request body: read size-limited, the few fields the gateway
//! reads (borrowed, the rest skipped unparsed) and the small splice it makes (a mapped model
//! name, `stream_options`), copying every other top-level value through byte for byte.
use std::{
    borrow::Cow,
    fmt,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::{
    Deserialize, Deserializer,
    de::{MapAccess, Visitor},
};
use serde_json::value::RawValue;

use super::error::{ApiError, ErrorCode, echo};

/// Request bodies up to this size are copied out of the connection's read buffer.
const SMALL_BODY_BYTES: usize = 16 * 1024;
/// Bodies up to this size are admitted whatever the body budget holds (they are counted in
/// it): `--max-connections` of them is a bounded amount.
const UNBUDGETED_BODY_BYTES: usize = 64 * 1024;

/// The process's budget for request bodies in memory (`--max-inflight-body-bytes`).
#[derive(Debug)]
pub struct BodyBudget {
    limit: usize,
    held: AtomicUsize,
}

impl BodyBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Arc<BodyBudget> {
        Arc::new(BodyBudget { limit, held: AtomicUsize::new(0) })
    }

    /// Bytes of bodies held now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }
}

/// One request's share of the body budget, returned when dropped.
#[derive(Debug)]
pub struct BodyPermit {
    budget: Arc<BodyBudget>,
    bytes: usize,
}

impl BodyPermit {
    fn new(budget: &Arc<BodyBudget>) -> BodyPermit {
        BodyPermit { budget: Arc::clone(budget), bytes: 0 }
    }

    /// Grows the share to `total` bytes; refused (and not grown) when that would pass the
    /// budget and the body is not a small one.
    fn grow(&mut self, total: usize) -> Result<(), ApiError> {
        let Some(more) = total.checked_sub(self.bytes).filter(|more| *more > 0) else { return Ok(()) };
        let held = self.budget.held.fetch_add(more, Ordering::Relaxed) + more;
        if total > UNBUDGETED_BODY_BYTES && held > self.budget.limit {
            self.budget.held.fetch_sub(more, Ordering::Relaxed);
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Overloaded,
                "too many request bodies in flight; retry shortly",
            )
            .retry_after(1));
        }
        self.bytes = total;
        Ok(())
    }
}

impl Drop for BodyPermit {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.budget.held.fetch_sub(self.bytes, Ordering::Relaxed);
        }
    }
}

/// [`read_body`] for a body held against `budget` for as long as the returned permit lives
/// (503 `overloaded` at once when a declared large body does not fit, or when one grows
/// beyond what is left).
pub async fn read_budgeted_body(
    headers: &HeaderMap,
    body: Incoming,
    limit: usize,
    timeout: Duration,
    budget: &Arc<BodyBudget>,
) -> Result<(Bytes, BodyPermit), ApiError> {
    let mut permit = BodyPermit::new(budget);
    let body = read(headers, body, limit, timeout, Some(&mut permit)).await?;
    Ok((body, permit))
}

/// The body, size-limited (413 at once on a declared `Content-Length` over the limit), each
/// piece awaited at most `timeout` (then 408).
pub async fn read_body(
    headers: &HeaderMap,
    body: Incoming,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
    read(headers, body, limit, timeout, None).await
}

async fn read(
    headers: &HeaderMap,
    mut body: Incoming,
    limit: usize,
    timeout: Duration,
    mut permit: Option<&mut BodyPermit>,
) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::InvalidRequest,
            format!("the request body is larger than {limit} bytes"),
        )
    };
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    if let (Some(permit), Some(declared)) = (permit.as_deref_mut(), declared) {
        // Within `limit`, so it fits a usize.
        permit.grow(declared as usize)?;
    }
    // A body that comes in one piece stays that piece (a slice of the connection's read
    // buffer); one in several is joined.
    let mut first: Option<Bytes> = None;
    let mut joined: Vec<u8> = Vec::new();
    let mut length = 0usize;
    loop {
        let frame = match tokio::time::timeout(timeout, body.frame()).await {
            Ok(None) => break,
            Ok(Some(Ok(frame))) => frame,
            Ok(Some(Err(error))) => {
                return Err(bad_request(format!("cannot read the request body: {error}")));
            }
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    ErrorCode::InvalidRequest,
                    format!("the request body stalled: no data for {} s", timeout.as_secs_f64()),
                ));
            }
        };
        let Ok(data) = frame.into_data() else { continue };
        length += data.len();
        if length > limit {
            return Err(too_large());
        }
        if let Some(permit) = permit.as_deref_mut() {
            permit.grow(length)?;
        }
        match first.take() {
            None if joined.is_empty() => first = Some(data),
            earlier => {
                if let Some(earlier) = earlier {
                    joined.extend_from_slice(&earlier);
                }
                joined.extend_from_slice(&data);
            }
        }
    }
    // The meter keeps the body until the answer ends (to count tokens locally if the upstream
    // reports none), which would pin the connection's whole read buffer for as long as a
    // stream lasts. A small body is copied out instead: a few hundred bytes per request rather
    // than kilobytes per open stream.
    Ok(match first {
        Some(body) if body.len() <= SMALL_BODY_BYTES => Bytes::copy_from_slice(&body),
        Some(body) => body,
        None => Bytes::from(joined),
    })
}

#[derive(Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

#[derive(Deserialize)]
struct Metadata<'a> {
    #[serde(borrow)]
    user_id: Option<Cow<'a, str>>,
}

/// A string borrowed from the body where it has no escapes.
#[derive(Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

/// A session field, left unparsed by the first pass: a value of another shape is no session,
/// never a refused request.
fn session_of<'a>(
    prompt_cache_key: Option<&'a RawValue>,
    metadata: Option<&'a RawValue>,
) -> Option<Cow<'a, str>> {
    let key = prompt_cache_key.and_then(|v| serde_json::from_str::<Text<'a>>(v.get()).ok()).map(|t| t.0);
    key.or_else(|| metadata.and_then(|v| serde_json::from_str::<Metadata<'a>>(v.get()).ok()?.user_id))
}

#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    stream: Option<bool>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    max_output_tokens: Option<u64>,
    stream_options: Option<StreamOptions>,
    n: Option<u64>,
    best_of: Option<u64>,
    #[serde(borrow)]
    prompt_cache_key: Option<&'a RawValue>,
    #[serde(borrow)]
    metadata: Option<&'a RawValue>,
}

/// What the gateway needs to know of a request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields<'a> {
    /// The model asked for.
    pub model: Cow<'a, str>,
    /// Whether the answer is streamed.
    pub stream: bool,
    /// The output cap the request sets, if any.
    pub max_output_tokens: Option<u64>,
    /// Whether the client itself asked for a usage chunk in its stream.
    pub include_usage: bool,
    /// Answers generated, each up to the output cap (`n`, `best_of`; at least 1).
    pub choices: u64,
    /// The session the body names, for channel affinity: `prompt_cache_key` (Codex, the
    /// OpenAI SDKs), else `metadata.user_id` (Claude Code, which puts its session in it).
    pub session: Option<Cow<'a, str>>,
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, message)
}

/// Reads the fields of a JSON body; 400 when it is not UTF-8, or not a JSON object with a
/// string `model`.
pub fn fields(body: &[u8]) -> Result<Fields<'_>, ApiError> {
    // JSON is UTF-8 (RFC 8259); the parser would skip the unread members without checking.
    let body = std::str::from_utf8(body).map_err(|e| {
        bad_request(format!("the request body is not valid UTF-8 (at byte {})", e.valid_up_to()))
    })?;
    let raw: Raw<'_> = serde_json::from_str(body)
        .map_err(|e| bad_request(format!("the request body is not valid JSON: {}", echo(&e.to_string()))))?;
    let model =
        raw.model.filter(|m| !m.is_empty()).ok_or_else(|| bad_request("the request has no `model`"))?;
    Ok(Fields {
        model,
        stream: raw.stream.unwrap_or(false),
        max_output_tokens: raw.max_tokens.or(raw.max_completion_tokens).or(raw.max_output_tokens),
        include_usage: raw.stream_options.and_then(|o| o.include_usage).unwrap_or(false),
        choices: raw.n.max(raw.best_of).unwrap_or(1).max(1),
        session: session_of(raw.prompt_cache_key, raw.metadata),
    })
}

/// The top-level members of a JSON object, in order, with their values unparsed.
struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(entry) = map.next_entry::<Cow<'de, str>, &'de RawValue>()? {
                    members.push(entry);
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(MembersVisitor)
    }
}

/// The body with `model` replaced (when `model` is given) and `stream_options.include_usage`
/// set (when `include_usage`); every other member, and every other stream option, is copied
/// through byte for byte (numbers too large for an `f64` included).
pub fn splice(body: &[u8], model: Option<&str>, include_usage: bool) -> Result<Bytes, ApiError> {
    let members: Members<'_> = serde_json::from_slice(body).map_err(|e| {
        bad_request(format!("the request body is not a JSON object: {}", echo(&e.to_string())))
    })?;
    // Model names come from the policy, so serializing them cannot fail.
    let model = model.map(|name| serde_json::to_string(name).unwrap_or_default());
    let stream_options = members.0.iter().find(|(key, _)| key == "stream_options").map(|(_, value)| *value);
    let options = include_usage.then(|| with_usage(stream_options));
    let rewritten = members.0.iter().map(|(key, value)| {
        let value = match key.as_ref() {
            "model" => model.as_deref().unwrap_or(value.get()).as_bytes(),
            "stream_options" => options.as_deref().unwrap_or(value.get().as_bytes()),
            _ => value.get().as_bytes(),
        };
        (key.as_ref(), value)
    });
    let added =
        options.as_deref().filter(|_| stream_options.is_none()).map(|options| ("stream_options", options));
    let mut out = Vec::with_capacity(body.len() + 48);
    write_object(&mut out, rewritten.chain(added));
    Ok(Bytes::from(out))
}

/// `stream_options` with `include_usage: true`, the other options kept as sent (a value that
/// is not an object has none).
fn with_usage(options: Option<&RawValue>) -> Cow<'static, [u8]> {
    const ONLY_USAGE: &[u8] = br#"{"include_usage":true}"#;
    let Some(kept) = options.and_then(|options| serde_json::from_str::<Members<'_>>(options.get()).ok())
    else {
        return Cow::Borrowed(ONLY_USAGE);
    };
    let mut others = kept.0.iter().filter(|(key, _)| key != "include_usage").peekable();
    if others.peek().is_none() {
        return Cow::Borrowed(ONLY_USAGE);
    }
    let mut out = Vec::with_capacity(options.map_or(0, |o| o.get().len()) + 24);
    let others = others.map(|(key, value)| (key.as_ref(), value.get().as_bytes()));
    write_object(&mut out, others.chain([("include_usage", &b"true"[..])]));
    Cow::Owned(out)
}

/// Writes `{"key":value,…}`, the values already JSON.
fn write_object<'a>(out: &mut Vec<u8>, members: impl Iterator<Item = (&'a str, &'a [u8])>) {
    out.push(b'{');
    for (i, (key, value)) in members.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // Keys come from valid JSON, so serializing them cannot fail.
        serde_json::to_writer(&mut *out, key).unwrap_or_default();
        out.push(b':');
        out.extend_from_slice(value);
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_budget_refuses_large_bodies_beyond_it_and_is_returned() {
        let budget = BodyBudget::new(200 * 1024);
        let mut first = BodyPermit::new(&budget);
        first.grow(150 * 1024).expect("fits");
        let mut second = BodyPermit::new(&budget);
        let refused = second.grow(100 * 1024).expect_err("beyond the budget");
        assert_eq!(
            (refused.status, refused.code, refused.retry_after),
            (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Overloaded, Some(1))
        );
        assert_eq!(budget.held(), 150 * 1024, "a refused share is not held");
        // Small bodies always pass (and count).
        let mut small = BodyPermit::new(&budget);
        small.grow(60 * 1024).expect("small bodies are admitted");
        assert_eq!(budget.held(), 210 * 1024);
        drop(first);
        drop(small);
        assert_eq!(budget.held(), 0);
        second.grow(100 * 1024).expect("room again");
        second.grow(120 * 1024).expect("grows");
        assert_eq!(budget.held(), 120 * 1024);
        drop(second);
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn reads_only_what_it_needs() {
        let body = br#"{"model":"gpt-4o","messages":[{"role":"wizard","content":[{"type":"hologram"}]}],"stream":true,"max_tokens":64,"x":{"deep":[1,2,{"a":null}]}}"#;
        let f = fields(body).expect("valid");
        assert_eq!(f.model, "gpt-4o");
        assert!(f.stream);
        assert_eq!(f.max_output_tokens, Some(64));
        assert!(!f.include_usage);
        assert_eq!(f.choices, 1);
        assert_eq!(fields(br#"{"model":"m","n":3,"best_of":5}"#).expect("valid").choices, 5);
        assert_eq!(fields(br#"{"model":"m","n":0}"#).expect("valid").choices, 1);
        assert_eq!(
            fields(br#"{"model":"m","max_completion_tokens":9}"#).expect("valid").max_output_tokens,
            Some(9)
        );
        assert_eq!(
            fields(br#"{"model":"m","max_output_tokens":7,"stream":null}"#).expect("valid").max_output_tokens,
            Some(7)
        );
        assert!(
            fields(br#"{"model":"m","stream_options":{"include_usage":true}}"#).expect("valid").include_usage
        );
        assert_eq!(f.session, None);
        let session = |body: &'static [u8]| fields(body).expect("valid").session.map(|s| s.into_owned());
        assert_eq!(session(br#"{"model":"m","prompt_cache_key":"c1"}"#).as_deref(), Some("c1"));
        assert_eq!(
            session(br#"{"model":"m","metadata":{"other":[1],"user_id":"user_x_session_\u0041"}}"#)
                .as_deref(),
            Some("user_x_session_A")
        );
        assert_eq!(
            session(br#"{"metadata":{"user_id":"u"},"prompt_cache_key":"k","model":"m"}"#).as_deref(),
            Some("k")
        );
        assert_eq!(session(br#"{"model":"m","metadata":{}}"#), None);
        // Other shapes are no session, never a refusal.
        assert_eq!(session(br#"{"model":"m","metadata":"x","prompt_cache_key":5}"#), None);
        assert_eq!(session(br#"{"model":"m","metadata":{"user_id":7},"prompt_cache_key":null}"#), None);
    }

    #[test]
    fn refuses_what_is_not_a_request() {
        for bad in [&b"not json"[..], b"[]", b"{}", br#"{"model":""}"#, br#"{"model":5}"#, br#"{"model":"m""#]
        {
            let error = fields(bad).expect_err("invalid");
            assert_eq!((error.status, error.code), (StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest));
        }
    }

    #[test]
    fn splices_model_and_usage_without_touching_the_rest() {
        let body = br#"{"model":"alias","messages":[{"role":"user","content":"h\u00e9 \"x\""}],"stream":true,"unknown":{"keep":[1.50,true]}}"#;
        let spliced = splice(body, Some("real-model"), true).expect("object");
        let text = std::str::from_utf8(&spliced).expect("utf8");
        assert_eq!(
            text,
            r#"{"model":"real-model","messages":[{"role":"user","content":"h\u00e9 \"x\""}],"stream":true,"unknown":{"keep":[1.50,true]},"stream_options":{"include_usage":true}}"#
        );
        let kept = splice(br#"{"stream_options":{"foo":1},"model":"m"}"#, None, true).expect("object");
        let value: serde_json::Value = serde_json::from_slice(&kept).expect("json");
        assert_eq!(value["stream_options"], serde_json::json!({"foo": 1, "include_usage": true}));
        assert_eq!(value["model"], "m");
    }

    /// Found by the `request_fields` fuzzer: a number beyond `f64` is valid JSON, read and
    /// skipped by the extractor; the splice keeps it byte for byte, inside `stream_options`
    /// too (it once re-serialized the options, and dropped them all when one did not parse).
    #[test]
    fn splice_keeps_numbers_beyond_f64_byte_for_byte() {
        let body = br#"{"model":"m","n[":3333333333331e333333333351,"stream_options":{"x":1e999,"include_usage":false}}"#;
        assert!(fields(body).is_ok());
        let spliced = splice(body, Some("fuzz/model"), true).expect("object");
        assert_eq!(
            std::str::from_utf8(&spliced).expect("utf8"),
            r#"{"model":"fuzz/model","n[":3333333333331e333333333351,"stream_options":{"x":1e999,"include_usage":true}}"#
        );
        let unspliced = splice(br#"{"model":"m","stream_options":null}"#, None, true).expect("object");
        assert_eq!(&unspliced[..], br#"{"model":"m","stream_options":{"include_usage":true}}"#);
    }
}
