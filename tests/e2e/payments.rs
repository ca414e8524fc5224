//! Top-up through Stripe Checkout against a local fake of Stripe, written from Stripe's API
//! reference: `POST /v1/checkout/sessions` (form-encoded, bearer secret key) answers a session
//! with an `id` and a `url`, and `GET /v1/checkout/sessions/{id}` answers what the payer did;
//! the test sends the `checkout.session.*` webhooks Stripe would send, signed as Stripe signs
//! them (`Stripe-Signature: t=…,v1=hex(HMAC-SHA256(secret, "{t}.{body}"))`). The gateway
//! credits only what Stripe's API says was paid, once per session: replays, duplicates (also
//! concurrent ones), re-ordered events, bad signatures, stale timestamps and a signed webhook
//! Stripe contradicts change nothing; an unpaid session credits nothing.
use std::{
    collections::HashMap,
    convert::Infallible,
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use router_tests::{
    Backend, ControlPlane, DataPlane, TestDb,
    http_client::{get, post_json, send},
};
use serde_json::{Value, json};
use sha2::Sha256;

on_both_backends!(stripe_top_up_credits_each_paid_session_once);

const SECRET_KEY: &str = "sk_test_fake_secret";
const WEBHOOK_SECRET: &str = "whsec_test_fake_signing_secret";

/// A request's form fields, in order.
type Form = Vec<(String, String)>;

/// What the fake Stripe knows: the sessions it created (their form fields), those paid (with
/// the amount paid), how often the gateway retrieved one, and whether retrieval is down.
#[derive(Default)]
struct StripeState {
    sessions: Vec<Form>,
    paid: HashMap<String, i64>,
    retrievals: usize,
    down: bool,
}

/// The fake Stripe.
struct FakeStripe {
    url: String,
    state: Arc<Mutex<StripeState>>,
}

fn form_fields(body: &[u8]) -> Form {
    let decode = |s: &str| {
        let bytes = s.replace('+', " ").into_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' && i + 2 < bytes.len() {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    };
    std::str::from_utf8(body)
        .unwrap()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn field<'f>(fields: &'f [(String, String)], name: &str) -> Option<&'f str> {
    fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn stripe_error(status: u16, message: &str) -> (u16, Value) {
    (status, json!({"error": {"type": "invalid_request_error", "message": message}}))
}

/// The Checkout Session object Stripe's API answers for session number `index`.
fn session_object(state: &StripeState, index: usize) -> Value {
    let id = format!("cs_test_{}", index + 1);
    let fields = &state.sessions[index];
    let paid = state.paid.get(&id);
    let ordered: i64 = field(fields, "line_items[0][price_data][unit_amount]").unwrap().parse().unwrap();
    json!({
        "id": id, "object": "checkout.session", "mode": field(fields, "mode"),
        "url": format!("https://checkout.stripe.test/c/pay/{id}"),
        "status": if paid.is_some() { "complete" } else { "open" },
        "payment_status": if paid.is_some() { "paid" } else { "unpaid" },
        "amount_total": paid.copied().unwrap_or(ordered),
        "currency": field(fields, "line_items[0][price_data][currency]"),
        "client_reference_id": field(fields, "client_reference_id"),
        "success_url": field(fields, "success_url"),
    })
}

/// Stripe's answer to one request: `POST /v1/checkout/sessions` creates a session,
/// `GET /v1/checkout/sessions/{id}` retrieves one; both need the secret key.
fn stripe_answer(state: &Mutex<StripeState>, method: &http::Method, path: &str, body: &[u8]) -> (u16, Value) {
    let mut state = state.lock().unwrap();
    if path == "/v1/checkout/sessions" && method == http::Method::POST {
        state.sessions.push(form_fields(body));
        let index = state.sessions.len() - 1;
        return (200, session_object(&state, index));
    }
    let Some(id) = path.strip_prefix("/v1/checkout/sessions/").filter(|_| method == http::Method::GET) else {
        return stripe_error(404, "Unrecognized request URL");
    };
    state.retrievals += 1;
    if state.down {
        return stripe_error(500, "An unexpected error occurred");
    }
    let index = id.strip_prefix("cs_test_").and_then(|n| n.parse::<usize>().ok()).filter(|n| *n >= 1);
    match index.filter(|n| *n <= state.sessions.len()) {
        Some(n) => (200, session_object(&state, n - 1)),
        None => stripe_error(404, &format!("No such checkout.session: '{id}'")),
    }
}

impl FakeStripe {
    async fn start() -> FakeStripe {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state: Arc<Mutex<StripeState>> = Arc::default();
        let shared = Arc::clone(&state);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let state = Arc::clone(&shared);
                tokio::spawn(async move {
                    let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                        let state = Arc::clone(&state);
                        async move {
                            let (head, body) = request.into_parts();
                            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let authorized = head.headers.get("authorization").and_then(|v| v.to_str().ok())
                                == Some(&format!("Bearer {SECRET_KEY}"));
                            let (status, answer) = if authorized {
                                stripe_answer(&state, &head.method, head.uri.path(), &body)
                            } else {
                                stripe_error(401, "Invalid API Key provided")
                            };
                            let mut response = Response::new(Full::new(Bytes::from(answer.to_string())));
                            *response.status_mut() = StatusCode::from_u16(status).unwrap();
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakeStripe { url, state }
    }

    /// The payer paid session `id`, `amount` in cents.
    fn pay(&self, id: &str, amount: i64) {
        self.state.lock().unwrap().paid.insert(id.to_owned(), amount);
    }

    fn retrievals(&self) -> usize {
        self.state.lock().unwrap().retrievals
    }

    fn set_down(&self, down: bool) {
        self.state.lock().unwrap().down = down;
    }
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

fn now() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap()
}

/// What Stripe sends: the body and its `Stripe-Signature` at `timestamp`.
fn signed(event: &Value, timestamp: i64, secret: &str) -> (String, String) {
    let body = event.to_string();
    let mac = hmac_sha256(secret.as_bytes(), format!("{timestamp}.{body}").as_bytes());
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    (body, format!("t={timestamp},v1={hex}"))
}

fn session_event(kind: &str, session: &str, payment_status: &str, amount: i64) -> Value {
    json!({
        "id": format!("evt_{}", rand_suffix()), "object": "event", "type": kind,
        "data": {"object": {
            "id": session, "object": "checkout.session", "payment_status": payment_status,
            "status": "complete", "amount_total": amount, "currency": "usd",
        }},
    })
}

fn rand_suffix() -> String {
    router_tests::random_name(12)
}

async fn webhook(base: &str, body: &str, signature: &str) -> (u16, Value) {
    let headers = [("stripe-signature", signature), ("content-type", "application/json")];
    let answer =
        send(http::Method::POST, &format!("{base}/api/payments/stripe/webhook"), &headers, body.to_owned())
            .await
            .unwrap();
    (answer.status, answer.json())
}

fn balance(cp: &ControlPlane) -> String {
    cp.json(&["account", "show", "acme"])["balance"].as_str().unwrap().to_owned()
}

fn orders(cp: &ControlPlane) -> Vec<Value> {
    cp.json(&["order", "list", "--account", "acme"]).as_array().unwrap().clone()
}

async fn stripe_top_up_credits_each_paid_session_once(backend: Backend) {
    let stripe = FakeStripe::start().await;
    let db = TestDb::create(backend).await.unwrap();
    let cp = ControlPlane::start_with(
        &db.url,
        "admin-token-payments",
        "node-token-payments",
        &[
            ("ROUTER_STRIPE_SECRET_KEY", SECRET_KEY),
            ("ROUTER_STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET),
            ("ROUTER_STRIPE_API_BASE", &stripe.url),
            ("ROUTER_TOPUP_AMOUNTS", "5,10,50"),
        ],
    )
    .unwrap();
    cp.json(&["account", "add", "acme", "--balance", "1", "--email", "ops@acme.test"]);
    let output =
        cp.ctl_with_stdin(&["account", "set-password", "acme", "--password-stdin"], "acme password\n");
    assert!(output.status.success());
    let dp = DataPlane::start(&cp, &db.dir.join("spool"), &[]).await.unwrap();
    let base = dp.url.clone();

    let login = post_json(
        &format!("{base}/api/account/login"),
        &[],
        &json!({"email": "ops@acme.test", "password": "acme password"}),
    )
    .await
    .unwrap();
    assert_eq!(login.status, 200);
    let cookie = login.headers["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let csrf = login.json()["csrf_token"].as_str().unwrap().to_owned();
    let auth = [("cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str())];

    // An amount not offered is refused before Stripe is called; a number is not an amount.
    let refused =
        post_json(&format!("{base}/api/account/topup"), &auth, &json!({"amount": "7"})).await.unwrap();
    assert_eq!(refused.status, 400, "{}", refused.text());
    let refused =
        post_json(&format!("{base}/api/account/topup"), &auth, &json!({"amount": 10})).await.unwrap();
    assert_eq!(refused.status, 400);
    assert!(stripe.state.lock().unwrap().sessions.is_empty());

    // Top-up: an order and Stripe's checkout page.
    let topup =
        post_json(&format!("{base}/api/account/topup"), &auth, &json!({"amount": "10"})).await.unwrap();
    assert_eq!(topup.status, 200, "{}", topup.text());
    let topup = topup.json();
    assert_eq!(topup["checkout_url"], "https://checkout.stripe.test/c/pay/cs_test_1");
    let order_id = topup["order_id"].as_i64().unwrap();
    {
        let state = stripe.state.lock().unwrap();
        let fields = &state.sessions[0];
        assert_eq!(field(fields, "mode"), Some("payment"));
        assert_eq!(field(fields, "line_items[0][price_data][unit_amount]"), Some("1000"), "cents");
        assert_eq!(field(fields, "line_items[0][price_data][currency]"), Some("usd"));
        assert_eq!(field(fields, "line_items[0][quantity]"), Some("1"));
        assert_eq!(field(fields, "client_reference_id"), Some(order_id.to_string().as_str()));
        let success = field(fields, "success_url").unwrap();
        assert!(
            success.starts_with("http://127.0.0.1:")
                && success.ends_with(&format!("/console/wallet?paid={order_id}")),
            "{success}"
        );
    }
    let listed = orders(&cp);
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0]["status"].as_str(), listed[0]["amount"].as_str()), (Some("pending"), Some("10")));
    assert_eq!(listed[0]["session_id"], "cs_test_1");
    // The console's Wallet offers the amounts.
    let wallet = get(&format!("{base}/console/wallet"), &auth[..1]).await.unwrap().text();
    assert!(wallet.contains("<option value=\"50\">50</option>"), "{wallet}");

    // Completed but unpaid (a delayed payment method): nothing is credited yet.
    let (body, signature) = signed(
        &session_event("checkout.session.completed", "cs_test_1", "unpaid", 1000),
        now(),
        WEBHOOK_SECRET,
    );
    assert_eq!(
        webhook(&base, &body, &signature).await,
        (200, json!({"received": true, "outcome": "unpaid"}))
    );
    assert_eq!(balance(&cp), "1");
    assert_eq!(stripe.retrievals(), 0, "an unpaid event needs no confirmation");

    // Forged and stale webhooks: 400, nothing changes.
    let paid = session_event("checkout.session.async_payment_succeeded", "cs_test_1", "paid", 1000);
    let (body, _) = signed(&paid, now(), WEBHOOK_SECRET);
    let (_, forged) = signed(&paid, now(), "whsec_someone_else");
    assert_eq!(webhook(&base, &body, &forged).await.0, 400);
    let (stale_body, stale) = signed(&paid, now() - 400, WEBHOOK_SECRET);
    assert_eq!(webhook(&base, &stale_body, &stale).await.0, 400);
    let (_, other_signature) = signed(&json!({"other": true}), now(), WEBHOOK_SECRET);
    assert_eq!(webhook(&base, &body, &other_signature).await.0, 400, "a signature of another body");
    assert_eq!(webhook(&base, &body, "").await.0, 400, "no signature");
    assert_eq!(balance(&cp), "1");
    assert_eq!(orders(&cp)[0]["status"], "pending");

    // Signed, but Stripe's API says the session is not paid (as with a leaked signing
    // secret): the gateway asked Stripe, and nothing is credited.
    let (body, signature) = signed(&paid, now(), WEBHOOK_SECRET);
    assert_eq!(webhook(&base, &body, &signature).await.1["outcome"], "unpaid");
    assert_eq!(stripe.retrievals(), 1);
    assert_eq!(balance(&cp), "1");

    // The payer pays; while Stripe cannot be asked, the webhook is a 503 (Stripe retries it)
    // and nothing changes.
    stripe.pay("cs_test_1", 1000);
    stripe.set_down(true);
    let (status, answer) = webhook(&base, &body, &signature).await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(balance(&cp), "1");
    assert_eq!(orders(&cp)[0]["status"], "pending");
    stripe.set_down(false);

    // Paid: credited once; replays, duplicates and a late `expired` change nothing.
    assert_eq!(
        webhook(&base, &body, &signature).await,
        (200, json!({"received": true, "outcome": "credited"}))
    );
    assert_eq!(balance(&cp), "11");
    let asked = stripe.retrievals();
    assert_eq!(webhook(&base, &body, &signature).await.1["outcome"], "unchanged", "a replay");
    assert_eq!(stripe.retrievals(), asked, "a paid order needs no confirmation");
    let again = session_event("checkout.session.completed", "cs_test_1", "paid", 1000);
    let (body, signature) = signed(&again, now(), WEBHOOK_SECRET);
    assert_eq!(webhook(&base, &body, &signature).await.1["outcome"], "unchanged", "the other paid event");
    let late = session_event("checkout.session.expired", "cs_test_1", "unpaid", 1000);
    let (body, signature) = signed(&late, now(), WEBHOOK_SECRET);
    assert_eq!(webhook(&base, &body, &signature).await.1["outcome"], "unchanged", "a paid order stays paid");
    assert_eq!(balance(&cp), "11");
    let order = orders(&cp)[0].clone();
    assert_eq!(order["status"], "paid");
    assert!(order["paid_at"].is_string(), "{order}");
    let ledger = cp.json(&["ledger", "--account", "acme"]);
    let topups: Vec<&Value> = ledger.as_array().unwrap().iter().filter(|e| e["kind"] == "topup").collect();
    assert_eq!(topups.len(), 2, "the opening balance and one Stripe top-up: {ledger}");
    assert!(
        topups.iter().any(|e| e["amount"] == "10" && e["note"].as_str().unwrap().contains("cs_test_1")),
        "{ledger}"
    );

    // A second order, its paid webhook delivered five times at once: one credit.
    let topup =
        post_json(&format!("{base}/api/account/topup"), &auth, &json!({"amount": "5"})).await.unwrap();
    assert_eq!(topup.status, 200);
    stripe.pay("cs_test_2", 500);
    let (body, signature) =
        signed(&session_event("checkout.session.completed", "cs_test_2", "paid", 500), now(), WEBHOOK_SECRET);
    let sends: Vec<_> = (0..5)
        .map(|_| {
            let (base, body, signature) = (base.clone(), body.clone(), signature.clone());
            tokio::spawn(async move { webhook(&base, &body, &signature).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for send in sends {
        let (status, answer) = send.await.unwrap();
        assert_eq!(status, 200);
        outcomes.push(answer["outcome"].as_str().unwrap().to_owned());
    }
    assert_eq!(outcomes.iter().filter(|o| *o == "credited").count(), 1, "{outcomes:?}");
    assert_eq!(balance(&cp), "16");

    // A third: Stripe says 1 was paid for an order of 50 (whatever the webhook claims), which
    // is refused; then it expires. A paid event of a session that is not ours is ignored
    // without asking Stripe.
    let topup =
        post_json(&format!("{base}/api/account/topup"), &auth, &json!({"amount": "50"})).await.unwrap();
    assert_eq!(topup.status, 200);
    stripe.pay("cs_test_3", 100);
    let (body, signature) = signed(
        &session_event("checkout.session.completed", "cs_test_3", "paid", 5000),
        now(),
        WEBHOOK_SECRET,
    );
    assert_eq!(webhook(&base, &body, &signature).await.0, 400, "paid 1 for an order of 50");
    let (body, signature) = signed(
        &session_event("checkout.session.expired", "cs_test_3", "unpaid", 5000),
        now(),
        WEBHOOK_SECRET,
    );
    assert_eq!(webhook(&base, &body, &signature).await.1["outcome"], "expired");
    let (body, signature) =
        signed(&session_event("checkout.session.completed", "cs_other", "paid", 5000), now(), WEBHOOK_SECRET);
    let asked = stripe.retrievals();
    assert_eq!(webhook(&base, &body, &signature).await.1["outcome"], "ignored");
    assert_eq!(stripe.retrievals(), asked);
    let (body, signature) = signed(
        &json!({"id": "evt_x", "type": "charge.refunded", "data": {"object": {}}}),
        now(),
        WEBHOOK_SECRET,
    );
    assert_eq!(webhook(&base, &body, &signature).await.1["outcome"], "ignored");
    assert_eq!(balance(&cp), "16");
    let statuses: Vec<String> =
        orders(&cp).iter().map(|o| o["status"].as_str().unwrap().to_owned()).collect();
    assert_eq!(statuses, ["expired", "paid", "paid"], "newest first");
    let all = cp.json(&["order", "list"]);
    assert_eq!(all.as_array().unwrap().len(), 3);
    assert!(cp.fails(&["order", "list", "--account", "nobody"]).contains("not found"));
}
