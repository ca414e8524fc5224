//! The single-node quickstart (`code-router`): one process, a control plane on embedded SQLite
//! and a data plane, tokens generated and printed, and on Ctrl-C the last usage reports
//! delivered before both stop.
use std::{
    process::{Command, Stdio},
    sync::Arc,
    time::Duration,
};

use router_tests::{
    Backend, ControlPlane, Process, TestDb, bin,
    http_client::{post_json, post_stream},
    mock::{MockUpstream, Mode},
    routerctl_json,
};
use serde_json::json;
use tokio::sync::Notify;

/// A port nothing listens on right now (the quickstart's gRPC address must be known up front:
/// the data plane inside it dials it).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread")]
async fn quickstart_serves_and_delivers_its_last_reports_on_ctrl_c() {
    let db = TestDb::create(Backend::Sqlite).await.unwrap();
    let mock = MockUpstream::start(3).await;
    let grpc = format!("127.0.0.1:{}", free_port());
    let banner = db.dir.join("banner.txt");
    let mut command = Command::new(bin("code-router"));
    command
        .current_dir(&db.dir)
        .args(["--listen", "127.0.0.1:0", "--grpc-listen", &grpc])
        .env("DATABASE_URL", &db.url)
        .env("ROUTER_LOG", "info")
        .env_remove("ROUTER_ADMIN_TOKEN")
        .env_remove("ROUTER_NODE_TOKEN")
        .env_remove("ROUTER_DP_LISTEN")
        .env_remove("ROUTER_CP_LISTEN");
    let stdout = Stdio::from(std::fs::File::create(&banner).unwrap());
    let mut quickstart = Process::spawn_with_stdout(command, stdout).unwrap();
    // Both planes log "listening on": the data plane's is the one that is not the gRPC port.
    let data_plane = loop {
        let line = quickstart.wait_for_line("listening on ", Duration::from_secs(60)).unwrap();
        let address = line.rsplit("listening on ").next().unwrap_or_default().trim().to_owned();
        if address != grpc {
            break format!("http://{address}");
        }
    };

    // It generated both tokens and printed them with the addresses.
    let printed = router_tests::eventually(Duration::from_secs(10), || async {
        let text = std::fs::read_to_string(&banner).unwrap_or_default();
        text.contains("node token:").then_some(text)
    })
    .await
    .expect("the banner is printed");
    let token_after = |label: &str| {
        printed
            .lines()
            .find_map(|l| l.trim().strip_prefix(label).map(|rest| rest.trim().to_owned()))
            .unwrap_or_else(|| panic!("no {label:?} in the banner:\n{printed}"))
    };
    let admin_token = token_after("admin token:");
    let node_token = token_after("node token:");
    assert!(admin_token.len() >= 32 && node_token.len() >= 32 && admin_token != node_token, "{printed}");
    assert!(printed.contains(&format!("http://{grpc}")), "{printed}");

    let endpoint = format!("http://{grpc}");
    let ctl = |args: &[&str]| routerctl_json(&endpoint, &admin_token, args);
    let base = format!("{}/v1", mock.url);
    ctl(&[
        "channel",
        "add",
        "--name",
        "m",
        "--type",
        "openai",
        "--base-url",
        &base,
        "--api-key",
        "up",
        "--models",
        "gpt-4o-mini",
    ]);
    ctl(&["model", "set", "gpt-4o-mini", "--input-price", "1", "--output-price", "2"]);
    ctl(&["account", "add", "alice", "--balance", "5"]);
    let key = ctl(&["key", "create", "--account", "alice"])["key"].as_str().unwrap().to_owned();

    let url = format!("{data_plane}/v1/chat/completions");
    let auth = format!("Bearer {key}");
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
    router_tests::eventually(Duration::from_secs(10), || async {
        post_json(&url, &[("authorization", &auth)], &body).await.ok().filter(|a| a.status == 200)
    })
    .await
    .expect("the quickstart serves a request once the key has propagated");

    // Ctrl-C while a stream is in flight: the stream is let finish, its usage report is
    // delivered to the control plane before that stops (not left in the spool for a next
    // start), and the process exits cleanly.
    let release = Arc::new(Notify::new());
    mock.set_mode(Mode::HoldAfterFirstChunk(Arc::clone(&release)));
    let stream_body =
        json!({"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let mut stream = post_stream(&url, &[("authorization", &auth)], &stream_body).await.unwrap();
    assert_eq!(stream.status, 200);
    let request_id = stream.headers["x-request-id"].to_str().unwrap().to_owned();
    assert!(stream.next_chunk().await.is_some());
    quickstart.signal("INT").unwrap();
    quickstart.wait_for_line("waiting for in-flight requests", Duration::from_secs(10)).unwrap();
    release.notify_one();
    assert!(stream.rest().await.contains("[DONE]"));
    let status = tokio::task::block_in_place(|| quickstart.wait_exit(Duration::from_secs(15))).unwrap();
    assert!(status.success(), "exit status {status}; log:\n{}", quickstart.log());

    let alone = ControlPlane::start_with(&db.url, &admin_token, &node_token, &[]).unwrap();
    let records = alone.json(&["usage", "--account", "alice"]);
    let billed = records.as_array().unwrap().iter().find(|r| r["request_id"] == request_id.as_str());
    assert_eq!(billed.map(|r| r["status"].clone()), Some(json!("ok")), "{records}");
}
