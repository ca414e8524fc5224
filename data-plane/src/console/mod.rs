//! The account console: `/api/account/*` (JSON). Stateless here: every request's session is
//! looked up on the control plane (`SessionAccount`), which owns sessions, passwords and the
//! sign-in limit. The session travels in an HttpOnly, SameSite=Strict cookie; state-changing
//! calls must also send the session's CSRF token in `x-csrf-token`.
pub mod api;
pub mod charts;
pub mod i18n;
pub mod pages;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use hyper::body::Incoming;
use router_proto::pb;

use crate::{
    app::App,
    proxy::error::{ApiError, ErrorCode},
};

/// The style sheet of the console and the public price page.
pub const STYLE: &str = include_str!("style.css");

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "cr_session";
/// The header state-changing calls carry the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Largest console request body.
const MAX_BODY: usize = 64 * 1024;

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(key, value)| (key == name).then_some(value))
        .filter(|value| !value.is_empty())
}

/// Whether the client reached us over TLS (through a terminating proxy: the data plane itself
/// serves plain HTTP).
pub(crate) fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|proto| proto.eq_ignore_ascii_case("https"))
}

/// `Set-Cookie` for a new session lasting `max_age` seconds (0: deletes the cookie).
pub fn session_cookie(request: &HeaderMap, token: &str, max_age: i64) -> HeaderValue {
    let secure = if over_tls(request) { "; Secure" } else { "" };
    let value =
        format!("{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}");
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("cr_session=; Max-Age=0"))
}

/// Compares two tokens in time that does not depend on where they differ.
pub(crate) fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A control-plane refusal as the console's HTTP error.
pub fn rpc_error(status: &tonic::Status) -> ApiError {
    let message = status.message().to_owned();
    match status.code() {
        tonic::Code::Unauthenticated => {
            ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::InvalidSession, message)
        }
        tonic::Code::PermissionDenied => {
            ApiError::new(StatusCode::FORBIDDEN, ErrorCode::AccountDisabled, message)
        }
        tonic::Code::NotFound => ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message),
        tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition | tonic::Code::AlreadyExists => {
            ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, message)
        }
        tonic::Code::ResourceExhausted => {
            let seconds = status
                .metadata()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(60);
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimitExceeded, message)
                .retry_after(seconds)
        }
        tonic::Code::Unimplemented => {
            ApiError::new(StatusCode::NOT_IMPLEMENTED, ErrorCode::NotImplemented, message)
        }
        _ => {
            tracing::warn!(%status, "control plane call failed");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unavailable,
                "the control plane is unavailable; try again shortly",
            )
        }
    }
}

/// The signed-in caller of a console request.
#[derive(Debug, Clone)]
pub struct Session {
    /// The session token (from the cookie).
    pub token: String,
    /// The account and the session's CSRF token, as the control plane has them now.
    pub info: pb::SessionInfo,
}

impl Session {
    /// The account's id.
    pub fn account_id(&self) -> i64 {
        self.info.account.as_ref().map_or(0, |a| a.id)
    }
}

/// The live session of the request's cookie.
pub async fn session(app: &App, headers: &HeaderMap) -> Result<Session, ApiError> {
    let Some(token) = cookie(headers, SESSION_COOKIE) else {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::InvalidSession, "not signed in"));
    };
    let mut client = app.node.clone();
    let info = client
        .session_account(pb::SessionRequest { token: token.to_owned() })
        .await
        .map_err(|s| rpc_error(&s))?
        .into_inner();
    Ok(Session { token: token.to_owned(), info })
}

/// The live session, for a state-changing call: the request must carry its CSRF token.
pub async fn session_for_change(app: &App, headers: &HeaderMap) -> Result<Session, ApiError> {
    let session = session(app, headers).await?;
    let sent = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !same_token(sent, &session.info.csrf_token) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::CsrfFailed,
            "missing or wrong x-csrf-token for this session",
        ));
    }
    Ok(session)
}

/// Reads a console request body of at most `limit` bytes: 413 over it, 408 when a piece takes
/// longer than the data plane's `--body-read-timeout` or the whole body longer than that
/// (a console body is small: a client trickling one byte at a time cannot hold the
/// connection for long either).
pub async fn read_limited_body(
    app: &App,
    request: Request<Incoming>,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let timeout = app.config.body_read_timeout;
    let (head, body) = request.into_parts();
    let read = crate::proxy::request::read_body(&head.headers, body, limit, timeout);
    tokio::time::timeout(timeout, read).await.unwrap_or_else(|_| {
        Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            ErrorCode::InvalidRequest,
            format!("the request body took longer than {} s", timeout.as_secs_f64()),
        ))
    })
}

/// Reads a small console request body (see [`read_limited_body`]).
pub async fn read_body(app: &App, request: Request<Incoming>) -> Result<Bytes, ApiError> {
    read_limited_body(app, request, MAX_BODY).await
}

/// Parses a JSON body (an empty one as `{}`).
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8], expected: &str) -> Result<T, ApiError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) { b"{}" } else { body };
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRequest,
            format!("expected a JSON body {expected}: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_and_tokens() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; cr_session=abc; b=2"));
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "c"), None);
        let set = session_cookie(&headers, "tok", 60);
        assert_eq!(set.to_str().ok(), Some("cr_session=tok; Path=/; HttpOnly; SameSite=Strict; Max-Age=60"));
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(session_cookie(&headers, "tok", 60).to_str().unwrap_or_default().ends_with("; Secure"));
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd") && !same_token("abc", "ab") && !same_token("", "a"));
    }
}
