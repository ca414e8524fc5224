//! `router-bench usage`: usage summaries at scale.
//!
//! For every count N: a fresh control plane on a temporary SQLite file, two accounts with
//! three keys made through `routerctl`, then N usage records generated inside SQLite (one
//! `INSERT … SELECT` over a recursive sequence per million rows: spread over 30 days, 720
//! hours × 3 keys × 2 models) and their hourly aggregates built by the same statement as the
//! migration's backfill. Then, through the real gRPC APIs of the running control plane, each
//! summary a console or an operator asks for is timed: `SummarizeUsage` (admin: one account
//! by day over the 30 days, every account by model, one account by key) and
//! `SummarizeAccountUsage` (the console's: by day, by model). For contrast, one summary by day
//! computed from the raw records (what a summary would cost without the aggregates).

use std::path::Path;
use std::time::{Duration, Instant};

use diesel::{Connection, RunQueryDsl, sqlite::SqliteConnection};
use router_proto::pb;
use serde_json::{Value, json};

use crate::cli::UsageArgs;
use crate::keys::WorkDir;
use crate::report::round;
use crate::scenario::stack::{self, Ctl};

const HOUR: i64 = 3_600_000_000;
/// Hours the records are spread over (30 days).
const HOURS: i64 = 720;
/// Rows per generating statement (and transaction).
const CHUNK: u64 = 1_000_000;

/// Timings of one query over `runs` runs.
#[derive(Debug)]
struct Timing {
    name: &'static str,
    buckets: usize,
    median: Duration,
    max: Duration,
}

/// What one count measured.
#[derive(Debug)]
struct Measured {
    records: u64,
    insert: Duration,
    aggregate: Duration,
    aggregate_rows: i64,
    db_bytes: u64,
    timings: Vec<Timing>,
    raw_by_day: Duration,
}

/// Runs every count, prints the table and writes the JSON.
pub async fn run(args: UsageArgs) -> anyhow::Result<()> {
    anyhow::ensure!(!args.counts.is_empty(), "--counts names no count");
    anyhow::ensure!(args.counts.iter().all(|&n| n > 0), "every count must be at least 1");
    anyhow::ensure!(args.runs > 0, "--runs must be at least 1");
    let dir = stack::bin_dir(args.bin_dir.as_deref())?;
    let control_plane = stack::binary(&dir, "router-control-plane")?;
    let routerctl = stack::binary(&dir, "routerctl")?;
    let mut results = Vec::new();
    for &count in &args.counts {
        results.push(measure(&control_plane, &routerctl, count, args.runs).await?);
    }
    println!("{}", render(&results));
    let json = json!({
        "config": {
            "counts": args.counts,
            "runs": args.runs,
            "hours": HOURS,
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        },
        "results": results.iter().map(Measured::to_json).collect::<Vec<_>>(),
    });
    std::fs::write(&args.out, serde_json::to_string_pretty(&json)?)?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

async fn measure(
    control_plane: &Path,
    routerctl: &Path,
    records: u64,
    runs: u32,
) -> anyhow::Result<Measured> {
    let pid = std::process::id();
    let work = WorkDir(std::env::temp_dir().join(format!("router-bench-usage-{pid}-{records}")));
    std::fs::create_dir_all(&work.0)?;
    let admin_token = format!("bench-admin-{pid}");
    let node_token = format!("bench-node-{pid}");
    let (_service, endpoint) =
        stack::start_control_plane(control_plane, &work.0, &admin_token, &node_token).await?;
    let ctl = Ctl { bin: routerctl.to_owned(), endpoint: endpoint.clone(), admin_token: admin_token.clone() };
    ctl.json(&["account", "add", "bench", "--balance", "1000000"]).await?;
    ctl.json(&["account", "add", "other", "--balance", "1000000"]).await?;
    let bench_id = ctl.json(&["account", "show", "bench"]).await?["id"].as_i64().unwrap_or_default();
    let other_id = ctl.json(&["account", "show", "other"]).await?["id"].as_i64().unwrap_or_default();
    let mut keys = Vec::new();
    for account in ["bench", "bench", "other"] {
        keys.push(
            ctl.json(&["key", "create", "--account", account]).await?["id"].as_i64().unwrap_or_default(),
        );
    }
    let now = router_control_plane::store::now_micros();
    let start = (now - HOURS * HOUR) / HOUR * HOUR;

    eprintln!("{records} records: generating …");
    let db_path = work.0.join("router.db");
    let (insert, aggregate, aggregate_rows) = {
        let db_path = db_path.clone();
        let ids = (bench_id, other_id, keys.clone());
        tokio::task::spawn_blocking(move || generate(&db_path, records, start, ids)).await??
    };
    eprintln!(
        "{records} records: inserted in {:.1} s, {aggregate_rows} aggregate rows built in {:.1} s; timing …",
        insert.as_secs_f64(),
        aggregate.as_secs_f64()
    );

    let mut admin = routerctl::client::connect(&endpoint, &admin_token, Default::default()).await?;
    let channel = tonic::transport::Endpoint::from_shared(endpoint.clone())?.connect().await?;
    let bearer: tonic::metadata::MetadataValue<_> = format!("Bearer {node_token}").parse()?;
    let mut node = pb::node_service_client::NodeServiceClient::with_interceptor(
        channel,
        move |mut request: tonic::Request<()>| {
            request.metadata_mut().insert("authorization", bearer.clone());
            Ok(request)
        },
    );
    let (since, until) = (Some(start), Some(start + HOURS * HOUR));
    let admin_request = |account: Option<&str>, by: &str, ranged: bool| pb::SummarizeUsageRequest {
        account: account.map(str::to_owned),
        key_id: None,
        by: by.into(),
        since_unix_micros: if ranged { since } else { None },
        until_unix_micros: if ranged { until } else { None },
    };
    let node_request = |by: &str, ranged: bool| pb::SummarizeAccountUsageRequest {
        account_id: bench_id,
        key_id: None,
        by: by.into(),
        since_unix_micros: if ranged { since } else { None },
        until_unix_micros: if ranged { until } else { None },
    };
    let mut timings = Vec::new();
    macro_rules! time {
        ($name:literal, $call:expr) => {{
            let mut took = Vec::new();
            let mut buckets = 0;
            for run in 0..runs + 3 {
                let started = Instant::now();
                let summary = $call.await?.into_inner();
                // The first three warm the caches.
                if run >= 3 {
                    took.push(started.elapsed());
                }
                buckets = summary.buckets.len();
            }
            took.sort();
            timings.push(Timing {
                name: $name,
                buckets,
                median: took[took.len() / 2],
                max: took[took.len() - 1],
            });
        }};
    }
    time!(
        "admin: one account by day, 30 days",
        admin.summarize_usage(admin_request(Some("bench"), "day", true))
    );
    time!("admin: every account by model", admin.summarize_usage(admin_request(None, "model", false)));
    time!("admin: one account by key", admin.summarize_usage(admin_request(Some("bench"), "key", false)));
    time!("console: account by day, 30 days", node.summarize_account_usage(node_request("day", true)));
    time!("console: account by model", node.summarize_account_usage(node_request("model", false)));

    let raw_by_day = {
        let db_path = db_path.clone();
        tokio::task::spawn_blocking(move || raw_summary(&db_path, bench_id)).await??
    };
    Ok(Measured {
        records,
        insert,
        aggregate,
        aggregate_rows,
        db_bytes: file_size(&db_path) + file_size(&work.0.join("router.db-wal")),
        timings,
        raw_by_day,
    })
}

/// Generates `records` usage records from `start` on (in chunks of [`CHUNK`], each one
/// statement), then their hourly aggregates; returns both durations and the aggregate rows.
fn generate(
    db_path: &Path,
    records: u64,
    start: i64,
    (bench, other, keys): (i64, i64, Vec<i64>),
) -> anyhow::Result<(Duration, Duration, i64)> {
    let mut conn = SqliteConnection::establish(&db_path.display().to_string())?;
    diesel::sql_query("PRAGMA busy_timeout = 10000").execute(&mut conn)?;
    diesel::sql_query("PRAGMA cache_size = -262144").execute(&mut conn)?;
    let started = Instant::now();
    let mut low = 0;
    while low < records {
        let high = (low + CHUNK).min(records);
        // Record i: key i % 3 (two of the first account, one of the other), model (i / 3) % 2,
        // hour (i / 6) % 720: every combination in every hour, from ten thousand records on.
        let sql = format!(
            "INSERT INTO usage_records (request_id, key_id, account_id, model, channel, endpoint, \
               input_tokens, cached_input_tokens, cache_write_tokens, output_tokens, cost, status, \
               duration_ms, first_byte_ms, node_id, created_at, usage_adjusted) \
             WITH RECURSIVE n(i) AS (SELECT {low} UNION ALL SELECT i + 1 FROM n WHERE i + 1 < {high}) \
             SELECT printf('bench-%010d', i), \
               CASE i % 3 WHEN 0 THEN {k0} WHEN 1 THEN {k1} ELSE {k2} END, \
               CASE i % 3 WHEN 2 THEN {other} ELSE {bench} END, \
               CASE (i / 3) % 2 WHEN 0 THEN 'bench-model' ELSE 'bench-model-2' END, \
               'bench', '/v1/chat/completions', 100 + i % 900, i % 50, 0, 10 + i % 200, \
               1000 + i % 5000, 'ok', 100, 10, 'bench', \
               {start} + ((i / 6) % {HOURS}) * {HOUR} + (i % 3600) * 1000000, 0 \
             FROM n",
            k0 = keys[0],
            k1 = keys[1],
            k2 = keys[2],
        );
        conn.transaction(|conn| diesel::sql_query(sql).execute(conn))?;
        low = high;
        if records > CHUNK {
            eprintln!("  {low} / {records}");
        }
    }
    let insert = started.elapsed();
    let started = Instant::now();
    let rows = conn.transaction(|conn| {
        diesel::sql_query(
            "INSERT INTO usage_hourly (account_id, key_id, model, channel, hour, requests, input_tokens, \
               cached_input_tokens, cache_write_tokens, output_tokens, cost) \
             SELECT account_id, key_id, model, channel, created_at - created_at % 3600000000, COUNT(*), \
               SUM(input_tokens), SUM(cached_input_tokens), SUM(cache_write_tokens), SUM(output_tokens), \
               SUM(cost) \
             FROM usage_records \
             GROUP BY account_id, key_id, model, channel, created_at - created_at % 3600000000",
        )
        .execute(conn)
    })?;
    Ok((insert, started.elapsed(), i64::try_from(rows)?))
}

/// One summary by day of `account` computed from the raw records.
fn raw_summary(db_path: &Path, account: i64) -> anyhow::Result<Duration> {
    let mut conn = SqliteConnection::establish(&db_path.display().to_string())?;
    let started = Instant::now();
    diesel::sql_query(format!(
        "SELECT created_at / 86400000000, COUNT(*), SUM(input_tokens), SUM(output_tokens), SUM(cost) \
         FROM usage_records WHERE account_id = {account} GROUP BY 1"
    ))
    .execute(&mut conn)?;
    Ok(started.elapsed())
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn ms(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1e5).round() / 100.0
}

impl Measured {
    fn to_json(&self) -> Value {
        json!({
            "records": self.records,
            "bulk_insert_s": round(self.insert.as_secs_f64()),
            "aggregate_build_s": round(self.aggregate.as_secs_f64()),
            "aggregate_rows": self.aggregate_rows,
            "database_mib": round(self.db_bytes as f64 / (1024.0 * 1024.0)),
            "summaries": self.timings.iter().map(|t| json!({
                "query": t.name,
                "buckets": t.buckets,
                "median_ms": ms(t.median),
                "max_ms": ms(t.max),
            })).collect::<Vec<_>>(),
            "raw_records_by_day_ms": ms(self.raw_by_day),
        })
    }
}

fn render(results: &[Measured]) -> String {
    let mut text = String::from("query                                   ");
    for r in results {
        text.push_str(&format!("  {:>22}", format!("{} records", r.records)));
    }
    text.push('\n');
    let names: Vec<&str> =
        results.first().map(|r| r.timings.iter().map(|t| t.name).collect()).unwrap_or_default();
    for (i, name) in names.iter().enumerate() {
        text.push_str(&format!("{name:40}"));
        for r in results {
            let t = &r.timings[i];
            text.push_str(&format!("  {:>22}", format!("{:.2} ms (max {:.2})", ms(t.median), ms(t.max))));
        }
        text.push('\n');
    }
    text.push_str(&format!("{:40}", "raw records: one account by day"));
    for r in results {
        text.push_str(&format!("  {:>22}", format!("{:.2} ms", ms(r.raw_by_day))));
    }
    text.push('\n');
    for r in results {
        text.push_str(&format!(
            "{} records: inserted in {:.1} s, {} aggregate rows in {:.1} s, database {:.0} MiB\n",
            r.records,
            r.insert.as_secs_f64(),
            r.aggregate_rows,
            r.aggregate.as_secs_f64(),
            r.db_bytes as f64 / (1024.0 * 1024.0)
        ));
    }
    text
}
