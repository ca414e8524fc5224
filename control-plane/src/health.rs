//! Channel health: one small real request through a channel (`routerctl channel test`), and
//! the optional checker that disables a channel after N failed checks in a row and enables it
//! again after a passing one (`--channel-check-interval`, `--channel-check-failures`).
//!
//! A check asks for one output token with the channel's own credentials, over the protocol it
//! speaks (Chat Completions where it can, else Messages), for its first model (after its model
//! map) unless told which. Any answer but 2xx fails it: 401/403 (a dead or revoked key), 429
//! with an exhausted quota, 5xx, a timeout, a refused connection.
use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use router_upstream::{Api, DEFAULT_ANTHROPIC_VERSION, Kind, Upstream};
use serde_json::json;
use tokio::sync::watch;

use crate::{
    api::feed::PolicyFeed,
    db::Db,
    store::channels::{self, Channel, DISABLED_BY_HEALTH},
};

/// How long one check may take, connecting included.
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);
/// The most of an error answer read (its message is cut to [`ERROR_CHARS`]).
const ERROR_BODY_BYTES: usize = 64 * 1024;
/// The most characters of an upstream error message reported.
const ERROR_CHARS: usize = 200;

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// How one check went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// The upstream answered 2xx.
    pub ok: bool,
    /// The upstream's status; 0 when no answer came.
    pub status: u16,
    /// From sending the request to the end of the answer.
    pub latency: Duration,
    /// What went wrong, when it did.
    pub error: Option<String>,
}

/// Sends checks; cheap to clone.
#[derive(Clone)]
pub struct Checker {
    client: HttpsClient,
}

impl Default for Checker {
    fn default() -> Checker {
        Checker::new()
    }
}

impl Checker {
    /// A checker with its own connection pool (TLS with the web's root certificates).
    pub fn new() -> Checker {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        http.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        Checker { client: Client::builder(TokioExecutor::new()).build(https) }
    }

    /// Checks `channel` with one request for `model` (default: its first model).
    pub async fn check(&self, channel: &Channel, model: Option<&str>) -> CheckResult {
        let started = Instant::now();
        let outcome = match probe_request(channel, model) {
            Ok(request) => tokio::time::timeout(CHECK_TIMEOUT, self.send(request))
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {} s", CHECK_TIMEOUT.as_secs()))),
            Err(error) => Err(error),
        };
        let latency = started.elapsed();
        match outcome {
            Ok((status, _)) if (200..300).contains(&status) => {
                CheckResult { ok: true, status, latency, error: None }
            }
            Ok((status, body)) => {
                CheckResult { ok: false, status, latency, error: Some(error_message(status, &body)) }
            }
            Err(error) => CheckResult { ok: false, status: 0, latency, error: Some(error) },
        }
    }

    async fn send(&self, request: Request<Full<Bytes>>) -> Result<(u16, Bytes), String> {
        let response = self.client.request(request).await.map_err(|e| describe(&e))?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), ERROR_BODY_BYTES)
            .collect()
            .await
            .map(|collected| collected.to_bytes())
            .unwrap_or_default();
        Ok((status, body))
    }
}

/// A transport error with its causes (hyper's own message is only "client error (Connect)").
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The upstream's own error message (OpenAI's or Anthropic's `error.message`), else the start
/// of its body, cut to [`ERROR_CHARS`] characters.
fn error_message(status: u16, body: &[u8]) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let message = parsed
        .as_ref()
        .and_then(|v| v.pointer("/error/message").or_else(|| v.get("message")))
        .and_then(|m| m.as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned());
    let message: String = message.chars().take(ERROR_CHARS).collect();
    if message.is_empty() { format!("HTTP {status}") } else { format!("HTTP {status}: {message}") }
}

/// The request a check sends: Chat Completions where the channel speaks it, else Messages; to
/// the URL and with the credential the data plane would use (`router-upstream`).
fn probe_request(channel: &Channel, model: Option<&str>) -> Result<Request<Full<Bytes>>, String> {
    let asked = match model {
        Some(model) => model.to_owned(),
        None => channel.model_list().into_iter().next().ok_or("the channel serves no model")?,
    };
    let upstream_model = channel.model_map().get(&asked).cloned().unwrap_or(asked);
    let protocols = channel.protocol_list();
    let api = if protocols.iter().any(|p| p == "chat") {
        Api::ChatCompletions
    } else if protocols.iter().any(|p| p == "messages") {
        Api::Messages
    } else {
        return Err(format!("the channel speaks neither chat nor messages ({})", protocols.join(", ")));
    };
    let kind = Kind::parse(&channel.channel_type)
        .ok_or_else(|| format!("unknown channel type {:?}", channel.channel_type))?;
    let upstream = Upstream::new(
        kind,
        &channel.base_url,
        channel.api_key.expose(),
        channel.api_version.as_deref(),
        channel.messages_base_url.as_deref(),
    );
    let url = upstream.url(api, &upstream_model);
    let (name, value) =
        upstream.credential(api).cloned().ok_or("the channel's api key is not a valid header value")?;
    let mut builder =
        Request::post(url.as_str()).header(header::CONTENT_TYPE, "application/json").header(name, value);
    if api.is_messages() {
        builder = builder.header("anthropic-version", DEFAULT_ANTHROPIC_VERSION);
    }
    let prompt = json!([{"role": "user", "content": "ping"}]);
    let body = json!({"model": upstream_model, "messages": prompt, "max_tokens": 1});
    builder
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| format!("bad channel URL {url:?}: {e}"))
}

/// Checks every channel that is enabled or disabled for its health, every `interval`, until
/// `stop` turns true: `failures` failed checks in a row disable a channel (reason `health`), a
/// passing check enables a channel its checks disabled. Changes go to the data planes at once.
pub async fn run(
    db: Db,
    feed: PolicyFeed,
    interval: Duration,
    failures: u32,
    mut stop: watch::Receiver<bool>,
) {
    let checker = Checker::new();
    let mut failed_in_a_row: HashMap<i64, u32> = HashMap::new();
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        let list = match channels::list(&db).await {
            Ok(list) => list,
            Err(error) => {
                tracing::warn!(%error, "channel checks: cannot list the channels");
                continue;
            }
        };
        failed_in_a_row.retain(|id, _| list.iter().any(|c| c.id == *id));
        let due = list
            .into_iter()
            .filter(|c| c.enabled || c.disabled_reason.as_deref() == Some(DISABLED_BY_HEALTH));
        let checks = due.map(|channel| {
            let checker = checker.clone();
            async move {
                let result = checker.check(&channel, None).await;
                (channel, result)
            }
        });
        for (channel, result) in futures::future::join_all(checks).await {
            let count = failed_in_a_row.entry(channel.id).or_default();
            let verdict = if result.ok {
                *count = 0;
                Some(true)
            } else {
                *count = count.saturating_add(1);
                (*count >= failures).then_some(false)
            };
            let Some(healthy) = verdict else { continue };
            match channels::set_health(&db, channel.id, healthy).await {
                Ok(Some(changed)) => {
                    if healthy {
                        tracing::info!(channel = %changed.name, "channel check passed: channel enabled again");
                    } else {
                        tracing::warn!(
                            channel = %changed.name,
                            error = result.error.as_deref().unwrap_or_default(),
                            "{failures} channel checks failed in a row: channel disabled"
                        );
                    }
                    feed.poke();
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(%error, channel = %channel.name, "channel checks: cannot record the result")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(channel_type: &str, protocols: &str) -> Channel {
        Channel {
            id: 1,
            name: "c".into(),
            channel_type: channel_type.into(),
            base_url: "https://up.example/v1".into(),
            api_key: "secret".into(),
            models: r#"["m","n"]"#.into(),
            priority: 0,
            weight: 1,
            model_map: r#"{"m":"upstream-m"}"#.into(),
            api_version: None,
            enabled: true,
            version: 1,
            created_at: 0,
            protocols: protocols.into(),
            messages_base_url: None,
            disabled_reason: None,
        }
    }

    #[test]
    fn a_check_uses_chat_where_it_can_and_the_mapped_first_model() {
        let request = probe_request(&channel("openai", "[]"), None).unwrap();
        assert_eq!(request.uri(), "https://up.example/v1/chat/completions");
        assert_eq!(request.headers()["authorization"], "Bearer secret");
        let request = probe_request(&channel("openai", r#"["messages"]"#), Some("n")).unwrap();
        assert_eq!(request.uri(), "https://up.example/v1/messages");
        assert_eq!(request.headers()["x-api-key"], "secret");
        assert_eq!(request.headers()["anthropic-version"], "2023-06-01");
        let request = probe_request(&channel("anthropic", "[]"), None).unwrap();
        assert_eq!(request.uri(), "https://up.example/v1/v1/messages");
        assert_eq!(request.headers()["x-api-key"], "secret");
        let request = probe_request(&channel("azure", "[]"), None).unwrap();
        assert_eq!(
            request.uri(),
            "https://up.example/v1/openai/deployments/upstream-m/chat/completions?api-version=2024-10-21"
        );
        assert_eq!(request.headers()["api-key"], "secret");
        let mut deepseek = channel("openai", r#"["messages"]"#);
        deepseek.messages_base_url = Some("https://up.example/anthropic/".into());
        let request = probe_request(&deepseek, None).unwrap();
        assert_eq!(request.uri(), "https://up.example/anthropic/v1/messages");
        assert!(
            probe_request(&channel("grpc", r#"["chat"]"#), None)
                .unwrap_err()
                .contains("unknown channel type")
        );
        assert!(probe_request(&channel("openai", r#"["embeddings"]"#), None).is_err());
    }

    #[test]
    fn error_messages_are_the_upstreams_and_short() {
        let body =
            br#"{"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}"#;
        assert_eq!(error_message(401, body), "HTTP 401: Incorrect API key provided");
        let long = "x".repeat(1000);
        assert_eq!(error_message(500, long.as_bytes()).len(), "HTTP 500: ".len() + ERROR_CHARS);
        assert_eq!(error_message(502, b""), "HTTP 502");
    }
}
