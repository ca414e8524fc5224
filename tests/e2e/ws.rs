//! Codex's WebSocket transport of `/v1/responses`, with a real WebSocket client
//! (tokio-tungstenite): several `response.create` on one socket, native and converted, each
//! billed exactly once; Codex's warm-up and incremental input; refusals before the upgrade,
//! error events and close codes after it; the connection limit and idle rule on sockets.
use std::{sync::Arc, time::Duration};

use futures::{SinkExt, StreamExt};
use router_tests::{Backend, Gateway, eventually, http_client::get, mock::Mode};
use serde_json::{Value, json};
use tokio::{net::TcpStream, sync::Notify};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, connect_async,
    tungstenite::{
        self, Message,
        client::IntoClientRequest,
        protocol::{CloseFrame, frame::coding::CloseCode},
    },
};

on_both_backends!(
    requests_in_sequence_on_one_socket_are_served_and_billed_once_each,
    a_key_revoked_or_out_of_money_mid_socket_is_refused_there
);

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Longest wait for one message from the gateway.
const READ: Duration = Duration::from_secs(10);

const TEXT: &str = "tok0 tok1 tok2 tok3 tok4 ";

/// The proxy tests' gateway plus `chatonly`, a channel speaking only Chat, serving `gpt-4o`
/// (so Responses clients are converted), once the data plane knows them all.
async fn gateway(backend: Backend, dp_args: &[&str]) -> Gateway {
    let gw = Gateway::start(backend, dp_args).await;
    gw.add_chat_only_channel();
    let bearer = gw.bearer();
    eventually(Duration::from_secs(10), || async {
        let models = get(&gw.url("/v1/models"), &[("authorization", &bearer)]).await.ok()?;
        let ids: Vec<Value> = models.json()["data"].as_array()?.iter().map(|m| m["id"].clone()).collect();
        (ids.contains(&json!("gpt-4o")) && ids.contains(&json!("gpt-4o-mini"))).then_some(())
    })
    .await
    .expect("the data plane has the test's key and channels");
    gw
}

/// Opens a socket on `/v1/responses` with `key` (none: no credentials at all).
async fn connect(gw: &Gateway, key: Option<&str>) -> Result<Socket, tungstenite::Error> {
    let url = gw.url("/v1/responses").replacen("http://", "ws://", 1);
    let mut request = url.into_client_request()?;
    if let Some(key) = key {
        request.headers_mut().insert("authorization", format!("Bearer {key}").parse().unwrap());
    }
    request.headers_mut().insert("openai-beta", "responses_websockets=2026-02-06".parse().unwrap());
    request.headers_mut().insert("session_id", "ws-test-session".parse().unwrap());
    connect_async(request).await.map(|(socket, _)| socket)
}

/// The next message from the gateway.
async fn next(socket: &mut Socket) -> Message {
    tokio::time::timeout(READ, socket.next())
        .await
        .expect("the gateway answers in time")
        .expect("the socket is open")
        .expect("a well-formed message")
}

/// The next text message, as JSON.
async fn next_event(socket: &mut Socket) -> Value {
    match next(socket).await {
        Message::Text(text) => serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")),
        other => panic!("expected an event, got {other:?}"),
    }
}

/// Sends one message and reads its events up to the last one (`response.completed`,
/// `response.failed`, `response.incomplete` or `error`).
async fn create(socket: &mut Socket, message: &Value) -> Vec<Value> {
    socket.send(Message::text(message.to_string())).await.unwrap();
    let mut events = Vec::new();
    loop {
        let event = next_event(socket).await;
        let last = matches!(
            event["type"].as_str(),
            Some("response.completed" | "response.failed" | "response.incomplete" | "error")
        );
        events.push(event);
        if last {
            return events;
        }
    }
}

fn text_of(events: &[Value]) -> String {
    events
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .map(|e| e["delta"].as_str().unwrap().to_owned())
        .collect()
}

fn completed(events: &[Value]) -> &Value {
    let last = events.last().unwrap();
    assert_eq!(last["type"], "response.completed", "{events:?}");
    &last["response"]
}

/// What a record billed: tokens (input, cached, written, output), cost and status.
fn billed(record: &Value) -> Value {
    let fields =
        ["input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens", "cost", "status"];
    fields.iter().map(|f| record[f].clone()).collect()
}

async fn requests_in_sequence_on_one_socket_are_served_and_billed_once_each(backend: Backend) {
    let gw = gateway(backend, &[]).await;
    let mut ws = connect(&gw, Some(&gw.key)).await.expect("upgraded");

    // A malformed message: an error event, and the socket goes on.
    ws.send(Message::text("not json")).await.unwrap();
    let error = next_event(&mut ws).await;
    assert_eq!((error["type"].as_str(), error["status"].as_u64()), (Some("error"), Some(400)), "{error}");
    assert_eq!(error["error"]["code"], "invalid_request");
    ws.send(Message::Ping("are you there".into())).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::Pong("are you there".into()));

    // Codex's warm-up: answered at once, nothing upstream, nothing billed.
    let warmup = create(
        &mut ws,
        &json!({"type": "response.create", "model": "gpt-4o-mini", "instructions": "Be brief.",
            "generate": false, "input": [], "tools": []}),
    )
    .await;
    let kinds: Vec<_> = warmup.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["response.created", "response.completed"]);
    let warmup_id = completed(&warmup)["id"].as_str().unwrap().to_owned();
    assert!(completed(&warmup)["output"].as_array().unwrap().is_empty());
    assert_eq!(gw.mock.calls(), 0, "a warm-up goes nowhere");

    // Two requests on the native channel, each continuing the last response with only its new
    // input (as Codex sends them): the upstream gets the whole context, no previous_response_id.
    let hello = json!({"role": "user", "content": "Say hello"});
    let first = create(
        &mut ws,
        &json!({"type": "response.create", "model": "gpt-4o-mini", "instructions": "Be brief.",
            "previous_response_id": warmup_id, "input": [hello], "tools": [], "stream": true}),
    )
    .await;
    assert_eq!(first[0]["type"], "response.created");
    assert_eq!(text_of(&first), TEXT);
    let response = completed(&first);
    assert_eq!(
        (response["usage"]["input_tokens"].as_u64(), response["usage"]["output_tokens"].as_u64()),
        (Some(13), Some(5))
    );
    let upstream = gw.mock.seen().pop().unwrap();
    assert!(upstream.uri.ends_with("/v1/responses"), "{}", upstream.uri);
    assert_eq!(upstream.body["stream"], true);
    assert_eq!(upstream.body["input"], json!([hello]));
    for field in ["type", "generate", "previous_response_id"] {
        assert!(upstream.body.get(field).is_none(), "{field} went upstream: {}", upstream.body);
    }
    assert_eq!(upstream.headers["authorization"], "Bearer upstream-openai-secret");
    assert_eq!(
        upstream.headers["session_id"], "ws-test-session",
        "the upgrade's headers go with each request"
    );
    assert!(upstream.headers.get("sec-websocket-key").is_none());

    let again = json!({"role": "user", "content": "Again"});
    let second = create(
        &mut ws,
        &json!({"type": "response.create", "model": "gpt-4o-mini", "instructions": "Be brief.",
            "previous_response_id": response["id"], "input": [again]}),
    )
    .await;
    assert_eq!(text_of(&second), TEXT);
    completed(&second);
    let upstream = gw.mock.seen().pop().unwrap();
    let answer = json!({"type": "message", "status": "completed", "role": "assistant",
        "content": [{"type": "output_text", "text": TEXT, "annotations": []}]});
    assert_eq!(upstream.body["input"], json!([hello, answer, again]), "the context, then the new input");
    assert!(upstream.body.get("previous_response_id").is_none());

    // A response of elsewhere: its id is passed through to the upstream that keeps it.
    let third = create(
        &mut ws,
        &json!({"type": "response.create", "model": "gpt-4o-mini", "previous_response_id": "resp_stored",
            "input": "Go on"}),
    )
    .await;
    completed(&third);
    let upstream = gw.mock.seen().pop().unwrap();
    assert_eq!(upstream.body["previous_response_id"], "resp_stored");
    assert_eq!(upstream.body["input"], "Go on");

    // Converted: the same socket, a model only the Chat channel serves.
    let converted =
        create(&mut ws, &json!({"type": "response.create", "model": "gpt-4o", "instructions": "Be brief.", "input": "Say hello"}))
            .await;
    assert_eq!(converted[0]["type"], "response.created");
    assert_eq!(text_of(&converted), TEXT);
    let usage = &completed(&converted)["usage"];
    assert_eq!(
        (usage["input_tokens"].as_u64(), usage["input_tokens_details"]["cached_tokens"].as_u64()),
        (Some(11), Some(3))
    );
    let upstream = gw.mock.seen().pop().unwrap();
    assert!(upstream.uri.ends_with("/v1/chat/completions"), "{}", upstream.uri);
    assert_eq!(upstream.headers["authorization"], "Bearer upstream-chat-secret");

    ws.close(None).await.unwrap();
    assert!(
        tokio::time::timeout(READ, async { while let Some(Ok(_)) = ws.next().await {} }).await.is_ok(),
        "the close is answered"
    );

    // Four requests went upstream, four records: each billed once, exactly.
    assert_eq!(gw.mock.calls(), 4);
    let records = gw.usage(4).await;
    for record in &records {
        assert_eq!(record["client_protocol"], "responses", "{record}");
        let expected = match record["upstream_protocol"].as_str() {
            // 13 input, 5 output at 0.15 / 0.6 per 1M.
            Some("responses") => json!([13, 0, 0, 5, "0.00000495", "ok"]),
            // 8 uncached + 3 cached + 5 output at 2.5 / 1.25 / 10 per 1M.
            Some("chat") => json!([8, 3, 0, 5, "0.00007375", "ok"]),
            other => panic!("a record upstream {other:?}: {record}"),
        };
        assert_eq!(billed(record), expected, "{record}");
        assert_eq!(record["key_id"].as_i64(), Some(gw.key_id));
    }
    assert_eq!(records.iter().filter(|r| r["upstream_protocol"] == "chat").count(), 1);
    let account = gw.cp.json(&["account", "show", "acme"]);
    let total: i64 = records.iter().map(|r| router_tests::nanos(&r["cost"])).sum();
    assert_eq!(total, 3 * 4_950 + 73_750);
    assert_eq!(router_tests::nanos(&account["balance"]), 100_000_000_000 - total);
}

async fn a_key_revoked_or_out_of_money_mid_socket_is_refused_there(backend: Backend) {
    let gw = gateway(backend, &[]).await;
    let hello = json!({"type": "response.create", "model": "gpt-4o-mini", "input": "Say hello"});

    // An empty account: the request's error event (429 insufficient_quota, not to be retried),
    // and the socket stays open for the next one.
    gw.cp.json(&["account", "add", "broke", "--balance", "0"]);
    let broke = gw.cp.json(&["key", "create", "--account", "broke", "--name", "broke"])["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut poor = eventually(Duration::from_secs(10), || async { connect(&gw, Some(&broke)).await.ok() })
        .await
        .expect("the empty account's key is known");
    for _ in 0..2 {
        let refused = create(&mut poor, &hello).await;
        assert_eq!(refused.len(), 1, "{refused:?}");
        let error = &refused[0];
        assert_eq!((error["type"].as_str(), error["status"].as_u64()), (Some("error"), Some(429)), "{error}");
        assert_eq!(error["code"], "insufficient_quota");
        assert_eq!(error["error"]["code"], "insufficient_quota");
        assert_eq!(error["headers"]["x-should-retry"], "false");
    }
    assert_eq!(gw.mock.calls(), 0);

    // A key revoked between two requests: the second gets the 401 error event, then the
    // socket is closed with 1008 (policy violation).
    let mut ws = connect(&gw, Some(&gw.key)).await.expect("upgraded");
    completed(&create(&mut ws, &hello).await);
    gw.cp.json(&["key", "revoke", &gw.key_id.to_string()]);
    let bearer = gw.bearer();
    eventually(Duration::from_secs(10), || async {
        let answer = get(&gw.url("/v1/models"), &[("authorization", &bearer)]).await.ok()?;
        (answer.status == 401).then_some(())
    })
    .await
    .expect("the revocation reaches the data plane");
    let refused = create(&mut ws, &hello).await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(
        (refused[0]["status"].as_u64(), refused[0]["code"].as_str()),
        (Some(401), Some("invalid_api_key"))
    );
    match next(&mut ws).await {
        Message::Close(Some(CloseFrame { code, .. })) => assert_eq!(code, CloseCode::Policy),
        other => panic!("expected a close with 1008, got {other:?}"),
    }
    assert!(tokio::time::timeout(READ, ws.next()).await.expect("closed in time").is_none_or(|m| m.is_err()));

    // A new socket with the revoked key: refused before the upgrade.
    match connect(&gw, Some(&gw.key)).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("expected a 401, got {:?}", other.map(|_| "an upgrade")),
    }
    // Billed: the one request served.
    let records = gw.usage(1).await;
    assert_eq!(billed(&records[0]), json!([13, 0, 0, 5, "0.00000495", "ok"]));
}

on_both_backends!(upgrades_need_a_key_and_sockets_keep_the_connection_rules);

async fn upgrades_need_a_key_and_sockets_keep_the_connection_rules(backend: Backend) {
    let gw = gateway(backend, &["--max-connections", "1", "--keep-alive-timeout", "2"]).await;

    // No key, a wrong key: the normal 401, no upgrade.
    for key in [None, Some("sk-not-a-key")] {
        match connect(&gw, key).await {
            Err(tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 401, "{key:?}");
                let body: Value =
                    serde_json::from_slice(response.body().as_deref().unwrap_or_default()).unwrap();
                assert_eq!(body["error"]["code"], "invalid_api_key");
            }
            other => panic!("expected a 401 for {key:?}, got {:?}", other.map(|_| "an upgrade")),
        }
    }
    // A plain GET with a key: told to upgrade.
    let plain = get(&gw.url("/v1/responses"), &[("authorization", &gw.bearer())]).await.unwrap();
    assert_eq!(plain.status, 426, "{}", plain.text());
    assert_eq!(plain.headers["upgrade"], "websocket");

    // An open socket holds the only connection permit: another connection waits...
    let mut ws = connect(&gw, Some(&gw.key)).await.expect("upgraded");
    let mut health = tokio::spawn({
        let url = gw.url("/healthz");
        async move { get(&url, &[]).await }
    });
    assert!(
        tokio::time::timeout(Duration::from_millis(500), &mut health).await.is_err(),
        "a second connection was served while the socket held the only permit"
    );
    // ...until the idle socket is closed (1000) after the keep-alive timeout.
    match next(&mut ws).await {
        Message::Close(Some(CloseFrame { code, reason })) => {
            assert_eq!(code, CloseCode::Normal);
            assert!(reason.contains("idle"), "{reason}");
        }
        other => panic!("expected the idle close, got {other:?}"),
    }
    drop(ws);
    let answer = tokio::time::timeout(READ, health).await.expect("served once the socket closed");
    assert_eq!(answer.unwrap().unwrap().status, 200);

    // Shutdown: an answer streaming on a socket finishes, then the socket is closed with 1001.
    let release = Arc::new(Notify::new());
    gw.mock.set_mode(Mode::HoldAfterFirstChunk(Arc::clone(&release)));
    let mut ws = connect(&gw, Some(&gw.key)).await.expect("upgraded");
    let hello = json!({"type": "response.create", "model": "gpt-4o-mini", "input": "Say hello"});
    ws.send(Message::text(hello.to_string())).await.unwrap();
    assert_eq!(next_event(&mut ws).await["type"], "response.created");
    let mut gw = gw;
    gw.dp.process.signal_terminate().unwrap();
    gw.dp.process.wait_for_line("shutting down", READ).unwrap();
    release.notify_one();
    let mut rest = Vec::new();
    loop {
        match next(&mut ws).await {
            Message::Text(text) => rest.push(serde_json::from_str::<Value>(&text).unwrap()),
            Message::Close(Some(CloseFrame { code, .. })) => {
                assert_eq!(code, CloseCode::Away);
                break;
            }
            other => panic!("expected the answer, then a close with 1001; got {other:?}"),
        }
    }
    assert_eq!(text_of(&rest), TEXT, "the answer in flight is finished");
    completed(&rest);
    drop(ws);
    assert!(gw.dp.process.wait_exit(READ).unwrap().success());
    let records = gw.usage(1).await;
    assert_eq!(billed(&records[0]), json!([13, 0, 0, 5, "0.00000495", "ok"]));
}
