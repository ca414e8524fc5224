//! Prometheus metrics: requests by endpoint/model/channel/status, refusals, upstream and added
//! latency, money billed, policy version and undelivered usage reports.
use std::sync::Arc;

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use router_proto::Money;

/// Labels of a finished request: static strings and names shared with the policy, so that
/// counting a request allocates nothing.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: &'static str,
    model: Arc<str>,
    channel: Arc<str>,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabels {
    channel: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    endpoint: &'static str,
    code: &'static str,
}

/// The data plane's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    refusals: Family<RefusalLabels, Counter>,
    upstream_latency: Histogram,
    added_latency: Histogram,
    billed: Counter,
    policy_version: Gauge,
    spool_depth: Gauge,
    usage_adjusted: Family<ChannelLabels, Counter>,
    reports_quarantined: Counter,
    reports_set_aside: Counter,
    rate_limited: Family<LimitLabels, Counter>,
}

fn latency_buckets() -> impl Iterator<Item = f64> {
    [
        0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        5.0, 10.0, 30.0, 60.0,
    ]
    .into_iter()
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::with_prefix("router");
        let requests = Family::<RequestLabels, Counter>::default();
        let refusals = Family::<RefusalLabels, Counter>::default();
        let upstream_latency = Histogram::new(latency_buckets());
        let added_latency = Histogram::new(latency_buckets());
        let billed = Counter::default();
        let policy_version = Gauge::default();
        let spool_depth = Gauge::default();
        let usage_adjusted = Family::<ChannelLabels, Counter>::default();
        let reports_quarantined = Counter::default();
        let reports_set_aside = Counter::default();
        let rate_limited = Family::<LimitLabels, Counter>::default();
        registry.register(
            "rate_limited",
            "Requests refused by a rate limit, by kind (rpm, tpm, concurrency)",
            rate_limited.clone(),
        );
        registry.register("requests", "Requests forwarded upstream, by outcome", requests.clone());
        registry.register("refusals", "Requests refused before reaching an upstream", refusals.clone());
        registry.register(
            "upstream_latency_seconds",
            "Time from sending upstream to its response headers",
            upstream_latency.clone(),
        );
        registry.register(
            "added_latency_seconds",
            "Time the gateway spent before forwarding a request",
            added_latency.clone(),
        );
        registry.register("billed_nano_units", "Money billed, in nano-units of the currency", billed.clone());
        registry.register("policy_version", "Version of the policy in force", policy_version.clone());
        registry.register(
            "spool_depth",
            "Usage reports not yet acknowledged by the control plane",
            spool_depth.clone(),
        );
        registry.register(
            "usage_adjusted",
            "Requests whose upstream reported more usage than the request allowed, by channel",
            usage_adjusted.clone(),
        );
        registry.register(
            "usage_reports_quarantined",
            "Usage reports the control plane refused as invalid and set aside in its quarantine",
            reports_quarantined.clone(),
        );
        registry.register(
            "usage_reports_set_aside",
            "Usage reports refused by the control plane, set aside in the spool's quarantine file",
            reports_set_aside.clone(),
        );
        Metrics {
            registry,
            requests,
            refusals,
            upstream_latency,
            added_latency,
            billed,
            policy_version,
            spool_depth,
            usage_adjusted,
            reports_quarantined,
            reports_set_aside,
            rate_limited,
        }
    }
}

impl Metrics {
    /// A request forwarded upstream ended.
    pub fn finished(
        &self,
        endpoint: &'static str,
        model: &Arc<str>,
        channel: &Arc<str>,
        status: &'static str,
        cost: Money,
    ) {
        let labels =
            RequestLabels { endpoint, model: Arc::clone(model), channel: Arc::clone(channel), status };
        self.requests.get_or_create(&labels).inc();
        let nanos = u64::try_from(cost.nanos()).unwrap_or(0);
        self.billed.inc_by(nanos);
    }

    /// A channel's upstream reported usage beyond what the request allowed.
    pub fn usage_adjusted(&self, channel: &Arc<str>) {
        self.usage_adjusted.get_or_create(&ChannelLabels { channel: Arc::clone(channel) }).inc();
    }

    /// The control plane quarantined `count` reports of an acknowledged batch.
    pub fn reports_quarantined(&self, count: u64) {
        self.reports_quarantined.inc_by(count);
    }

    /// A report the control plane keeps refusing was set aside locally.
    pub fn report_set_aside(&self) {
        self.reports_set_aside.inc();
    }

    /// A request was refused by a rate limit of `kind`.
    pub fn rate_limited(&self, kind: &'static str) {
        self.rate_limited.get_or_create(&LimitLabels { kind }).inc();
    }

    /// A request was refused by a check.
    pub fn refused(&self, endpoint: &'static str, code: &'static str) {
        self.refusals.get_or_create(&RefusalLabels { endpoint, code }).inc();
    }

    /// Upstream answered after `seconds`.
    pub fn upstream_latency(&self, seconds: f64) {
        self.upstream_latency.observe(seconds);
    }

    /// The gateway's own work before forwarding took `seconds`.
    pub fn added_latency(&self, seconds: f64) {
        self.added_latency.observe(seconds);
    }

    /// The Prometheus text exposition, with the gauges brought up to date.
    pub fn render(&self, policy_version: u64, spool_depth: u64) -> String {
        self.policy_version.set(i64::try_from(policy_version).unwrap_or(i64::MAX));
        self.spool_depth.set(i64::try_from(spool_depth).unwrap_or(i64::MAX));
        let mut text = String::new();
        if encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}
