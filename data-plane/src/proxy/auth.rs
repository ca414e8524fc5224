//! Step 1 of the request path: the caller's key, found by the SHA-256 of its secret.
use std::sync::Arc;

use http::{HeaderMap, StatusCode, header};
use sha2::{Digest, Sha256};

use super::error::{ApiError, ErrorCode};
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
    let secret = presented_secret(headers)
        .ok_or_else(|| refused("no API key given (use Authorization: Bearer sk-…)"))?;
    let hash: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
    let key = policy.key(&hash).ok_or_else(|| refused("invalid API key"))?;
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
