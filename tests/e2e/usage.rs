//! Usage at scale through the real control plane and routerctl: keyset pages that return
//! every record exactly once and in order, page limits refused rather than cut, filters,
//! CSV export of every record, and summaries equal to the sum of the records.
use std::collections::HashSet;

use router_proto::pb;
use router_tests::{Backend, ControlPlane, TestDb, admin_client, eventually, nanos, node_client};
use serde_json::Value;
use tonic::Code;

use super::quota::{UsageStream, batch};

on_both_backends!(listing_pages_filters_and_export, retention_deletes_old_records_and_keeps_summaries);

/// 2026-12-01T00:00:00Z in unix micros.
const DEC_1: i64 = 1_796_083_200_000_000;
const MODELS: [&str; 3] = ["gpt-a", "gpt-b", "claude-c"];
const STATUSES: [&str; 2] = ["ok", "upstream_error"];

/// A report as the test generated it.
#[derive(Debug, Clone)]
struct Sent {
    request_id: String,
    key_id: i64,
    account: &'static str,
    model: &'static str,
    status: &'static str,
    cost: i64,
    created_at: i64,
}

/// `count` reports over two accounts' keys, three models, two statuses, spread over several
/// hours, three to a microsecond (so ties are broken by request id).
fn reports(count: usize, keys: &[(i64, &'static str)]) -> Vec<Sent> {
    (0..count)
        .map(|i| {
            let (key_id, account) = keys[i % keys.len()];
            let status = STATUSES[usize::from(i % 7 == 0)];
            Sent {
                // Not in time order: the listing order must come from (created_at, request_id).
                request_id: format!("req-{:05}", (i * 7919) % count),
                key_id,
                account,
                model: MODELS[i % MODELS.len()],
                status,
                cost: if status == "ok" { 1_000 + i64::try_from(i).unwrap() } else { 0 },
                created_at: DEC_1 + i64::try_from(i / 3).unwrap() * 1_000,
            }
        })
        .collect()
}

fn to_pb(sent: &Sent) -> pb::UsageReport {
    pb::UsageReport {
        request_id: sent.request_id.clone(),
        key_id: sent.key_id,
        model: sent.model.into(),
        channel: "up".into(),
        endpoint: "/v1/chat/completions".into(),
        input_tokens: 100,
        cached_input_tokens: 7,
        cache_write_tokens: 3,
        output_tokens: 20,
        cost_nanos: sent.cost,
        status: sent.status.into(),
        created_at_unix_micros: sent.created_at,
        duration_ms: 12,
        first_byte_ms: 3,
        ..pb::UsageReport::default()
    }
}

/// Which of the sent records a filter keeps.
type Keep = Box<dyn Fn(&Sent) -> bool>;

/// Newest first, as listings order them.
fn newest_first(mut sent: Vec<&Sent>) -> Vec<String> {
    sent.sort_by(|a, b| (b.created_at, &b.request_id).cmp(&(a.created_at, &a.request_id)));
    sent.into_iter().map(|s| s.request_id.clone()).collect()
}

fn ids(records: &Value) -> Vec<String> {
    records.as_array().unwrap().iter().map(|r| r["request_id"].as_str().unwrap().to_owned()).collect()
}

/// Sets up two accounts and ingests `reports` over the plane API; returns what was sent.
async fn ingest(cp: &ControlPlane, count: usize) -> Vec<Sent> {
    cp.json(&["account", "add", "ann", "--balance", "1000"]);
    cp.json(&["account", "add", "bob", "--balance", "1000"]);
    let ann = cp.json(&["key", "create", "--account", "ann"])["id"].as_i64().unwrap();
    let bob = cp.json(&["key", "create", "--account", "bob"])["id"].as_i64().unwrap();
    let sent = reports(count, &[(ann, "ann"), (bob, "bob"), (ann, "ann")]);
    let mut node = node_client(&cp.endpoint, &cp.node_token).await.unwrap();
    let mut stream = UsageStream::open(&mut node).await;
    for (n, chunk) in sent.chunks(5_000).enumerate() {
        let ack = stream.send(batch(n as u64, "n1", chunk.iter().map(to_pb).collect())).await.unwrap();
        assert_eq!(ack.recorded as usize, chunk.len());
    }
    sent
}

/// Runs `routerctl --json usage ARGS`; returns the records and the `--before` hint, if any.
fn page(cp: &ControlPlane, args: &[&str]) -> (Value, Option<String>) {
    let mut all = vec!["--json", "usage"];
    all.extend_from_slice(args);
    let output = cp.ctl(&all);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "routerctl {args:?}: {stderr}");
    let records = serde_json::from_slice(&output.stdout).expect("exactly one JSON value on stdout");
    let next = stderr.split("--before ").nth(1).map(|rest| rest.trim().to_owned());
    (records, next)
}

async fn listing_pages_filters_and_export(backend: Backend) {
    let db = TestDb::create(backend).await.unwrap();
    let cp = ControlPlane::start(&db).unwrap();
    let sent = ingest(&cp, 25_000).await;
    let expected = newest_first(sent.iter().collect());

    // Pages of 10,000 continued with --before (as the hint says) return every record once,
    // in order, and then stop.
    let mut listed = Vec::new();
    let (mut before, mut pages) = (None::<String>, 0);
    loop {
        let mut args = vec!["--limit", "10000"];
        if let Some(id) = &before {
            args.extend(["--before", id.as_str()]);
        }
        let (records, next) = page(&cp, &args);
        listed.extend(ids(&records));
        pages += 1;
        match next {
            Some(next) => {
                assert_eq!(Some(&next), listed.last(), "the hint names the page's last record");
                before = Some(next);
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(listed.len(), 25_000);
    assert_eq!(listed.iter().collect::<HashSet<_>>().len(), 25_000, "each record exactly once");
    assert_eq!(listed, expected, "newest first by (created_at, request_id)");

    // Records keep every field.
    let (first, _) = page(&cp, &["--limit", "1"]);
    let record = &first[0];
    let newest = sent.iter().find(|s| s.request_id == expected[0]).unwrap();
    for field in [
        "request_id",
        "key_id",
        "account",
        "model",
        "channel",
        "endpoint",
        "input_tokens",
        "cached_input_tokens",
        "cache_write_tokens",
        "output_tokens",
        "cost",
        "status",
        "duration_ms",
        "created_at",
    ] {
        assert!(record.get(field).is_some(), "usage --json lost {field}: {record}");
    }
    assert_eq!((record["account"].as_str(), nanos(&record["cost"])), (Some(newest.account), newest.cost));

    // A page is at most 10,000 records: more is a clear error, never a silent cut.
    let stderr = cp.fails(&["usage", "--limit", "20000"]);
    assert!(stderr.contains("20000 is not in 1..=10000"), "{stderr}");
    let mut admin = admin_client(&cp.endpoint, &cp.admin_token).await.unwrap();
    let refused = admin
        .list_usage(pb::ListUsageRequest { limit: Some(20_000), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(cp.fails(&["usage", "--before", "no-such-request"]).contains("not found"));

    // Filters, alone and together, agree with what was sent.
    let since = DEC_1 + 2_000_000;
    let until = DEC_1 + 5_000_000;
    let time = |micros: i64| {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let (since_text, until_text) = (time(since), time(until));
    let key_of_bob = sent.iter().find(|s| s.account == "bob").unwrap().key_id;
    let bob_key = key_of_bob.to_string();
    let cases: Vec<(Vec<&str>, Keep)> = vec![
        (vec!["--model", "gpt-b"], Box::new(|s: &Sent| s.model == "gpt-b")),
        (vec!["--status", "upstream_error"], Box::new(|s: &Sent| s.status == "upstream_error")),
        (vec!["--account", "bob"], Box::new(|s: &Sent| s.account == "bob")),
        (vec!["--key", &bob_key], Box::new(move |s: &Sent| s.key_id == key_of_bob)),
        (
            vec!["--since", &since_text, "--until", &until_text],
            Box::new(move |s: &Sent| s.created_at >= since && s.created_at < until),
        ),
        (
            vec!["--account", "ann", "--model", "claude-c", "--status", "ok", "--since", &since_text],
            Box::new(move |s: &Sent| {
                s.account == "ann" && s.model == "claude-c" && s.status == "ok" && s.created_at >= since
            }),
        ),
    ];
    for (args, keep) in &cases {
        let want = newest_first(sent.iter().filter(|s| keep(s)).collect());
        assert!(!want.is_empty() && want.len() <= 10_000, "{args:?} selects {} records", want.len());
        let mut all = args.clone();
        all.extend(["--limit", "10000"]);
        let (records, next) = page(&cp, &all);
        assert_eq!(ids(&records), want, "{args:?}");
        assert_eq!(next, None, "{args:?}: nothing more matches");
    }

    // Every record as CSV, in the same order, amounts as decimal strings.
    let output = cp.ctl(&["usage", "--all", "--csv"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8(output.stdout).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(&header[..3], ["request_id", "key_id", "account"]);
    let cost_column = header.iter().position(|h| *h == "cost").unwrap();
    let rows: Vec<Vec<&str>> = lines.map(|line| line.split(',').collect()).collect();
    let exported: Vec<String> = rows.iter().map(|r| r[0].to_owned()).collect();
    assert_eq!(exported, expected, "every record exactly once, newest first");
    let row = &rows[0];
    assert_eq!(router_proto::Money::parse(row[cost_column]).unwrap().nanos(), newest.cost);
    // Filters apply to exports too.
    let output = cp.ctl(&["usage", "--all", "--csv", "--model", "gpt-a", "--account", "bob"]);
    let want = newest_first(sent.iter().filter(|s| s.model == "gpt-a" && s.account == "bob").collect());
    let text = String::from_utf8(output.stdout).unwrap();
    let exported: Vec<&str> = text.lines().skip(1).map(|l| l.split(',').next().unwrap()).collect();
    assert_eq!(exported, want);

    summaries(&cp, &sent).await;
}

/// `usage summary` equals the sum of the records it counts, in every grouping.
async fn summaries(cp: &ControlPlane, sent: &[Sent]) {
    let summary = |args: &[&str]| {
        let mut all = vec!["usage", "summary"];
        all.extend_from_slice(args);
        cp.json(&all).as_array().unwrap().clone()
    };
    // Per model, highest cost first, with every token kind and the cost as a decimal string.
    let rows = summary(&["--by", "model"]);
    let mut want: Vec<(&str, i64, i64)> = MODELS
        .iter()
        .map(|m| {
            let of: Vec<&Sent> = sent.iter().filter(|s| s.model == *m).collect();
            (*m, of.len() as i64, of.iter().map(|s| s.cost).sum())
        })
        .collect();
    want.sort_by_key(|w| std::cmp::Reverse(w.2));
    let got: Vec<(&str, i64, i64)> = rows
        .iter()
        .map(|r| (r["model"].as_str().unwrap(), r["requests"].as_i64().unwrap(), nanos(&r["cost"])))
        .collect();
    assert_eq!(got, want);
    let row = &rows[0];
    let requests = row["requests"].as_i64().unwrap();
    assert_eq!(row["bucket"], row["model"]);
    for (field, each) in
        [("input_tokens", 100), ("cached_input_tokens", 7), ("cache_write_tokens", 3), ("output_tokens", 20)]
    {
        assert_eq!(row[field].as_i64(), Some(each * requests), "{field}: {row}");
    }

    // Per key, with its name; per channel.
    let rows = summary(&["--by", "key", "--account", "bob"]);
    let bob: Vec<&Sent> = sent.iter().filter(|s| s.account == "bob").collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["key_id"].as_i64(), Some(bob[0].key_id));
    assert!(rows[0]["key_name"].is_string(), "{}", rows[0]);
    assert_eq!(rows[0]["requests"].as_i64(), Some(bob.len() as i64));
    let rows = summary(&["--by", "channel"]);
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0]["channel"].as_str(), rows[0]["requests"].as_i64()), (Some("up"), Some(25_000)));
    assert_eq!(nanos(&rows[0]["cost"]), sent.iter().map(|s| s.cost).sum::<i64>());

    // Days of a closed range, the empty one included.
    let rows = summary(&[
        "--by",
        "day",
        "--account",
        "bob",
        "--since",
        "2026-12-01T00:00:00Z",
        "--until",
        "2026-12-03T00:00:00Z",
    ]);
    let days: Vec<(&str, i64, i64)> = rows
        .iter()
        .map(|r| (r["day"].as_str().unwrap(), r["requests"].as_i64().unwrap(), nanos(&r["cost"])))
        .collect();
    let bob_cost = bob.iter().map(|s| s.cost).sum();
    assert_eq!(days, [("2026-12-01", bob.len() as i64, bob_cost), ("2026-12-02", 0, 0)]);

    // A table without --json.
    let output = cp.ctl(&["usage", "summary", "--by", "channel"]);
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    let header = text.lines().next().unwrap();
    for column in ["CHANNEL", "REQUESTS", "INPUT_TOKENS", "OUTPUT_TOKENS", "COST"] {
        assert!(header.contains(column), "{text}");
    }
    assert!(text.lines().nth(1).is_some_and(|l| l.starts_with("up ")), "{text}");

    // Bad arguments: clear errors, non-zero exits.
    assert!(cp.fails(&["usage", "summary", "--by", "week"]).contains("invalid value 'week'"));
    let stderr = cp.fails(&[
        "usage",
        "summary",
        "--by",
        "day",
        "--since",
        "2026-12-02T00:00:00Z",
        "--until",
        "2026-12-01T00:00:00Z",
    ]);
    assert!(stderr.contains("`since` must not be later than `until`"), "{stderr}");
    let stderr = cp.fails(&[
        "usage",
        "summary",
        "--by",
        "hour",
        "--since",
        "2026-01-01T00:00:00Z",
        "--until",
        "2027-12-01T00:00:00Z",
    ]);
    assert!(stderr.contains("more than 10000"), "{stderr}");
    assert!(cp.fails(&["usage", "summary", "--by", "day", "--account", "nobody"]).contains("not found"));
    let mut admin = admin_client(&cp.endpoint, &cp.admin_token).await.unwrap();
    let refused = admin
        .summarize_usage(pb::SummarizeUsageRequest { by: "week".into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");

    // The account console's summary: one account's usage, which it must name.
    let mut node = node_client(&cp.endpoint, &cp.node_token).await.unwrap();
    let refused = node
        .summarize_account_usage(pb::SummarizeAccountUsageRequest { by: "day".into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    let bob_id = cp.json(&["account", "show", "bob"])["id"].as_i64().unwrap();
    let request =
        pb::SummarizeAccountUsageRequest { account_id: bob_id, by: "model".into(), ..Default::default() };
    let buckets = node.summarize_account_usage(request).await.unwrap().into_inner().buckets;
    assert_eq!(buckets.iter().map(|b| b.requests).sum::<i64>(), bob.len() as i64);
    assert_eq!(buckets.iter().map(|b| b.cost_nanos).sum::<i64>(), bob_cost);
}

/// `--usage-retention-days`: a control plane started with it deletes the records older than
/// that (in the background, at start and then now and then); summaries still count them.
async fn retention_deletes_old_records_and_keeps_summaries(backend: Backend) {
    let db = TestDb::create(backend).await.unwrap();
    let cp = ControlPlane::start(&db).unwrap();
    cp.json(&["account", "add", "ann", "--balance", "1000"]);
    let key = cp.json(&["key", "create", "--account", "ann"])["id"].as_i64().unwrap();
    let now = i64::try_from(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros(),
    )
    .unwrap();
    const DAY: i64 = 86_400_000_000;
    let sent = [
        Sent {
            request_id: "old".into(),
            key_id: key,
            account: "ann",
            model: "gpt-a",
            status: "ok",
            cost: 5_000,
            created_at: now - 60 * DAY,
        },
        Sent {
            request_id: "new".into(),
            key_id: key,
            account: "ann",
            model: "gpt-a",
            status: "ok",
            cost: 7_000,
            created_at: now,
        },
    ];
    let mut node = node_client(&cp.endpoint, &cp.node_token).await.unwrap();
    let mut stream = UsageStream::open(&mut node).await;
    let ack = stream.send(batch(1, "n1", sent.iter().map(to_pb).collect())).await.unwrap();
    assert_eq!(ack.recorded, 2);
    drop(stream);
    let (records, _) = page(&cp, &[]);
    assert_eq!(ids(&records), ["new", "old"], "no retention: every record kept");
    let summary = cp.json(&["usage", "summary", "--by", "day"]);

    // The same database, now with 30 days of retention.
    let (admin_token, node_token) = (cp.admin_token.clone(), cp.node_token.clone());
    drop(cp);
    let cp = ControlPlane::start_with(
        &db.url,
        &admin_token,
        &node_token,
        &[("ROUTER_USAGE_RETENTION_DAYS", "30")],
    )
    .unwrap();
    let kept = eventually(std::time::Duration::from_secs(20), || async {
        let (records, _) = page(&cp, &[]);
        let kept = ids(&records);
        (kept.len() == 1).then_some(kept)
    })
    .await;
    assert_eq!(kept, Some(vec!["new".to_owned()]), "the 60-day-old record is deleted");
    assert_eq!(cp.json(&["usage", "summary", "--by", "day"]), summary, "summaries still count it");
    let ann = cp.json(&["account", "show", "ann"]);
    assert_eq!(nanos(&ann["balance"]), 1_000_000_000_000 - 12_000, "and the ledger too");

    // A bad value is a clear error at start.
    let output = std::process::Command::new(router_tests::bin("router-control-plane"))
        .args(["--usage-retention-days", "soon", "--admin-token", "a", "--node-token", "n"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--usage-retention-days"));
}
