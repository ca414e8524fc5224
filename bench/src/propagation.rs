//! `propagation`: how long an admin change takes until every data plane enforces it.
//!
//! One control plane (temporary SQLite), the mock and `--data-planes` data planes following
//! it; or, with `--replicas N --postgres URL`, N control planes sharing a fresh PostgreSQL
//! database, changes made through the first and the data planes following the others (spread
//! over them), so that every change measured crosses replicas. Each trial makes two admin changes through the AdminService gRPC API (one connection,
//! opened beforehand, so process start-up is not timed):
//!
//! - **create**: `CreateKey` on the provisioned account; the new key must start working.
//! - **revoke**: `RevokeKey` of that key; it must start being refused with 401.
//!
//! For every data plane, a prober on its own keep-alive connection sends `GET /v1/models` with
//! the key in a tight loop (authenticated, answered from the cached policy, no upstream) until
//! the answer shows the change. The propagation time is from just before the RPC is sent to the
//! arrival of that first answer, so it includes the RPC's own commit; its resolution is one
//! round trip to the data plane. A revoke's probers run while the RPC is in flight; a created
//! key's secret is only known once the RPC answers, so its probers start then (the time still
//! counts from before the RPC).

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{HeaderValue, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use router_proto::pb;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::cli::PropagationArgs;
use crate::load;
use crate::process::Service;
use crate::report::{histogram_json, round};
use crate::scenario::stack::{self, Ctl};

/// The issue-5 target for p99 propagation.
const TARGET_P99: Duration = Duration::from_millis(100);

/// Runs the measurement, prints the table and writes the JSON.
pub async fn run(args: PropagationArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.data_planes > 0 && args.trials > 0, "--data-planes and --trials must be positive");
    let timeout = Duration::from_secs_f64(args.timeout);
    eprintln!("starting control plane, mock and {} data planes …", args.data_planes);
    let fleet = Fleet::start(&args).await?;
    let outcome = measure(&args, &fleet, timeout).await;
    fleet.finish().await;
    outcome
}

async fn measure(args: &PropagationArgs, fleet: &Fleet, timeout: Duration) -> anyhow::Result<()> {
    let mut admin =
        routerctl::client::connect(&fleet.control_plane_url, &fleet.admin_token, Default::default()).await?;
    let mut probes = Vec::with_capacity(fleet.data_planes.len());
    for (_, url) in &fleet.data_planes {
        probes.push(Probe::connect(url).await?);
    }

    let mut results = Results::new()?;
    eprintln!("{} trials (create a key, then revoke it) …", args.trials);
    for trial in 0..args.trials {
        let started = Instant::now();
        let request = pb::CreateKeyRequest {
            account: stack::ACCOUNT.to_owned(),
            name: Some(format!("propagation-{trial}")),
            ..pb::CreateKeyRequest::default()
        };
        let created = admin.create_key(request).await?.into_inner();
        let rpc_took = started.elapsed();
        results.rpc.saturating_record(nanos(rpc_took));
        let id = created.key.map(|k| k.id).ok_or_else(|| anyhow::anyhow!("CreateKey returned no key"))?;
        let secret = created.secret;
        let seen = enforced(&mut probes, &secret, StatusCode::OK, started, timeout).await?;
        results.record(Change::Create, &seen, rpc_took);

        let started = Instant::now();
        let rpc = async {
            let answer = admin.revoke_key(pb::KeyIdRequest { id }).await;
            (answer, started.elapsed())
        };
        let ((answer, rpc_took), seen) =
            tokio::join!(rpc, enforced(&mut probes, &secret, StatusCode::UNAUTHORIZED, started, timeout));
        answer?;
        results.rpc.saturating_record(nanos(rpc_took));
        results.record(Change::Revoke, &seen?, rpc_took);
    }

    println!("{}", results.table(args));
    let json = json!({
        "config": {
            "data_planes": args.data_planes,
            "replicas": args.replicas,
            "trials": args.trials,
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "target_p99_ms": TARGET_P99.as_millis() as u64,
        },
        "results": results.to_json(),
    });
    std::fs::write(&args.out, serde_json::to_string_pretty(&json)?)?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

/// Polls every probe concurrently until each sees `want` for `key`; returns, per data plane,
/// the time from `started` to the first answer showing it.
async fn enforced(
    probes: &mut [Probe],
    key: &str,
    want: StatusCode,
    started: Instant,
    timeout: Duration,
) -> anyhow::Result<Vec<Duration>> {
    let authorization = HeaderValue::try_from(format!("Bearer {key}"))?;
    let waits = probes.iter_mut().map(|probe| {
        let authorization = authorization.clone();
        async move {
            match tokio::time::timeout(timeout, probe.until(&authorization, want)).await {
                Ok(seen) => Ok(seen?.saturating_duration_since(started)),
                Err(_) => anyhow::bail!("{} did not answer {want} within {timeout:?}", probe.url),
            }
        }
    });
    futures::future::join_all(waits).await.into_iter().collect()
}

/// A keep-alive connection to one data plane's `GET /v1/models`.
struct Probe {
    url: Uri,
    host: HeaderValue,
    sender: SendRequest<Full<Bytes>>,
}

impl Probe {
    async fn connect(data_plane_url: &str) -> anyhow::Result<Probe> {
        let url: Uri = format!("{data_plane_url}/v1/models").parse()?;
        let host = HeaderValue::try_from(url.authority().map_or("127.0.0.1", |a| a.as_str()))?;
        let sender = load::connect(&url).await?;
        Ok(Probe { url, host, sender })
    }

    /// Sends requests back to back until one is answered with `want`; returns when that
    /// answer arrived. Any status other than 200 or 401 is an error.
    async fn until(&mut self, authorization: &HeaderValue, want: StatusCode) -> anyhow::Result<Instant> {
        loop {
            if self.sender.is_closed() {
                self.sender = load::connect(&self.url).await?;
            }
            self.sender.ready().await?;
            let request = Request::get(self.url.clone())
                .header(header::HOST, self.host.clone())
                .header(header::AUTHORIZATION, authorization.clone())
                .body(Full::default())?;
            let response = self.sender.send_request(request).await?;
            let arrived = Instant::now();
            let status = response.status();
            // Read to the end so the connection can carry the next request.
            response.into_body().collect().await?;
            if status == want {
                return Ok(arrived);
            }
            anyhow::ensure!(
                status == StatusCode::OK || status == StatusCode::UNAUTHORIZED,
                "{} answered {status}",
                self.url
            );
        }
    }
}

/// The control plane, the mock and the data planes; every process is killed and the
/// temporary directory removed when this is dropped.
struct Fleet {
    /// Changes are made through the first; data planes follow the others (or the only one).
    control_planes: Vec<Service>,
    _mock: Service,
    /// Each data plane with its `http://ADDR`.
    data_planes: Vec<(Service, String)>,
    control_plane_url: String,
    admin_token: String,
    work_dir: PathBuf,
    /// `--replicas`: the PostgreSQL server's URL and the run's database on it.
    postgres: Option<(String, String)>,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.work_dir);
    }
}

impl Fleet {
    /// Starts and provisions everything and waits until every data plane serves a request.
    async fn start(args: &PropagationArgs) -> anyhow::Result<Fleet> {
        let dir = stack::bin_dir(args.bin_dir.as_deref())?;
        let control_plane_bin = stack::binary(&dir, "router-control-plane")?;
        let data_plane_bin = stack::binary(&dir, "router-data-plane")?;
        let routerctl = stack::binary(&dir, "routerctl")?;
        let me = std::env::current_exe()?;

        let pid = std::process::id();
        let work_dir = std::env::temp_dir().join(format!("router-bench-propagation-{pid}"));
        std::fs::create_dir_all(&work_dir)?;
        let admin_token = format!("bench-admin-{pid}");
        let node_token = format!("bench-node-{pid}");

        let (mock, mock_url) = stack::start_mock(&me, 1, 0).await?;
        let (database_url, postgres) = match (args.replicas, &args.postgres) {
            (1, None) => (format!("sqlite://{}", work_dir.join("router.db").display()), None),
            (_, Some(server)) => {
                let name = format!("router_bench_{pid}");
                let url = create_database(server, &name).await?;
                (url, Some((server.clone(), name)))
            }
            (_, None) => anyhow::bail!(
                "--replicas above 1 needs --postgres URL (replicas share a PostgreSQL database)"
            ),
        };
        let mut control_planes = Vec::new();
        let mut replica_urls = Vec::new();
        for index in 0..args.replicas {
            let name = format!("control plane {index}");
            let (service, url) = stack::start_control_plane_on(
                &control_plane_bin,
                &name,
                &database_url,
                &admin_token,
                &node_token,
            )
            .await?;
            control_planes.push(service);
            replica_urls.push(url);
        }
        let control_plane_url = replica_urls[0].clone();
        let ctl =
            Ctl { bin: routerctl, endpoint: control_plane_url.clone(), admin_token: admin_token.clone() };
        let key = stack::provision(&ctl, &mock_url).await?;

        let mut fleet = Fleet {
            control_planes,
            _mock: mock,
            data_planes: Vec::with_capacity(args.data_planes),
            control_plane_url,
            admin_token,
            work_dir,
            postgres,
        };
        // With replicas, the data planes follow all but the first (which takes the changes).
        let followed = if replica_urls.len() > 1 { &replica_urls[1..] } else { &replica_urls[..] };
        for index in 0..args.data_planes {
            let spool = fleet.work_dir.join(format!("spool-{index}"));
            std::fs::create_dir_all(&spool)?;
            let name = format!("data plane {index}");
            let started = stack::start_data_plane(
                &data_plane_bin,
                &name,
                &followed[index % followed.len()],
                &spool,
                &node_token,
            )
            .await?;
            fleet.data_planes.push(started);
        }
        for (service, url) in &fleet.data_planes {
            stack::wait_ready(service, url, &key).await?;
        }
        Ok(fleet)
    }
}

impl Fleet {
    /// Stops every process and drops the run's PostgreSQL database.
    async fn finish(mut self) {
        self.data_planes.clear();
        self.control_planes.clear();
        if let Some((server, name)) = self.postgres.take()
            && let Err(error) = drop_database(&server, &name).await
        {
            eprintln!("could not drop the database {name}: {error:#}");
        }
    }
}

/// Creates database `name` on the PostgreSQL server at `server`; returns its URL.
async fn create_database(server: &str, name: &str) -> anyhow::Result<String> {
    use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
    let mut conn = AsyncPgConnection::establish(server).await?;
    // Two statements, two calls: in one simple query they would form a transaction, which
    // neither may run in.
    conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).await?;
    conn.batch_execute(&format!("CREATE DATABASE {name}")).await?;
    let base = server.split('?').next().unwrap_or(server);
    let base = base.rsplit_once('/').map_or(base, |(base, _)| base);
    Ok(format!("{base}/{name}"))
}

async fn drop_database(server: &str, name: &str) -> anyhow::Result<()> {
    use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
    let mut conn = AsyncPgConnection::establish(server).await?;
    conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await?;
    Ok(())
}

/// The two kinds of change measured.
#[derive(Debug, Clone, Copy)]
enum Change {
    Create,
    Revoke,
}

/// Every histogram of a run, in nanoseconds.
struct Results {
    /// Per data plane and change: key creations.
    create: Histogram<u64>,
    /// Per data plane and change: key revocations.
    revoke: Histogram<u64>,
    /// Per data plane and change: both kinds.
    all: Histogram<u64>,
    /// Per change: until the slowest data plane enforced it.
    slowest: Histogram<u64>,
    /// The admin RPC's own round trip.
    rpc: Histogram<u64>,
    /// Per data plane and change: from the admin RPC's answer (the change committed) to
    /// enforcement, 0 when a data plane enforced it before the answer arrived — the replica
    /// hop without the database write's own latency.
    after_commit: Histogram<u64>,
}

impl Results {
    fn new() -> anyhow::Result<Results> {
        let histogram = || Histogram::new_with_bounds(1, 600_000_000_000, 3);
        Ok(Results {
            create: histogram()?,
            revoke: histogram()?,
            all: histogram()?,
            slowest: histogram()?,
            rpc: histogram()?,
            after_commit: histogram()?,
        })
    }

    fn record(&mut self, change: Change, seen: &[Duration], rpc_took: Duration) {
        let kind = match change {
            Change::Create => &mut self.create,
            Change::Revoke => &mut self.revoke,
        };
        for &took in seen {
            kind.saturating_record(nanos(took));
            self.all.saturating_record(nanos(took));
            self.after_commit.saturating_record(nanos(took.saturating_sub(rpc_took)));
        }
        if let Some(&slowest) = seen.iter().max() {
            self.slowest.saturating_record(nanos(slowest));
        }
    }

    fn rows(&self) -> [(&'static str, &Histogram<u64>); 6] {
        [
            ("key create", &self.create),
            ("key revoke", &self.revoke),
            ("all changes", &self.all),
            ("slowest dp", &self.slowest),
            ("admin rpc", &self.rpc),
            ("after commit", &self.after_commit),
        ]
    }

    fn table(&self, args: &PropagationArgs) -> String {
        use std::fmt::Write;

        let ms =
            |histogram: &Histogram<u64>, quantile: f64| histogram.value_at_quantile(quantile) as f64 / 1e6;
        let mut out = format!(
            "\n== policy propagation, {} data planes, {} trials (ms from before the admin RPC) ==\n",
            args.data_planes, args.trials
        );
        let _ = writeln!(
            out,
            "{:<12} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "change", "samples", "p50 ms", "p90 ms", "p99 ms", "max ms", "mean ms"
        );
        for (name, histogram) in self.rows() {
            let _ = writeln!(
                out,
                "{name:<12} {:>7} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                histogram.len(),
                ms(histogram, 0.5),
                ms(histogram, 0.9),
                ms(histogram, 0.99),
                histogram.max() as f64 / 1e6,
                histogram.mean() / 1e6,
            );
        }
        let p99 = Duration::from_nanos(self.all.value_at_quantile(0.99));
        let verdict = if p99 <= TARGET_P99 { "met" } else { "MISSED" };
        let _ = writeln!(
            out,
            "(slowest dp: per change, until every data plane enforced it; admin rpc: the RPC's own round trip;\n\
             after commit: from the RPC's answer, the change committed, to enforcement)\n\
             target p99 ≤ {} ms over all changes × data planes: {verdict} ({:.2} ms; {:.2} ms after the commit)",
            TARGET_P99.as_millis(),
            p99.as_secs_f64() * 1e3,
            self.after_commit.value_at_quantile(0.99) as f64 / 1e6,
        );
        out
    }

    fn to_json(&self) -> Value {
        let mut map = serde_json::Map::new();
        for (name, histogram) in self.rows() {
            let mut value = histogram_json(histogram);
            if let Value::Object(fields) = &mut value {
                fields.insert("samples".into(), json!(histogram.len()));
            }
            map.insert(name.replace(' ', "_"), value);
        }
        map.insert(
            "target_met".into(),
            json!(self.all.value_at_quantile(0.99) <= nanos(TARGET_P99) && !self.all.is_empty()),
        );
        map.insert("p99_ms".into(), json!(round(self.all.value_at_quantile(0.99) as f64 / 1e6)));
        map.insert(
            "after_commit_p99_ms".into(),
            json!(round(self.after_commit.value_at_quantile(0.99) as f64 / 1e6)),
        );
        Value::Object(map)
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
