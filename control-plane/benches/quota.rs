//! Throughput of the control plane's side of quota: usage reports ingested per second (in
//! batches) and lease grants per second, on SQLite and PostgreSQL, through the storage layer
//! the gRPC handlers call.
//!
//! ```text
//! cargo bench -p router-control-plane --bench quota -- [--backend sqlite|postgres|both]
//!     [--reports N] [--batch N] [--streams N] [--grants N] [--tasks N] [--accounts N]
//! ```
//! PostgreSQL: a scratch database is created on `ROUTER_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`) and dropped afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use anyhow::Context;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use rand::{Rng, distr::Alphanumeric};
use router_control_plane::{
    db::Db,
    store::{
        accounts,
        keys::{self, KeySpec},
        leases::{self, LeaseRequest},
        now_micros,
        usage::{self, Report},
    },
};

#[derive(Debug, Clone)]
struct Options {
    backends: Vec<&'static str>,
    reports: usize,
    batch: usize,
    streams: usize,
    grants: usize,
    tasks: usize,
    accounts: usize,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        backends: vec!["sqlite", "postgres"],
        reports: 200_000,
        batch: 500,
        streams: 4,
        grants: 20_000,
        tasks: 16,
        accounts: 64,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--backend" => {
                options.backends = match value()?.as_str() {
                    "sqlite" => vec!["sqlite"],
                    "postgres" => vec!["postgres"],
                    "both" => vec!["sqlite", "postgres"],
                    other => anyhow::bail!("unknown backend {other:?}"),
                }
            }
            "--reports" => options.reports = value()?.parse()?,
            "--batch" => options.batch = value()?.parse()?,
            "--streams" => options.streams = value()?.parse()?,
            "--grants" => options.grants = value()?.parse()?,
            "--tasks" => options.tasks = value()?.parse()?,
            "--accounts" => options.accounts = value()?.parse()?,
            // `cargo bench` passes this to every bench target.
            "--bench" => {}
            other => anyhow::bail!("unknown argument {other:?}"),
        }
    }
    Ok(options)
}

fn random_name(len: usize) -> String {
    rand::rng().sample_iter(Alphanumeric).take(len).map(|c| char::from(c).to_ascii_lowercase()).collect()
}

fn postgres_admin_url() -> String {
    std::env::var("ROUTER_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A scratch database; returns its URL and how to clean up.
async fn scratch(backend: &str) -> anyhow::Result<(String, Option<String>, Option<std::path::PathBuf>)> {
    match backend {
        "sqlite" => {
            let dir = std::env::temp_dir().join(format!("router-bench-{}", random_name(10)));
            std::fs::create_dir_all(&dir)?;
            Ok((format!("sqlite://{}", dir.join("router.db").display()), None, Some(dir)))
        }
        _ => {
            let name = format!("bench_{}", random_name(12));
            let admin = postgres_admin_url();
            let mut conn = AsyncPgConnection::establish(&admin).await?;
            conn.batch_execute(&format!("CREATE DATABASE {name}")).await?;
            let base = admin.rsplit_once('/').map_or(admin.as_str(), |(base, _)| base);
            Ok((format!("{base}/{name}"), Some(name), None))
        }
    }
}

/// Accounts with plenty of balance and two keys each; returns the key ids.
async fn populate(db: &Db, accounts_wanted: usize) -> anyhow::Result<Vec<i64>> {
    let mut key_ids = Vec::new();
    for a in 0..accounts_wanted {
        let name = format!("bench-{a}");
        accounts::add(db, &name, None, Some(1_000_000_000_000_000), None, None).await?;
        for _ in 0..2 {
            let spec = KeySpec { account: name.clone(), ..KeySpec::default() };
            key_ids.push(keys::create(db, spec).await?.0.id);
        }
    }
    Ok(key_ids)
}

fn rate(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

/// `streams` concurrent senders ingest `total` reports in batches of `batch`.
async fn bench_reports(db: &Db, key_ids: &[i64], options: &Options) -> anyhow::Result<f64> {
    let per_stream = options.reports / options.streams;
    let run = random_name(6);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for stream in 0..options.streams {
        let (db, key_ids, run, batch) = (db.clone(), key_ids.to_vec(), run.clone(), options.batch);
        tasks.push(tokio::spawn(async move {
            let mut sent = 0;
            while sent < per_stream {
                let now = now_micros();
                let reports: Vec<Report> = (0..batch.min(per_stream - sent))
                    .map(|i| {
                        let n = sent + i;
                        Report {
                            request_id: format!("{run}-{stream:02}-{n:09}"),
                            key_id: key_ids[n % key_ids.len()],
                            model: "gpt-4o-mini".into(),
                            channel: "openai".into(),
                            endpoint: "/v1/chat/completions".into(),
                            input_tokens: 1200,
                            output_tokens: 300,
                            cost: 1_234 + (n as i64 % 1000),
                            status: "ok".into(),
                            created_at: now,
                            duration_ms: 900,
                            first_byte_ms: 200,
                            ..Report::default()
                        }
                    })
                    .collect();
                let done = usage::ingest(&db, "bench", &reports, now).await?;
                anyhow::ensure!(done.recorded as usize == reports.len(), "duplicates in a fresh batch");
                sent += reports.len();
            }
            anyhow::Ok(sent)
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    Ok(rate(total, start.elapsed()))
}

/// `tasks` concurrent data-plane stand-ins grant and refill leases until `grants` are done;
/// `spread` keys (1: every task on one key of one account, the contended case).
async fn bench_grants(db: &Db, key_ids: &[i64], options: &Options, spread: usize) -> anyhow::Result<f64> {
    let per_task = options.grants / options.tasks;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..options.tasks {
        let (db, key_ids) = (db.clone(), key_ids[..spread.min(key_ids.len())].to_vec());
        tasks.push(tokio::spawn(async move {
            let node_id = format!("node-{}", task % 8);
            let mut lease_ids: Vec<Option<String>> = vec![None; key_ids.len()];
            for n in 0..per_task {
                let k = (task + n) % key_ids.len();
                let request = LeaseRequest {
                    node_id: &node_id,
                    key_id: key_ids[k],
                    lease_id: lease_ids[k].as_deref(),
                    want: 10_000_000,
                    min: 1,
                };
                let grant = leases::acquire(&db, request, now_micros()).await?;
                anyhow::ensure!(grant.granted > 0, "the bench ran out of balance");
                lease_ids[k] = Some(grant.lease_id);
            }
            anyhow::Ok(per_task)
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    Ok(rate(total, start.elapsed()))
}

async fn run_backend(backend: &'static str, options: &Options) -> anyhow::Result<()> {
    let (url, pg_name, dir) = scratch(backend).await?;
    let result = async {
        let db = Db::connect(&url).await?;
        let key_ids = populate(&db, options.accounts).await?;
        let reports = bench_reports(&db, &key_ids, options).await?;
        println!(
            "{backend:8} usage reports: {reports:>9.0}/s  ({} reports, batches of {}, {} concurrent streams)",
            options.reports, options.batch, options.streams
        );
        let grants = bench_grants(&db, &key_ids, options, key_ids.len()).await?;
        println!(
            "{backend:8} lease grants:  {grants:>9.0}/s  ({} grants, {} tasks over {} keys of {} accounts)",
            options.grants,
            options.tasks,
            key_ids.len(),
            options.accounts
        );
        let contended = bench_grants(&db, &key_ids, options, 1).await?;
        println!(
            "{backend:8} lease grants:  {contended:>9.0}/s  ({} grants, {} tasks on one key: one account's row lock)",
            options.grants, options.tasks
        );
        anyhow::Ok(())
    }
    .await;
    if let Some(dir) = dir {
        let _ = std::fs::remove_dir_all(dir);
    }
    if let Some(name) = pg_name {
        let mut conn = AsyncPgConnection::establish(&postgres_admin_url()).await?;
        conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await?;
    }
    result
}

fn main() -> anyhow::Result<()> {
    let options = options()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        for backend in options.backends.clone() {
            run_backend(backend, &options).await?;
        }
        anyhow::Ok(())
    })
}
