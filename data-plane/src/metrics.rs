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
        Metrics {
            registry,
            requests,
            refusals,
            upstream_latency,
            added_latency,
            billed,
            policy_version,
            spool_depth,
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
