//! `routerctl usage`: one record per request that was forwarded upstream, page by page or
//! all at once as CSV, and `usage summary`: totals per day, model, key or channel.
mod summary;

use std::io::Write;

use clap::{Args, Subcommand};
use router_proto::pb;
use serde::Serialize;

use crate::{
    args,
    client::Admin,
    error::Error,
    output::{self, Output, Record},
};

/// Most records one page may have (the control plane refuses more).
pub const MAX_LIMIT: u32 = 10_000;

/// `usage` lists records; `usage summary` sums them.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct UsageArgs {
    /// `summary`, or nothing to list records.
    #[command(subcommand)]
    pub command: Option<UsageCommand>,
    /// Which records, and how.
    #[command(flatten)]
    pub list: ListArgs,
}

/// Subcommands of `usage`.
#[derive(Debug, Subcommand)]
pub enum UsageCommand {
    /// Requests, tokens and cost per day, hour, model, key or channel.
    Summary(summary::SummaryArgs),
}

/// Flags of `usage` (listing).
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this account's requests.
    #[arg(long, value_name = "NAME", value_parser = args::name)]
    pub account: Option<String>,
    /// Only this key's requests.
    #[arg(long = "key", value_name = "ID")]
    pub key_id: Option<i64>,
    /// Only requests served at or after this time.
    #[arg(long, value_name = "RFC3339", value_parser = args::timestamp)]
    pub since: Option<i64>,
    /// Only requests served before this time.
    #[arg(long, value_name = "RFC3339", value_parser = args::timestamp)]
    pub until: Option<i64>,
    /// Only requests for this model.
    #[arg(long, value_name = "NAME", value_parser = args::name)]
    pub model: Option<String>,
    /// Only records with this status (ok, incomplete, upstream_error, ...).
    #[arg(long, value_name = "S", value_parser = args::name)]
    pub status: Option<String>,
    /// How many records, newest first (1 to 10000).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 50,
        value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_LIMIT)),
        conflicts_with = "all"
    )]
    pub limit: u32,
    /// Only records older than this one: the next page after a page that ended with it.
    #[arg(long, value_name = "REQUEST_ID", conflicts_with = "all")]
    pub before: Option<String>,
    /// Every matching record, however many (needs --csv).
    #[arg(long, requires = "csv")]
    pub all: bool,
    /// Print CSV (a header row, then one row per record) instead of a table.
    #[arg(long)]
    pub csv: bool,
    /// Reports the control plane refused as invalid and set aside, instead of usage records.
    #[arg(long, conflicts_with_all = ["account", "key_id", "since", "until", "model", "status", "before", "all", "csv"])]
    pub quarantined: bool,
}

/// Runs `usage` or `usage summary`.
pub async fn run(args: UsageArgs, admin: &mut Admin, out: &mut Output) -> Result<(), Error> {
    match args.command {
        Some(UsageCommand::Summary(summary)) => summary::run(summary, admin, out).await,
        None => list(args.list, admin, out).await,
    }
}

impl ListArgs {
    fn request(self) -> pb::ListUsageRequest {
        pb::ListUsageRequest {
            account: self.account,
            key_id: self.key_id,
            limit: Some(self.limit),
            since_unix_micros: self.since,
            until_unix_micros: self.until,
            model: self.model,
            status: self.status,
            before_request_id: self.before,
        }
    }
}

/// Lists one page of records, newest first, or with `--all` streams every one as CSV.
async fn list(args: ListArgs, admin: &mut Admin, out: &mut Output) -> Result<(), Error> {
    if args.quarantined {
        return super::quarantine::run(args.limit, admin, out).await;
    }
    if args.csv && out.is_json() {
        return Err(Error::Invalid("--csv and --json are two different outputs: choose one".into()));
    }
    let (all, csv) = (args.all, args.csv);
    let request = args.request();
    if all {
        return export(request, admin, out).await;
    }
    let page = admin.list_usage(request).await?.into_inner();
    let views: Vec<UsageView> = page.records.iter().map(UsageView::new).collect();
    if csv {
        let mut writer = csv_writer(out);
        write_csv(&mut writer, &views)?;
        writer.flush()?;
    } else {
        out.records(&views)?;
    }
    if let Some(next) = page.next_before_request_id {
        out.note(&format!("more records match: continue with --before {next}"))?;
    }
    Ok(())
}

/// Streams every matching record as CSV, page by page as the control plane sends them, so
/// memory stays constant however many there are.
async fn export(request: pb::ListUsageRequest, admin: &mut Admin, out: &mut Output) -> Result<(), Error> {
    let mut pages = admin.export_usage(request).await?.into_inner();
    let mut writer = csv_writer(out);
    write_csv(&mut writer, &[])?;
    while let Some(page) = pages.message().await? {
        let views: Vec<UsageView> = page.records.iter().map(UsageView::new).collect();
        write_csv(&mut writer, &views)?;
        writer.flush()?;
    }
    writer.flush()?;
    Ok(())
}

fn csv_writer(out: &mut Output) -> csv::Writer<&mut dyn Write> {
    csv::WriterBuilder::new().has_headers(false).from_writer(out.writer())
}

/// Writes `views` as CSV rows; with none, the header row (the JSON field names).
fn write_csv(writer: &mut csv::Writer<&mut dyn Write>, views: &[UsageView]) -> Result<(), Error> {
    let csv_error = |error: csv::Error| Error::Output(std::io::Error::other(error.to_string()));
    if views.is_empty() {
        let header = UsageView::new(&pb::UsageRecord::default()).fields();
        return writer.write_record(header.iter().map(|(label, _)| *label)).map_err(csv_error);
    }
    for view in views {
        writer.write_record(view.fields().iter().map(|(_, value)| value.as_str())).map_err(csv_error)?;
    }
    Ok(())
}

/// One usage record for display.
#[derive(Debug, Serialize)]
pub struct UsageView {
    request_id: String,
    key_id: i64,
    account: String,
    model: String,
    requested_model: String,
    channel: String,
    endpoint: String,
    input_tokens: i64,
    cached_input_tokens: i64,
    cache_write_tokens: i64,
    output_tokens: i64,
    cost: String,
    status: String,
    duration_ms: i64,
    created_at: String,
    usage_adjusted: bool,
    /// The protocol the client spoke, and the upstream's (they differ when converted).
    client_protocol: String,
    upstream_protocol: String,
}

impl UsageView {
    /// The display form of a proto usage record.
    pub fn new(record: &pb::UsageRecord) -> UsageView {
        UsageView {
            request_id: record.request_id.clone(),
            key_id: record.key_id,
            account: record.account.clone(),
            model: record.model.clone(),
            // Records from before aliases carry none: they asked for the model billed.
            requested_model: if record.requested_model.is_empty() {
                record.model.clone()
            } else {
                record.requested_model.clone()
            },
            channel: record.channel.clone(),
            endpoint: record.endpoint.clone(),
            input_tokens: record.input_tokens,
            cached_input_tokens: record.cached_input_tokens,
            cache_write_tokens: record.cache_write_tokens,
            output_tokens: record.output_tokens,
            cost: output::money(record.cost_nanos),
            status: record.status.clone(),
            duration_ms: record.duration_ms,
            created_at: output::time(record.created_at_unix_micros),
            usage_adjusted: record.usage_adjusted,
            client_protocol: record.client_protocol.clone(),
            upstream_protocol: record.upstream_protocol.clone(),
        }
    }
}

impl Record for UsageView {
    const COLUMNS: &'static [&'static str] = &[
        "created_at",
        "request_id",
        "key_id",
        "account",
        "model",
        "requested_model",
        "channel",
        "endpoint",
        "input_tokens",
        "cached_input_tokens",
        "cache_write_tokens",
        "output_tokens",
        "cost",
        "status",
        "duration_ms",
        "usage_adjusted",
    ];

    fn fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("request_id", self.request_id.clone()),
            ("key_id", self.key_id.to_string()),
            ("account", self.account.clone()),
            ("model", self.model.clone()),
            ("requested_model", self.requested_model.clone()),
            ("channel", self.channel.clone()),
            ("endpoint", self.endpoint.clone()),
            ("input_tokens", self.input_tokens.to_string()),
            ("cached_input_tokens", self.cached_input_tokens.to_string()),
            ("cache_write_tokens", self.cache_write_tokens.to_string()),
            ("output_tokens", self.output_tokens.to_string()),
            ("cost", self.cost.clone()),
            ("status", self.status.clone()),
            ("duration_ms", self.duration_ms.to_string()),
            ("created_at", self.created_at.clone()),
            ("usage_adjusted", self.usage_adjusted.to_string()),
            ("client_protocol", self.client_protocol.clone()),
            ("upstream_protocol", self.upstream_protocol.clone()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn list_args(line: &[&str]) -> Result<ListArgs, clap::Error> {
        let cli = Cli::try_parse_from(line)?;
        let Command::Usage(usage) = cli.command else { panic!("not usage") };
        assert!(usage.command.is_none());
        Ok(usage.list)
    }

    #[test]
    fn limit_defaults_to_fifty_and_stays_within_a_page() {
        let usage = list_args(&["routerctl", "usage", "--key", "3"]).expect("a valid command line");
        assert_eq!((usage.limit, usage.key_id, usage.account), (50, Some(3), None));
        assert!(list_args(&["routerctl", "usage", "--limit", "0"]).is_err());
        assert_eq!(
            list_args(&["routerctl", "usage", "--limit", "10000"]).map(|u| u.limit).ok(),
            Some(10_000)
        );
        let error = list_args(&["routerctl", "usage", "--limit", "20000"]).err().map(|e| e.to_string());
        assert!(error.is_some_and(|e| e.contains("20000 is not in 1..=10000")), "a clear error");
    }

    #[test]
    fn filters_and_paging_flags_parse() {
        let usage = list_args(&[
            "routerctl",
            "usage",
            "--since",
            "2026-12-01T00:00:00Z",
            "--until",
            "2026-12-02T00:00:00Z",
            "--model",
            "gpt-4o",
            "--status",
            "ok",
            "--before",
            "r9",
            "--limit",
            "7",
        ])
        .expect("a valid command line");
        let request = usage.request();
        assert_eq!(request.since_unix_micros, Some(1_796_083_200_000_000));
        assert_eq!(request.until_unix_micros, Some(1_796_169_600_000_000));
        assert_eq!((request.model.as_deref(), request.status.as_deref()), (Some("gpt-4o"), Some("ok")));
        assert_eq!((request.before_request_id.as_deref(), request.limit), (Some("r9"), Some(7)));
        assert!(list_args(&["routerctl", "usage", "--since", "yesterday"]).is_err());
        assert!(list_args(&["routerctl", "usage", "--all"]).is_err(), "--all needs --csv");
        assert!(list_args(&["routerctl", "usage", "--all", "--csv", "--before", "r1"]).is_err());
        assert!(list_args(&["routerctl", "usage", "--all", "--csv"]).is_ok_and(|u| u.all && u.csv));
    }

    #[test]
    fn csv_has_a_header_and_quotes_what_needs_it() {
        let record = pb::UsageRecord {
            request_id: "r1".into(),
            account: "bob, \"the\" builder".into(),
            cost_nanos: 1_500_000_000,
            ..pb::UsageRecord::default()
        };
        let mut bytes = Vec::new();
        {
            let sink: &mut dyn Write = &mut bytes;
            let mut writer = csv::WriterBuilder::new().has_headers(false).from_writer(sink);
            write_csv(&mut writer, &[]).expect("header");
            write_csv(&mut writer, &[UsageView::new(&record)]).expect("row");
            writer.flush().expect("flush");
        }
        let text = String::from_utf8(bytes).expect("utf-8");
        let mut lines = text.lines();
        assert!(lines.next().is_some_and(|h| h.starts_with("request_id,key_id,account,model,")));
        let row = lines.next().expect("a row");
        assert!(row.starts_with("r1,0,\"bob, \"\"the\"\" builder\","), "{row}");
        assert!(row.contains(",1.5,"), "amounts as decimal strings: {row}");
        assert_eq!(lines.next(), None);
    }

    #[test]
    fn usage_renders_as_json() {
        let record = pb::UsageRecord {
            request_id: "r1".into(),
            key_id: 3,
            account: "bob".into(),
            model: "gpt-4o".into(),
            channel: "oa".into(),
            input_tokens: 1000,
            cached_input_tokens: 200,
            cache_write_tokens: 0,
            output_tokens: 50,
            cost_nanos: 3_250_000,
            status: "ok".into(),
            created_at_unix_micros: 0,
            endpoint: "/v1/chat/completions".into(),
            duration_ms: 812,
            usage_adjusted: true,
            requested_model: "gpt-4o-latest".into(),
            client_protocol: "messages".into(),
            upstream_protocol: "chat".into(),
        };
        assert_eq!(
            serde_json::to_value(UsageView::new(&record)).expect("views serialize"),
            serde_json::json!({
                "request_id": "r1", "key_id": 3, "account": "bob", "model": "gpt-4o",
                "requested_model": "gpt-4o-latest", "channel": "oa", "endpoint": "/v1/chat/completions", "input_tokens": 1000,
                "cached_input_tokens": 200, "cache_write_tokens": 0, "output_tokens": 50,
                "cost": "0.00325", "status": "ok", "duration_ms": 812,
                "created_at": "1970-01-01T00:00:00Z", "usage_adjusted": true,
                "client_protocol": "messages", "upstream_protocol": "chat",
            })
        );
    }
}
