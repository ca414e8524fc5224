//! `/api/account/*`: the console's JSON API (INTERFACE.md "Account console (web)"), for the
//! console pages and other front-ends. Amounts are decimal strings at full precision.
use std::net::SocketAddr;

use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use router_proto::{Money, pb};
use serde_json::{Value, json};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use super::{
    Session, parse_json, read_body, read_limited_body, rpc_error, session, session_cookie, session_for_change,
};
use crate::{
    app::App,
    body::ResponseBody,
    endpoints::{json, text},
    proxy::error::{ApiError, ErrorCode},
};

type Answer = Result<Response<ResponseBody>, ApiError>;

/// Records per page of a CSV download (the control plane's largest page).
const CSV_PAGE: u32 = 10_000;

fn money(nanos: i64) -> Value {
    Value::String(Money::from_nanos(nanos).to_string())
}

fn optional_money(nanos: Option<i64>) -> Value {
    nanos.map_or(Value::Null, money)
}

/// RFC 3339 of unix micros.
pub fn time_text(micros: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

fn optional_time(micros: Option<i64>) -> Value {
    micros.map_or(Value::Null, |m| Value::String(time_text(m)))
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, message)
}

/// An account as `routerctl account show --json` prints it, plus `email` and the currency.
pub fn account_json(account: &pb::Account, currency: &str) -> Value {
    json!({
        "id": account.id, "name": account.name, "group": account.group, "email": account.email,
        "balance": money(account.balance_nanos), "reserved": money(account.reserved_nanos),
        "daily_limit": optional_money(account.daily_limit_nanos), "spent_today": money(account.spent_today_nanos),
        "weekly_limit": optional_money(account.weekly_limit_nanos.filter(|l| *l > 0)),
        "spent_this_week": money(account.spent_this_week_nanos),
        "monthly_limit": optional_money(account.monthly_limit_nanos.filter(|l| *l > 0)),
        "spent_this_month": money(account.spent_this_month_nanos),
        "rpm": account.rpm.filter(|l| *l > 0), "tpm": account.tpm.filter(|l| *l > 0),
        "max_concurrent": account.max_concurrent.filter(|l| *l > 0),
        "created_at": time_text(account.created_at_unix_micros), "currency": currency,
    })
}

/// A key, without its secret.
pub fn key_json(key: &pb::Key) -> Value {
    json!({
        "id": key.id, "name": key.name, "prefix": key.prefix, "group": key.effective_group,
        "limit": optional_money(key.limit_nanos), "spent": money(key.spent_nanos),
        "daily_limit": optional_money(key.daily_limit_nanos), "spent_today": money(key.spent_today_nanos),
        "weekly_limit": optional_money(key.weekly_limit_nanos.filter(|l| *l > 0)),
        "spent_this_week": money(key.spent_this_week_nanos),
        "monthly_limit": optional_money(key.monthly_limit_nanos.filter(|l| *l > 0)),
        "spent_this_month": money(key.spent_this_month_nanos),
        "rpm": key.rpm.filter(|l| *l > 0), "tpm": key.tpm.filter(|l| *l > 0),
        "max_concurrent": key.max_concurrent.filter(|l| *l > 0),
        "models": key.models, "expires_at": optional_time(key.expires_at_unix_micros),
        "status": if key.revoked { "revoked" } else { "active" }, "created_at": time_text(key.created_at_unix_micros),
    })
}

/// A usage record.
pub fn usage_json(r: &pb::UsageRecord) -> Value {
    json!({
        "request_id": r.request_id, "key_id": r.key_id, "model": r.model, "channel": r.channel,
        "endpoint": r.endpoint, "input_tokens": r.input_tokens, "cached_input_tokens": r.cached_input_tokens,
        "cache_write_tokens": r.cache_write_tokens, "output_tokens": r.output_tokens, "cost": money(r.cost_nanos),
        "status": r.status, "duration_ms": r.duration_ms, "created_at": time_text(r.created_at_unix_micros),
    })
}

/// A ledger entry.
pub fn ledger_json(e: &pb::LedgerEntry) -> Value {
    json!({
        "id": e.id, "kind": e.kind, "amount": money(e.amount_nanos), "balance_after": money(e.balance_after_nanos),
        "request_id": e.request_id, "note": e.note, "created_at": time_text(e.created_at_unix_micros),
    })
}

/// Serves `/api/account` and everything under it.
pub async fn handle(
    app: &App,
    request: Request<Incoming>,
    path: &str,
    peer: SocketAddr,
) -> Response<ResponseBody> {
    let method = request.method().clone();
    let rest = path.strip_prefix("/api/account").unwrap_or_default();
    let answer = match (&method, rest) {
        (&Method::POST, "/login") => login(app, request, peer).await,
        (&Method::POST, "/logout") => logout(app, request).await,
        (&Method::GET, "" | "/") => me(app, &request).await,
        (&Method::GET, "/keys") => keys(app, &request).await,
        (&Method::POST, "/keys") => create_key(app, request).await,
        (&Method::GET, "/usage") => usage(app, &request).await,
        (&Method::GET, "/usage/summary") => summary(app, &request).await,
        (&Method::GET, "/ledger") => ledger(app, &request).await,
        (&Method::POST, "/redeem") => redeem(app, request).await,
        (&Method::POST, "/topup") => topup(app, request).await,
        (&Method::POST, _) if rest.starts_with("/keys/") && rest.ends_with("/limits") => {
            let id = &rest["/keys/".len()..rest.len() - "/limits".len()];
            update_key_limits(app, request, id).await
        }
        (&Method::POST, _) if rest.starts_with("/keys/") && rest.ends_with("/revoke") => {
            let id = &rest["/keys/".len()..rest.len() - "/revoke".len()];
            revoke_key(app, &request, id).await
        }
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!("no route for {method} {path}"),
        )),
    };
    answer.unwrap_or_else(|error| error.response(false))
}

async fn login(app: &App, request: Request<Incoming>, peer: SocketAddr) -> Answer {
    #[derive(serde::Deserialize)]
    struct Login {
        email: String,
        password: String,
    }
    let headers = request.headers().clone();
    let body = read_body(app, request).await?;
    let Login { email, password } = parse_json(&body, "{\"email\": \"...\", \"password\": \"...\"}")?;
    let mut client = app.node.clone();
    let login = pb::LoginRequest { email, password, client_address: peer.ip().to_string() };
    let session = client.login(login).await.map_err(|status| match status.code() {
        tonic::Code::Unauthenticated => {
            ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::InvalidCredentials, status.message())
        }
        _ => rpc_error(&status),
    })?;
    let session = session.into_inner();
    let max_age = (session.expires_at_unix_micros - crate::app::unix_micros()).max(0) / 1_000_000;
    let mut response = json(
        StatusCode::OK,
        &json!({"csrf_token": session.csrf_token, "expires_at": time_text(session.expires_at_unix_micros)}),
    );
    response.headers_mut().insert(header::SET_COOKIE, session_cookie(&headers, &session.token, max_age));
    Ok(response)
}

async fn logout(app: &App, request: Request<Incoming>) -> Answer {
    let session = session_for_change(app, request.headers()).await?;
    let mut client = app.node.clone();
    client.logout(pb::SessionRequest { token: session.token }).await.map_err(|s| rpc_error(&s))?;
    let mut response = json(StatusCode::OK, &json!({}));
    response.headers_mut().insert(header::SET_COOKIE, session_cookie(request.headers(), "", 0));
    Ok(response)
}

async fn me(app: &App, request: &Request<Incoming>) -> Answer {
    let session = session(app, request.headers()).await?;
    let account = session.info.account.clone().unwrap_or_default();
    Ok(json(StatusCode::OK, &account_json(&account, &session.info.currency)))
}

/// The account's keys (newest first).
pub async fn list_keys(app: &App, session: &Session) -> Result<Vec<pb::Key>, ApiError> {
    let mut client = app.node.clone();
    let request = pb::AccountRequest { account_id: session.account_id() };
    Ok(client.list_account_keys(request).await.map_err(|s| rpc_error(&s))?.into_inner().keys)
}

async fn keys(app: &App, request: &Request<Incoming>) -> Answer {
    let session = session(app, request.headers()).await?;
    let keys = list_keys(app, &session).await?;
    let data: Vec<Value> = keys.iter().map(key_json).collect();
    Ok(json(StatusCode::OK, &json!({"object": "list", "data": data})))
}

fn amount(value: Option<&str>, what: &str) -> Result<Option<i64>, ApiError> {
    value
        .filter(|v| !v.trim().is_empty())
        .map(|v| {
            Money::parse_non_negative(v.trim())
                .map(Money::nanos)
                .map_err(|e| bad_request(format!("{what}: {e}")))
        })
        .transpose()
}

/// Creating a key: what a form or a JSON body gives.
#[derive(Debug, Default, serde::Deserialize)]
pub struct NewKey {
    /// Free name.
    pub name: Option<String>,
    /// Total spend cap, a decimal string.
    pub limit: Option<String>,
    /// Daily spend cap, a decimal string.
    pub daily_limit: Option<String>,
    /// Allow-list of models.
    #[serde(default)]
    pub models: Vec<String>,
    /// RFC 3339.
    pub expires_at: Option<String>,
}

/// Creates a key for the session's account; the answer carries the secret, once.
pub async fn create(app: &App, session: &Session, new: NewKey) -> Result<pb::CreatedKey, ApiError> {
    let expires_at = match new.expires_at.as_deref().filter(|v| !v.trim().is_empty()) {
        Some(text) => Some(
            OffsetDateTime::parse(text.trim(), &Rfc3339)
                .map_err(|_| bad_request(format!("expires_at {text:?} is not an RFC 3339 time")))?
                .unix_timestamp_nanos()
                / 1000,
        ),
        None => None,
    };
    let request = pb::CreateAccountKeyRequest {
        account_id: session.account_id(),
        name: new.name.filter(|n| !n.trim().is_empty()),
        limit_nanos: amount(new.limit.as_deref(), "limit")?,
        daily_limit_nanos: amount(new.daily_limit.as_deref(), "daily_limit")?,
        models: new.models,
        expires_at_unix_micros: expires_at.and_then(|m| i64::try_from(m).ok()),
    };
    let mut client = app.node.clone();
    Ok(client.create_account_key(request).await.map_err(|s| rpc_error(&s))?.into_inner())
}

async fn create_key(app: &App, request: Request<Incoming>) -> Answer {
    let session = session_for_change(app, request.headers()).await?;
    let body = read_body(app, request).await?;
    let new: NewKey =
        parse_json(&body, "{\"name\", \"limit\", \"daily_limit\", \"models\", \"expires_at\"}")?;
    let created = create(app, &session, new).await?;
    let mut value = key_json(&created.key.unwrap_or_default());
    value["key"] = Value::String(created.secret);
    Ok(json(StatusCode::OK, &value))
}

/// New spend limits of a key: for each, `None` leaves it, `Some(None)` removes it.
#[derive(Debug, Default)]
pub struct KeyLimits {
    /// Total spend cap.
    pub limit: Option<Option<String>>,
    /// Daily spend cap.
    pub daily_limit: Option<Option<String>>,
}

/// Sets the spend limits of one of the session's account's keys.
pub async fn set_key_limits(
    app: &App,
    session: &Session,
    id: &str,
    limits: KeyLimits,
) -> Result<pb::Key, ApiError> {
    let key_id: i64 = id.parse().map_err(|_| bad_request(format!("{id:?} is not a key id")))?;
    // An empty value removes the limit, as an absent one does on create.
    let wire = |value: Option<Option<String>>, what: &str| -> Result<(Option<i64>, bool), ApiError> {
        match value {
            None => Ok((None, false)),
            Some(value) => match amount(value.as_deref(), what)? {
                Some(nanos) => Ok((Some(nanos), false)),
                None => Ok((None, true)),
            },
        }
    };
    let (limit_nanos, clear_limit) = wire(limits.limit, "limit")?;
    let (daily_limit_nanos, clear_daily_limit) = wire(limits.daily_limit, "daily_limit")?;
    let request = pb::UpdateAccountKeyRequest {
        account_id: session.account_id(),
        key_id,
        limit_nanos,
        clear_limit,
        daily_limit_nanos,
        clear_daily_limit,
    };
    let mut client = app.node.clone();
    Ok(client.update_account_key(request).await.map_err(|s| rpc_error(&s))?.into_inner())
}

async fn update_key_limits(app: &App, request: Request<Incoming>, id: &str) -> Answer {
    let session = session_for_change(app, request.headers()).await?;
    let body = read_body(app, request).await?;
    let fields: serde_json::Map<String, Value> = parse_json(&body, "{\"limit\", \"daily_limit\"}")?;
    let field = |name: &str| -> Result<Option<Option<String>>, ApiError> {
        match fields.get(name) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(None)),
            Some(Value::String(text)) => Ok(Some(Some(text.clone()))),
            Some(other) => Err(bad_request(format!("{name} must be a decimal string or null, not {other}"))),
        }
    };
    if let Some(unknown) = fields.keys().find(|k| *k != "limit" && *k != "daily_limit") {
        return Err(bad_request(format!("unknown field {unknown:?} (expected limit, daily_limit)")));
    }
    let limits = KeyLimits { limit: field("limit")?, daily_limit: field("daily_limit")? };
    let key = set_key_limits(app, &session, id, limits).await?;
    Ok(json(StatusCode::OK, &key_json(&key)))
}

/// Revokes one of the session's account's keys.
pub async fn revoke(app: &App, session: &Session, id: &str) -> Result<pb::Key, ApiError> {
    let key_id: i64 = id.parse().map_err(|_| bad_request(format!("{id:?} is not a key id")))?;
    let mut client = app.node.clone();
    let request = pb::AccountKeyRequest { account_id: session.account_id(), key_id };
    Ok(client.revoke_account_key(request).await.map_err(|s| rpc_error(&s))?.into_inner())
}

async fn revoke_key(app: &App, request: &Request<Incoming>, id: &str) -> Answer {
    let session = session_for_change(app, request.headers()).await?;
    let key = revoke(app, &session, id).await?;
    Ok(json(StatusCode::OK, &key_json(&key)))
}

/// The query string's pairs, percent-decoded.
pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            Some((decode(key)?, decode(value)?))
        })
        .filter(|(key, _)| !key.is_empty())
        .collect()
}

/// Decodes `application/x-www-form-urlencoded` text.
pub fn decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn param<'q>(pairs: &'q [(String, String)], name: &str) -> Option<&'q str> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
}

fn time_param(pairs: &[(String, String)], name: &str) -> Result<Option<i64>, ApiError> {
    let Some(text) = param(pairs, name) else { return Ok(None) };
    // A date alone is its first instant (UTC).
    let full = if text.len() == 10 { format!("{text}T00:00:00Z") } else { text.to_owned() };
    let parsed = OffsetDateTime::parse(&full, &Rfc3339)
        .map_err(|_| bad_request(format!("{name} {text:?} is not an RFC 3339 time or a YYYY-MM-DD date")))?;
    Ok(i64::try_from(parsed.unix_timestamp_nanos() / 1000).ok())
}

/// A usage listing request from the query string.
pub fn usage_request(
    session: &Session,
    pairs: &[(String, String)],
) -> Result<pb::ListAccountUsageRequest, ApiError> {
    let number = |name: &str| -> Result<Option<i64>, ApiError> {
        param(pairs, name)
            .map(|v| v.parse().map_err(|_| bad_request(format!("{name} {v:?} is not a number"))))
            .transpose()
    };
    Ok(pb::ListAccountUsageRequest {
        account_id: session.account_id(),
        key_id: number("key")?,
        limit: number("limit")?.map(|l| u32::try_from(l).unwrap_or(u32::MAX)),
        since_unix_micros: time_param(pairs, "since")?,
        until_unix_micros: time_param(pairs, "until")?,
        model: param(pairs, "model").map(str::to_owned),
        status: param(pairs, "status").map(str::to_owned),
        before_request_id: param(pairs, "before").map(str::to_owned),
    })
}

/// One page of the session's account's usage.
pub async fn usage_page(
    app: &App,
    request: pb::ListAccountUsageRequest,
) -> Result<pb::ListUsageResponse, ApiError> {
    let mut client = app.node.clone();
    Ok(client.list_account_usage(request).await.map_err(|s| rpc_error(&s))?.into_inner())
}

const CSV_HEADER: &str = "created_at,request_id,key_id,model,channel,endpoint,input_tokens,cached_input_tokens,cache_write_tokens,output_tokens,cost,status,duration_ms\n";

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

fn csv_row(r: &pb::UsageRecord) -> String {
    format!(
        "{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
        time_text(r.created_at_unix_micros),
        csv_field(&r.request_id),
        r.key_id,
        csv_field(&r.model),
        csv_field(&r.channel),
        csv_field(&r.endpoint),
        r.input_tokens,
        r.cached_input_tokens,
        r.cache_write_tokens,
        r.output_tokens,
        Money::from_nanos(r.cost_nanos),
        csv_field(&r.status),
        r.duration_ms,
    )
}

async fn usage(app: &App, request: &Request<Incoming>) -> Answer {
    let session = session(app, request.headers()).await?;
    let pairs = query_pairs(request.uri().query());
    let mut listing = usage_request(&session, &pairs)?;
    if param(&pairs, "format") == Some("csv") {
        // Every matching record, page after page (`limit` and `before` do not apply).
        listing.limit = Some(CSV_PAGE);
        listing.before_request_id = None;
        let mut csv = String::from(CSV_HEADER);
        loop {
            let page = usage_page(app, listing.clone()).await?;
            page.records.iter().for_each(|r| csv.push_str(&csv_row(r)));
            match page.next_before_request_id {
                Some(next) if !page.records.is_empty() => listing.before_request_id = Some(next),
                _ => break,
            }
        }
        let mut response = text(StatusCode::OK, "text/csv; charset=utf-8", csv);
        response.headers_mut().insert(
            header::CONTENT_DISPOSITION,
            http::HeaderValue::from_static("attachment; filename=\"usage.csv\""),
        );
        return Ok(response);
    }
    let page = usage_page(app, listing).await?;
    let data: Vec<Value> = page.records.iter().map(usage_json).collect();
    Ok(json(
        StatusCode::OK,
        &json!({"object": "list", "data": data, "next_before": page.next_before_request_id}),
    ))
}

/// A usage summary of the session's account.
pub async fn summarize(
    app: &App,
    session: &Session,
    by: &str,
    since: Option<i64>,
    until: Option<i64>,
    key_id: Option<i64>,
) -> Result<pb::UsageSummary, ApiError> {
    let mut client = app.node.clone();
    let request = pb::SummarizeAccountUsageRequest {
        account_id: session.account_id(),
        key_id,
        by: by.to_owned(),
        since_unix_micros: since,
        until_unix_micros: until,
    };
    Ok(client.summarize_account_usage(request).await.map_err(|s| rpc_error(&s))?.into_inner())
}

async fn summary(app: &App, request: &Request<Incoming>) -> Answer {
    let session = session(app, request.headers()).await?;
    let pairs = query_pairs(request.uri().query());
    let by = param(&pairs, "by").unwrap_or("day");
    if !matches!(by, "day" | "model" | "key") {
        return Err(bad_request(format!("by {by:?} must be day, model or key")));
    }
    let key = param(&pairs, "key")
        .map(|k| k.parse().map_err(|_| bad_request("key must be a key id")))
        .transpose()?;
    let summary =
        summarize(app, &session, by, time_param(&pairs, "since")?, time_param(&pairs, "until")?, key).await?;
    let data: Vec<Value> = summary
        .buckets
        .iter()
        .map(|b| {
            json!({
                "bucket": b.bucket, "requests": b.requests, "input_tokens": b.input_tokens,
                "cached_input_tokens": b.cached_input_tokens, "cache_write_tokens": b.cache_write_tokens,
                "output_tokens": b.output_tokens, "cost": money(b.cost_nanos),
            })
        })
        .collect();
    Ok(json(StatusCode::OK, &json!({"object": "list", "by": by, "data": data})))
}

/// The session's account's ledger, newest first.
pub async fn ledger_entries(
    app: &App,
    session: &Session,
    limit: u32,
) -> Result<Vec<pb::LedgerEntry>, ApiError> {
    let mut client = app.node.clone();
    let request = pb::ListAccountLedgerRequest { account_id: session.account_id(), limit: Some(limit) };
    Ok(client.list_account_ledger(request).await.map_err(|s| rpc_error(&s))?.into_inner().entries)
}

async fn ledger(app: &App, request: &Request<Incoming>) -> Answer {
    let session = session(app, request.headers()).await?;
    let pairs = query_pairs(request.uri().query());
    let limit = param(&pairs, "limit")
        .map_or(Ok(50), |v| v.parse().map_err(|_| bad_request("limit must be a number")))?;
    let entries = ledger_entries(app, &session, limit).await?;
    let data: Vec<Value> = entries.iter().map(ledger_json).collect();
    Ok(json(StatusCode::OK, &json!({"object": "list", "data": data})))
}

/// Redeems a code for the session's account.
pub async fn redeem_code(app: &App, session: &Session, code: String) -> Result<pb::BalanceChange, ApiError> {
    let mut client = app.node.clone();
    let request = pb::AccountRedeemRequest { account_id: session.account_id(), code };
    Ok(client.redeem_for_account(request).await.map_err(|s| rpc_error(&s))?.into_inner())
}

async fn redeem(app: &App, request: Request<Incoming>) -> Answer {
    #[derive(serde::Deserialize)]
    struct Redeem {
        code: String,
    }
    let session = session_for_change(app, request.headers()).await?;
    let body = read_body(app, request).await?;
    let Redeem { code } = parse_json(&body, "{\"code\": \"...\"}")?;
    let change = redeem_code(app, &session, code).await?;
    Ok(json(
        StatusCode::OK,
        &json!({"amount": money(change.amount_nanos), "balance": money(change.balance_nanos)}),
    ))
}

/// Top-up is refused until a payment provider is configured.
pub fn payments_not_configured() -> ApiError {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        ErrorCode::PaymentsNotConfigured,
        "no payment provider is configured: ask the operator to top up, or redeem a code",
    )
}

/// `scheme://host[:port]` the browser reached this data plane at (behind a TLS-terminating
/// proxy: `X-Forwarded-Proto`), for the payer's way back from the checkout page.
pub fn public_base(headers: &http::HeaderMap) -> String {
    let scheme = if super::over_tls(headers) { "https" } else { "http" };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b)))
        .unwrap_or("127.0.0.1");
    format!("{scheme}://{host}")
}

/// Starts a top-up of `amount` (a decimal string): the order and its checkout page.
pub async fn start_topup(
    app: &App,
    session: &Session,
    headers: &http::HeaderMap,
    amount: &str,
) -> Result<pb::TopUpCheckout, ApiError> {
    let enabled = session.info.topup.as_ref().is_some_and(|t| t.enabled);
    if !enabled {
        return Err(payments_not_configured());
    }
    let amount =
        Money::parse_non_negative(amount.trim()).map_err(|e| bad_request(format!("amount: {e}")))?.nanos();
    let mut client = app.node.clone();
    let request = pb::CreateTopUpRequest {
        account_id: session.account_id(),
        amount_nanos: amount,
        return_url_base: public_base(headers),
    };
    client.create_top_up(request).await.map(tonic::Response::into_inner).map_err(|status| {
        if status.code() == tonic::Code::Unimplemented {
            payments_not_configured()
        } else {
            rpc_error(&status)
        }
    })
}

async fn topup(app: &App, request: Request<Incoming>) -> Answer {
    #[derive(serde::Deserialize)]
    struct TopUp {
        amount: Value,
    }
    let session = session_for_change(app, request.headers()).await?;
    if !session.info.topup.as_ref().is_some_and(|t| t.enabled) {
        return Err(payments_not_configured());
    }
    let headers = request.headers().clone();
    let body = read_body(app, request).await?;
    let TopUp { amount } = parse_json(&body, "{\"amount\": \"10\"}")?;
    let Some(amount) = amount.as_str() else {
        return Err(bad_request("amount must be a decimal string, e.g. \"10\""));
    };
    let checkout = start_topup(app, &session, &headers, amount).await?;
    Ok(json(StatusCode::OK, &json!({"order_id": checkout.order_id, "checkout_url": checkout.checkout_url})))
}

/// Largest webhook body read.
const MAX_WEBHOOK_BODY: usize = 1024 * 1024;

/// `POST /api/payments/stripe/webhook`: Stripe's events, passed with their signature to the
/// control plane, which verifies them and credits paid sessions once.
pub async fn stripe_webhook(app: &App, request: Request<Incoming>) -> Response<ResponseBody> {
    let signature = request
        .headers()
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let answer = async {
        let body = read_limited_body(app, request, MAX_WEBHOOK_BODY).await?;
        let mut client = app.node.clone();
        let request =
            pb::PaymentWebhookRequest { provider: "stripe".into(), payload: body.to_vec(), signature };
        let result = client.payment_webhook(request).await.map_err(|status| match status.code() {
            tonic::Code::Unimplemented => payments_not_configured(),
            _ => rpc_error(&status),
        })?;
        Ok::<_, ApiError>(json(
            StatusCode::OK,
            &json!({"received": true, "outcome": result.into_inner().outcome}),
        ))
    };
    answer.await.unwrap_or_else(|error| error.response(false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode() {
        let pairs = query_pairs(Some("model=gpt-4o%2Dmini&since=2026-12-01&x&limit=5&name=a+b"));
        assert_eq!(param(&pairs, "model"), Some("gpt-4o-mini"));
        assert_eq!(param(&pairs, "name"), Some("a b"));
        assert_eq!(param(&pairs, "x"), None);
        assert_eq!(time_param(&pairs, "since").ok().flatten(), Some(1_796_083_200_000_000));
        assert!(decode("%zz").is_none());
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("a\"b,"), "\"a\"\"b,\"");
    }
}
