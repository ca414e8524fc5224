//! Secrets stay secret; each API admits only its own token.
use std::time::Duration;

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
    channel_keys_are_encrypted_at_rest_and_rotate,
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

/// The channels' upstream keys as the policy stream hands them to a data plane.
async fn policy_keys(cp: &ControlPlane) -> Vec<(String, String)> {
    let mut node = node_client(&cp.endpoint, &cp.node_token).await.unwrap();
    let request = pb::WatchPolicyRequest { node_id: "dp-keys".into(), since_version: 0 };
    let mut events = node.watch_policy(request).await.unwrap().into_inner();
    let mut keys = Vec::new();
    loop {
        let event = events.message().await.unwrap().expect("a snapshot page");
        let Some(pb::policy_event::Event::Snapshot(page)) = event.event else { continue };
        keys.extend(page.channels.into_iter().map(|c| (c.name, c.api_key)));
        if page.last {
            keys.sort();
            return keys;
        }
    }
}

fn add_channel(cp: &ControlPlane, name: &str, key: &str) {
    cp.json(&[
        "channel",
        "add",
        "--name",
        name,
        "--type",
        "openai",
        "--base-url",
        "http://127.0.0.1:9",
        "--api-key",
        key,
        "--models",
        "m",
    ]);
}

/// With `ROUTER_SECRET_KEY`, channel keys are stored encrypted (`enc:v1:KEYID:…`): keys stored
/// in clear before are encrypted at start and scrubbed from the files; data planes and
/// `export --with-secrets` still get them whole. Without the key, or with another one, the
/// control plane refuses to start and says why; a rotation (`ROUTER_OLD_SECRET_KEY`) encrypts
/// everything anew under the new key.
async fn channel_keys_are_encrypted_at_rest_and_rotate(backend: Backend) {
    let db = TestDb::create(backend).await.unwrap();
    let (admin, node) = (format!("adm-{}", random_name(24)), format!("node-{}", random_name(24)));
    let start = |env: &[(&str, &str)]| ControlPlane::start_with(&db.url, &admin, &node, env);
    let first_key = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    let second_key = "f0e0d0c0b0a090807060504030201000f0e0d0c0b0a090807060504030201000";
    let (clear, sealed) = (format!("sk-clear-{}", random_name(24)), format!("sk-sealed-{}", random_name(24)));

    // Before a secret key: in clear, as before.
    let mut cp = start(&[]).unwrap();
    add_channel(&cp, "old", &clear);
    assert!(contains(&channel_files(&db).await, &clear), "the check cannot see the key it looks for");
    cp.process.terminate(Duration::from_secs(5)).unwrap();

    // With one: the key in clear is encrypted at start and gone from the files.
    cp = start(&[("ROUTER_SECRET_KEY", first_key)]).unwrap();
    add_channel(&cp, "new", &sealed);
    let files = channel_files(&db).await;
    assert!(!contains(&files, &clear) && !contains(&files, &sealed), "a channel key is stored in clear");
    let stored = stored_keys(&db).await;
    assert!(stored.iter().all(|k| k.starts_with("enc:v1:")), "both keys encrypted: {stored:?}");
    let expected = vec![("new".to_owned(), sealed.clone()), ("old".to_owned(), clear.clone())];
    assert_eq!(policy_keys(&cp).await, expected, "data planes get the keys whole");
    let exported = String::from_utf8(cp.ctl(&["export", "--with-secrets"]).stdout).unwrap();
    assert!(exported.contains(&clear) && exported.contains(&sealed), "{exported}");
    let shown = cp.json(&["channel", "show", "new"]);
    assert!(!shown.to_string().contains(&sealed), "{shown}");
    cp.process.terminate(Duration::from_secs(5)).unwrap();

    // Without the key, or with another: no start, and the reason.
    let refused = start(&[]).err().expect("no start without the secret key").to_string();
    assert!(refused.contains("is encrypted") && refused.contains("--secret-key"), "{refused}");
    let refused = start(&[("ROUTER_SECRET_KEY", second_key)]).err().expect("no start with another key");
    assert!(refused.to_string().contains("neither --secret-key nor an --old-secret-key"), "{refused}");
    let refused = start(&[("ROUTER_SECRET_KEY", "not a key")]).err().expect("no start with a bad key");
    assert!(refused.to_string().contains("--secret-key: "), "{refused}");

    // Rotation: the old key opens, the new one seals; afterwards the new key alone suffices.
    let before = stored_keys(&db).await;
    cp = start(&[("ROUTER_SECRET_KEY", second_key), ("ROUTER_OLD_SECRET_KEY", first_key)]).unwrap();
    assert!(cp.process.log().contains("sealed=2"), "{}", cp.process.log());
    cp.process.terminate(Duration::from_secs(5)).unwrap();
    let after = stored_keys(&db).await;
    let id = |stored: &String| stored.trim_start_matches("enc:v1:").split(':').next().unwrap().to_owned();
    let (old_ids, new_ids): (Vec<String>, Vec<String>) =
        (before.iter().map(id).collect(), after.iter().map(id).collect());
    assert!(
        old_ids.iter().all(|i| *i == old_ids[0]) && new_ids.iter().all(|i| *i == new_ids[0]),
        "{before:?} {after:?}"
    );
    assert_ne!(old_ids[0], new_ids[0], "sealed anew under the new key");
    assert!(after.iter().all(|k| k.starts_with("enc:v1:")));
    cp = start(&[("ROUTER_SECRET_KEY", second_key)]).unwrap();
    assert_eq!(policy_keys(&cp).await, expected);
    assert!(start(&[("ROUTER_SECRET_KEY", first_key)]).is_err(), "the old key alone no longer opens them");
    drop(cp);
}

/// The `api_key` column of every channel, by name, as stored.
async fn stored_keys(db: &TestDb) -> Vec<String> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        api_key: String,
    }
    const SQL: &str = "SELECT api_key FROM channels ORDER BY name";
    let rows: Vec<Row> = match db.backend {
        Backend::Sqlite => {
            use diesel::{Connection, RunQueryDsl, SqliteConnection};
            let mut conn = SqliteConnection::establish(db.url.trim_start_matches("sqlite://")).unwrap();
            diesel::sql_query(SQL).load(&mut conn).unwrap()
        }
        Backend::Postgres => {
            use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
            let mut conn = AsyncPgConnection::establish(&db.url).await.unwrap();
            diesel::sql_query(SQL).load(&mut conn).await.unwrap()
        }
    };
    rows.into_iter().map(|row| row.api_key).collect()
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
