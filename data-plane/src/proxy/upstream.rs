//! Talking to upstreams: the HTTP client, and the request for a channel (its URL and
//! credentials by the rules of `router-upstream`, the client's query and headers).
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, header};
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use router_upstream::DEFAULT_ANTHROPIC_VERSION;

use super::endpoint::Endpoint;
use crate::policy::ChannelInfo;

/// The shared upstream client (connection pools per host, HTTP/1.1 and HTTP/2, TLS).
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Builds the upstream client.
pub fn client(connect_timeout: Duration) -> HttpClient {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .build(https)
}

/// The URL to call `endpoint` of `channel` for `upstream_model`, with the client's query.
pub fn url(channel: &ChannelInfo, endpoint: Endpoint, upstream_model: &str, query: Option<&str>) -> String {
    let mut url = channel.upstream.url(endpoint.api(), upstream_model);
    if let Some(query) = query.filter(|q| !q.is_empty()) {
        let mut separator = if url.contains('?') { '&' } else { '?' };
        for parameter in query.split('&').filter(|p| !p.is_empty() && !is_credential(p)) {
            url.push(separator);
            url.push_str(parameter);
            separator = '&';
        }
    }
    url
}

/// Whether a query parameter (`name=value`) may carry a credential: `api_key`, `key` or
/// `access_token`, in any case, percent-encoded or not. The gateway's own key must never reach
/// a provider this way (nor does the gateway read keys from the query).
fn is_credential(parameter: &str) -> bool {
    let name = parameter.split_once('=').map_or(parameter, |(name, _)| name);
    let mut decoded = String::with_capacity(name.len());
    let mut bytes = name.bytes();
    while let Some(byte) = bytes.next() {
        let byte = match byte {
            b'%' => {
                let hex: Vec<u8> = bytes.by_ref().take(2).collect();
                std::str::from_utf8(&hex).ok().and_then(|h| u8::from_str_radix(h, 16).ok()).unwrap_or(b'%')
            }
            b'+' => b' ',
            other => other,
        };
        decoded.push(char::from(byte.to_ascii_lowercase()));
    }
    matches!(decoded.trim(), "api_key" | "key" | "access_token" | "api-key" | "apikey")
}

/// Headers never forwarded: hop-by-hop ones, the client's credentials, and what the
/// gateway sets itself.
fn is_withheld(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
            | "accept-encoding"
            | "authorization"
            | "x-api-key"
            | "api-key"
            | "cookie"
            | "openai-organization"
            | "openai-project"
            | "x-goog-api-key"
            | "forwarded"
            | "x-forwarded-for"
            | "x-real-ip"
            | "expect"
    )
}

/// The upstream request: the channel's URL and credentials, the client's protocol headers.
pub fn request(
    channel: &ChannelInfo,
    endpoint: Endpoint,
    upstream_model: &str,
    query: Option<&str>,
    client_headers: &HeaderMap,
    body: Bytes,
) -> anyhow::Result<Request<Full<Bytes>>> {
    let mut builder =
        Request::builder().method(Method::POST).uri(url(channel, endpoint, upstream_model, query));
    let headers = builder.headers_mut().ok_or_else(|| anyhow::anyhow!("invalid upstream URL"))?;
    for (name, value) in client_headers {
        if !is_withheld(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    let api = endpoint.api();
    let (name, value) = channel
        .upstream
        .credential(api)
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("the channel's api key is not a valid header value"))?;
    headers.insert(name, value);
    if api.is_messages() {
        headers
            .entry(HeaderName::from_static("anthropic-version"))
            .or_insert(HeaderValue::from_static(DEFAULT_ANTHROPIC_VERSION));
    }
    // Usage is read from the answer, so it must not come compressed.
    headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    headers.entry(header::CONTENT_TYPE).or_insert(HeaderValue::from_static("application/json"));
    Ok(builder.body(Full::new(body))?)
}

#[cfg(test)]
mod tests {
    use router_upstream::{Kind, Upstream};

    use super::*;

    fn channel(kind: Kind, base: &str) -> ChannelInfo {
        ChannelInfo {
            id: 1,
            name: "c".into(),
            upstream: Upstream::new(kind, base, "upstream-key", Some("2024-06-01"), None),
            priority: 0,
            weight: 1,
            model_map: Default::default(),
        }
    }

    /// The URL itself is `router-upstream`'s (tested there); the client's query follows it.
    #[test]
    fn the_clients_query_follows_the_channels_url() {
        let openai = channel(Kind::OpenAi, "https://api.openai.com/v1");
        assert_eq!(
            url(&openai, Endpoint::ChatCompletions, "m", None),
            "https://api.openai.com/v1/chat/completions"
        );
        assert_eq!(
            url(&openai, Endpoint::Responses, "m", Some("x=1")),
            "https://api.openai.com/v1/responses?x=1"
        );
        let anthropic = channel(Kind::Anthropic, "https://api.anthropic.com");
        assert_eq!(
            url(&anthropic, Endpoint::Messages, "m", Some("beta=true")),
            "https://api.anthropic.com/v1/messages?beta=true"
        );
        let mut deepseek = channel(Kind::OpenAi, "https://api.deepseek.com/v1");
        assert_eq!(
            url(&deepseek, Endpoint::CountTokens, "m", Some("")),
            "https://api.deepseek.com/v1/messages/count_tokens"
        );
        deepseek.upstream = Upstream::new(
            Kind::OpenAi,
            "https://api.deepseek.com/v1",
            "k",
            None,
            Some("https://api.deepseek.com/anthropic"),
        );
        assert_eq!(
            url(&deepseek, Endpoint::Messages, "m", Some("beta=true")),
            "https://api.deepseek.com/anthropic/v1/messages?beta=true"
        );
        let azure = channel(Kind::Azure, "https://x.openai.azure.com");
        assert_eq!(
            url(&azure, Endpoint::Embeddings, "dep", Some("x=1")),
            "https://x.openai.azure.com/openai/deployments/dep/embeddings?api-version=2024-06-01&x=1"
        );
    }

    #[test]
    fn credentials_in_the_query_never_go_upstream() {
        let openai = channel(Kind::OpenAi, "https://api.openai.com/v1");
        assert_eq!(
            url(&openai, Endpoint::ChatCompletions, "m", Some("api_key=sk-1&x=1&KEY=2&access%5Ftoken=3&&y")),
            "https://api.openai.com/v1/chat/completions?x=1&y"
        );
        assert_eq!(
            url(&openai, Endpoint::ChatCompletions, "m", Some("key=1")),
            "https://api.openai.com/v1/chat/completions"
        );
    }

    #[test]
    fn client_credentials_never_go_upstream() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static("Bearer sk-client"));
        headers.insert("x-api-key", HeaderValue::from_static("sk-client"));
        headers.insert("anthropic-beta", HeaderValue::from_static("tools-2024"));
        headers.insert("connection", HeaderValue::from_static("keep-alive"));
        headers.insert("expect", HeaderValue::from_static("100-continue"));
        let anthropic = channel(Kind::Anthropic, "http://h");
        let request =
            request(&anthropic, Endpoint::Messages, "m", None, &headers, Bytes::new()).expect("request");
        let sent = request.headers();
        assert_eq!(sent.get("x-api-key").map(|v| v.as_bytes()), Some(&b"upstream-key"[..]));
        assert!(sent.get("authorization").is_none());
        assert_eq!(sent.get("anthropic-beta").map(|v| v.as_bytes()), Some(&b"tools-2024"[..]));
        assert_eq!(sent.get("anthropic-version").map(|v| v.as_bytes()), Some(&b"2023-06-01"[..]));
        assert!(sent.get("connection").is_none());
        assert!(sent.get("expect").is_none(), "Expect is between the client and the gateway");
        let openai = channel(Kind::OpenAi, "http://h");
        let request = super::request(&openai, Endpoint::ChatCompletions, "m", None, &headers, Bytes::new())
            .expect("request");
        assert_eq!(
            request.headers().get("authorization").map(|v| v.as_bytes()),
            Some(&b"Bearer upstream-key"[..])
        );
        assert!(request.headers().get("x-api-key").is_none());
        // The same channel on its Messages protocol: Anthropic's headers.
        let request =
            super::request(&openai, Endpoint::Messages, "m", None, &headers, Bytes::new()).expect("request");
        let sent = request.headers();
        assert_eq!(sent.get("x-api-key").map(|v| v.as_bytes()), Some(&b"upstream-key"[..]));
        assert!(sent.get("authorization").is_none());
        assert_eq!(sent.get("anthropic-version").map(|v| v.as_bytes()), Some(&b"2023-06-01"[..]));
    }
}
