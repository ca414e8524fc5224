//! Rate limits through the real data planes, on a short real rate window (the control plane's
//! test-only `ROUTER_RATE_WINDOW_MS`): each limit alone refuses the request past it with 429
//! `rate_limit_exceeded` and the `x-ratelimit-*` headers, never forwards or bills it, and
//! passes again once the window has moved on; two data planes under 32 clients share one
//! key's limit within the documented bound.
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use router_tests::{Backend, ControlPlane, DataPlane, Gateway, Stack, eventually, http_client, mock::Mode};
use serde_json::json;
use tokio::sync::Notify;

on_both_backends!(
    rpm_refuses_the_next_request_until_the_window_moves,
    tpm_refuses_past_its_tokens,
    max_concurrent_refuses_while_one_is_in_flight,
    two_data_planes_share_one_rpm_limit,
    two_data_planes_share_one_tpm_limit,
    group_rpm_applies_unless_the_key_sets_its_own,
    weekly_and_monthly_limits_refuse_as_insufficient_quota,
);

/// The rate window of these tests: one second per slot.
const WINDOW_MS: u64 = 6000;

/// A control plane on the short rate window with `gpt-4o-mini` at 1 per 1M tokens.
async fn start(backend: Backend) -> Stack {
    let window = WINDOW_MS.to_string();
    Gateway::builder(backend)
        .priced("1")
        .control_plane_env(&[("ROUTER_RATE_WINDOW_MS", &window)])
        .without_data_plane()
        .await
}

fn body(stream: bool) -> serde_json::Value {
    json!({"model": "gpt-4o-mini", "max_tokens": 16, "stream": stream,
           "messages": [{"role": "user", "content": "Say hello"}]})
}

async fn chat(dp: &str, key: &str) -> http_client::Answer {
    let auth = format!("Bearer {key}");
    http_client::post_json(&format!("{dp}/v1/chat/completions"), &[("authorization", &auth)], &body(false))
        .await
        .unwrap()
}

fn header(answer: &http_client::Answer, name: &str) -> Option<String> {
    answer.headers.get(name).map(|v| v.to_str().unwrap_or_default().to_owned())
}

/// A limited key, and a probe key created after it: once the probe is served, the data plane
/// has the limited key's policy too, without a request of the limited key spent on waiting.
async fn limited_key(setup: &Stack, dp: &str, key_args: &[&str]) -> String {
    let key = setup.key("acme", &["--balance", "100"], key_args);
    let probe = setup.cp.json(&["key", "create", "--account", "acme", "--name", "probe"])["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let served =
        eventually(Duration::from_secs(5), || async { (chat(dp, &probe).await.status == 200).then_some(()) });
    assert!(served.await.is_some(), "the probe key was never served");
    key
}

fn assert_rate_limited(answer: &http_client::Answer, kind: &str) {
    assert_eq!(answer.status, 429, "{}", answer.text());
    assert_eq!(answer.json()["error"]["code"], "rate_limit_exceeded", "{}", answer.text());
    let retry: u64 = header(answer, "retry-after").expect("retry-after").parse().unwrap();
    assert!((1..=10).contains(&retry), "retry-after {retry}");
    assert!(header(answer, "x-should-retry").is_none(), "a rate limit is worth retrying");
    if kind != "concurrency" {
        assert!(header(answer, &format!("x-ratelimit-limit-{kind}")).is_some(), "{:?}", answer.headers);
        let remaining: i64 =
            header(answer, &format!("x-ratelimit-remaining-{kind}")).unwrap().parse().unwrap();
        if kind == "requests" {
            assert_eq!(remaining, 0);
        } else {
            assert!(remaining < 100, "fewer tokens left than the request's estimate: {remaining}");
        }
        assert!(header(answer, &format!("x-ratelimit-reset-{kind}")).is_some());
    }
}

async fn rpm_refuses_the_next_request_until_the_window_moves(backend: Backend) {
    let setup = start(backend).await;
    let dp = setup.data_plane("spool").await;
    let key = limited_key(&setup, &dp.url, &["--rpm", "3"]).await;
    let calls = setup.mock.calls();
    for n in 0..3 {
        let answer = chat(&dp.url, &key).await;
        assert_eq!(answer.status, 200, "request {n}: {}", answer.text());
        assert_eq!(header(&answer, "x-ratelimit-limit-requests").as_deref(), Some("3"));
        let remaining: i64 = header(&answer, "x-ratelimit-remaining-requests").unwrap().parse().unwrap();
        assert_eq!(remaining, 2 - n, "remaining after request {n}");
        assert!(header(&answer, "x-ratelimit-limit-tokens").is_none(), "no token limit set");
    }
    let refused = chat(&dp.url, &key).await;
    assert_rate_limited(&refused, "requests");
    // On /v1/messages (served here by conversion) the refusal is Anthropic's shape.
    let messages = json!({"model": "gpt-4o-mini", "max_tokens": 16,
                          "messages": [{"role": "user", "content": "Say hello"}]});
    let anthropic = http_client::post_json(
        &format!("{}/v1/messages", dp.url),
        &[("x-api-key", &key), ("anthropic-version", "2023-06-01")],
        &messages,
    )
    .await
    .unwrap();
    assert_eq!(anthropic.status, 429, "{}", anthropic.text());
    assert_eq!(anthropic.json()["type"], "error", "{}", anthropic.text());
    assert_eq!(anthropic.json()["error"]["type"], "rate_limit_error", "{}", anthropic.text());
    assert!(header(&anthropic, "retry-after").is_some(), "{:?}", anthropic.headers);
    assert_eq!(setup.mock.calls(), calls + 3, "a refused request was forwarded");
    let records = setup.records("acme", 4).await;
    assert_eq!(records.len(), 4, "probe + 3: the refusal left no usage record");
    // The window moves on (at most a window and a slot later): requests pass again.
    let again = eventually(Duration::from_millis(WINDOW_MS * 2 + 2000), || async {
        let answer = chat(&dp.url, &key).await;
        (answer.status == 200).then_some(answer)
    })
    .await;
    assert!(again.is_some(), "still refused after the window");
}

async fn tpm_refuses_past_its_tokens(backend: Backend) {
    let setup = start(backend).await;
    let dp = setup.data_plane("spool").await;
    // A request reserves ~70 tokens (its body / 4 + max_tokens 16 … ) and uses ~20.
    let key = limited_key(&setup, &dp.url, &["--tpm", "200"]).await;
    let calls = setup.mock.calls();
    let mut served = 0;
    let refused = loop {
        let answer = chat(&dp.url, &key).await;
        if answer.status != 200 {
            break answer;
        }
        assert_eq!(header(&answer, "x-ratelimit-limit-tokens").as_deref(), Some("200"));
        served += 1;
        assert!(served < 50, "never refused");
    };
    assert_rate_limited(&refused, "tokens");
    // Settling the real counts leaves room for more than 200 / estimate requests in one slot;
    // but when the machine is slow enough that a slot (1 s here) ends between two requests,
    // the last slot's grant counts whole until its real use is reported, so fewer may pass
    // (never more than the limit: that is the bound under test).
    assert!(served >= 1, "the first request within the limit was refused");
    assert_eq!(setup.mock.calls(), calls + served);
    let again = eventually(Duration::from_millis(WINDOW_MS * 2 + 2000), || async {
        (chat(&dp.url, &key).await.status == 200).then_some(())
    })
    .await;
    assert!(again.is_some(), "still refused after the window");
}

async fn max_concurrent_refuses_while_one_is_in_flight(backend: Backend) {
    let setup = start(backend).await;
    let dp = setup.data_plane("spool").await;
    let key = limited_key(&setup, &dp.url, &["--max-concurrent", "1"]).await;
    let release = Arc::new(Notify::new());
    setup.mock.set_mode(Mode::HoldAfterFirstChunk(Arc::clone(&release)));
    let auth = format!("Bearer {key}");
    let url = format!("{}/v1/chat/completions", dp.url);
    let mut held = http_client::post_stream(&url, &[("authorization", &auth)], &body(true)).await.unwrap();
    assert_eq!(held.status, 200);
    assert!(held.next_chunk().await.is_some());
    let calls = setup.mock.calls();
    let refused = chat(&dp.url, &key).await;
    assert_rate_limited(&refused, "concurrency");
    assert_eq!(setup.mock.calls(), calls, "the refused request was forwarded");
    release.notify_one();
    assert!(held.rest().await.contains("[DONE]"));
    setup.mock.set_mode(Mode::Normal);
    let again = eventually(Duration::from_secs(5), || async {
        (chat(&dp.url, &key).await.status == 200).then_some(())
    });
    assert!(again.await.is_some(), "still refused with nothing in flight");
}

/// 32 clients over two data planes for one window; returns (admitted, refused) answers.
async fn load(urls: [String; 2], key: &str, window: Duration) -> (usize, usize) {
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, limited) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut tasks = Vec::new();
    for client in 0..32 {
        let url = urls[client % 2].clone();
        let (key, stop, ok, limited) =
            (key.to_owned(), Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&limited));
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let answer = chat(&url, &key).await;
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match answer.status {
                    200 => ok.fetch_add(1, Ordering::Relaxed),
                    429 => {
                        assert_eq!(answer.json()["error"]["code"], "rate_limit_exceeded");
                        // Pacing, not synchronization: a refused client backs off a little.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        limited.fetch_add(1, Ordering::Relaxed)
                    }
                    other => panic!("status {other}: {}", answer.text()),
                };
            }
        }));
    }
    tokio::time::sleep(window).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    (ok.load(Ordering::Relaxed), limited.load(Ordering::Relaxed))
}

async fn two_data_planes_share(backend: Backend, flag: &str, limit: usize) {
    let setup = start(backend).await;
    // On PostgreSQL the second data plane talks to a second control-plane replica.
    let replica = (backend == Backend::Postgres).then(|| {
        let window = WINDOW_MS.to_string();
        ControlPlane::start_with(
            &setup.db.url,
            &setup.cp.admin_token,
            &setup.cp.node_token,
            &[("ROUTER_RATE_WINDOW_MS", &window)],
        )
        .unwrap()
    });
    let a = setup.data_plane("spool-a").await;
    let b = match &replica {
        Some(replica) => DataPlane::start(replica, &setup.db.dir.join("spool-b"), &[]).await.unwrap(),
        None => setup.data_plane("spool-b").await,
    };
    let key = limited_key(&setup, &a.url, &[flag, &limit.to_string()]).await;
    let key_b = limited_key_known(&setup, &b.url).await;
    // What one request really counts against a token limit (the mock's usage).
    let record = setup.records("acme", 2).await.remove(0);
    let tokens: usize = ["input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens"]
        .iter()
        .map(|f| usize::try_from(record[*f].as_i64().unwrap()).unwrap())
        .sum();
    let per_request = if flag == "--tpm" { tokens.max(1) } else { 1 };
    let calls = setup.mock.calls();
    let (admitted, refused) =
        load([a.url.clone(), b.url.clone()], &key, Duration::from_millis(WINDOW_MS)).await;
    let allowed = limit / per_request;
    let bound = allowed + (allowed / 5).max(2);
    eprintln!("{flag} {limit}: {admitted} admitted, {refused} refused in one window (bound {bound})");
    assert!(admitted <= bound, "{admitted} admitted in one window, more than {bound}");
    assert!(admitted * 10 >= allowed * 7, "{admitted} admitted in one window, less than 0.7 × {allowed}");
    assert!(refused > 0, "the load never reached the limit");
    assert!(setup.mock.calls() <= calls + admitted + 32, "refused requests were forwarded");
    drop(key_b);
}

/// Waits until a second data plane serves the account's probe key (it has the policy).
async fn limited_key_known(setup: &Stack, dp: &str) -> String {
    let probe = setup.cp.json(&["key", "create", "--account", "acme", "--name", "probe-b"])["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let served =
        eventually(Duration::from_secs(5), || async { (chat(dp, &probe).await.status == 200).then_some(()) });
    assert!(served.await.is_some(), "the second data plane never served the probe key");
    probe
}

async fn two_data_planes_share_one_rpm_limit(backend: Backend) {
    two_data_planes_share(backend, "--rpm", 60).await;
}

async fn two_data_planes_share_one_tpm_limit(backend: Backend) {
    // Sized so that the limit is some 60 requests of the mock's usage.
    two_data_planes_share(backend, "--tpm", 1200).await;
}

async fn group_rpm_applies_unless_the_key_sets_its_own(backend: Backend) {
    let setup = start(backend).await;
    let dp = setup.data_plane("spool").await;
    let group = setup.cp.json(&["group", "add", "metered", "--rpm", "2"]);
    assert_eq!(group["rpm"], 2);
    setup.cp.json(&["account", "add", "acme", "--balance", "100", "--group", "metered", "--tpm", "100000"]);
    let create = |args: &[&str]| {
        let mut line = vec!["key", "create", "--account", "acme"];
        line.extend_from_slice(args);
        setup.cp.json(&line)["key"].as_str().unwrap().to_owned()
    };
    let inherits = create(&["--name", "inherits"]);
    let own = create(&["--name", "own", "--rpm", "5"]);
    let listed = setup.cp.json(&["key", "list", "--account", "acme"]);
    let rpm_of =
        |name: &str| listed.as_array().unwrap().iter().find(|k| k["name"] == name).unwrap()["rpm"].clone();
    assert_eq!((rpm_of("inherits"), rpm_of("own")), (serde_json::Value::Null, json!(5)));
    let shown = setup.cp.json(&["account", "show", "acme"]);
    assert_eq!((shown["tpm"].clone(), shown["rpm"].clone()), (json!(100_000), serde_json::Value::Null));
    let served = eventually(Duration::from_secs(5), || async {
        (chat(&dp.url, &own).await.status == 200).then_some(())
    });
    assert!(served.await.is_some(), "the key was never served");
    let ok = |answer: &http_client::Answer| answer.status == 200;
    for n in 0..2 {
        let answer = chat(&dp.url, &inherits).await;
        assert!(ok(&answer), "request {n}: {}", answer.text());
        assert_eq!(header(&answer, "x-ratelimit-limit-requests").as_deref(), Some("2"), "the group's limit");
        assert_eq!(header(&answer, "x-ratelimit-limit-tokens").as_deref(), Some("100000"), "the account's");
    }
    assert_rate_limited(&chat(&dp.url, &inherits).await, "requests");
    for n in 1..5 {
        let answer = chat(&dp.url, &own).await;
        assert!(ok(&answer), "request {n} of the key with its own limit: {}", answer.text());
        assert_eq!(header(&answer, "x-ratelimit-limit-requests").as_deref(), Some("5"));
    }
    assert_rate_limited(&chat(&dp.url, &own).await, "requests");
    // Removing the group's limit frees the key that inherits it.
    setup.cp.json(&["group", "update", "metered", "--rpm", "0"]);
    let freed = eventually(Duration::from_secs(5), || async {
        let answer = chat(&dp.url, &inherits).await;
        (answer.status == 200 && header(&answer, "x-ratelimit-limit-requests").is_none()).then_some(())
    });
    assert!(freed.await.is_some(), "still limited after the group's limit was removed");
}

async fn weekly_and_monthly_limits_refuse_as_insufficient_quota(backend: Backend) {
    let setup = start(backend).await;
    let dp = setup.data_plane("spool").await;
    // At 1 per 1M tokens a request costs about 0.00002 and reserves about 0.00005.
    let key = setup.key("acme", &["--balance", "100", "--weekly-limit", "0.0001"], &["--monthly-limit", "1"]);
    let shown = setup.cp.json(&["account", "show", "acme"]);
    assert_eq!(shown["weekly_limit"], "0.0001");
    assert_eq!(shown["monthly_limit"], serde_json::Value::Null);
    let calls = setup.mock.calls();
    // Until the data plane has the new key, it is unknown there (401).
    let first = eventually(Duration::from_secs(5), || async {
        let answer = chat(&dp.url, &key).await;
        (answer.status != 401).then_some(answer)
    })
    .await
    .expect("the key never reached the data plane");
    let mut served = 0;
    let mut answer = first;
    let refused = loop {
        if answer.status != 200 {
            break answer;
        }
        served += 1;
        assert!(served < 100, "never refused");
        answer = chat(&dp.url, &key).await;
    };
    assert_eq!(refused.status, 429, "{}", refused.text());
    assert_eq!(refused.json()["error"]["code"], "insufficient_quota", "{}", refused.text());
    assert_eq!(header(&refused, "x-should-retry").as_deref(), Some("false"));
    assert!(served >= 1, "nothing was served before the weekly limit");
    assert_eq!(setup.mock.calls(), calls + served, "the refused request was forwarded");
    let records = setup.records("acme", served).await;
    let spent: i64 = records.iter().map(|r| router_tests::nanos(&r["cost"])).sum();
    let shown = setup.cp.json(&["account", "show", "acme"]);
    assert_eq!(router_tests::nanos(&shown["spent_this_week"]), spent);
    assert_eq!(router_tests::nanos(&shown["spent_this_month"]), spent);
    assert!(spent <= 100_000, "spent {spent} nano-units of a 100000 weekly limit");
    let keys = setup.cp.json(&["key", "list", "--account", "acme"]);
    assert_eq!(keys[0]["monthly_limit"], "1");
    assert_eq!(router_tests::nanos(&keys[0]["spent_this_month"]), spent);
}
