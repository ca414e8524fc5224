//! The account console's control-plane side through the real binaries: `routerctl account
//! --email / set-password / --disabled`, and the plane API's sign-in, sessions and sign-in
//! rate limit.
use router_proto::pb;
use router_tests::{Backend, ControlPlane, TestDb, node_client};
use tonic::Code;

on_both_backends!(accounts_get_an_email_and_a_password, sign_in_over_the_plane_api);

const PASSWORD: &str = "  pass word with spaces  ";

async fn accounts_get_an_email_and_a_password(backend: Backend) {
    let db = TestDb::create(backend).await.unwrap();
    let cp = ControlPlane::start(&db).unwrap();
    let ann = cp.json(&["account", "add", "ann", "--email", "Ann@Example.com", "--balance", "2"]);
    assert_eq!(ann["email"], "ann@example.com");
    assert_eq!(ann["has_password"], false);
    let error = cp.fails(&["account", "add", "ann2", "--email", "ANN@example.com"]);
    assert!(error.contains("already exists"), "{error}");
    let error = cp.fails(&["account", "add", "ann3", "--email", "nope"]);
    assert!(error.contains("not an email address"), "{error}");

    // --password-stdin: one line, its newline dropped, blanks kept.
    let output = cp.ctl_with_stdin(
        &["--json", "account", "set-password", "ann", "--password-stdin"],
        &format!("{PASSWORD}\n"),
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let shown = cp.json(&["account", "show", "ann"]);
    assert_eq!(
        (shown["email"].as_str(), shown["has_password"].as_bool()),
        (Some("ann@example.com"), Some(true))
    );
    let mut node = node_client(&cp.endpoint, &cp.node_token).await.unwrap();
    let login = |email: &str, password: &str| pb::LoginRequest {
        email: email.into(),
        password: password.into(),
        client_address: "127.0.0.1".into(),
    };
    node.login(login("ann@example.com", PASSWORD)).await.expect("the stdin password signs in");
    let refused = node.login(login("ann@example.com", PASSWORD.trim())).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);

    // --password-file: its first line.
    let file = db.dir.join("password.txt");
    std::fs::write(&file, "from a file\nignored\n").unwrap();
    let file = file.to_str().unwrap();
    cp.json(&["account", "set-password", "ann", "--password-file", file]);
    node.login(login("ann@example.com", "from a file")).await.expect("the file password signs in");
    let error = cp.fails(&["account", "set-password", "ann", "--password-file", "/no/such/file"]);
    assert!(error.contains("cannot read"), "{error}");
    let output = cp.ctl_with_stdin(&["account", "set-password", "ann", "--password-stdin"], "short\n");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("at least 8"));
    let error = cp.fails(&["account", "set-password", "nobody", "--password-file", file]);
    assert!(error.contains("not found"), "{error}");

    // --disabled and --email none.
    let disabled = cp.json(&["account", "update", "ann", "--disabled", "true"]);
    assert_eq!(disabled["disabled"], true);
    let refused = node.login(login("ann@example.com", "from a file")).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    cp.json(&["account", "update", "ann", "--disabled", "false"]);
    node.login(login("ANN@example.com", "from a file")).await.expect("enabled again");
    let cleared = cp.json(&["account", "update", "ann", "--email", "none"]);
    assert!(cleared["email"].is_null());
    let error = cp.fails(&["account", "update", "ann", "--disabled", "yes"]);
    assert!(error.contains("invalid value"), "{error}");

    // The password appears in no log and no table.
    let dump = db.dump().await.unwrap();
    assert!(!dump.contains("from a file") && !dump.contains(PASSWORD));
    assert!(!cp.process.log().contains("from a file"));
}

async fn sign_in_over_the_plane_api(backend: Backend) {
    let db = TestDb::create(backend).await.unwrap();
    let cp = ControlPlane::start(&db).unwrap();
    cp.json(&["account", "add", "bob", "--email", "bob@example.com"]);
    cp.json(&["account", "add", "eve", "--email", "eve@example.com"]);
    for name in ["bob", "eve"] {
        let output =
            cp.ctl_with_stdin(&["account", "set-password", name, "--password-stdin"], "bob's password\n");
        assert!(output.status.success());
    }
    let mut node = node_client(&cp.endpoint, &cp.node_token).await.unwrap();
    let login = |email: &str, password: &str, address: &str| pb::LoginRequest {
        email: email.into(),
        password: password.into(),
        client_address: address.into(),
    };

    let session =
        node.login(login("bob@example.com", "bob's password", "10.0.0.1")).await.unwrap().into_inner();
    assert_eq!(session.account.as_ref().map(|a| a.name.as_str()), Some("bob"));
    let info =
        node.session_account(pb::SessionRequest { token: session.token.clone() }).await.unwrap().into_inner();
    assert_eq!(info.csrf_token, session.csrf_token);
    assert_eq!(info.account.as_ref().map(|a| a.email.as_deref()), Some(Some("bob@example.com")));
    assert_eq!(info.currency, "USD");
    let lifetime = session.expires_at_unix_micros - info.account.as_ref().unwrap().created_at_unix_micros;
    assert!(lifetime > 6 * 86_400_000_000 && lifetime <= 7 * 86_400_000_000 + 60_000_000, "{lifetime}");

    // The token is stored only as a digest.
    assert!(!db.dump().await.unwrap().contains(&session.token));

    // Logout ends it.
    node.logout(pb::SessionRequest { token: session.token.clone() }).await.unwrap();
    let ended = node.session_account(pb::SessionRequest { token: session.token }).await.unwrap_err();
    assert_eq!(ended.code(), Code::Unauthenticated);

    // Ten failures for bob, then RESOURCE_EXHAUSTED with retry-after, even with the password.
    for i in 0..10 {
        let refused =
            node.login(login("bob@example.com", "guess", &format!("10.0.1.{i}"))).await.unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated, "attempt {i}");
        assert_eq!(refused.message(), "wrong email or password");
    }
    let limited = node.login(login("bob@example.com", "bob's password", "10.0.2.1")).await.unwrap_err();
    assert_eq!(limited.code(), Code::ResourceExhausted, "{limited:?}");
    let retry_after: u64 = limited.metadata().get("retry-after").unwrap().to_str().unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry_after), "{retry_after}");
    // Eve, from another address, is not affected.
    node.login(login("eve@example.com", "bob's password", "10.0.3.1")).await.unwrap();

    // The password is never logged.
    assert!(!cp.process.log().contains("bob's password"));
    assert!(!cp.process.log().contains("guess"));
}
