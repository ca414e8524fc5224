//! The human-readable report of a run.

use std::fmt::Write;

use super::{Converted, Limited, Measurement, Path};
use crate::cli::RunArgs;
use crate::report::{mib, round, us};

/// Data-plane latency minus forwarder latency at p50, p99 and p99.9, in µs.
pub fn added(row: &[Measurement]) -> Option<[f64; 3]> {
    let forward = row.iter().find(|m| m.path == Path::Forward)?;
    let gateway = row.iter().find(|m| m.path == Path::Gateway)?;
    let diff = |q| round(us(&gateway.summary.latency, q) - us(&forward.summary.latency, q));
    Some([diff(0.5), diff(0.99), diff(0.999)])
}

/// Converted minus native data-plane streaming: chunk p50, chunk p99 (µs) and CPU µs/request.
pub fn converted_over_native(streaming: &[Measurement], converted: &Measurement) -> Option<[f64; 3]> {
    let native = streaming.iter().find(|m| m.path == Path::Gateway)?;
    let chunk = |m: &Measurement, q| us(&m.summary.chunk, q);
    Some([
        round(chunk(converted, 0.5) - chunk(native, 0.5)),
        round(chunk(converted, 0.99) - chunk(native, 0.99)),
        round(converted.cpu_us_per_request? - native.cpu_us_per_request?),
    ])
}

fn cpu(m: &Measurement) -> String {
    m.cpu_us_per_request.map(|c| format!("{c:.1}")).unwrap_or_else(|| "-".into())
}

/// The whole table.
#[allow(clippy::too_many_arguments)]
pub fn render(
    args: &RunArgs,
    closed: &[Measurement],
    limited: &[Limited],
    open: &[(f64, Vec<Measurement>)],
    streaming: &[Measurement],
    converted: &Converted,
    peak_rss_kib: u64,
    forwarder_rss_kib: u64,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n== closed loop (max throughput), {} connections, {} s ==",
        args.connections, args.duration
    );
    let _ = writeln!(
        out,
        "{:<11} {:>9} {:>9} {:>9} {:>9} {:>12} {:>8}",
        "path", "req/s", "p50 µs", "p99 µs", "p99.9 µs", "cpu µs/req", "errors"
    );
    for m in closed {
        let l = &m.summary.latency;
        let _ = writeln!(
            out,
            "{:<11} {:>9.0} {:>9.1} {:>9.1} {:>9.1} {:>12} {:>8}",
            m.path.name(),
            m.summary.throughput(),
            us(l, 0.5),
            us(l, 0.99),
            us(l, 0.999),
            cpu(m),
            m.summary.errors
        );
    }
    let throughput = |p| closed.iter().find(|m| m.path == p).map(|m| m.summary.throughput()).unwrap_or(0.0);
    let _ = writeln!(
        out,
        "data plane / forwarder throughput: {:.1} %",
        100.0 * throughput(Path::Gateway) / throughput(Path::Forward).max(1.0)
    );
    if let Some(cp) = closed.iter().find_map(|m| m.control_plane_cpu_us_per_request) {
        let _ = writeln!(out, "control plane cpu during data-plane run: {cp:.1} µs/req");
    }
    for l in limited {
        match &l.result {
            Ok(m) => {
                let _ = writeln!(
                    out,
                    "data plane, key with {}: {:.0} req/s ({:.1} % of the key without limits), cpu {} µs/req, \
                     control plane {} µs/req, {} errors",
                    l.flags.join(" "),
                    m.summary.throughput(),
                    100.0 * m.summary.throughput() / throughput(Path::Gateway).max(1.0),
                    cpu(m),
                    m.control_plane_cpu_us_per_request
                        .map(|c| format!("{c:.1}"))
                        .unwrap_or_else(|| "-".into()),
                    m.summary.errors
                );
            }
            Err(reason) => {
                let _ = writeln!(out, "data plane, key with {}: skipped: {reason}", l.flags.join(" "));
            }
        }
    }

    for (rate, row) in open {
        let _ = writeln!(out, "\n== open loop at {rate:.0} req/s ({} connections) ==", args.connections);
        let _ = writeln!(
            out,
            "{:<11} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>12} {:>8}",
            "path", "req/s", "p50 µs", "p90 µs", "p99 µs", "p99.9 µs", "max µs", "cpu µs/req", "errors"
        );
        for m in row {
            let l = &m.summary.latency;
            let _ = writeln!(
                out,
                "{:<11} {:>9.0} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>10.1} {:>12} {:>8}",
                m.path.name(),
                m.summary.throughput(),
                us(l, 0.5),
                us(l, 0.9),
                us(l, 0.99),
                us(l, 0.999),
                l.max() as f64 / 1000.0,
                cpu(m),
                m.summary.errors
            );
        }
        if let Some([p50, p99, p999]) = added(row) {
            let _ = writeln!(
                out,
                "data plane added over forwarder: p50 {p50:+.1} µs, p99 {p99:+.1} µs, p99.9 {p999:+.1} µs"
            );
        }
    }

    let _ = writeln!(
        out,
        "\n== streaming at {:.0} req/s, {} chunks {} ms apart ==",
        args.stream_rate, args.chunks, args.chunk_delay_ms
    );
    let _ = writeln!(
        out,
        "{:<16} {:>11} {:>11} {:>11} {:>11} {:>11} {:>11} {:>12} {:>7}",
        "path",
        "ttfc p50",
        "ttfc p99",
        "chunk p50",
        "chunk p99",
        "total p50",
        "total p99",
        "cpu µs/req",
        "errors"
    );
    let row = |out: &mut String, name: &str, m: &Measurement| {
        let s = &m.summary;
        let _ = writeln!(
            out,
            "{:<16} {:>11.1} {:>11.1} {:>11.1} {:>11.1} {:>11.1} {:>11.1} {:>12} {:>7}",
            name,
            us(&s.first_chunk, 0.5),
            us(&s.first_chunk, 0.99),
            us(&s.chunk, 0.5),
            us(&s.chunk, 0.99),
            us(&s.latency, 0.5),
            us(&s.latency, 0.99),
            cpu(m),
            s.errors
        );
    };
    for m in streaming {
        row(&mut out, m.path.name(), m);
    }
    match converted {
        Converted::Measured(m) => {
            row(&mut out, "dp messages→chat", m);
            if let Some([p50, p99, cpu]) = converted_over_native(streaming, m) {
                let _ = writeln!(
                    out,
                    "converted (Messages client → Chat upstream) over native data plane: chunk p50 {p50:+.1} µs, \
                     p99 {p99:+.1} µs, cpu {cpu:+.1} µs/req ({:.1} chunk stamps per answer)",
                    m.summary.chunk.len() as f64 / m.summary.ok.max(1) as f64
                );
            }
        }
        Converted::Skipped(reason) => {
            let _ = writeln!(out, "dp messages→chat: skipped: {reason}");
        }
    }
    let _ =
        writeln!(out, "(all latencies in µs; chunk = mock send timestamp → arrival at the load generator)");
    let _ = writeln!(
        out,
        "\ndata plane peak RSS (VmHWM): {:.1} MiB; forwarder: {:.1} MiB",
        mib(peak_rss_kib),
        mib(forwarder_rss_kib)
    );
    out
}
