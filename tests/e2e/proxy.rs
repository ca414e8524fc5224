//! The data plane through its HTTP interface: proxying, streaming, failover, refusals, policy
//! changes, fail-static serving — with a mock upstream and the real binaries.
use std::{sync::Arc, time::Duration};

use router_tests::{
    Backend, ControlPlane, DataPlane, Gateway, eventually,
    http_client::{self, get, post_json, post_stream},
    mock::{MockUpstream, Mode},
};
use serde_json::{Value, json};
use tokio::sync::Notify;

/// Starts a chat stream whose upstream holds after its first chunk until the returned `Notify`
/// is notified.
async fn held_stream(gw: &Gateway) -> (Arc<Notify>, http_client::Streamed) {
    let release = Arc::new(Notify::new());
    gw.mock.set_mode(Mode::HoldAfterFirstChunk(Arc::clone(&release)));
    let stream = post_stream(
        &gw.url("/v1/chat/completions"),
        &[("authorization", &gw.bearer())],
        &chat("gpt-4o-mini", true),
    )
    .await
    .unwrap();
    (release, stream)
}

fn chat(model: &str, stream: bool) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "Say hello"}], "stream": stream})
}

on_both_backends!(chat_is_proxied_streamed_and_billed);

async fn chat_is_proxied_streamed_and_billed(backend: Backend) {
    let gw = Gateway::start(backend, &[]).await;
    let auth = gw.bearer();

    let answer =
        post_json(&gw.url("/v1/chat/completions"), &[("authorization", &auth)], &chat("gpt-4o-mini", false))
            .await
            .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["choices"][0]["message"]["content"], "tok0 tok1 tok2 tok3 tok4 ");
    let first_id = answer.request_id();
    assert!(!first_id.is_empty());

    let mut stream =
        post_stream(&gw.url("/v1/chat/completions"), &[("authorization", &auth)], &chat("gpt-4o-mini", true))
            .await
            .unwrap();
    assert_eq!(stream.status, 200);
    let text = stream.rest().await;
    assert!(text.contains("tok4") && text.trim_end().ends_with("data: [DONE]"), "{text}");
    assert!(
        !text.contains("\"usage\":{"),
        "the usage chunk the client did not ask for must be stripped: {text}"
    );

    let mut asked = chat("gpt-4o-mini", true);
    asked["stream_options"] = json!({"include_usage": true});
    let text = post_stream(&gw.url("/v1/chat/completions"), &[("authorization", &auth)], &asked)
        .await
        .unwrap()
        .rest()
        .await;
    assert!(text.contains("\"usage\":{"), "the client asked for usage: {text}");

    // What the upstream saw: the channel's key, never the client's; usage asked for on streams.
    let seen = gw.mock.seen();
    assert_eq!(seen.len(), 3);
    for request in &seen {
        assert_eq!(request.headers.get("authorization").unwrap(), "Bearer upstream-openai-secret");
        assert!(!format!("{:?}", request.headers).contains(&gw.key));
    }
    assert_eq!(seen[1].body["stream_options"]["include_usage"], true);

    // A mapped model goes upstream under its real name.
    let answer =
        post_json(&gw.url("/v1/chat/completions"), &[("authorization", &auth)], &chat("alias", false))
            .await
            .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(gw.mock.seen()[3].body["model"], "gpt-4o-mini");

    // Billing: prompt 11 of which 3 cached, 5 completion tokens at 0.15/0.075/0.6 per 1M.
    let records = gw.usage(4).await;
    let first = records.iter().find(|r| r["request_id"] == first_id).expect("record for the first request");
    assert_eq!(
        (
            first["input_tokens"].as_i64(),
            first["cached_input_tokens"].as_i64(),
            first["output_tokens"].as_i64()
        ),
        (Some(8), Some(3), Some(5))
    );
    // 8×0.15 + 3×0.075 + 5×0.6 = 4.425 per 1M tokens → 0.000004425
    assert_eq!(first["cost"], "0.000004425");
    assert_eq!(first["status"], "ok");
    assert_eq!(first["channel"], "main");
    assert!(records.iter().all(|r| r["status"] == "ok" && r["key_id"].as_i64() == Some(gw.key_id)));
    let account = gw.cp.json(&["account", "show", "acme"]);
    let billed: i64 = records.iter().map(|r| router_tests::nanos(&r["cost"])).sum();
    assert_eq!(router_tests::nanos(&account["balance"]), 100_000_000_000 - billed);
}

on_both_backends!(failover_skips_failing_channels_and_bills_once);

async fn failover_skips_failing_channels_and_bills_once(backend: Backend) {
    let gw = Gateway::start(backend, &["--upstream-first-byte-timeout", "1"]).await;
    let bad = MockUpstream::start(5).await;
    let bad_base = format!("{}/v1", bad.url);
    gw.cp.add_channel("first", "openai", &bad_base, "k", "gpt-4o-mini", &["--priority", "10"]);
    let auth = gw.bearer();
    // Wait for the new channel to be in the data plane's policy: it is tried first once there.
    for (mode, label) in [
        (Mode::Fail(500), "500"),
        (Mode::Hang, "timeout"),
        (Mode::Fail(429), "429"),
        (Mode::Fail(401), "401"),
    ] {
        bad.set_mode(mode);
        let before = bad.calls();
        let ok = eventually(Duration::from_secs(3), || async {
            let answer = post_json(
                &gw.url("/v1/chat/completions"),
                &[("authorization", &auth)],
                &chat("gpt-4o-mini", false),
            )
            .await
            .ok()?;
            (bad.calls() > before).then_some(answer)
        })
        .await
        .unwrap_or_else(|| panic!("{label}: the failing channel was never tried"));
        assert_eq!(ok.status, 200, "{label}: {}", ok.text());
        // Let the cool-down lapse for the next case: a fresh channel name is simpler.
        gw.cp.json(&["channel", "delete", "first"]);
        gw.cp.add_channel("first", "openai", &bad_base, "k", "gpt-4o-mini", &["--priority", "10"]);
    }
    // A refused connection.
    gw.cp.json(&["channel", "update", "first", "--base-url", "http://127.0.0.1:1/v1"]);
    let answer =
        post_json(&gw.url("/v1/chat/completions"), &[("authorization", &auth)], &chat("gpt-4o-mini", false))
            .await
            .unwrap();
    assert_eq!(answer.status, 200);
    // Every request was billed once, on the healthy channel.
    let calls = gw.mock.calls();
    let records = gw.usage(calls).await;
    assert!(records.iter().all(|r| r["channel"] == "main" && r["status"] == "ok"), "{records:?}");

    // Every channel failing: 502 (504 after a timeout), free, recorded as upstream_error.
    gw.mock.set_mode(Mode::Fail(503));
    bad.set_mode(Mode::Fail(503));
    gw.cp.json(&["channel", "update", "first", "--base-url", &bad_base]);
    let failed = eventually(Duration::from_secs(3), || async {
        let answer = post_json(
            &gw.url("/v1/chat/completions"),
            &[("authorization", &auth)],
            &chat("gpt-4o-mini", false),
        )
        .await
        .ok()?;
        (answer.status == 502).then_some(answer)
    })
    .await
    .expect("a 502 when every channel fails");
    assert_eq!(failed.json()["error"]["code"], "upstream_error");
    let records = gw.cp.json(&["usage", "--limit", "1000"]);
    let record =
        records.as_array().unwrap().iter().find(|r| r["request_id"] == failed.request_id().as_str()).cloned();
    let record = match record {
        Some(record) => record,
        None => gw.usage(calls + 1).await.into_iter().next().unwrap(),
    };
    assert_eq!((record["status"].as_str(), record["cost"].as_str()), (Some("upstream_error"), Some("0")));

    // The request's own fault: passed through, not retried, free.
    gw.mock.set_mode(Mode::Fail(400));
    bad.set_mode(Mode::Fail(400));
    let before = gw.mock.calls() + bad.calls();
    let answer =
        post_json(&gw.url("/v1/chat/completions"), &[("authorization", &auth)], &chat("gpt-4o-mini", false))
            .await
            .unwrap();
    assert_eq!(answer.status, 400);
    assert_eq!(answer.json()["error"]["message"], "mock failure");
    assert_eq!(gw.mock.calls() + bad.calls(), before + 1, "a 400 must not be retried");
}

/// Headers, body, expected status, expected error code.
type Case<'a> = (Vec<(&'a str, &'a str)>, Value, u16, &'a str);

#[tokio::test(flavor = "multi_thread")]
async fn refusals_never_reach_the_upstream() {
    let gw = Gateway::start(Backend::Sqlite, &["--max-body-bytes", "2048"]).await;
    let url = gw.url("/v1/chat/completions");
    let auth = gw.bearer();
    gw.cp.json(&["model-group", "add", "unpriced-family", "--models", "unpriced"]);
    gw.cp.json(&["group", "add", "narrow", "--models", "text-embedding-3-small"]);
    let narrow = gw.cp.json(&["key", "create", "--account", "acme", "--group", "narrow"])["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let allow_list =
        gw.cp.json(&["key", "create", "--account", "acme", "--models", "claude-sonnet-4"])["key"]
            .as_str()
            .unwrap()
            .to_owned();
    let expired = gw.cp.json(&["key", "create", "--account", "acme", "--expires-at", "2020-01-01T00:00:00Z"])
        ["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let revoked = gw.cp.json(&["key", "create", "--account", "acme"]);
    gw.cp.json(&["key", "revoke", &revoked["id"].as_i64().unwrap().to_string()]);
    gw.cp.add_channel("off", "openai", "http://127.0.0.1:1", "k", "dormant", &[]);
    gw.cp.json(&["channel", "disable", "off"]);
    gw.cp.json(&["model", "set", "dormant", "--per-call", "0.01"]);
    let (narrow_auth, list_auth, expired_auth) =
        (format!("Bearer {narrow}"), format!("Bearer {allow_list}"), format!("Bearer {expired}"));
    let revoked_auth = format!("Bearer {}", revoked["key"].as_str().unwrap());
    // The data plane has the new keys once the revoked one is refused.
    let cases: Vec<Case<'_>> = vec![
        (vec![], chat("gpt-4o-mini", false), 401, "invalid_api_key"),
        (vec![("authorization", "Bearer sk-nonsense")], chat("gpt-4o-mini", false), 401, "invalid_api_key"),
        (vec![("authorization", &revoked_auth)], chat("gpt-4o-mini", false), 401, "invalid_api_key"),
        (vec![("authorization", &expired_auth)], chat("gpt-4o-mini", false), 401, "invalid_api_key"),
        (vec![("authorization", &auth)], json!({"messages": []}), 400, "invalid_request"),
        (
            vec![("authorization", &auth)],
            json!({"model": "x", "padding": "y".repeat(4096)}),
            413,
            "invalid_request",
        ),
        (vec![("authorization", &auth)], chat("no-such-model", false), 404, "model_not_found"),
        (vec![("authorization", &auth)], chat("unpriced", false), 404, "model_not_found"),
        (vec![("authorization", &narrow_auth)], chat("gpt-4o-mini", false), 403, "model_not_allowed"),
        (vec![("authorization", &list_auth)], chat("gpt-4o-mini", false), 403, "model_not_allowed"),
        (vec![("authorization", &auth)], chat("dormant", false), 503, "upstream_error"),
    ];
    for (headers, body, status, code) in cases {
        let answer = eventually(Duration::from_secs(2), || async {
            let answer = post_json(&url, &headers, &body).await.ok()?;
            (answer.status == status).then_some(answer)
        })
        .await
        .unwrap_or_else(|| panic!("expected {status} {code} for {body}"));
        assert_eq!(answer.json()["error"]["code"], code, "{}", answer.text());
        assert!(!answer.request_id().is_empty());
    }
    let malformed =
        http_client::send(http::Method::POST, &url, &[("authorization", &auth)], "{not json").await.unwrap();
    assert_eq!(
        (malformed.status, malformed.json()["error"]["code"].as_str()),
        (400, Some("invalid_request"))
    );
    // A declared Content-Length over the limit is refused before the body is read.
    let declared = http_client::send(
        http::Method::POST,
        &url,
        &[("authorization", &auth), ("content-length", "999999")],
        "x".repeat(999_999),
    )
    .await
    .unwrap();
    assert_eq!(declared.status, 413);
    // Anthropic shape on /v1/messages.
    let anthropic = post_json(
        &gw.url("/v1/messages"),
        &[("x-api-key", "sk-nonsense")],
        &json!({"model": "claude-sonnet-4", "max_tokens": 5, "messages": []}),
    )
    .await
    .unwrap();
    assert_eq!(anthropic.status, 401);
    assert_eq!(
        (anthropic.json()["type"].as_str(), anthropic.json()["error"]["type"].as_str()),
        (Some("error"), Some("authentication_error"))
    );
    assert_eq!(gw.mock.calls(), 0, "a refused request reached the upstream");
    assert_eq!(gw.cp.json(&["usage"]), json!([]), "a refused request left a usage record");
}

#[tokio::test(flavor = "multi_thread")]
async fn stream_chunks_arrive_while_the_upstream_is_still_producing() {
    let gw = Gateway::start(Backend::Sqlite, &[]).await;
    let (release, mut stream) = held_stream(&gw).await;
    let first = tokio::time::timeout(Duration::from_secs(5), stream.next_chunk())
        .await
        .expect("first chunk while upstream holds")
        .unwrap();
    assert!(String::from_utf8_lossy(&first).contains("tok0"));
    release.notify_one();
    let rest = stream.rest().await;
    assert!(rest.contains("tok4") && rest.contains("[DONE]"));
    let records = gw.usage(1).await;
    assert_eq!(records[0]["output_tokens"].as_i64(), Some(5));
}

/// SIGTERM: every worker stops accepting at once, a stream in flight runs to its end, its usage
/// is delivered before the exit, and the process exits once nothing is in flight.
#[tokio::test(flavor = "multi_thread")]
async fn shutdown_stops_accepting_and_lets_streams_in_flight_finish() {
    let mut gw = Gateway::start(Backend::Sqlite, &["--workers", "3", "--shutdown-grace", "30"]).await;
    let (release, mut stream) = held_stream(&gw).await;
    assert!(stream.next_chunk().await.is_some());

    gw.dp.process.signal_terminate().unwrap();
    let health = gw.url("/healthz");
    let refused =
        eventually(Duration::from_secs(5), || async { get(&health, &[]).await.is_err().then_some(()) });
    assert!(refused.await.is_some(), "new connections are still accepted after SIGTERM");
    assert!(!gw.dp.process.has_exited(), "exited with a stream in flight");

    release.notify_one();
    let rest = stream.rest().await;
    assert!(rest.contains("tok4") && rest.contains("[DONE]"), "{rest}");
    let exited = eventually(Duration::from_secs(10), || {
        let exited = gw.dp.process.has_exited();
        async move { exited.then_some(()) }
    });
    assert!(exited.await.is_some(), "still running with nothing in flight");
    // Delivered before the exit: the record is there without the data plane coming back.
    let records = gw.usage(1).await;
    assert_eq!(records[0]["status"], "ok");
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_abandoned_and_usage_less_streams_are_billed_for_what_was_produced() {
    let gw = Gateway::start(Backend::Sqlite, &[]).await;
    let auth = gw.bearer();
    // The upstream breaks off after two chunks: the client's stream ends with an error event.
    gw.mock.set_mode(Mode::BreakStream);
    let text =
        post_stream(&gw.url("/v1/chat/completions"), &[("authorization", &auth)], &chat("gpt-4o-mini", true))
            .await
            .unwrap()
            .rest()
            .await;
    assert!(text.contains("tok1") && text.contains("upstream_error"), "{text}");
    let records = gw.usage(1).await;
    assert_eq!(records[0]["status"], "incomplete");
    assert!(records[0]["output_tokens"].as_i64() > Some(0), "{records:?}");
    assert!(router_tests::nanos(&records[0]["cost"]) > 0);

    // The client walks away mid-stream.
    let (release, mut stream) = held_stream(&gw).await;
    assert!(stream.next_chunk().await.is_some());
    drop(stream);
    let records = gw.usage(2).await;
    assert_eq!(records[0]["status"], "incomplete");
    release.notify_one();

    // No usage from the upstream: counted locally with the tokenizer.
    gw.mock.set_mode(Mode::NoUsage);
    let answer =
        post_json(&gw.url("/v1/chat/completions"), &[("authorization", &auth)], &chat("gpt-4o-mini", false))
            .await
            .unwrap();
    assert_eq!(answer.status, 200);
    let records = gw.usage(3).await;
    assert_eq!(records[0]["status"], "ok");
    assert!(
        records[0]["input_tokens"].as_i64() >= Some(2) && records[0]["output_tokens"].as_i64() >= Some(5),
        "{:?}",
        records[0]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn policy_changes_apply_within_a_second_and_serving_survives_the_control_plane() {
    let mut gw = Gateway::start(Backend::Sqlite, &[]).await;
    let auth = gw.bearer();
    let ok =
        post_json(&gw.url("/v1/chat/completions"), &[("authorization", &auth)], &chat("gpt-4o-mini", false))
            .await
            .unwrap();
    assert_eq!(ok.status, 200);
    gw.cp.json(&["key", "revoke", &gw.key_id.to_string()]);
    let refused = eventually(Duration::from_secs(1), || async {
        let answer = post_json(
            &gw.url("/v1/chat/completions"),
            &[("authorization", &auth)],
            &chat("gpt-4o-mini", false),
        )
        .await
        .ok()?;
        (answer.status == 401).then_some(())
    })
    .await;
    assert!(refused.is_some(), "a revoked key was still served a second later");

    let fresh = gw.cp.json(&["key", "create", "--account", "acme"])["key"].as_str().unwrap().to_owned();
    let fresh_auth = format!("Bearer {fresh}");
    let served = eventually(Duration::from_secs(1), || async {
        let answer = post_json(
            &gw.url("/v1/chat/completions"),
            &[("authorization", &fresh_auth)],
            &chat("gpt-4o-mini", false),
        )
        .await
        .ok()?;
        (answer.status == 200).then_some(())
    })
    .await;
    assert!(served.is_some());

    // The control plane goes away: the data plane keeps serving from its policy.
    gw.cp.process.kill();
    for _ in 0..3 {
        let answer = post_json(
            &gw.url("/v1/chat/completions"),
            &[("authorization", &fresh_auth)],
            &chat("gpt-4o-mini", false),
        )
        .await
        .unwrap();
        assert_eq!(answer.status, 200, "{}", answer.text());
    }
    let ready = get(&gw.url("/readyz"), &[]).await.unwrap();
    assert_eq!(ready.status, 200);
    // It comes back on the same port: the reports spooled meanwhile arrive.
    gw.cp.restart_after_kill().unwrap();
    // Requests served while the revocation was on its way are billed too: count upstream calls.
    let calls = gw.mock.calls();
    assert!(calls >= 5);
    gw.usage(calls).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_made_through_another_control_plane_replica_is_enforced_within_a_second() {
    let gw = Gateway::start(Backend::Postgres, &[]).await;
    let replica = ControlPlane::start_with(&gw.db.url, &gw.cp.admin_token, &gw.cp.node_token, &[]).unwrap();
    let auth = gw.bearer();
    let url = gw.url("/v1/chat/completions");
    let ok = post_json(&url, &[("authorization", &auth)], &chat("gpt-4o-mini", false)).await.unwrap();
    assert_eq!(ok.status, 200);
    // The data plane watches the first control plane; the change goes through the second.
    replica.json(&["key", "revoke", &gw.key_id.to_string()]);
    let refused = eventually(Duration::from_secs(1), || async {
        let answer = post_json(&url, &[("authorization", &auth)], &chat("gpt-4o-mini", false)).await.ok()?;
        (answer.status == 401).then_some(())
    })
    .await;
    assert!(refused.is_some(), "a key revoked through another replica was still served a second later");
    replica.json(&["channel", "disable", "main"]);
    let fresh = replica.json(&["key", "create", "--account", "acme"])["key"].as_str().unwrap().to_owned();
    let fresh_auth = format!("Bearer {fresh}");
    let unavailable = eventually(Duration::from_secs(1), || async {
        let answer =
            post_json(&url, &[("authorization", &fresh_auth)], &chat("gpt-4o-mini", false)).await.ok()?;
        (answer.status == 503).then_some(())
    })
    .await;
    assert!(unavailable.is_some(), "a channel disabled through another replica still took traffic");
}

/// On PostgreSQL a change announces itself (LISTEN/NOTIFY): a replica that would poll only every
/// ten minutes still enforces a change made through another one at once, and again after its
/// listening connection was cut.
#[tokio::test(flavor = "multi_thread")]
async fn a_replica_learns_of_a_change_by_notification_not_by_polling() {
    let gw = Gateway::start(Backend::Postgres, &[]).await;
    let slow_poll = [("ROUTER_POLICY_POLL_INTERVAL_MS", "600000")];
    let replica =
        ControlPlane::start_with(&gw.db.url, &gw.cp.admin_token, &gw.cp.node_token, &slow_poll).unwrap();
    let dp = DataPlane::start(&replica, &gw.db.dir.join("replica-spool"), &[]).await.unwrap();
    let url = format!("{}/v1/chat/completions", dp.url);
    let served = |key: String| {
        let url = url.clone();
        async move {
            let auth = format!("Bearer {key}");
            eventually(Duration::from_secs(5), || async {
                let answer =
                    post_json(&url, &[("authorization", &auth)], &chat("gpt-4o-mini", false)).await.ok()?;
                (answer.status == 200).then_some(())
            })
            .await
            .is_some()
        }
    };
    assert!(served(gw.key.clone()).await, "the replica's data plane does not serve");
    for trial in 0..3 {
        // Made through the first control plane; the data plane watches the replica.
        let fresh = gw.cp.json(&["key", "create", "--account", "acme"])["key"].as_str().unwrap().to_owned();
        let started = std::time::Instant::now();
        assert!(served(fresh).await, "trial {trial}: a key created through another replica was not served");
        eprintln!("trial {trial}: a new key was served through the replica after {:?}", started.elapsed());
    }
    // Cut the replica's listening connection: it connects again and catches up.
    use diesel_async::AsyncConnection;
    let mut conn = diesel_async::AsyncPgConnection::establish(&gw.db.url).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let cut = loop {
        use diesel_async::RunQueryDsl;
        let rows = diesel::sql_query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = 'router-policy-listener'",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        // Both control planes listen.
        if rows >= 2 || std::time::Instant::now() > deadline {
            break (rows >= 2).then_some(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert!(cut.is_some(), "no listening connections found in pg_stat_activity");
    let fresh = gw.cp.json(&["key", "create", "--account", "acme"])["key"].as_str().unwrap().to_owned();
    assert!(served(fresh).await, "after its listening connection was cut, the replica missed a change");
}
