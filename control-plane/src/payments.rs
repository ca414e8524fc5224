//! Top-up through a payment provider: the [`Provider`] trait and its one implementation,
//! Stripe Checkout. Creating a checkout is one call to Stripe's REST API
//! (`POST {base}/v1/checkout/sessions`, form-encoded, the secret key as a bearer token); the
//! payment is learnt from Stripe's `checkout.session.*` webhook, whose `Stripe-Signature`
//! header is verified as Stripe documents it: `t=TIMESTAMP,v1=HEX[,v1=…]`, where `HEX` is
//! HMAC-SHA256 of `"{t}.{raw body}"` keyed by the endpoint's signing secret, compared in
//! constant time against every `v1`, and `t` within 5 minutes of now. A webhook saying a
//! session was paid is then checked with Stripe itself (`GET {base}/v1/checkout/sessions/{id}`,
//! as Stripe's fulfilment guide does): only what Stripe's API says was paid, in the amount and
//! currency it gives, is credited, so even a leaked webhook secret cannot mint money.
use std::{future::Future, pin::Pin, time::Duration};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{Request, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use serde_json::Value;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// How far a webhook's signed timestamp may be from now.
pub const WEBHOOK_TOLERANCE_SECONDS: i64 = 300;
/// How long a call to the provider may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The most of a provider's answer read.
const ANSWER_BYTES: usize = 256 * 1024;

/// A checkout to create.
#[derive(Debug, Clone)]
pub struct CheckoutRequest {
    /// Our order id (the provider echoes it back).
    pub order_id: i64,
    /// The account's name (shown to the payer).
    pub account: String,
    /// The amount in the currency's smallest unit (cents).
    pub amount_minor: i64,
    /// ISO currency code, lowercase.
    pub currency: String,
    /// Where the payer's browser goes after paying.
    pub success_url: String,
    /// Where it goes when the payer gives up.
    pub cancel_url: String,
}

/// A created checkout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    /// The provider's session id.
    pub session_id: String,
    /// Where the payer pays.
    pub url: String,
}

/// What a verified webhook says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A checkout session completed or its delayed payment succeeded; `paid` only when its
    /// `payment_status` is `paid`.
    Completed {
        /// The session.
        session_id: String,
        /// `payment_status == "paid"`.
        paid: bool,
        /// `amount_total`, in the smallest unit.
        amount_minor: i64,
        /// `currency`, lowercase.
        currency: String,
    },
    /// A checkout session expired (or its delayed payment failed).
    Expired {
        /// The session.
        session_id: String,
    },
    /// An event this gateway does not act on (its type).
    Ignored(String),
}

/// Why a webhook was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// No or a malformed `Stripe-Signature` header.
    #[error("malformed Stripe-Signature header")]
    Malformed,
    /// The timestamp is outside the tolerance.
    #[error("the webhook's timestamp is more than 5 minutes from now")]
    Stale,
    /// No `v1` signature matches.
    #[error("no signature matches the payload")]
    BadSignature,
    /// Signed, but not an event we can read.
    #[error("the webhook body is not a Stripe event: {0}")]
    BadPayload(String),
}

/// A future a provider returns.
pub type ProviderFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

/// A payment provider.
pub trait Provider: Send + Sync + std::fmt::Debug {
    /// Its name, stored on orders (`stripe`).
    fn name(&self) -> &'static str;
    /// Creates a checkout for `request`.
    fn create_checkout<'a>(&'a self, request: &'a CheckoutRequest) -> ProviderFuture<'a, Checkout>;
    /// Verifies a webhook (`signature`: its signature header) received at `now_unix` seconds.
    fn verify_webhook(&self, payload: &[u8], signature: &str, now_unix: i64) -> Result<Event, WebhookError>;
    /// Asks the provider itself what state session `session_id` is in (an
    /// [`Event::Completed`], `paid` or not, or [`Event::Expired`]): a webhook says *that*
    /// something happened, the provider's API says what is true now.
    fn session<'a>(&'a self, session_id: &'a str) -> ProviderFuture<'a, Event>;
}

/// HMAC-SHA256 (RFC 2104) of `message` keyed by `key`.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `Stripe-Signature` header Stripe would send for `payload` at `timestamp` (for tests and
/// the fake Stripe).
pub fn stripe_signature(secret: &str, timestamp: i64, payload: &[u8]) -> String {
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(payload);
    format!("t={timestamp},v1={}", hex(&hmac_sha256(secret.as_bytes(), &signed)))
}

/// Checks a `Stripe-Signature` header against `payload` and `secret` at `now_unix`.
pub fn verify_stripe_signature(
    secret: &str,
    payload: &[u8],
    header: &str,
    now_unix: i64,
) -> Result<(), WebhookError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in header.split(',') {
        let Some((key, value)) = item.trim().split_once('=') else { continue };
        match key {
            "t" => timestamp = Some(value.parse::<i64>().map_err(|_| WebhookError::Malformed)?),
            "v1" => signatures.push(value.to_owned()),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(WebhookError::Malformed)?;
    if signatures.is_empty() {
        return Err(WebhookError::Malformed);
    }
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(payload);
    let expected = hex(&hmac_sha256(secret.as_bytes(), &signed));
    if !signatures.iter().any(|s| bool::from(s.as_bytes().ct_eq(expected.as_bytes()))) {
        return Err(WebhookError::BadSignature);
    }
    if (now_unix - timestamp).abs() > WEBHOOK_TOLERANCE_SECONDS {
        return Err(WebhookError::Stale);
    }
    Ok(())
}

/// Reads a verified Stripe event.
pub fn stripe_event(payload: &[u8]) -> Result<Event, WebhookError> {
    let event: Value =
        serde_json::from_slice(payload).map_err(|e| WebhookError::BadPayload(e.to_string()))?;
    let kind = event["type"].as_str().ok_or_else(|| WebhookError::BadPayload("no type".into()))?;
    let session = &event["data"]["object"];
    let session_id = || {
        session["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| WebhookError::BadPayload("no data.object.id".into()))
    };
    match kind {
        "checkout.session.completed" | "checkout.session.async_payment_succeeded" => {
            Ok(completed(session_id()?, session))
        }
        "checkout.session.expired" | "checkout.session.async_payment_failed" => {
            Ok(Event::Expired { session_id: session_id()? })
        }
        other => Ok(Event::Ignored(other.to_owned())),
    }
}

/// What a Checkout Session object says of its payment.
fn completed(session_id: String, session: &Value) -> Event {
    Event::Completed {
        session_id,
        paid: session["payment_status"] == "paid",
        amount_minor: session["amount_total"].as_i64().unwrap_or(0),
        currency: session["currency"].as_str().unwrap_or_default().to_ascii_lowercase(),
    }
}

/// A retrieved Checkout Session (`GET /v1/checkout/sessions/{id}`) as an [`Event`]: expired
/// when its `status` is `expired`, else what it says of its payment.
pub fn stripe_session(session_id: &str, session: &Value) -> Result<Event, String> {
    if session["id"].as_str() != Some(session_id) {
        return Err(format!("Stripe answered another object for session {session_id:?}"));
    }
    Ok(match session["status"].as_str() {
        Some("expired") => Event::Expired { session_id: session_id.to_owned() },
        _ => completed(session_id.to_owned(), session),
    })
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Stripe Checkout.
pub struct Stripe {
    secret_key: String,
    webhook_secret: String,
    api_base: String,
    client: HttpsClient,
}

impl std::fmt::Debug for Stripe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stripe").field("api_base", &self.api_base).finish_non_exhaustive()
    }
}

/// `application/x-www-form-urlencoded` of one value.
fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(char::from(byte)),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

impl Stripe {
    /// Stripe at `api_base` (`https://api.stripe.com`; requests go to `{base}/v1/…`).
    pub fn new(secret_key: String, webhook_secret: String, api_base: &str) -> Stripe {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        http.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Stripe {
            secret_key,
            webhook_secret,
            api_base: api_base.trim_end_matches('/').to_owned(),
            client: Client::builder(TokioExecutor::new()).build(https),
        }
    }

    /// The form body of a Checkout Session for `request` (one line item at the amount).
    pub fn session_form(request: &CheckoutRequest) -> String {
        let order = request.order_id.to_string();
        let fields: Vec<(&str, String)> = vec![
            ("mode", "payment".into()),
            ("success_url", request.success_url.clone()),
            ("cancel_url", request.cancel_url.clone()),
            ("client_reference_id", order.clone()),
            ("metadata[order_id]", order),
            ("metadata[account]", request.account.clone()),
            ("line_items[0][quantity]", "1".into()),
            ("line_items[0][price_data][currency]", request.currency.clone()),
            ("line_items[0][price_data][unit_amount]", request.amount_minor.to_string()),
            (
                "line_items[0][price_data][product_data][name]",
                format!("Code Router top-up ({})", request.account),
            ),
        ];
        fields
            .iter()
            .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
            .collect::<Vec<_>>()
            .join("&")
    }

    async fn create(&self, request: &CheckoutRequest) -> Result<Checkout, String> {
        let http = Request::post(format!("{}/v1/checkout/sessions", self.api_base))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header("idempotency-key", format!("code-router-order-{}", request.order_id))
            .body(Full::new(Bytes::from(Stripe::session_form(request))));
        let answer = self.call(http, "create the checkout session").await?;
        match (answer["id"].as_str(), answer["url"].as_str()) {
            (Some(id), Some(url)) => Ok(Checkout { session_id: id.to_owned(), url: url.to_owned() }),
            _ => Err("Stripe's answer has no session id and url".to_owned()),
        }
    }

    async fn retrieve(&self, session_id: &str) -> Result<Event, String> {
        let http =
            Request::get(format!("{}/v1/checkout/sessions/{}", self.api_base, form_encode(session_id)))
                .body(Full::new(Bytes::new()));
        let answer = self.call(http, "retrieve the checkout session").await?;
        stripe_session(session_id, &answer)
    }

    /// Sends one request with the secret key; Stripe's JSON answer, or why there is none
    /// (`what`: what the call was for, in the message).
    async fn call(&self, request: http::Result<Request<Full<Bytes>>>, what: &str) -> Result<Value, String> {
        let mut request = request.map_err(|e| e.to_string())?;
        let bearer = http::HeaderValue::from_str(&format!("Bearer {}", self.secret_key))
            .map_err(|_| "the Stripe secret key is not a valid header value".to_owned())?;
        request.headers_mut().insert(header::AUTHORIZATION, bearer);
        let response = tokio::time::timeout(CALL_TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| "Stripe did not answer in time".to_owned())?
            .map_err(|e| format!("cannot reach Stripe: {e}"))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| format!("cannot read Stripe's answer: {e}"))?
            .to_bytes();
        let answer: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if !status.is_success() {
            let message = answer["error"]["message"].as_str().unwrap_or("no message");
            return Err(format!("Stripe refused to {what} ({status}): {message}"));
        }
        Ok(answer)
    }
}

impl Provider for Stripe {
    fn name(&self) -> &'static str {
        "stripe"
    }

    fn create_checkout<'a>(&'a self, request: &'a CheckoutRequest) -> ProviderFuture<'a, Checkout> {
        Box::pin(self.create(request))
    }

    fn verify_webhook(&self, payload: &[u8], signature: &str, now_unix: i64) -> Result<Event, WebhookError> {
        verify_stripe_signature(&self.webhook_secret, payload, signature, now_unix)?;
        stripe_event(payload)
    }

    fn session<'a>(&'a self, session_id: &'a str) -> ProviderFuture<'a, Event> {
        Box::pin(self.retrieve(session_id))
    }
}

/// A configured payment provider and what it may be paid.
#[derive(Debug, Clone)]
pub struct Payments {
    /// The provider.
    pub provider: std::sync::Arc<dyn Provider>,
    /// The allowed amounts.
    pub limits: crate::config::TopUpLimits,
}

/// Currencies Stripe counts in whole units (no cents).
const ZERO_DECIMAL: &[&str] = &[
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof",
    "xpf",
];

/// Nano-units per smallest unit of `currency` (1e7 for cents, 1e9 for whole units).
pub fn nanos_per_minor(currency: &str) -> i64 {
    if ZERO_DECIMAL.contains(&currency.to_ascii_lowercase().as_str()) { 1_000_000_000 } else { 10_000_000 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // RFC 4231, test case 2.
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block.
        assert_eq!(
            hex(&hmac_sha256(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First")),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn stripe_signatures_are_checked() {
        let secret = "whsec_test";
        let body = br#"{"type":"checkout.session.completed"}"#;
        let header = stripe_signature(secret, 1_000, body);
        assert_eq!(verify_stripe_signature(secret, body, &header, 1_000), Ok(()));
        assert_eq!(verify_stripe_signature(secret, body, &header, 1_300), Ok(()));
        assert_eq!(verify_stripe_signature(secret, body, &header, 1_301), Err(WebhookError::Stale));
        assert_eq!(verify_stripe_signature(secret, body, &header, 699), Err(WebhookError::Stale));
        assert_eq!(
            verify_stripe_signature("whsec_other", body, &header, 1_000),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(verify_stripe_signature(secret, b"{}", &header, 1_000), Err(WebhookError::BadSignature));
        // Several v1 signatures (a rolled secret): any one may match; v0 is ignored.
        let v1 = header.split("v1=").nth(1).unwrap_or_default();
        let several = format!("t=1000,v1={},v0=abc,v1={v1}", "0".repeat(64));
        assert_eq!(verify_stripe_signature(secret, body, &several, 1_000), Ok(()));
        assert_eq!(verify_stripe_signature(secret, body, "v1=abc", 1_000), Err(WebhookError::Malformed));
        assert_eq!(verify_stripe_signature(secret, body, "t=1000", 1_000), Err(WebhookError::Malformed));
        assert_eq!(verify_stripe_signature(secret, body, "", 1_000), Err(WebhookError::Malformed));
    }

    #[test]
    fn events_and_forms() {
        let paid = br#"{"type":"checkout.session.completed","data":{"object":{"id":"cs_1","payment_status":"paid","amount_total":500,"currency":"USD"}}}"#;
        assert_eq!(
            stripe_event(paid),
            Ok(Event::Completed {
                session_id: "cs_1".into(),
                paid: true,
                amount_minor: 500,
                currency: "usd".into()
            })
        );
        let unpaid = br#"{"type":"checkout.session.completed","data":{"object":{"id":"cs_1","payment_status":"unpaid","amount_total":500,"currency":"usd"}}}"#;
        assert!(matches!(stripe_event(unpaid), Ok(Event::Completed { paid: false, .. })));
        let expired = br#"{"type":"checkout.session.expired","data":{"object":{"id":"cs_2"}}}"#;
        assert_eq!(stripe_event(expired), Ok(Event::Expired { session_id: "cs_2".into() }));
        assert_eq!(
            stripe_event(br#"{"type":"charge.refunded"}"#),
            Ok(Event::Ignored("charge.refunded".into()))
        );
        let form = Stripe::session_form(&CheckoutRequest {
            order_id: 7,
            account: "a b".into(),
            amount_minor: 500,
            currency: "usd".into(),
            success_url: "http://h/console/wallet?paid=7".into(),
            cancel_url: "http://h/console/wallet".into(),
        });
        assert!(
            form.contains("mode=payment&success_url=http%3A%2F%2Fh%2Fconsole%2Fwallet%3Fpaid%3D7"),
            "{form}"
        );
        assert!(form.contains("line_items%5B0%5D%5Bprice_data%5D%5Bunit_amount%5D=500"), "{form}");
        assert!(form.contains("client_reference_id=7"), "{form}");
        assert_eq!(nanos_per_minor("USD"), 10_000_000);
        assert_eq!(nanos_per_minor("jpy"), 1_000_000_000);
    }
}
