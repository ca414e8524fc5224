//! The usage views both services offer: admins see every account (AdminService), the account
//! console one account (NodeService). Requests are checked and converted here, once.
use std::pin::Pin;

use futures::Stream;
use router_proto::pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::convert;
use crate::{
    db::Db,
    store::usage::{self, Bucket, By, Position, SummaryFilter, UsageFilter},
};

/// Records per page of an export: small messages, and each page one index range.
const EXPORT_PAGE: i64 = 1_000;

/// Pages of an export, as the gRPC server streams them.
pub type ExportStream = Pin<Box<dyn Stream<Item = Result<pb::ListUsageResponse, Status>> + Send>>;

/// A listing request of either service, checked.
#[derive(Debug, Clone, Default)]
pub struct ListArgs {
    account: Option<String>,
    account_id: Option<i64>,
    key_id: Option<i64>,
    limit: Option<u32>,
    since: Option<i64>,
    until: Option<i64>,
    model: Option<String>,
    status: Option<String>,
    before: Option<String>,
}

/// An empty text filter filters nothing (as an absent one).
fn given(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

impl From<pb::ListUsageRequest> for ListArgs {
    fn from(r: pb::ListUsageRequest) -> ListArgs {
        ListArgs {
            account: given(r.account),
            account_id: None,
            key_id: r.key_id,
            limit: r.limit,
            since: r.since_unix_micros,
            until: r.until_unix_micros,
            model: given(r.model),
            status: given(r.status),
            before: given(r.before_request_id),
        }
    }
}

impl TryFrom<pb::ListAccountUsageRequest> for ListArgs {
    type Error = Status;

    fn try_from(r: pb::ListAccountUsageRequest) -> Result<ListArgs, Status> {
        Ok(ListArgs {
            account: None,
            account_id: Some(required_account(r.account_id)?),
            key_id: r.key_id,
            limit: r.limit,
            since: r.since_unix_micros,
            until: r.until_unix_micros,
            model: given(r.model),
            status: given(r.status),
            before: given(r.before_request_id),
        })
    }
}

/// The account a console request is scoped to: it must name one.
pub fn required_account(account_id: i64) -> Result<i64, Status> {
    if account_id <= 0 {
        return Err(Status::invalid_argument("account_id is required"));
    }
    Ok(account_id)
}

/// Refuses a time range that ends before it starts.
pub fn check_range(since: Option<i64>, until: Option<i64>) -> Result<(), Status> {
    match (since, until) {
        (Some(since), Some(until)) if since > until => {
            Err(Status::invalid_argument("`since` must not be later than `until`"))
        }
        _ => Ok(()),
    }
}

impl ListArgs {
    fn filter(&self, limit: i64, before: Option<Position>) -> UsageFilter<'_> {
        UsageFilter {
            account: self.account.as_deref(),
            account_id: self.account_id,
            key_id: self.key_id,
            since: self.since,
            until: self.until,
            model: self.model.as_deref(),
            status: self.status.as_deref(),
            before,
            limit: Some(limit),
        }
    }
}

fn page_to_pb(page: usage::UsagePage) -> pb::ListUsageResponse {
    let next = page.next().map(|p| p.request_id);
    pb::ListUsageResponse {
        records: page.records.into_iter().map(convert::usage_to_pb).collect(),
        next_before_request_id: next,
    }
}

/// One page of records, newest first.
pub async fn list(db: &Db, args: ListArgs) -> Result<pb::ListUsageResponse, Status> {
    check_range(args.since, args.until)?;
    let limit = usage::page_limit(args.limit)?;
    let before = match &args.before {
        Some(request_id) => Some(usage::position_of(db, request_id).await?),
        None => None,
    };
    let page = usage::list(db, args.filter(limit, before)).await?;
    Ok(page_to_pb(page))
}

/// Every matching record, newest first, in pages (`limit` and `before` ignored). Each page is
/// read when the one before has been taken by the client, so memory stays bounded however
/// many records there are.
pub fn export(db: Db, args: ListArgs) -> Result<ExportStream, Status> {
    check_range(args.since, args.until)?;
    let (sender, receiver) = mpsc::channel(2);
    tokio::spawn(async move {
        let mut before = None;
        loop {
            let page = match usage::list(&db, args.filter(EXPORT_PAGE, before)).await {
                Ok(page) => page,
                Err(error) => {
                    let _ = sender.send(Err(error.into())).await;
                    return;
                }
            };
            before = page.next();
            if page.records.is_empty() {
                return;
            }
            if sender.send(Ok(page_to_pb(page))).await.is_err() || before.is_none() {
                return;
            }
        }
    });
    Ok(Box::pin(ReceiverStream::new(receiver)))
}

/// A summary request of either service, checked.
#[derive(Debug, Clone)]
pub struct SummaryArgs {
    account: Option<String>,
    account_id: Option<i64>,
    key_id: Option<i64>,
    by: String,
    since: Option<i64>,
    until: Option<i64>,
}

impl TryFrom<pb::SummarizeUsageRequest> for SummaryArgs {
    type Error = Status;

    fn try_from(r: pb::SummarizeUsageRequest) -> Result<SummaryArgs, Status> {
        check_range(r.since_unix_micros, r.until_unix_micros)?;
        Ok(SummaryArgs {
            account: given(r.account),
            account_id: None,
            key_id: r.key_id,
            by: r.by,
            since: r.since_unix_micros,
            until: r.until_unix_micros,
        })
    }
}

impl TryFrom<pb::SummarizeAccountUsageRequest> for SummaryArgs {
    type Error = Status;

    fn try_from(r: pb::SummarizeAccountUsageRequest) -> Result<SummaryArgs, Status> {
        check_range(r.since_unix_micros, r.until_unix_micros)?;
        Ok(SummaryArgs {
            account: None,
            account_id: Some(required_account(r.account_id)?),
            key_id: r.key_id,
            by: r.by,
            since: r.since_unix_micros,
            until: r.until_unix_micros,
        })
    }
}

/// Usage per bucket, from the hourly aggregates.
pub async fn summarize(db: &Db, args: SummaryArgs) -> Result<pb::UsageSummary, Status> {
    let filter = SummaryFilter {
        account: args.account.as_deref(),
        account_id: args.account_id,
        key_id: args.key_id,
        by: By::parse(&args.by)?,
        since: args.since,
        until: args.until,
    };
    let buckets = usage::summarize(db, filter).await?;
    Ok(pb::UsageSummary { buckets: buckets.into_iter().map(bucket_to_pb).collect() })
}

fn bucket_to_pb(bucket: Bucket) -> pb::UsageBucket {
    let totals = bucket.totals;
    pb::UsageBucket {
        bucket: bucket.name,
        requests: totals.requests,
        input_tokens: totals.input_tokens,
        cached_input_tokens: totals.cached_input_tokens,
        cache_write_tokens: totals.cache_write_tokens,
        output_tokens: totals.output_tokens,
        cost_nanos: totals.cost,
        start_unix_micros: bucket.start.unwrap_or_default(),
        key_id: bucket.key_id.unwrap_or_default(),
        key_name: bucket.key_name,
    }
}
