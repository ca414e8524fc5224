//! The load generator: `connections` keep-alive HTTP/1.1 connections, either closed loop
//! (each sends its next request as soon as the last answer ends) or open loop at a fixed
//! total rate.
//!
//! Open loop avoids coordinated omission: connection `k` owns the send slots
//! `k, k + C, k + 2C, …` of the global schedule. When a slot comes while the connection is
//! still busy with an earlier answer, the request's latency counts from its *scheduled*
//! time, so queueing in the system under test is charged to it. When the connection is idle
//! it sleeps until the slot and counts from the actual send, so the coarse wake-up of the
//! timer (about 1 ms) is not charged to the system under test.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{Request, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

/// How long an open-loop run may overrun its deadline while catching up with its schedule.
const LATE_GRACE: Duration = Duration::from_secs(2);

/// How long one request may take before it counts as an error and its connection is dropped.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// One load run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Full request URL.
    pub url: Uri,
    /// Bearer key, if any.
    pub key: Option<String>,
    /// Further request headers (name, value), e.g. `anthropic-version`.
    pub headers: Vec<(String, String)>,
    /// Request body.
    pub body: Bytes,
    /// Whether answers are streamed (time to first chunk and per-chunk latency recorded).
    pub stream: bool,
    /// Concurrent connections.
    pub connections: usize,
    /// How long to send.
    pub duration: Duration,
    /// Total requests per second (open loop); `None` is closed loop.
    pub rate: Option<f64>,
}

/// The default request: a small chat completion for `bench-model`.
pub fn default_body(stream: bool) -> String {
    let stream_part = if stream { r#","stream":true,"stream_options":{"include_usage":true}"# } else { "" };
    format!(
        r#"{{"model":"bench-model","messages":[{{"role":"user","content":"Say hello."}}],"max_tokens":16{stream_part}}}"#
    )
}

/// A small streamed Anthropic Messages request for `bench-model` (`POST /v1/messages` with an
/// `anthropic-version` header, see [`anthropic_headers`]).
pub fn messages_stream_body() -> String {
    r#"{"model":"bench-model","max_tokens":16,"stream":true,"messages":[{"role":"user","content":"Say hello."}]}"#
        .to_owned()
}

/// The headers an Anthropic client sends besides its key.
pub fn anthropic_headers() -> Vec<(String, String)> {
    vec![("anthropic-version".to_owned(), "2023-06-01".to_owned())]
}

/// What a load run measured; histograms in nanoseconds.
#[derive(Debug)]
pub struct Summary {
    /// Requests answered with 2xx and a complete body.
    pub ok: u64,
    /// Non-2xx answers, connection failures and broken bodies.
    pub errors: u64,
    /// First non-2xx status seen, for diagnosis.
    pub first_error: Option<String>,
    /// Wall time from the first send to the last answer.
    pub elapsed: Duration,
    /// Whole-request latency.
    pub latency: Histogram<u64>,
    /// Time to the first body chunk (streams only).
    pub first_chunk: Histogram<u64>,
    /// Per-chunk latency from the mock's send timestamp to arrival (streams only).
    pub chunk: Histogram<u64>,
    /// The plan's rate, if open loop.
    pub rate: Option<f64>,
}

impl Summary {
    fn new(rate: Option<f64>) -> anyhow::Result<Summary> {
        Ok(Summary {
            ok: 0,
            errors: 0,
            first_error: None,
            elapsed: Duration::ZERO,
            latency: histogram()?,
            first_chunk: histogram()?,
            chunk: histogram()?,
            rate,
        })
    }

    fn merge(&mut self, other: Summary) -> anyhow::Result<()> {
        self.ok += other.ok;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.latency.add(&other.latency)?;
        self.first_chunk.add(&other.first_chunk)?;
        self.chunk.add(&other.chunk)?;
        Ok(())
    }

    /// Successful requests per second.
    pub fn throughput(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

fn histogram() -> anyhow::Result<Histogram<u64>> {
    // 1 ns to 100 s at 3 significant figures.
    Ok(Histogram::new_with_bounds(1, 100_000_000_000, 3)?)
}

/// Runs `plan` to completion and returns what it measured.
pub async fn run(plan: &Plan) -> anyhow::Result<Summary> {
    let start = Instant::now() + Duration::from_millis(20);
    let deadline = start + plan.duration;
    let mut tasks = Vec::with_capacity(plan.connections);
    for index in 0..plan.connections {
        let plan = plan.clone();
        tasks.push(tokio::spawn(async move { connection(&plan, index, start, deadline).await }));
    }
    let mut total = Summary::new(plan.rate)?;
    for task in tasks {
        total.merge(task.await??)?;
    }
    // Open loop sends on a schedule spanning exactly the duration; closed loop sends until the
    // deadline and then waits for its last answers, which count too.
    total.elapsed = match plan.rate {
        Some(_) => plan.duration,
        None => Instant::now().saturating_duration_since(start).max(plan.duration),
    };
    Ok(total)
}

async fn connection(plan: &Plan, index: usize, start: Instant, deadline: Instant) -> anyhow::Result<Summary> {
    let mut summary = Summary::new(plan.rate)?;
    let interval = plan.rate.map(|rate| Duration::from_secs_f64(plan.connections as f64 / rate));
    let mut slot =
        start + plan.rate.map_or(Duration::ZERO, |rate| Duration::from_secs_f64(index as f64 / rate));
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
    tokio::time::sleep_until(start).await;
    loop {
        let now = Instant::now();
        if let Some(interval) = interval.filter(|_| now >= deadline + LATE_GRACE) {
            // Far behind an open-loop schedule the system under test cannot keep: stop, and
            // count the slots never sent as errors rather than run on unbounded.
            let missed = deadline.saturating_duration_since(slot).as_secs_f64() / interval.as_secs_f64();
            summary.errors += missed.ceil() as u64;
            summary.first_error.get_or_insert_with(|| "behind schedule at the deadline".into());
            break;
        }
        let began = match interval {
            Some(_) if slot >= deadline => break,
            Some(_) if slot > now => {
                tokio::time::sleep_until(slot).await;
                Instant::now()
            }
            Some(_) => slot,
            None if now >= deadline => break,
            None => now,
        };
        if let Some(interval) = interval {
            slot += interval;
        }
        if sender.as_ref().is_none_or(|s| s.is_closed()) {
            sender = match connect(&plan.url).await {
                Ok(s) => Some(s),
                Err(error) => {
                    summary.errors += 1;
                    summary.first_error.get_or_insert_with(|| format!("connect: {error}"));
                    // Back off instead of spinning on a refused connection.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
        }
        let Some(send) = sender.as_mut() else { continue };
        let answered = tokio::time::timeout(REQUEST_TIMEOUT, exchange(send, plan, began, &mut summary)).await;
        match answered.unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within {REQUEST_TIMEOUT:?}"))) {
            Ok(true) => {
                summary.ok += 1;
                let took = Instant::now().saturating_duration_since(began);
                summary.latency.saturating_record(took.as_nanos() as u64);
            }
            Ok(false) => summary.errors += 1,
            Err(error) => {
                summary.errors += 1;
                summary.first_error.get_or_insert_with(|| format!("request: {error}"));
                sender = None;
            }
        }
    }
    Ok(summary)
}

/// Opens a keep-alive HTTP/1.1 connection (no Nagle) to the host of `url`.
pub(crate) async fn connect(url: &Uri) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let host = url.host().ok_or_else(|| anyhow::anyhow!("url has no host"))?;
    let port = url.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host, port)).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// Sends one request and reads the whole answer; `Ok(false)` for a non-2xx status.
async fn exchange(
    send: &mut SendRequest<Full<Bytes>>,
    plan: &Plan,
    began: Instant,
    summary: &mut Summary,
) -> anyhow::Result<bool> {
    send.ready().await?;
    let mut request = Request::post(plan.url.clone())
        .header(header::HOST, plan.url.authority().map(|a| a.as_str()).unwrap_or("127.0.0.1"))
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(key) = &plan.key {
        request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
    }
    for (name, value) in &plan.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let request = request.body(Full::new(plan.body.clone()))?;
    let response = send.send_request(request).await?;
    let status = response.status();
    let mut body = response.into_body();
    let mut first = true;
    let mut last_stamp = None;
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        let Some(data) = frame.data_ref() else { continue };
        if plan.stream && status.is_success() {
            if first {
                first = false;
                let took = Instant::now().saturating_duration_since(began);
                summary.first_chunk.saturating_record(took.as_nanos() as u64);
            }
            record_chunk_latency(data, &mut last_stamp, &mut summary.chunk);
        }
    }
    if !status.is_success() {
        summary.first_error.get_or_insert_with(|| format!("status {status}"));
    }
    Ok(status.is_success())
}

/// Records arrival minus the mock's send time for every complete stamp in `data`, one frame of
/// a streamed answer: the chunk's top-level `"bench_ts_ns":N` field, or the `@ts=N;` marker
/// in its content text (all a converted stream keeps, since a conversion drops unknown
/// fields). A native chunk carries both with the same N; `last` (the previous stamp recorded
/// in this answer) makes it count once, also when a frame boundary falls between the two.
/// A stamp cut by a frame boundary (no terminator in `data`) is skipped.
fn record_chunk_latency(data: &[u8], last: &mut Option<u128>, histogram: &mut Histogram<u64>) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    for sent in chunk_stamps(data) {
        if *last != Some(sent) {
            *last = Some(sent);
            histogram.saturating_record(now.saturating_sub(sent) as u64);
        }
    }
}

/// The complete send stamps in `data`, in the order they appear, of either form.
fn chunk_stamps(data: &[u8]) -> Vec<u128> {
    const FIELD: &[u8] = b"\"bench_ts_ns\":";
    let marker = crate::mock::TS_MARKER.as_bytes();
    // (position, digits) of every stamp; a field's digits end at any non-digit, a marker's at `;`.
    let mut found: Vec<(usize, u128)> = Vec::new();
    for (pattern, terminator) in [(FIELD, None), (marker, Some(b';'))] {
        for at in memchr::memmem::find_iter(data, pattern) {
            let digits = &data[at + pattern.len()..];
            let len = digits.iter().take_while(|b| b.is_ascii_digit()).count();
            let terminated = match (terminator, digits.get(len)) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(t), Some(&b)) => b == t,
            };
            if len == 0 || !terminated {
                continue;
            }
            if let Some(sent) = std::str::from_utf8(&digits[..len]).ok().and_then(|s| s.parse::<u128>().ok())
            {
                found.push((at, sent));
            }
        }
    }
    found.sort_unstable_by_key(|&(at, _)| at);
    found.into_iter().map(|(_, sent)| sent).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(frames: &[&[u8]]) -> Histogram<u64> {
        let mut h = histogram().unwrap();
        let mut last = None;
        for frame in frames {
            record_chunk_latency(frame, &mut last, &mut h);
        }
        h
    }

    #[test]
    fn chunk_stamps_are_read_and_cut_stamps_skipped() {
        let h = record(&[b"data: {\"bench_ts_ns\":1,\"x\":2}\n\ndata: {\"bench_ts_ns\":2"]);
        assert_eq!(h.len(), 1);
        assert_eq!(chunk_stamps(b"data: {\"bench_ts_ns\":1,\"x\":2}\n\ndata: {\"bench_ts_ns\":2"), vec![1]);
    }

    #[test]
    fn markers_in_the_text_are_read_when_the_field_is_gone() {
        // A converted (Anthropic Messages) stream: only the text keeps the stamp.
        let frame = b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"tok1 @ts=17; \"}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"tok2 @ts=18; \"}}\n\n";
        assert_eq!(chunk_stamps(frame), vec![17, 18]);
        assert_eq!(record(&[frame]).len(), 2);
    }

    #[test]
    fn a_marker_cut_or_without_its_terminator_is_skipped() {
        assert_eq!(chunk_stamps(b"\"text\":\"tok1 @ts=17"), Vec::<u128>::new());
        assert_eq!(chunk_stamps(b"\"text\":\"tok1 @ts=17\"}"), Vec::<u128>::new());
        assert_eq!(chunk_stamps(b"\"text\":\"@ts=; @ts=x;\""), Vec::<u128>::new());
    }

    #[test]
    fn a_native_chunk_with_field_and_marker_counts_once() {
        let mut chunk = String::new();
        chunk.push_str("data: {\"model\":\"bench-model\",\"bench_ts_ns\":42,\"choices\":[{\"index\":0,");
        chunk.push_str("\"delta\":{\"content\":\"tok0 @ts=42; \"},\"finish_reason\":null}]}\n\n");
        let chunk = chunk.as_bytes();
        assert_eq!(chunk_stamps(chunk), vec![42, 42]);
        assert_eq!(record(&[chunk]).len(), 1);
        // Split between the field and the marker by a frame boundary: still once.
        let cut = chunk.windows(4).position(|w| w == b"tok0").unwrap();
        assert_eq!(record(&[&chunk[..cut], &chunk[cut..]]).len(), 1);
        // Two chunks (different stamps) in one frame: twice.
        let second = String::from_utf8_lossy(chunk).replace("42", "43");
        assert_eq!(record(&[&[chunk, second.as_bytes()].concat()]).len(), 2);
    }

    #[test]
    fn the_mock_s_chunks_carry_both_forms_with_one_time() {
        let chunk = crate::mock::content_chunk("bench-model", 3);
        let stamps = chunk_stamps(chunk.as_bytes());
        assert_eq!(stamps.len(), 2, "{chunk}");
        assert_eq!(stamps[0], stamps[1]);
        let value: serde_json::Value =
            serde_json::from_str(chunk.trim_start_matches("data: ").trim()).unwrap();
        let text = value["choices"][0]["delta"]["content"].as_str().unwrap();
        assert_eq!(text, format!("tok3 @ts={}; ", stamps[0]));
    }
}
