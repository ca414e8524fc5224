//! `routerctl usage`: one record per request that was forwarded upstream.
use clap::Args;
use router_proto::pb;
use serde::Serialize;

use crate::{
    args,
    client::Admin,
    error::Error,
    output::{self, Output, Record},
};

/// Flags of `usage`.
#[derive(Debug, Args)]
pub struct UsageArgs {
    /// Only this account's requests.
    #[arg(long, value_name = "NAME", value_parser = args::name)]
    pub account: Option<String>,
    /// Only this key's requests.
    #[arg(long = "key", value_name = "ID")]
    pub key_id: Option<i64>,
    /// How many records, newest first.
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: u32,
}

/// Lists usage records, newest first.
pub async fn run(args: UsageArgs, admin: &mut Admin, out: &mut Output) -> Result<(), Error> {
    let request =
        pb::ListUsageRequest { account: args.account, key_id: args.key_id, limit: Some(args.limit) };
    let records = admin.list_usage(request).await?.into_inner().records;
    let views: Vec<UsageView> = records.iter().map(UsageView::new).collect();
    out.records(&views)
}

/// One usage record for display.
#[derive(Debug, Serialize)]
pub struct UsageView {
    request_id: String,
    key_id: i64,
    account: String,
    model: String,
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
}

impl UsageView {
    /// The display form of a proto usage record.
    pub fn new(record: &pb::UsageRecord) -> UsageView {
        UsageView {
            request_id: record.request_id.clone(),
            key_id: record.key_id,
            account: record.account.clone(),
            model: record.model.clone(),
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
        "channel",
        "endpoint",
        "input_tokens",
        "cached_input_tokens",
        "cache_write_tokens",
        "output_tokens",
        "cost",
        "status",
        "duration_ms",
    ];

    fn fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("request_id", self.request_id.clone()),
            ("key_id", self.key_id.to_string()),
            ("account", self.account.clone()),
            ("model", self.model.clone()),
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
        ]
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    #[test]
    fn limit_defaults_to_fifty() {
        let cli = Cli::try_parse_from(["routerctl", "usage", "--key", "3"]).expect("a valid command line");
        let Command::Usage(usage) = cli.command else { panic!("not usage") };
        assert_eq!((usage.limit, usage.key_id, usage.account), (50, Some(3), None));
        assert!(Cli::try_parse_from(["routerctl", "usage", "--limit", "0"]).is_err());
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
        };
        assert_eq!(
            serde_json::to_value(UsageView::new(&record)).expect("views serialize"),
            serde_json::json!({
                "request_id": "r1", "key_id": 3, "account": "bob", "model": "gpt-4o",
                "channel": "oa", "endpoint": "/v1/chat/completions", "input_tokens": 1000,
                "cached_input_tokens": 200, "cache_write_tokens": 0, "output_tokens": 50,
                "cost": "0.00325", "status": "ok", "duration_ms": 812,
                "created_at": "1970-01-01T00:00:00Z",
            })
        );
    }
}
