//! A small HTTP client for the tests (hyper), with streaming reads.
use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};

/// A whole answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `x-request-id` header.
    pub fn request_id(&self) -> String {
        self.headers.get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
    }
}

fn client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

fn build(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> anyhow::Result<Request<Full<Bytes>>> {
    let mut request = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    Ok(request.body(Full::new(body))?)
}

/// Sends a request and reads the whole answer.
pub async fn send(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> anyhow::Result<Answer> {
    let response = client().request(build(method, url, headers, body.into())?).await?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Answer { status: parts.status.as_u16(), headers: parts.headers, body })
}

/// `GET url`.
pub async fn get(url: &str, headers: &[(&str, &str)]) -> anyhow::Result<Answer> {
    send(Method::GET, url, headers, Bytes::new()).await
}

/// `POST url` with a JSON body.
pub async fn post_json(
    url: &str,
    headers: &[(&str, &str)],
    body: &serde_json::Value,
) -> anyhow::Result<Answer> {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    send(Method::POST, url, &all, body.to_string()).await
}

/// A streamed answer, read chunk by chunk.
pub struct Streamed {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
    body: hyper::body::Incoming,
}

impl Streamed {
    /// The next chunk of the body, or `None` at its end.
    pub async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            let frame = self.body.frame().await?.ok()?;
            if let Ok(data) = frame.into_data() {
                return Some(data);
            }
        }
    }

    /// Everything left, as text.
    pub async fn rest(&mut self) -> String {
        let mut text = String::new();
        while let Some(chunk) = self.next_chunk().await {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        text
    }
}

/// `POST url` with a JSON body, answer read as a stream.
pub async fn post_stream(
    url: &str,
    headers: &[(&str, &str)],
    body: &serde_json::Value,
) -> anyhow::Result<Streamed> {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    let response = client().request(build(Method::POST, url, &all, Bytes::from(body.to_string()))?).await?;
    let (parts, body) = response.into_parts();
    Ok(Streamed { status: parts.status.as_u16(), headers: parts.headers, body })
}
