//! Server-sent events passed through as they arrive, event by event, while usage is read from
//! them — or, on a converted request, each upstream event turned into the client protocol's
//! events as it arrives ([`StreamConverter`]), usage read from the upstream's. The request is
//! billed and its report handed over before the client's terminal event goes out; a stream
//! that breaks, stalls or is abandoned by the client is billed for what was produced and
//! recorded as `incomplete`.
use std::{
    collections::VecDeque,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use super::{
    meter::{Meter, Outcome, Produced},
    usage::{self, Dialect, EventUsage, StreamUsage},
};
use crate::convert::StreamConverter;

/// Most answer bytes kept for counting tokens locally when the upstream reports no usage; the
/// bytes beyond are counted at the kept part's rate.
const MAX_KEPT_OUTPUT: usize = 4 * 1024 * 1024;

/// How long a stream may stall and how large one event may grow.
#[derive(Debug, Clone, Copy)]
pub struct StreamLimits {
    /// Longest gap between two upstream chunks.
    pub idle: Duration,
    /// Largest event (`--max-event-bytes`): a stream whose event grows beyond it is cut.
    pub max_event_bytes: usize,
}

/// One complete event: its bytes as received, its `event:` name and joined `data:` payload.
pub struct Event {
    /// The event's bytes as received, blank line included.
    pub raw: Bytes,
    /// The `event:` name, if any.
    pub name: Option<Bytes>,
    /// The `data:` lines' payloads joined by newlines.
    pub data: Bytes,
}

/// Splits a byte stream into SSE events (public for the benchmarks).
#[derive(Default)]
pub struct Parser {
    buffer: BytesMut,
    /// How far the buffer is known to hold no event end: a long event is scanned once, not
    /// again with every chunk.
    scanned: usize,
}

impl Parser {
    /// Appends received bytes.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buffer.extend_from_slice(chunk);
    }

    /// The next complete event, if the buffer holds one.
    pub fn next_event(&mut self) -> Option<Event> {
        // An event end (`\n\n` or `\n\r\n`) may begin up to two bytes before the scanned part.
        let from = self.scanned.saturating_sub(2);
        let Some(end) = event_end(&self.buffer[from..]).map(|end| from + end) else {
            self.scanned = self.buffer.len();
            return None;
        };
        self.scanned = 0;
        let raw = self.buffer.split_to(end).freeze();
        let mut name = None;
        let mut data = BytesMut::new();
        for line in raw.split(|b| *b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if let Some(value) = line.strip_prefix(b"data:") {
                if !data.is_empty() {
                    data.extend_from_slice(b"\n");
                }
                data.extend_from_slice(value.strip_prefix(b" ").unwrap_or(value));
            } else if let Some(value) = line.strip_prefix(b"event:") {
                name = Some(Bytes::copy_from_slice(value.strip_prefix(b" ").unwrap_or(value)));
            }
        }
        Some(Event { raw, name, data: data.freeze() })
    }

    fn take_rest(&mut self) -> Bytes {
        self.scanned = 0;
        self.buffer.split().freeze()
    }

    /// Bytes held of an event not yet ended.
    pub fn pending(&self) -> usize {
        self.buffer.len()
    }
}

/// Where the event ending at the first blank line ends (after the blank line).
fn event_end(buffer: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(at) = memchr::memchr(b'\n', &buffer[from..]) {
        let at = from + at;
        let rest = &buffer[at + 1..];
        if rest.first() == Some(&b'\n') {
            return Some(at + 2);
        }
        if rest.starts_with(b"\r\n") {
            return Some(at + 3);
        }
        from = at + 1;
    }
    None
}

/// Whether an event ends the answer: OpenAI's `[DONE]`, Anthropic's `message_stop`, the
/// Responses API's final `response.*` events.
fn is_terminal(event: &Event, dialect: Dialect) -> bool {
    match dialect {
        Dialect::OpenAi => event.data.as_ref() == b"[DONE]",
        Dialect::Anthropic => event.name.as_deref() == Some(b"message_stop".as_slice()),
        Dialect::Responses => matches!(
            event.name.as_deref(),
            Some(b"response.completed" | b"response.incomplete" | b"response.failed")
        ),
    }
}

/// Whether an event is the usage-only chunk the gateway asked for on the client's behalf.
pub fn is_injected_usage(event: &Event) -> bool {
    #[derive(serde::Deserialize)]
    struct Chunk<'a> {
        #[serde(borrow)]
        choices: Option<Vec<&'a serde_json::value::RawValue>>,
    }
    serde_json::from_slice::<Chunk<'_>>(&event.data).is_ok_and(|c| c.choices.is_some_and(|c| c.is_empty()))
}

/// The client-facing stream.
pub struct MeteredStream {
    upstream: Incoming,
    idle_timeout: Duration,
    max_event_bytes: usize,
    idle: Pin<Box<Sleep>>,
    parser: Parser,
    dialect: Dialect,
    strip_injected_usage: bool,
    usage: StreamUsage,
    kept: Vec<Bytes>,
    kept_bytes: usize,
    dropped_bytes: usize,
    produced_content: bool,
    meter: Option<Meter>,
    first_byte: Duration,
    ready: VecDeque<Bytes>,
    done: bool,
    /// A converted request's stream converter (`None`: passed through as received).
    converter: Option<Box<StreamConverter>>,
}

impl MeteredStream {
    /// Wraps an upstream stream in `dialect` (`first_byte` after it was asked); `meter` bills
    /// it when it ends; `converter` (a converted request) turns it into the client's protocol.
    pub fn new(
        upstream: Incoming,
        dialect: Dialect,
        strip_injected_usage: bool,
        limits: StreamLimits,
        meter: Meter,
        first_byte: Duration,
        converter: Option<Box<StreamConverter>>,
    ) -> MeteredStream {
        MeteredStream {
            upstream,
            idle_timeout: limits.idle,
            max_event_bytes: limits.max_event_bytes,
            idle: Box::pin(tokio::time::sleep(limits.idle)),
            parser: Parser::default(),
            dialect,
            strip_injected_usage,
            usage: StreamUsage::default(),
            kept: Vec::new(),
            kept_bytes: 0,
            dropped_bytes: 0,
            produced_content: false,
            meter: Some(meter),
            first_byte,
            ready: VecDeque::new(),
            done: false,
            converter,
        }
    }

    fn finish(&mut self, outcome: Outcome) {
        if let Some(meter) = self.meter.take() {
            let produced = Produced {
                usage: self.usage.get(),
                raw_output: std::mem::take(&mut self.kept),
                dropped_output_bytes: self.dropped_bytes,
                first_byte: Some(self.first_byte),
            };
            // Nothing reached the client: the failed request is free.
            let outcome = if outcome == Outcome::Incomplete && !self.produced_content {
                Outcome::UpstreamError
            } else {
                outcome
            };
            meter.finish(outcome, produced);
        }
    }

    /// Takes in a chunk: complete events become ready to send.
    fn take_in(&mut self, chunk: &[u8]) {
        self.parser.push(chunk);
        let mut out = BytesMut::new();
        while let Some(event) = self.parser.next_event() {
            let event_usage = if event.data.is_empty() {
                EventUsage::None
            } else {
                usage::from_event(&event.data, self.dialect)
            };
            self.usage.observe(event_usage);
            if self.converter.is_some() {
                self.convert(&event, &mut out);
                if self.done {
                    break;
                }
                continue;
            }
            if is_terminal(&event, self.dialect) {
                // Billed and reported before the terminal event goes out.
                if !out.is_empty() {
                    self.ready.push_back(out.split().freeze());
                }
                self.finish(Outcome::Ok);
                self.ready.push_back(event.raw);
                continue;
            }
            // Only a chunk carrying usage can be the injected one: the rest skip the parse.
            if self.strip_injected_usage
                && self.dialect == Dialect::OpenAi
                && matches!(event_usage, EventUsage::Total(_))
                && is_injected_usage(&event)
            {
                continue;
            }
            if !event.data.is_empty() {
                self.keep(&event.data);
            }
            out.extend_from_slice(&event.raw);
        }
        if !out.is_empty() {
            self.ready.push_back(out.freeze());
        }
        if !self.done && self.parser.pending() > self.max_event_bytes {
            self.oversized();
        }
    }

    /// Keeps an event's payload for a local count (its length only, beyond the kept bytes).
    fn keep(&mut self, data: &Bytes) {
        self.produced_content = true;
        if self.kept_bytes + data.len() <= MAX_KEPT_OUTPUT {
            self.kept_bytes += data.len();
            self.kept.push(data.clone());
        } else {
            self.dropped_bytes += data.len();
        }
    }

    /// An upstream event grew beyond `--max-event-bytes` without ending: the stream is cut
    /// there (the partial event is not sent on), billed for what was produced.
    fn oversized(&mut self) {
        let cut = self.parser.take_rest();
        tracing::warn!(
            bytes = cut.len(),
            limit = self.max_event_bytes,
            "an upstream event exceeds --max-event-bytes; cutting the stream"
        );
        // The upstream did work on the request: it is billed as incomplete, not free.
        self.produced_content = true;
        self.dropped_bytes += cut.len().min(self.max_event_bytes);
        drop(cut);
        self.broke(&format!("an upstream event exceeded {} bytes", self.max_event_bytes));
    }

    /// One upstream event of a converted stream: its client events go to `out`. The request
    /// is billed once the client's stream is closed — before its terminal event leaves — and
    /// the rest of the upstream's is not read.
    fn convert(&mut self, event: &Event, out: &mut BytesMut) {
        if !event.data.is_empty() {
            self.keep(&event.data);
        }
        let Some(converter) = self.converter.as_mut() else { return };
        converter.event(event.name.as_deref(), &event.data, out);
        // The upstream's answer is complete though the converter did not close on its last
        // event: close the client's stream as complete as it is.
        if is_terminal(event, self.dialect) && !converter.is_finished() {
            converter.fail("the upstream stream ended", out);
        }
        if converter.is_finished() {
            let outcome = if converter.is_complete() { Outcome::Ok } else { Outcome::Incomplete };
            self.finish(outcome);
            if !out.is_empty() {
                self.ready.push_back(out.split().freeze());
            }
            self.done = true;
        }
    }

    /// The stream broke: bill what was produced, tell the client in its protocol.
    fn broke(&mut self, why: &str) {
        if let Some(converter) = self.converter.as_mut() {
            // The converter closes the client's stream in its protocol: as the complete answer
            // when the upstream had already given its stop reason, else with an error event.
            let mut out = BytesMut::new();
            if !converter.is_finished() {
                tracing::warn!(why, "upstream stream ended early");
                converter.fail(&format!("upstream stream ended early: {why}"), &mut out);
            }
            let outcome = if converter.is_complete() { Outcome::Ok } else { Outcome::Incomplete };
            self.finish(outcome);
            if !out.is_empty() {
                self.ready.push_back(out.freeze());
            }
            self.done = true;
            return;
        }
        let rest = self.parser.take_rest();
        if !rest.is_empty() {
            self.ready.push_back(rest);
        }
        let billed = self.meter.is_some();
        self.finish(Outcome::Incomplete);
        if billed {
            tracing::warn!(why, "upstream stream ended early");
            let message = serde_json::json!(format!("upstream stream ended early: {why}"));
            let event = match self.dialect {
                Dialect::Anthropic => format!(
                    "event: error\ndata: {{\"type\":\"error\",\"error\":{{\"type\":\"api_error\",\"message\":{message}}}}}\n\n"
                ),
                Dialect::OpenAi | Dialect::Responses => format!(
                    "data: {{\"error\":{{\"message\":{message},\"type\":\"upstream_error\",\"code\":\"upstream_error\"}}}}\n\n"
                ),
            };
            self.ready.push_back(Bytes::from(event));
        }
        self.done = true;
    }
}

impl Body for MeteredStream {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = &mut *self;
        loop {
            if let Some(bytes) = this.ready.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(bytes))));
            }
            if this.done {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.upstream).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let deadline = Instant::now() + this.idle_timeout;
                    this.idle.as_mut().reset(deadline);
                    if let Ok(data) = frame.into_data() {
                        this.take_in(&data);
                    }
                }
                Poll::Ready(Some(Err(error))) => this.broke(&error.to_string()),
                Poll::Ready(None) => {
                    if this.meter.is_some() {
                        this.broke("the upstream closed the stream without finishing it");
                    } else {
                        let rest = this.parser.take_rest();
                        if !rest.is_empty() {
                            this.ready.push_back(rest);
                        }
                        this.done = true;
                    }
                }
                Poll::Pending => {
                    if this.idle.as_mut().poll(cx).is_ready() {
                        this.broke("no data within the idle timeout");
                        continue;
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

impl Drop for MeteredStream {
    fn drop(&mut self) {
        // The client went away mid-stream: bill what was produced.
        self.finish(Outcome::Incomplete);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(input: &[&[u8]]) -> Vec<(Option<String>, String)> {
        let mut parser = Parser::default();
        let mut out = Vec::new();
        for chunk in input {
            parser.push(chunk);
            while let Some(e) = parser.next_event() {
                let name = e.name.map(|n| String::from_utf8_lossy(&n).into_owned());
                out.push((name, String::from_utf8_lossy(&e.data).into_owned()));
            }
        }
        out
    }

    #[test]
    fn splits_events_across_chunks_and_line_endings() {
        let parsed = events(&[
            b"data: {\"a\"",
            b":1}\n\nevent: message_stop\r\ndata: {}\r\n\r\ndata: x\ndata: y\n\n",
            b"data: [DO",
        ]);
        assert_eq!(
            parsed,
            vec![
                (None, "{\"a\":1}".to_owned()),
                (Some("message_stop".to_owned()), "{}".to_owned()),
                (None, "x\ny".to_owned())
            ]
        );
    }

    #[test]
    fn recognizes_terminal_and_injected_events() {
        let mut parser = Parser::default();
        parser.push(
            b"data: [DONE]\n\nevent: message_stop\ndata: {}\n\ndata: {\"choices\":[],\"usage\":{}}\n\n",
        );
        let done = parser.next_event().expect("event");
        assert!(is_terminal(&done, Dialect::OpenAi));
        let stop = parser.next_event().expect("event");
        assert!(is_terminal(&stop, Dialect::Anthropic) && !is_terminal(&stop, Dialect::OpenAi));
        assert!(is_injected_usage(&parser.next_event().expect("event")));
    }
}
