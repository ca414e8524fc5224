//! Secrets stay secret; each API admits only its own token.
use router_proto::pb;
use router_tests::{Backend, ControlPlane, TestDb, admin_client, node_client, random_name};
use tonic::Code;

on_both_backends!(key_secret_is_never_stored_logged_or_listed, each_api_admits_only_its_own_token);

async fn key_secret_is_never_stored_logged_or_listed(backend: Backend) {
    let db = TestDb::create(backend).await.unwrap();
    let admin_token = format!("adm-{}", random_name(24));
    let node_token = format!("node-{}", random_name(24));
    // Debug logging, so that anything logging requests would show up.
    let cp =
        ControlPlane::start_with(&db.url, &admin_token, &node_token, &[("ROUTER_LOG", "debug")]).unwrap();
    let upstream_key = format!("sk-upstream-{}", random_name(24));
    cp.json(&[
        "channel",
        "add",
        "--name",
        "c",
        "--type",
        "openai",
        "--base-url",
        "http://127.0.0.1:9",
        "--api-key",
        &upstream_key,
        "--models",
        "m",
    ]);
    cp.json(&["account", "add", "dave", "--balance", "1"]);
    let created = cp.json(&["key", "create", "--account", "dave", "--name", "laptop"]);
    let secret = created["key"].as_str().unwrap().to_owned();
    let prefix = created["prefix"].as_str().unwrap().to_owned();
    let id = created["id"].as_i64().unwrap().to_string();
    assert!(prefix.len() < secret.len() / 2, "the prefix gives away too much of the secret");

    // Not in any later output.
    let mut outputs = vec![
        cp.json(&["key", "list"]).to_string(),
        cp.json(&["key", "update", &id, "--name", "renamed"]).to_string(),
        cp.json(&["key", "revoke", &id]).to_string(),
    ];
    for args in [["key", "list"], ["account", "list"]] {
        outputs.push(String::from_utf8_lossy(&cp.ctl(&args).stdout).into_owned());
    }
    for output in &outputs {
        assert!(!output.contains(&secret), "a key's secret was printed again: {output}");
        assert!(output.contains("laptop") || output.contains("renamed") || output.contains("dave"));
    }

    // Not in the database, which does hold its digest.
    let dump = db.dump().await.unwrap();
    let digest = sha256_hex(&secret);
    assert!(dump.contains(&digest), "the dump should hold the key's digest (is it reading the data?)");
    assert!(!dump.contains(&secret), "a key's secret is stored in the database");
    assert!(!dump.contains(&secret[prefix.len()..]), "part of a key's secret beyond its prefix is stored");

    // Not in the logs, nor any token.
    let log = cp.process.log();
    assert!(log.contains("listening on"));
    for (what, value) in [
        ("key secret", &secret),
        ("admin token", &admin_token),
        ("node token", &node_token),
        ("upstream key", &upstream_key),
    ] {
        assert!(!log.contains(value.as_str()), "the {what} appears in the log");
    }
}

fn sha256_hex(text: &str) -> String {
    let output = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().expect("stdin").write_all(text.as_bytes())?;
            child.wait_with_output()
        })
        .expect("sha256sum runs");
    String::from_utf8_lossy(&output.stdout).split_whitespace().next().unwrap_or_default().to_owned()
}

async fn each_api_admits_only_its_own_token(backend: Backend) {
    let db = TestDb::create(backend).await.unwrap();
    let cp = ControlPlane::start(&db).unwrap();

    for token in ["", "wrong-token", cp.node_token.as_str()] {
        let mut admin = admin_client(&cp.endpoint, token).await.unwrap();
        let refused = admin.list_accounts(pb::ListAccountsRequest {}).await.unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated, "admin API with {token:?}");
        let refused = admin
            .add_account(pb::AddAccountRequest { name: "mallory".into(), ..Default::default() })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated);
    }
    let mut admin = admin_client(&cp.endpoint, &cp.admin_token).await.unwrap();
    let accounts = admin.list_accounts(pb::ListAccountsRequest {}).await.unwrap().into_inner();
    assert!(accounts.accounts.is_empty(), "a refused request created an account");

    for token in ["", "wrong-token", cp.admin_token.as_str()] {
        let mut node = node_client(&cp.endpoint, token).await.unwrap();
        let request = pb::WatchPolicyRequest { node_id: "impostor".into(), since_version: 0 };
        let Err(refused) = node.watch_policy(request).await else {
            panic!("a watch with {token:?} was admitted")
        };
        assert_eq!(refused.code(), Code::Unauthenticated, "plane API with {token:?}");
        let refused = node.get_key_status(pb::KeyStatusRequest { key_id: 1 }).await.unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated);
    }
    let mut node = node_client(&cp.endpoint, &cp.node_token).await.unwrap();
    let request = pb::WatchPolicyRequest { node_id: "dp-1".into(), since_version: 0 };
    let mut events = node.watch_policy(request).await.unwrap().into_inner();
    let first = events.message().await.unwrap().expect("a first event");
    assert!(matches!(first.event, Some(pb::policy_event::Event::Snapshot(ref page)) if page.first));
}

on_both_backends!(
    a_replaced_channel_key_is_not_left_in_the_database_files,
    redemption_codes_are_stored_hashed
);

/// The bytes of the database's files that hold the channels (SQLite: the database and its
/// write-ahead log; PostgreSQL: the table's file, after a checkpoint).
async fn channel_files(db: &TestDb) -> Vec<u8> {
    match db.backend {
        Backend::Sqlite => {
            let mut bytes = Vec::new();
            for entry in std::fs::read_dir(&db.dir).unwrap() {
                let path = entry.unwrap().path();
                if path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("router.db")) {
                    bytes.extend(std::fs::read(&path).unwrap());
                }
            }
            bytes
        }
        Backend::Postgres => {
            use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
            #[derive(diesel::QueryableByName)]
            struct Row {
                #[diesel(sql_type = diesel::sql_types::Text)]
                text: String,
            }
            let mut conn = AsyncPgConnection::establish(&db.url).await.unwrap();
            conn.batch_execute("CHECKPOINT").await.unwrap();
            let rows: Vec<Row> = diesel::sql_query(
                "SELECT current_setting('data_directory') || '/' || pg_relation_filepath('channels') AS text",
            )
            .load(&mut conn)
            .await
            .unwrap();
            std::fs::read(&rows[0].text).unwrap()
        }
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

async fn a_replaced_channel_key_is_not_left_in_the_database_files(backend: Backend) {
    let db = TestDb::create(backend).await.unwrap();
    let cp = ControlPlane::start(&db).unwrap();
    let old_key = format!("sk-old-{}", random_name(24));
    let new_key = format!("sk-new-{}", random_name(24));
    cp.json(&[
        "channel",
        "add",
        "--name",
        "c",
        "--type",
        "openai",
        "--base-url",
        "http://127.0.0.1:9",
        "--api-key",
        &old_key,
        "--models",
        "m",
    ]);
    assert!(contains(&channel_files(&db).await, &old_key), "the check cannot see the key it looks for");
    cp.json(&["channel", "update", "c", "--api-key", &new_key]);
    let files = channel_files(&db).await;
    assert!(!contains(&files, &old_key), "the replaced key is still in the database files");
    assert!(contains(&files, &new_key));
    cp.json(&["channel", "delete", "c"]);
    assert!(!contains(&channel_files(&db).await, &new_key), "a deleted channel's key is still there");
}

/// Runs `sql` on the test's database, as an older control plane (or a migration) would have.
async fn execute(db: &TestDb, sql: &str) {
    use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
    match db.backend {
        Backend::Sqlite => {
            use diesel::{Connection, RunQueryDsl, SqliteConnection};
            let path = db.url.trim_start_matches("sqlite://");
            let mut conn = SqliteConnection::establish(path).unwrap();
            diesel::sql_query(sql).execute(&mut conn).unwrap();
        }
        Backend::Postgres => {
            let mut conn = AsyncPgConnection::establish(&db.url).await.unwrap();
            conn.batch_execute(sql).await.unwrap();
        }
    }
}

async fn redemption_codes_are_stored_hashed(backend: Backend) {
    let db = TestDb::create(backend).await.unwrap();
    let mut cp = ControlPlane::start(&db).unwrap();
    cp.json(&["account", "add", "erin", "--balance", "0"]);
    let key_id = cp.json(&["key", "create", "--account", "erin"])["id"].as_i64().unwrap();
    let created = cp.json(&["code", "create", "--amount", "1.5", "--count", "2"]);
    let codes: Vec<String> =
        created.as_array().unwrap().iter().map(|c| c["code"].as_str().unwrap().to_owned()).collect();
    assert!(created[0]["id"].as_i64().is_some(), "{created}");
    // Listed by id and first characters, never in full.
    let listed = cp.json(&["code", "list"]);
    let text = format!("{listed}{}", String::from_utf8_lossy(&cp.ctl(&["code", "list"]).stdout));
    for code in &codes {
        assert!(!text.contains(code.as_str()), "a code was listed in full: {text}");
        assert!(listed.as_array().unwrap().iter().any(|c| c["prefix"] == code[..4]), "{listed}");
    }
    assert!(listed[0].get("code").is_none(), "{listed}");
    // Stored as its hash only.
    let dump = db.dump().await.unwrap();
    for code in &codes {
        assert!(dump.contains(&sha256_hex(code)), "the dump should hold the code's hash");
        assert!(!dump.contains(code.as_str()), "a code is stored in clear");
    }
    // Redeemed by its text, once.
    let mut node = node_client(&cp.endpoint, &cp.node_token).await.unwrap();
    let redeemed = node.redeem(pb::RedeemRequest { key_id, code: codes[0].clone() }).await.unwrap();
    assert_eq!(redeemed.into_inner().amount_nanos, 1_500_000_000);
    let again = node.redeem(pb::RedeemRequest { key_id, code: codes[0].clone() }).await.unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);

    // A code stored in clear by an older version is hashed when the control plane starts and
    // still works; its text is gone from the database files.
    let legacy = format!("LEGACY{}", random_name(20));
    execute(
        &db,
        &format!(
            "INSERT INTO redemption_codes (code, amount, created_at) VALUES ('{legacy}', 2000000000, 1)"
        ),
    )
    .await;
    cp.restart().unwrap();
    let listed = cp.json(&["code", "list"]);
    assert!(listed.as_array().unwrap().iter().any(|c| c["prefix"] == "LEGA"), "{listed}");
    assert!(!db.dump().await.unwrap().contains(&legacy), "a legacy code is still stored in clear");
    if backend == Backend::Sqlite {
        assert!(!contains(&std::fs::read(db.dir.join("router.db")).unwrap(), &legacy), "left in a free page");
    }
    let mut node = node_client(&cp.endpoint, &cp.node_token).await.unwrap();
    let redeemed = node.redeem(pb::RedeemRequest { key_id, code: legacy }).await.unwrap();
    assert_eq!(redeemed.into_inner().amount_nanos, 2_000_000_000);
}
