//! Step 1 of the request path: the caller's key, found by the SHA-256 of its secret.
use std::{net::IpAddr, sync::Arc};

use http::{HeaderMap, StatusCode, header};
use sha2::{Digest, Sha256};

use super::{
    backoff::Backoff,
    error::{ApiError, ErrorCode},
};
use crate::policy::{AccountInfo, KeyInfo, Policy, catalog::GroupInfo};

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller<'p> {
    /// The key.
    pub key: Arc<KeyInfo>,
    /// Its account.
    pub account: &'p AccountInfo,
    /// The group in force (the key's own, else the account's).
    pub group: &'p GroupInfo,
}

/// The secret a client presents: `Authorization: Bearer …` or `x-api-key: …`.
pub fn presented_secret(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let value = value.trim();
        if let Some(secret) = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")) {
            return Some(secret.trim()).filter(|s| !s.is_empty());
        }
    }
    headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim).filter(|s| !s.is_empty())
}

fn refused(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::InvalidApiKey, message)
}

/// Finds the caller of a request, or refuses it with 401.
pub fn authenticate<'p>(
    policy: &'p Policy,
    headers: &HeaderMap,
    now_micros: i64,
) -> Result<Caller<'p>, ApiError> {
    let hash = presented_hash(headers)?;
    caller(policy, &hash, now_micros)
}

/// [`authenticate`] behind the failed-auth back-off of the client's address: a valid key is
/// always served; a refused one from a held-back address is 429 instead of 401.
pub fn admit<'p>(
    policy: &'p Policy,
    headers: &HeaderMap,
    now_micros: i64,
    backoff: &Backoff,
    peer: IpAddr,
) -> Result<Caller<'p>, ApiError> {
    if !backoff.enabled() {
        return authenticate(policy, headers, now_micros);
    }
    let hash = presented_hash(headers);
    let ticket = backoff.ticket(peer, hash.as_ref().ok());
    match hash.and_then(|hash| caller(policy, &hash, now_micros)) {
        Ok(caller) => {
            backoff.succeeded(ticket);
            Ok(caller)
        }
        Err(error) => {
            backoff.check(ticket).map_err(|seconds| {
                ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    ErrorCode::RateLimitExceeded,
                    "too many requests with an invalid API key from this address; retry later",
                )
                .retry_after(seconds)
            })?;
            backoff.failed(ticket);
            Err(error)
        }
    }
}

/// The SHA-256 of the presented secret, or 401 when there is none.
fn presented_hash(headers: &HeaderMap) -> Result<[u8; 32], ApiError> {
    let secret = presented_secret(headers)
        .ok_or_else(|| refused("no API key given (use Authorization: Bearer sk-…)"))?;
    Ok(Sha256::digest(secret.as_bytes()).into())
}

/// The caller whose key hashes to `hash`, or 401.
fn caller<'p>(policy: &'p Policy, hash: &[u8; 32], now_micros: i64) -> Result<Caller<'p>, ApiError> {
    let key = policy.key(hash).ok_or_else(|| refused("invalid API key"))?;
    if key.expires_at.is_some_and(|at| at <= now_micros) {
        return Err(refused("this API key has expired"));
    }
    let account = policy.account(key.account_id).ok_or_else(|| refused("invalid API key"))?;
    let group_id = key.group_id.unwrap_or(account.group_id);
    let group = policy.catalog.group(group_id).ok_or_else(|| refused("invalid API key"))?;
    Ok(Caller { key: Arc::clone(key), account, group })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_bearer_or_x_api_key() {
        let mut headers = HeaderMap::new();
        assert_eq!(presented_secret(&headers), None);
        headers.insert("x-api-key", "sk-a".parse().expect("header"));
        assert_eq!(presented_secret(&headers), Some("sk-a"));
        headers.insert(header::AUTHORIZATION, "Bearer sk-b".parse().expect("header"));
        assert_eq!(presented_secret(&headers), Some("sk-b"));
        headers.insert(header::AUTHORIZATION, "Basic xyz".parse().expect("header"));
        assert_eq!(presented_secret(&headers), Some("sk-a"));
    }
}
