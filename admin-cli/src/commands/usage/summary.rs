//! `routerctl usage summary`: requests, tokens and cost per bucket, from the control plane's
//! hourly aggregates (so it costs the same with ten or a hundred million records).
use clap::{Args, ValueEnum};
use router_proto::pb;
use serde_json::{Map, Value, json};

use crate::{
    args,
    client::Admin,
    error::Error,
    output::{self, Output},
};

/// What a summary groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum By {
    /// UTC days.
    Day,
    /// Hours.
    Hour,
    /// Models.
    Model,
    /// Keys.
    Key,
    /// Channels.
    Channel,
}

impl By {
    fn as_str(self) -> &'static str {
        match self {
            By::Day => "day",
            By::Hour => "hour",
            By::Model => "model",
            By::Key => "key",
            By::Channel => "channel",
        }
    }
}

/// Flags of `usage summary`.
#[derive(Debug, Args)]
pub struct SummaryArgs {
    /// Only this account's usage.
    #[arg(long, value_name = "NAME", value_parser = args::name)]
    pub account: Option<String>,
    /// Only this key's usage.
    #[arg(long = "key", value_name = "ID")]
    pub key_id: Option<i64>,
    /// What each row sums.
    #[arg(long, value_enum)]
    pub by: By,
    /// From this time (whole hours: an hour counts when it starts at or after it).
    #[arg(long, value_name = "RFC3339", value_parser = args::timestamp)]
    pub since: Option<i64>,
    /// Until this time (an hour counts when it starts before it).
    #[arg(long, value_name = "RFC3339", value_parser = args::timestamp)]
    pub until: Option<i64>,
}

/// Prints one row per bucket: a JSON array, or a table.
pub async fn run(args: SummaryArgs, admin: &mut Admin, out: &mut Output) -> Result<(), Error> {
    let request = pb::SummarizeUsageRequest {
        account: args.account,
        key_id: args.key_id,
        by: args.by.as_str().to_owned(),
        since_unix_micros: args.since,
        until_unix_micros: args.until,
    };
    let buckets = admin.summarize_usage(request).await?.into_inner().buckets;
    if out.is_json() {
        let rows: Vec<Value> = buckets.iter().map(|b| bucket_json(args.by, b)).collect();
        return out.json(&rows);
    }
    let mut header = vec![args.by.as_str().to_uppercase()];
    if args.by == By::Key {
        header.push("NAME".into());
    }
    header.extend(TOTALS.iter().map(|label| label.to_uppercase()));
    let rows: Vec<Vec<String>> = buckets
        .iter()
        .map(|b| {
            let mut row = vec![b.bucket.clone()];
            if args.by == By::Key {
                row.push(b.key_name.clone());
            }
            row.extend(
                totals(b).into_iter().map(|(_, value)| value.to_string().trim_matches('"').to_owned()),
            );
            row
        })
        .collect();
    out.text(&output::grid(&header, &rows))
}

/// The columns every bucket has after its name.
const TOTALS: &[&str] =
    &["requests", "input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens", "cost"];

fn totals(bucket: &pb::UsageBucket) -> [(&'static str, Value); 6] {
    [
        ("requests", json!(bucket.requests)),
        ("input_tokens", json!(bucket.input_tokens)),
        ("cached_input_tokens", json!(bucket.cached_input_tokens)),
        ("cache_write_tokens", json!(bucket.cache_write_tokens)),
        ("output_tokens", json!(bucket.output_tokens)),
        ("cost", json!(output::money(bucket.cost_nanos))),
    ]
}

/// A bucket as JSON: `bucket` (its name as text) and the same under the field name it is
/// (`day`, `hour`, `model`, `key_id` with `key_name`, `channel`), then the totals.
fn bucket_json(by: By, bucket: &pb::UsageBucket) -> Value {
    let mut row = Map::new();
    row.insert("bucket".into(), json!(bucket.bucket));
    match by {
        By::Key => {
            row.insert("key_id".into(), json!(bucket.key_id));
            row.insert("key_name".into(), json!(bucket.key_name));
        }
        By::Day | By::Hour | By::Model | By::Channel => {
            row.insert(by.as_str().into(), json!(bucket.bucket));
        }
    }
    row.extend(totals(bucket).into_iter().map(|(label, value)| (label.to_owned(), value)));
    Value::Object(row)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::{
        cli::{Cli, Command},
        commands::usage::UsageCommand,
    };

    #[test]
    fn summary_needs_a_known_grouping() {
        let cli = Cli::try_parse_from(["routerctl", "usage", "summary", "--by", "model", "--account", "bob"])
            .expect("a valid command line");
        let Command::Usage(usage) = cli.command else { panic!("not usage") };
        let Some(UsageCommand::Summary(summary)) = usage.command else { panic!("not a summary") };
        assert_eq!((summary.by, summary.account.as_deref()), (By::Model, Some("bob")));
        assert!(Cli::try_parse_from(["routerctl", "usage", "summary"]).is_err(), "--by is required");
        assert!(Cli::try_parse_from(["routerctl", "usage", "summary", "--by", "week"]).is_err());
        assert!(
            Cli::try_parse_from(["routerctl", "usage", "--limit", "5", "summary", "--by", "day"]).is_err()
        );
    }

    #[test]
    fn buckets_render_as_json_with_decimal_costs() {
        let bucket = pb::UsageBucket {
            bucket: "2026-12-01".into(),
            requests: 3,
            input_tokens: 10,
            output_tokens: 5,
            cost_nanos: 1_250_000_000,
            start_unix_micros: 1_796_083_200_000_000,
            ..pb::UsageBucket::default()
        };
        assert_eq!(
            bucket_json(By::Day, &bucket),
            json!({
                "bucket": "2026-12-01", "day": "2026-12-01", "requests": 3, "input_tokens": 10,
                "cached_input_tokens": 0, "cache_write_tokens": 0, "output_tokens": 5, "cost": "1.25",
            })
        );
        let key = pb::UsageBucket { bucket: "7".into(), key_id: 7, key_name: "laptop".into(), ..bucket };
        let value = bucket_json(By::Key, &key);
        assert_eq!((value["key_id"].clone(), value["key_name"].clone()), (json!(7), json!("laptop")));
    }
}
