//! Key guessing (INTERFACE.md, "Hostile clients"): after `--auth-failure-limit` refused keys
//! from one address within the window, that address gets 429 with `retry-after` for the rest
//! of it for every key it gets wrong, while valid keys (from there too) and other addresses
//! are served as before. Raw HTTP/1.1 from chosen loopback source addresses.
use std::{net::SocketAddr, time::Duration};

use router_tests::{Backend, Gateway, eventually};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpSocket,
};

/// Status, headers (lowercase names) and JSON body of one raw request from `source`.
async fn raw(
    gw: &Gateway,
    source: &str,
    path: &str,
    auth: Option<(&str, &str)>,
) -> (u16, Vec<(String, String)>, Value) {
    let target: SocketAddr = gw.dp.url.trim_start_matches("http://").parse().unwrap();
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let mut stream = socket.connect(target).await.unwrap();
    let body = if path == "/v1/messages" {
        json!({"model": "claude-sonnet-4", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
    } else {
        json!({"model": "gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
    }
    .to_string();
    let auth = auth.map(|(name, value)| format!("{name}: {value}\r\n")).unwrap_or_default();
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\n\
         {auth}content-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

fn bearer(key: &str) -> Option<(&'static str, String)> {
    Some(("authorization", format!("Bearer {key}")))
}

#[tokio::test(flavor = "multi_thread")]
async fn key_guessing_from_one_address_is_held_back() {
    // The default limit (20), given as a flag: the test harness turns the back-off off.
    let gw = Gateway::start(Backend::Sqlite, &["--auth-failure-limit", "20"]).await;
    let chat = "/v1/chat/completions";
    let good = bearer(&gw.key);
    let good = good.as_ref().map(|(n, v)| (*n, v.as_str()));
    // The honest caller's key works from the guesser's address before the attack; a second
    // valid key has reached the data plane (served from elsewhere).
    assert_eq!(raw(&gw, "127.0.0.1", chat, good).await.0, 200);
    let other = gw.cp.json(&["key", "create", "--account", "acme", "--json"]);
    let other = format!("Bearer {}", other["key"].as_str().unwrap());
    let other = Some(("authorization", other.as_str()));
    let served = eventually(Duration::from_secs(10), || async {
        (raw(&gw, "127.0.0.4", chat, other).await.0 == 200).then_some(())
    })
    .await;
    assert!(served.is_some(), "the new key never reached the data plane");
    let mut evaluated = 0;
    let mut held = 0;
    for guess in 0..200 {
        let key = format!("sk-guess{guess:040}");
        let (status, headers, body) =
            raw(&gw, "127.0.0.1", chat, Some(("authorization", &format!("Bearer {key}")))).await;
        match status {
            401 => {
                assert_eq!(body["error"]["code"], "invalid_api_key");
                evaluated += 1;
            }
            429 => {
                assert_eq!(body["error"]["code"], "rate_limit_exceeded", "{body}");
                assert_eq!(body["error"]["type"], "rate_limit_error");
                let after: u64 = header(&headers, "retry-after").unwrap().parse().unwrap();
                assert!((1..=60).contains(&after), "retry-after {after}");
                assert!(header(&headers, "x-should-retry").is_none(), "a hold ends: retrying can help");
                held += 1;
            }
            other => panic!("a guess answered {other}: {body}"),
        }
    }
    assert_eq!((evaluated, held), (20, 180), "guesses were looked up beyond the limit");
    // Anthropic-shaped on /v1/messages; no key at all is held back too.
    let (status, _, body) = raw(&gw, "127.0.0.1", "/v1/messages", Some(("x-api-key", "sk-nope"))).await;
    assert_eq!(status, 429);
    assert_eq!(
        (body["type"].as_str(), body["error"]["type"].as_str()),
        (Some("error"), Some("rate_limit_error"))
    );
    assert_eq!(raw(&gw, "127.0.0.1", chat, None).await.0, 429);
    // Legitimate callers behind the same address are not hurt: a valid key is served there,
    // one that had not been used from it as well; other addresses are not held back.
    assert_eq!(raw(&gw, "127.0.0.1", chat, other).await.0, 200);
    assert_eq!(raw(&gw, "127.0.0.1", chat, good).await.0, 200);
    assert_eq!(raw(&gw, "127.0.0.2", chat, Some(("authorization", "Bearer sk-typo"))).await.0, 401);
    assert_eq!(raw(&gw, "127.0.0.2", chat, other).await.0, 200);
    assert_eq!(gw.mock.calls(), 5, "only the valid keys' requests went upstream");
    // GET endpoints that need a key are behind the same hold.
    let models = http_get(&gw, "127.0.0.1", "/v1/models", "sk-nope").await;
    assert_eq!(models, 429);
}

/// The status of `GET path` with a bearer key from `source`.
async fn http_get(gw: &Gateway, source: &str, path: &str, key: &str) -> u16 {
    let target: SocketAddr = gw.dp.url.trim_start_matches("http://").parse().unwrap();
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let mut stream = socket.connect(target).await.unwrap();
    let request =
        format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\nauthorization: Bearer {key}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await.unwrap().unwrap();
    String::from_utf8_lossy(&answer).split(' ').nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hold_ends_with_its_window() {
    let gw =
        Gateway::start(Backend::Sqlite, &["--auth-failure-limit", "2", "--auth-failure-window", "1"]).await;
    let chat = "/v1/chat/completions";
    let wrong = Some(("authorization", "Bearer sk-wrong"));
    assert_eq!(raw(&gw, "127.0.0.3", chat, wrong).await.0, 401);
    assert_eq!(raw(&gw, "127.0.0.3", chat, wrong).await.0, 401);
    assert_eq!(raw(&gw, "127.0.0.3", chat, wrong).await.0, 429);
    let unheld = eventually(Duration::from_secs(5), || async {
        (raw(&gw, "127.0.0.3", chat, wrong).await.0 == 401).then_some(())
    })
    .await;
    assert!(unheld.is_some(), "the address was still held after its window");
}
