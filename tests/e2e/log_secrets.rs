//! No log line holds a secret: a representative run (keys, upstream keys, tokens, a console
//! password and session, a redemption code, a replaced channel key, refusals, streams) with
//! both planes at debug level, every line of both logs scanned.
use router_tests::{Backend, ControlPlane, DataPlane, TestDb, http_client, mock::MockUpstream, random_name};
use serde_json::json;

on_both_backends!(no_log_line_holds_a_secret);

async fn no_log_line_holds_a_secret(backend: Backend) {
    let db = TestDb::create(backend).await.unwrap();
    let debug = [("ROUTER_LOG", "debug")];
    let admin_token = format!("adm-{}", random_name(24));
    let node_token = format!("node-{}", random_name(24));
    let cp = ControlPlane::start_with(&db.url, &admin_token, &node_token, &debug).unwrap();
    let mock = MockUpstream::start(3).await;
    let upstream_key = format!("sk-upstream-{}", random_name(24));
    let replaced_key = format!("sk-replaced-{}", random_name(24));
    let channel = |key: &str| {
        let base = format!("{}/v1", mock.url);
        vec!["--type", "openai", "--base-url", &base, "--api-key", key, "--models", "gpt-4o-mini"]
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let mut add = vec!["channel".to_owned(), "add".to_owned(), "--name".to_owned(), "main".to_owned()];
    add.extend(channel(&replaced_key));
    cp.json(&add.iter().map(String::as_str).collect::<Vec<_>>());
    cp.json(&["channel", "update", "main", "--api-key", &upstream_key]);
    cp.json(&["model", "set", "gpt-4o-mini", "--input-price", "0.15", "--output-price", "0.6"]);
    cp.json(&["account", "add", "zoe", "--balance", "10", "--email", "zoe@example.com"]);
    let password = format!("pw-{}", random_name(20));
    assert!(
        cp.ctl_with_stdin(&["account", "set-password", "zoe", "--password-stdin"], &format!("{password}\n"))
            .status
            .success()
    );
    let key = cp.json(&["key", "create", "--account", "zoe"])["key"].as_str().unwrap().to_owned();
    let code = cp.json(&["code", "create", "--amount", "1"])[0]["code"].as_str().unwrap().to_owned();

    let dp = DataPlane::start_with_env(&cp, &db.dir.join("spool"), &[], &debug).await.unwrap();
    let url = |path: &str| format!("{}{path}", dp.url);
    let auth = format!("Bearer {key}");
    let chat =
        json!({"model": "gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
    let served = router_tests::eventually(std::time::Duration::from_secs(10), || async {
        let answer = http_client::post_json(&url("/v1/chat/completions"), &[("authorization", &auth)], &chat)
            .await
            .ok()?;
        (answer.status == 200).then_some(())
    })
    .await;
    assert!(served.is_some(), "the key was never served");
    let mut streamed = chat.clone();
    streamed["stream"] = json!(true);
    let mut stream =
        http_client::post_stream(&url("/v1/chat/completions"), &[("authorization", &auth)], &streamed)
            .await
            .unwrap();
    assert!(stream.rest().await.contains("[DONE]"));
    // The key in the query string and a wrong key: refused, not logged.
    let wrong = format!("sk-wrong-{}", random_name(24));
    let refused = http_client::post_json(
        &url(&format!("/v1/chat/completions?api_key={key}")),
        &[("authorization", &format!("Bearer {wrong}"))],
        &chat,
    )
    .await
    .unwrap();
    assert_eq!(refused.status, 401);
    let redeemed =
        http_client::post_json(&url("/api/redeem"), &[("authorization", &auth)], &json!({"code": code}))
            .await
            .unwrap();
    assert_eq!(redeemed.status, 200, "{}", redeemed.text());
    let login = http_client::post_json(
        &url("/api/account/login"),
        &[],
        &json!({"email": "zoe@example.com", "password": password}),
    )
    .await
    .unwrap();
    assert_eq!(login.status, 200, "{}", login.text());
    let cookie =
        login.headers.get("set-cookie").unwrap().to_str().unwrap().split(';').next().unwrap().to_owned();
    let session = cookie.split_once('=').unwrap().1.to_owned();
    let csrf = login.json()["csrf_token"].as_str().unwrap().to_owned();
    let me = http_client::get(&url("/api/account"), &[("cookie", &cookie)]).await.unwrap();
    assert_eq!(me.status, 200);
    let failed = http_client::post_json(
        &url("/api/account/login"),
        &[],
        &json!({"email": "zoe@example.com", "password": format!("{password}x")}),
    )
    .await
    .unwrap();
    assert_eq!(failed.status, 401);

    let logs = format!("{}\n{}", cp.process.log(), dp.process.log());
    assert!(logs.lines().any(|l| l.contains("DEBUG")), "the planes did not log at debug level");
    for (what, secret) in [
        ("API key", key.as_str()),
        ("wrong API key", &wrong),
        ("upstream key", &upstream_key),
        ("replaced upstream key", &replaced_key),
        ("admin token", &admin_token),
        ("node token", &node_token),
        ("password", &password),
        ("session token", &session),
        ("CSRF token", &csrf),
        ("redemption code", &code),
    ] {
        let leaked: Vec<&str> = logs.lines().filter(|line| line.contains(secret)).collect();
        assert!(leaked.is_empty(), "the {what} is in the log: {leaked:?}");
    }
}
