//! Metering one request: its cost estimate before it goes upstream, and at the end its real
//! cost, settlement and usage report.
use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use router_proto::{Money, Multiplier, TokenUsage, cost, pb};

use super::{endpoint::Endpoint, sanity::Bounds, tokenize, usage};
use crate::{app::App, metrics::Metrics, policy::ModelInfo, quota::Reservation, report::Reporter};

/// Output tokens assumed for a request with no `max_tokens` on a model with no configured cap.
pub const DEFAULT_MAX_OUTPUT_TOKENS: u64 = 4096;

/// How a request ended, for its usage record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A complete, successful answer.
    Ok,
    /// A stream that broke or was abandoned after content reached the client.
    Incomplete,
    /// The upstream failed or refused; nothing billable reached the client.
    UpstreamError,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Incomplete => "incomplete",
            Outcome::UpstreamError => "upstream_error",
        }
    }
}

/// The most a request can cost, before it runs: input bounded by the body's size (a token
/// is at least one byte of JSON text, and usually several), output by `max_tokens` or the
/// model's cap.
pub fn estimate(
    model: &ModelInfo,
    multiplier: Multiplier,
    body_len: usize,
    max_output: Option<u64>,
) -> Money {
    let usage = TokenUsage {
        input: (body_len as u64).div_ceil(2),
        output: max_output.or(model.max_output_tokens).unwrap_or(DEFAULT_MAX_OUTPUT_TOKENS),
        ..TokenUsage::default()
    };
    cost(&model.tariff, &usage, multiplier).unwrap_or(Money::MAX)
}

/// Whose request it is and how it is priced: what billing needs besides the answer.
pub struct Bill {
    /// The request's id (also `x-request-id`).
    pub request_id: Arc<str>,
    /// The key that pays.
    pub key_id: i64,
    /// The model, as priced.
    pub model: Arc<ModelInfo>,
    /// The key's group multiplier.
    pub multiplier: Multiplier,
    /// The endpoint the client called.
    pub endpoint: Endpoint,
    /// What the request allowed: usage reported beyond it is not believed.
    pub bounds: Bounds,
}

/// Everything needed to bill one request when it ends; dropping it unfinished settles at zero.
pub struct Meter {
    bill: Bill,
    reservation: Option<Reservation>,
    reporter: Reporter,
    metrics: Arc<Metrics>,
    started: Instant,
    request_body: Bytes,
    /// The channel being tried (the last one tried, when all failed).
    channel: Option<Arc<str>>,
}

/// What a finished request produced.
#[derive(Debug, Clone, Default)]
pub struct Produced {
    /// Usage as the upstream reported it.
    pub usage: Option<TokenUsage>,
    /// Raw answer text (stream payloads or a body) to count locally when it reported none.
    pub raw_output: Vec<Bytes>,
    /// Time to the upstream's first byte.
    pub first_byte: Option<Duration>,
}

impl Meter {
    /// A meter for one request, holding its reservation until it is finished.
    pub fn new(app: &App, bill: Bill, reservation: Reservation, request_body: Bytes) -> Meter {
        Meter {
            bill,
            reservation: Some(reservation),
            reporter: app.reporter.clone(),
            metrics: Arc::clone(&app.metrics),
            started: Instant::now(),
            request_body,
            channel: None,
        }
    }

    /// Notes the channel now being tried: the one the usage report names.
    pub fn trying(&mut self, channel: &Arc<str>) {
        self.channel = Some(Arc::clone(channel));
    }

    /// Bills the request and hands its usage report over.
    pub fn finish(mut self, outcome: Outcome, produced: Produced) {
        let (usage, adjusted) = match outcome {
            Outcome::UpstreamError => (TokenUsage::default(), false),
            Outcome::Ok | Outcome::Incomplete => {
                let checked = self
                    .bill
                    .bounds
                    .check(&self.request_body, produced.usage, || self.count_locally(&produced.raw_output));
                (checked.usage, checked.adjusted)
            }
        };
        let cost = if outcome == Outcome::UpstreamError {
            Money::ZERO
        } else {
            cost(&self.bill.model.tariff, &usage, self.bill.multiplier).unwrap_or_else(|error| {
                tracing::error!(%error, request_id = %self.bill.request_id, "cost overflow; billing the reservation");
                self.reservation.as_ref().map_or(Money::ZERO, Reservation::amount)
            })
        };
        let lease_id = self.reservation.take().and_then(|r| r.settle(cost));
        // Every request is finished after a channel was tried (`forward` sees to that).
        let channel = self.channel.take().unwrap_or_else(|| Arc::from(""));
        if adjusted {
            tracing::warn!(request_id = %self.bill.request_id, channel = %channel, reported = ?produced.usage, billed = ?usage, "usage beyond what the request allowed; billed from the local count, capped");
            self.metrics.usage_adjusted(&channel);
        }
        let duration = self.started.elapsed();
        let report = pb::UsageReport {
            request_id: self.bill.request_id.to_string(),
            key_id: self.bill.key_id,
            model: self.bill.model.name.to_string(),
            channel: channel.to_string(),
            endpoint: self.bill.endpoint.as_str().to_owned(),
            input_tokens: clamp(usage.input),
            cached_input_tokens: clamp(usage.cached_input),
            cache_write_tokens: clamp(usage.cache_write),
            output_tokens: clamp(usage.output),
            cost_nanos: cost.nanos(),
            status: outcome.as_str().to_owned(),
            created_at_unix_micros: unix_micros(),
            duration_ms: i64::try_from(duration.as_millis()).unwrap_or(i64::MAX),
            first_byte_ms: produced
                .first_byte
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            lease_id,
            usage_adjusted: adjusted,
        };
        self.metrics.finished(
            self.bill.endpoint.as_str(),
            &self.bill.model.name,
            &channel,
            outcome.as_str(),
            cost,
        );
        if let Err(error) = self.reporter.record(report) {
            tracing::error!(%error, request_id = %self.bill.request_id, "usage report not recorded");
        }
    }

    fn count_locally(&self, raw_output: &[Bytes]) -> TokenUsage {
        let input = tokenize::count_json_strings(&self.request_body);
        let text = usage::answer_text(raw_output, self.bill.endpoint.dialect());
        let output = tokenize::count(&text);
        TokenUsage { input, output, ..TokenUsage::default() }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        // Refused or abandoned before reaching upstream: release the reservation.
        if let Some(reservation) = self.reservation.take() {
            reservation.settle(Money::ZERO);
        }
    }
}

fn clamp(tokens: u64) -> i64 {
    i64::try_from(tokens).unwrap_or(i64::MAX)
}

fn unix_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}
