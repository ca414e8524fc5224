//! Channel health: `routerctl channel test`, and the control plane's checks that disable a
//! failing channel (traffic moves), enable it again when its upstream recovers, and leave a
//! channel an admin disabled alone.
use std::time::Duration;

use router_tests::{
    Backend, ControlPlane, DataPlane, TestDb, eventually,
    http_client::post_json,
    mock::{MockUpstream, Mode},
};
use serde_json::{Value, json};

fn chat() -> Value {
    json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
}

fn channel(cp: &ControlPlane, name: &str) -> Value {
    let list = cp.json(&["channel", "list"]);
    list.as_array().unwrap().iter().find(|c| c["name"] == name).cloned().unwrap()
}

/// Waits until channel `name` is listed with `enabled` and `reason`.
async fn listed_as(cp: &ControlPlane, name: &str, enabled: bool, reason: Value) -> bool {
    eventually(Duration::from_secs(30), || async {
        let c = channel(cp, name);
        (c["enabled"] == enabled && c["disabled_reason"] == reason).then_some(())
    })
    .await
    .is_some()
}

async fn checks_disable_and_enable_channels(backend: Backend) {
    let db = TestDb::create(backend).await.unwrap();
    let checks = [("ROUTER_CHANNEL_CHECK_INTERVAL", "1"), ("ROUTER_CHANNEL_CHECK_FAILURES", "2")];
    let cp = ControlPlane::start_with(&db.url, "adm-health-test", "node-health-test", &checks).unwrap();
    let (first, second) = (MockUpstream::start(3).await, MockUpstream::start(3).await);
    for (name, mock, priority) in [("first", &first, "10"), ("second", &second, "0")] {
        let base = format!("{}/v1", mock.url);
        cp.json(
            &["channel", "add", "--name", name, "--type", "openai", "--base-url", &base]
                .into_iter()
                .chain(["--api-key", "upstream-secret", "--models", "gpt-4o-mini", "--priority", priority])
                .collect::<Vec<_>>(),
        );
    }
    cp.json(&["model", "set", "gpt-4o-mini", "--input-price", "0.15", "--output-price", "0.6"]);
    cp.json(&["account", "add", "acme", "--balance", "10"]);
    let key = cp.json(&["key", "create", "--account", "acme"])["key"].as_str().unwrap().to_owned();
    let dp = DataPlane::start(&cp, &db.dir.join("spool"), &[]).await.unwrap();
    let auth = format!("Bearer {key}");
    let url = format!("{}/v1/chat/completions", dp.url);

    // A manual check: one real request with the channel's credentials.
    let tested = cp.json(&["channel", "test", "first"]);
    assert_eq!(tested["name"], "first");
    assert_eq!(tested["ok"], true, "{tested}");
    assert_eq!(tested["status"], 200);
    assert!(tested["latency_ms"].is_u64());
    let probe = first.seen().pop().unwrap();
    assert!(probe.uri.ends_with("/v1/chat/completions"), "{}", probe.uri);
    assert_eq!(probe.headers["authorization"], "Bearer upstream-secret");
    assert_eq!(probe.body["max_tokens"], 1);
    assert_eq!(cp.json(&["channel", "list"])[0]["disabled_reason"], Value::Null);

    // The first channel's key dies: its checks fail, it is disabled, traffic moves.
    first.set_mode(Mode::Fail(401));
    let refused = cp.ctl(&["--json", "channel", "test", "first"]);
    assert!(!refused.status.success(), "a failing check must exit non-zero");
    let result: Value = serde_json::from_slice(&refused.stdout).unwrap();
    assert_eq!((result["ok"].clone(), result["status"].clone()), (json!(false), json!(401)), "{result}");
    assert!(result["error"].as_str().unwrap().starts_with("HTTP 401"), "{result}");
    assert!(listed_as(&cp, "first", false, json!("health")).await, "{}", channel(&cp, "first"));
    // The data plane learns of it within a second: then requests are served by the second
    // channel without touching the first (health checks, `max_tokens: 1`, aside).
    let moved = eventually(Duration::from_secs(5), || async {
        let before = first.calls();
        let answer = post_json(&url, &[("authorization", &auth)], &chat()).await.ok()?;
        let touched = first.seen()[before..].iter().any(|s| s.body["max_tokens"] != 1);
        (answer.status == 200 && !touched).then_some(())
    })
    .await;
    assert!(moved.is_some(), "with the first channel disabled, requests still went to it");

    // Its upstream recovers: the next passing check enables it, and traffic comes back.
    first.set_mode(Mode::Normal);
    assert!(listed_as(&cp, "first", true, Value::Null).await, "{}", channel(&cp, "first"));
    let back = eventually(Duration::from_secs(5), || async {
        let before = first.calls();
        let answer = post_json(&url, &[("authorization", &auth)], &chat()).await.ok()?;
        (answer.status == 200 && first.seen()[before..].iter().any(|s| s.body["max_tokens"] != 1))
            .then_some(())
    })
    .await;
    assert!(back.is_some(), "traffic did not come back to the recovered channel");

    // An admin's decision stands: checks neither probe nor enable an admin-disabled channel.
    cp.json(&["channel", "disable", "second"]);
    assert_eq!(channel(&cp, "second")["disabled_reason"], "admin");
    let (first_before, second_before) = (first.calls(), second.calls());
    let rounds =
        eventually(Duration::from_secs(30), || async { (first.calls() >= first_before + 2).then_some(()) });
    assert!(rounds.await.is_some(), "the checks stopped");
    assert_eq!(second.calls(), second_before, "an admin-disabled channel was checked");
    let second = channel(&cp, "second");
    assert_eq!(
        (second["enabled"].clone(), second["disabled_reason"].clone()),
        (json!(false), json!("admin"))
    );
}

on_both_backends!(checks_disable_and_enable_channels);

#[tokio::test(flavor = "multi_thread")]
async fn channel_test_reports_unreachable_upstreams_and_unknown_names() {
    let db = TestDb::create(Backend::Sqlite).await.unwrap();
    let cp = ControlPlane::start(&db).unwrap();
    // A port nothing listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}/v1");
    cp.json(
        &["channel", "add", "--name", "gone", "--type", "openai", "--base-url", &base]
            .into_iter()
            .chain(["--api-key", "k", "--models", "m"])
            .collect::<Vec<_>>(),
    );
    let output = cp.ctl(&["--json", "channel", "test", "gone"]);
    assert!(!output.status.success());
    let result: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!((result["ok"].clone(), result["status"].clone()), (json!(false), json!(0)), "{result}");
    assert!(!result["error"].as_str().unwrap().is_empty());
    assert!(String::from_utf8_lossy(&output.stderr).contains("failed its check"));
    assert!(cp.fails(&["channel", "test", "nope"]).contains("nope"));
    assert!(cp.fails(&["channel", "test", "gone", "--model", "other"]).contains("does not serve"));
}
