//! Start-up, restart and the policy watch stream.
use std::time::Duration;

use router_proto::pb::{self, policy_event::Event};
use router_tests::{Backend, ControlPlane, TestDb, bin, node_client};
use tokio::time::timeout;

on_both_backends!(restart_loses_nothing, policy_watch_sends_a_snapshot_then_every_change);

async fn restart_loses_nothing(backend: Backend) {
    let db = TestDb::create(backend).await.unwrap();
    let mut cp = ControlPlane::start(&db).unwrap();
    cp.json(&[
        "channel",
        "add",
        "--name",
        "c",
        "--type",
        "anthropic",
        "--base-url",
        "https://api.anthropic.com",
        "--api-key",
        "sk-ant-xxxxxxxxxxxxxxxx",
        "--models",
        "claude",
    ]);
    cp.json(&[
        "model",
        "set",
        "claude",
        "--input-price",
        "3",
        "--output-price",
        "15",
        "--cache-write-price",
        "3.75",
    ]);
    cp.json(&["group", "add", "team", "--multiplier", "1.5", "--models", "claude"]);
    cp.json(&["account", "add", "erin", "--group", "team", "--balance", "20", "--daily-limit", "5"]);
    cp.json(&["key", "create", "--account", "erin", "--limit", "10"]);
    cp.json(&["topup", "--account", "erin", "--amount", "0.000000001"]);
    cp.json(&["code", "create", "--amount", "2", "--count", "2"]);
    let lists = [
        "channel list",
        "model list",
        "group list",
        "account list",
        "key list",
        "code list",
        "ledger",
        "pricing",
    ];
    let before: Vec<_> = lists.iter().map(|l| cp.json(&l.split(' ').collect::<Vec<_>>())).collect();

    cp.restart().unwrap();

    let after: Vec<_> = lists.iter().map(|l| cp.json(&l.split(' ').collect::<Vec<_>>())).collect();
    for ((list, before), after) in lists.iter().zip(&before).zip(&after) {
        assert_eq!(before, after, "`{list}` changed across a restart");
    }
    assert_eq!(after[3][0]["balance"], "20.000000001");
    // Ids continue rather than collide.
    let second = cp.json(&["key", "create", "--account", "erin"]);
    assert!(second["id"].as_i64() > before[4][0]["id"].as_i64());
}

/// Reads events until a whole snapshot has arrived; returns its pages.
async fn read_snapshot(events: &mut tonic::Streaming<pb::PolicyEvent>) -> Vec<pb::SnapshotPage> {
    let mut pages = Vec::new();
    loop {
        let event = timeout(Duration::from_secs(10), events.message()).await.unwrap().unwrap().unwrap();
        let Some(Event::Snapshot(page)) = event.event else {
            panic!("expected a snapshot page, got {event:?}")
        };
        let last = page.last;
        pages.push(page);
        if last {
            return pages;
        }
    }
}

async fn next_delta(events: &mut tonic::Streaming<pb::PolicyEvent>) -> pb::PolicyDelta {
    // A change must reach watchers within a second.
    let event = timeout(Duration::from_secs(1), events.message())
        .await
        .expect("a delta within a second")
        .unwrap()
        .unwrap();
    match event.event {
        Some(Event::Delta(delta)) => delta,
        other => panic!("expected a delta, got {other:?}"),
    }
}

async fn policy_watch_sends_a_snapshot_then_every_change(backend: Backend) {
    let db = TestDb::create(backend).await.unwrap();
    let cp = ControlPlane::start(&db).unwrap();
    cp.json(&[
        "channel",
        "add",
        "--name",
        "c",
        "--type",
        "openai",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--api-key",
        "upstream-secret-0123456789",
        "--models",
        "m",
    ]);
    cp.json(&["model", "set", "m", "--input-price", "1", "--output-price", "2"]);
    cp.json(&["account", "add", "frank"]);
    let key = cp.json(&["key", "create", "--account", "frank"]);
    let key_id = key["id"].as_i64().unwrap();

    let mut node = node_client(&cp.endpoint, &cp.node_token).await.unwrap();
    let request = pb::WatchPolicyRequest { node_id: "dp-test".into(), since_version: 0 };
    let mut events = node.watch_policy(request).await.unwrap().into_inner();
    let pages = read_snapshot(&mut events).await;
    assert!(pages[0].first);
    let version = pages[0].version;
    assert!(pages.iter().all(|p| p.version == version));
    let keys: Vec<_> = pages.iter().flat_map(|p| p.keys.iter()).collect();
    assert_eq!(keys.len(), 1);
    assert_eq!((keys[0].id, keys[0].hash.len()), (key_id, 32));
    let channel = &pages[0].channels[0];
    assert_eq!(channel.api_key, "upstream-secret-0123456789", "data planes need the whole upstream key");
    assert_eq!(pages[0].settings.as_ref().map(|s| s.currency.as_str()), Some("USD"));

    // A revoked key reaches the watcher as a removal.
    cp.json(&["key", "revoke", &key_id.to_string()]);
    let delta = next_delta(&mut events).await;
    assert!(delta.version > version);
    assert!(delta.keys.is_empty());
    assert!(
        delta.removed.iter().any(|r| r.id == key_id && r.kind == pb::EntityKind::Key as i32),
        "{delta:?}"
    );

    // A new price, then a disabled channel, each as its own change.
    cp.json(&["model", "set", "m", "--input-price", "5", "--output-price", "6"]);
    let delta = next_delta(&mut events).await;
    assert_eq!(delta.models.len(), 1);
    assert!(matches!(delta.models[0].price.as_ref().and_then(|p| p.billing.as_ref()),
        Some(pb::price::Billing::Tokens(t)) if t.input_nanos == 5_000_000_000));
    cp.json(&["channel", "disable", "c"]);
    let delta = next_delta(&mut events).await;
    assert_eq!(delta.channels.len(), 1);
    assert!(!delta.channels[0].enabled);
    let latest = delta.version;

    // Resuming from a known version gives only what changed since, not a snapshot.
    drop(events);
    let request = pb::WatchPolicyRequest { node_id: "dp-test".into(), since_version: latest };
    let mut resumed = node.watch_policy(request).await.unwrap().into_inner();
    let delta = next_delta(&mut resumed).await;
    assert_eq!(delta.version, latest);
    assert!(delta.channels.is_empty() && delta.keys.is_empty() && delta.removed.is_empty());
}

#[test]
fn refuses_to_start_without_valid_configuration() {
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut command = std::process::Command::new(bin("router-control-plane"));
        command
            .args(args)
            .env_remove("ROUTER_ADMIN_TOKEN")
            .env_remove("ROUTER_NODE_TOKEN")
            .env_remove("DATABASE_URL");
        for (key, value) in env {
            command.env(key, value);
        }
        let output = command.output().unwrap();
        assert!(!output.status.success(), "{args:?} should not start");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    assert!(run(&["--listen", "127.0.0.1:0"], &[]).contains("--admin-token"));
    assert!(run(&["--admin-token", "a"], &[]).contains("--node-token"));
    assert!(run(&["--admin-token", "same", "--node-token", "same"], &[]).contains("must differ"));
    // Secrets as files: an unreadable one, or one given both ways, stops the start.
    let unreadable = run(&["--node-token", "n"], &[("ROUTER_ADMIN_TOKEN_FILE", "/nonexistent/admin-token")]);
    assert!(unreadable.contains("cannot read --admin-token-file /nonexistent/admin-token"), "{unreadable}");
    let both = run(&["--admin-token", "a", "--node-token", "n", "--node-token-file", "/etc/hostname"], &[]);
    assert!(both.contains("give --node-token or --node-token-file, not both"), "{both}");
    assert!(
        run(&["--bogus-flag"], &[("ROUTER_ADMIN_TOKEN", "a"), ("ROUTER_NODE_TOKEN", "b")])
            .contains("--bogus-flag")
    );
    assert!(
        run(&["--listen", "not-an-address"], &[("ROUTER_ADMIN_TOKEN", "a"), ("ROUTER_NODE_TOKEN", "b")])
            .contains("not-an-address")
    );
    let bad_url = run(
        &["--listen", "127.0.0.1:0"],
        &[("ROUTER_ADMIN_TOKEN", "a"), ("ROUTER_NODE_TOKEN", "b"), ("DATABASE_URL", "mysql://x")],
    );
    assert!(bad_url.contains("unsupported database URL"), "{bad_url}");
    let missing_dir = run(
        &["--listen", "127.0.0.1:0", "--database-url", "sqlite:///nonexistent-dir-xyz/r.db"],
        &[("ROUTER_ADMIN_TOKEN", "a"), ("ROUTER_NODE_TOKEN", "b")],
    );
    assert!(missing_dir.contains("does not exist"), "{missing_dir}");
}
