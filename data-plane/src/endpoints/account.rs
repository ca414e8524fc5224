//! Key-holder endpoints, read through to the control plane (exact, not cached): `/api/me`,
//! `/api/me/usage`, `/api/redeem`, and OpenAI's legacy billing shapes.
use bytes::Bytes;
use http::StatusCode;
use router_proto::{Money, pb};
use serde_json::{Value, json};

use super::json;
use crate::{
    app::App,
    body::ResponseBody,
    proxy::error::{ApiError, ErrorCode},
};

type Answer = Result<http::Response<ResponseBody>, ApiError>;

fn money(nanos: i64) -> Value {
    Value::String(Money::from_nanos(nanos).to_string())
}

fn optional_money(nanos: Option<i64>) -> Value {
    nanos.map_or(Value::Null, money)
}

fn time(micros: Option<i64>) -> Value {
    let Some(micros) = micros else { return Value::Null };
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .map_or(Value::Null, Value::String)
}

fn unavailable(status: &tonic::Status) -> ApiError {
    tracing::warn!(%status, "control plane call failed");
    match status.code() {
        tonic::Code::NotFound => ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, status.message()),
        tonic::Code::FailedPrecondition | tonic::Code::InvalidArgument => {
            ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, status.message())
        }
        tonic::Code::PermissionDenied => {
            ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::InvalidApiKey, status.message())
        }
        _ => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            "the control plane is unavailable; try again shortly",
        ),
    }
}

async fn status(app: &App, key_id: i64) -> Result<pb::KeyStatus, ApiError> {
    let mut client = app.node.clone();
    client
        .get_key_status(pb::KeyStatusRequest { key_id })
        .await
        .map(tonic::Response::into_inner)
        .map_err(|s| unavailable(&s))
}

/// `GET /api/me`.
pub async fn me(app: &App, key_id: i64) -> Answer {
    let status = status(app, key_id).await?;
    let key = status.key.unwrap_or_default();
    let account = status.account.unwrap_or_default();
    Ok(json(
        StatusCode::OK,
        &json!({
            "key": {
                "id": key.id, "name": key.name, "prefix": key.prefix, "group": key.effective_group,
                "limit": optional_money(key.limit_nanos), "spent": money(key.spent_nanos),
                "daily_limit": optional_money(key.daily_limit_nanos), "spent_today": money(key.spent_today_nanos),
                "models": key.models, "expires_at": time(key.expires_at_unix_micros),
            },
            "account": {
                "name": account.name, "group": account.group, "balance": money(account.balance_nanos),
                "daily_limit": optional_money(account.daily_limit_nanos), "spent_today": money(account.spent_today_nanos),
            },
            "currency": status.currency,
        }),
    ))
}

/// `GET /api/me/usage?limit=N`.
pub async fn usage(app: &App, key_id: i64, query: Option<&str>) -> Answer {
    let limit = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("limit="))
        .and_then(|v| v.parse::<u32>().ok());
    let mut client = app.node.clone();
    let records = client
        .list_key_usage(pb::ListKeyUsageRequest { key_id, limit })
        .await
        .map_err(|s| unavailable(&s))?
        .into_inner()
        .records;
    let data: Vec<Value> = records
        .into_iter()
        .map(|r| {
            json!({
                "request_id": r.request_id, "key_id": r.key_id, "model": r.model, "channel": r.channel,
                "endpoint": r.endpoint, "input_tokens": r.input_tokens, "cached_input_tokens": r.cached_input_tokens,
                "cache_write_tokens": r.cache_write_tokens, "output_tokens": r.output_tokens, "cost": money(r.cost_nanos),
                "status": r.status, "duration_ms": r.duration_ms, "created_at": time(Some(r.created_at_unix_micros)),
            })
        })
        .collect();
    Ok(json(StatusCode::OK, &json!({"object": "list", "data": data})))
}

/// `POST /api/redeem` with `{"code": "..."}`.
pub async fn redeem(app: &App, key_id: i64, body: &Bytes) -> Answer {
    #[derive(serde::Deserialize)]
    struct Redeem {
        code: String,
    }
    let request: Redeem = serde_json::from_slice(body).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRequest,
            "expected a JSON body {\"code\": \"...\"}",
        )
    })?;
    let mut client = app.node.clone();
    let change = client
        .redeem(pb::RedeemRequest { key_id, code: request.code })
        .await
        .map_err(|s| unavailable(&s))?
        .into_inner();
    Ok(json(
        StatusCode::OK,
        &json!({"account": change.account, "amount": money(change.amount_nanos), "balance": money(change.balance_nanos)}),
    ))
}

/// What the key can still spend: the least of its account's balance and its own limit.
fn spendable(key: &pb::Key, account: &pb::Account) -> i64 {
    let balance = account.balance_nanos.max(0);
    key.limit_nanos.map_or(balance, |limit| balance.min((limit - key.spent_nanos).max(0)))
}

/// `GET /v1/dashboard/billing/subscription` (OpenAI's legacy shape; numbers, in currency units).
pub async fn subscription(app: &App, key_id: i64) -> Answer {
    let status = status(app, key_id).await?;
    let (key, account) = (status.key.unwrap_or_default(), status.account.unwrap_or_default());
    // Front-ends show hard_limit − total_usage as what is left.
    let hard_limit = (spendable(&key, &account) + key.spent_nanos) as f64 / 1e9;
    let access_until = key.expires_at_unix_micros.map_or(0, |micros| micros / 1_000_000);
    Ok(json(
        StatusCode::OK,
        &json!({
            "object": "billing_subscription", "has_payment_method": true,
            "hard_limit_usd": hard_limit, "soft_limit_usd": hard_limit, "system_hard_limit_usd": hard_limit,
            "access_until": access_until,
        }),
    ))
}

/// `GET /v1/dashboard/billing/usage` (OpenAI's legacy shape; `total_usage` in cents).
pub async fn billing_usage(app: &App, key_id: i64) -> Answer {
    let status = status(app, key_id).await?;
    let key = status.key.unwrap_or_default();
    Ok(json(StatusCode::OK, &json!({"object": "list", "total_usage": key.spent_nanos as f64 / 1e7})))
}
