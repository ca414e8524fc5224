//! Metering one request: its cost estimate before it goes upstream, and at the end its real
//! cost, settlement and usage report.
use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use router_proto::{Money, Multiplier, Tariff, TokenUsage, cost, pb};

use super::{endpoint::Endpoint, request::BodyPermit, sanity::Bounds, tokenize, usage};
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

/// The most output a request may produce: its `max_tokens`, else the model's cap, else
/// [`DEFAULT_MAX_OUTPUT_TOKENS`].
pub fn output_cap(model: &ModelInfo, max_output: Option<u64>) -> u64 {
    max_output.or(model.max_output_tokens).unwrap_or(DEFAULT_MAX_OUTPUT_TOKENS)
}

/// What a request reserves before it runs: its whole input (bounded by the body's size: a
/// token is at least one byte of JSON text, and usually several) and `min(output_cap,
/// reserve_output)` output tokens (`reserve_output` 0: the whole cap, the strict mode).
///
/// Coding agents ask for far more output than a turn uses (Claude Code: `max_tokens: 32000`),
/// so reserving the whole cap would refuse a turn that costs a tenth of what is left. What an
/// admitted request costs beyond its reservation is bounded by `(output_cap - reserved output)
/// × output price × multiplier`: the overspend bound of README "Quotas".
pub fn estimate(
    model: &ModelInfo,
    multiplier: Multiplier,
    body_len: usize,
    output_cap: u64,
    reserve_output: u64,
) -> Money {
    let output = if reserve_output == 0 { output_cap } else { output_cap.min(reserve_output) };
    let input = (body_len as u64).div_ceil(2);
    // Input tokens are priced at the dearest input rate: a cache write can cost more than
    // plain input (Anthropic: 1.25×), and the reservation must cover the whole input.
    let writes_cost_more =
        matches!(&model.tariff, Tariff::Tokens(p) if p.cache_write.is_some_and(|w| w > p.input));
    let usage = if writes_cost_more {
        TokenUsage { cache_write: input, output, ..TokenUsage::default() }
    } else {
        TokenUsage { input, output, ..TokenUsage::default() }
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
    /// The name the client asked for, when it is an alias of `model`.
    pub requested_model: Option<Box<str>>,
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
    /// The endpoint called upstream on it (the client's, unless the request is converted).
    upstream: Endpoint,
    /// The request body's share of the body budget, returned with the meter.
    body_permit: Option<BodyPermit>,
}

/// What a finished request produced.
#[derive(Debug, Clone, Default)]
pub struct Produced {
    /// Usage as the upstream reported it.
    pub usage: Option<TokenUsage>,
    /// Raw answer text (stream payloads or a body) to count locally when it reported none.
    pub raw_output: Vec<Bytes>,
    /// Bytes of stream payloads beyond what `raw_output` keeps: counted at the kept part's
    /// rate of tokens per byte.
    pub dropped_output_bytes: usize,
    /// Time to the upstream's first byte.
    pub first_byte: Option<Duration>,
}

impl Meter {
    /// A meter for one request, holding its reservation until it is finished.
    pub fn new(app: &App, bill: Bill, reservation: Reservation, request_body: Bytes) -> Meter {
        let upstream = bill.endpoint;
        Meter {
            bill,
            reservation: Some(reservation),
            reporter: app.reporter.clone(),
            metrics: Arc::clone(&app.metrics),
            started: Instant::now(),
            request_body,
            channel: None,
            upstream,
            body_permit: None,
        }
    }

    /// Holds the request body's budget share until the request is billed.
    pub fn hold(&mut self, permit: BodyPermit) {
        self.body_permit = Some(permit);
    }

    /// Notes the channel now being tried and the endpoint called on it: the ones the usage
    /// report names (and whose dialect a local count reads).
    pub fn trying(&mut self, channel: &Arc<str>, upstream: Endpoint) {
        self.channel = Some(Arc::clone(channel));
        self.upstream = upstream;
    }

    /// Bills the request and hands its usage report over.
    pub fn finish(mut self, outcome: Outcome, produced: Produced) {
        let (usage, adjusted) = match outcome {
            Outcome::UpstreamError => (TokenUsage::default(), false),
            Outcome::Ok | Outcome::Incomplete => {
                // The local count (only when the report is missing or not believed) is CPU
                // work: it runs off the worker threads.
                let checked = self.bill.bounds.check(&self.request_body, produced.usage, || {
                    tokenize::off_the_workers(|| self.count_locally(&produced))
                });
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
        let tokens = usage.input + usage.cached_input + usage.cache_write + usage.output;
        let lease_id = self.reservation.take().and_then(|r| r.settle_with(cost, tokens));
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
            requested_model: self.bill.requested_model.take().map(String::from).unwrap_or_default(),
            client_protocol: self.bill.endpoint.protocol().as_str().to_owned(),
            upstream_protocol: self.upstream.protocol().as_str().to_owned(),
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

    fn count_locally(&self, produced: &Produced) -> TokenUsage {
        let input = tokenize::count_json_strings(&self.request_body);
        // The kept output is the upstream's, in its protocol.
        let text = usage::answer_text(&produced.raw_output, self.upstream.dialect());
        let mut output = tokenize::count(&text);
        let kept: usize = produced.raw_output.iter().map(Bytes::len).sum();
        if produced.dropped_output_bytes > 0 && kept > 0 {
            let all = kept as u128 + produced.dropped_output_bytes as u128;
            output = u64::try_from((u128::from(output) * all).div_ceil(kept as u128)).unwrap_or(u64::MAX);
        }
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

#[cfg(test)]
mod tests {
    use router_proto::TokenPrices;

    use super::*;

    fn model(max_output_tokens: Option<u64>) -> ModelInfo {
        let prices = TokenPrices {
            input: Money::parse("3").expect("price"),
            output: Money::parse("15").expect("price"),
            cached_input: None,
            cache_write: None,
        };
        ModelInfo {
            name: Arc::from("m"),
            tariff: Tariff::Tokens(prices),
            max_output_tokens,
            model_group: None,
        }
    }

    #[test]
    fn reservations_cover_the_input_and_part_of_the_output() {
        let m = model(None);
        assert_eq!(output_cap(&m, Some(32_000)), 32_000);
        assert_eq!(output_cap(&m, None), DEFAULT_MAX_OUTPUT_TOKENS);
        assert_eq!(output_cap(&model(Some(64_000)), None), 64_000);
        // 2,000 bytes of body: at most 1,000 input tokens ($0.003) + 4,096 output ($0.06144).
        let reserved = estimate(&m, Multiplier::ONE, 2_000, 32_000, 4_096);
        assert_eq!(reserved, Money::parse("0.06444").expect("amount"));
        // Strict: the whole cap, 32,000 × $15 / 1M = $0.48.
        let strict = estimate(&m, Multiplier::ONE, 2_000, 32_000, 0);
        assert_eq!(strict, Money::parse("0.483").expect("amount"));
        // A cap below the reserve is reserved whole.
        assert_eq!(estimate(&m, Multiplier::ONE, 0, 100, 4_096), estimate(&m, Multiplier::ONE, 0, 100, 0));
        // Cache writes dearer than input ($3.75): the input is reserved at that price.
        let mut cached = model(None);
        if let Tariff::Tokens(prices) = &mut cached.tariff {
            prices.cache_write = Some(Money::parse("3.75").expect("price"));
        }
        assert_eq!(estimate(&cached, Multiplier::ONE, 2_000, 0, 0), Money::parse("0.00375").expect("amount"));
    }
}
