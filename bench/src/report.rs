//! Turning measurements into the table and the JSON file.

use hdrhistogram::Histogram;
use serde_json::{Value, json};

use crate::load::Summary;

/// The quantiles reported everywhere.
pub const QUANTILES: [(&str, f64); 4] = [("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("p99.9", 0.999)];

/// A histogram value at `quantile`, in microseconds.
pub fn us(histogram: &Histogram<u64>, quantile: f64) -> f64 {
    histogram.value_at_quantile(quantile) as f64 / 1000.0
}

/// Latency quantiles and max in microseconds, or `null` for an empty histogram.
pub fn histogram_json(histogram: &Histogram<u64>) -> Value {
    if histogram.is_empty() {
        return Value::Null;
    }
    let mut map = serde_json::Map::new();
    for (name, quantile) in QUANTILES {
        map.insert(format!("{name}_us"), json!(round(us(histogram, quantile))));
    }
    map.insert("max_us".into(), json!(round(histogram.max() as f64 / 1000.0)));
    map.insert("mean_us".into(), json!(round(histogram.mean() / 1000.0)));
    Value::Object(map)
}

/// Everything a load run measured, as JSON.
pub fn summary_json(summary: &Summary) -> Value {
    json!({
        "rate": summary.rate,
        "ok": summary.ok,
        "errors": summary.errors,
        "first_error": summary.first_error,
        "req_per_s": round(summary.throughput()),
        "latency": histogram_json(&summary.latency),
        "first_chunk": histogram_json(&summary.first_chunk),
        "chunk": histogram_json(&summary.chunk),
    })
}

/// A human-readable report of one load run (the `load` subcommand).
pub fn summary_text(summary: &Summary) -> String {
    let mut out = format!(
        "requests {} ok, {} errors in {:.2} s: {:.0} req/s{}\n",
        summary.ok,
        summary.errors,
        summary.elapsed.as_secs_f64(),
        summary.throughput(),
        summary.rate.map(|r| format!(" (target {r:.0})")).unwrap_or_default()
    );
    if let Some(error) = &summary.first_error {
        out.push_str(&format!("first error: {error}\n"));
    }
    for (label, histogram) in
        [("latency", &summary.latency), ("first chunk", &summary.first_chunk), ("per chunk", &summary.chunk)]
    {
        if histogram.is_empty() {
            continue;
        }
        out.push_str(&format!("{label:<12}"));
        for (name, quantile) in QUANTILES {
            out.push_str(&format!(" {name} {:>9.1} µs", us(histogram, quantile)));
        }
        out.push_str(&format!(" max {:>9.1} µs\n", histogram.max() as f64 / 1000.0));
    }
    out
}

/// KiB (as `/proc` reports memory) in MiB.
pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Rounds to 0.1 for readable JSON.
pub fn round(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}
