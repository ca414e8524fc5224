//! `routerctl import new-api|one-api`: their schemas (from their gorm models) in SQLite,
//! PostgreSQL and MariaDB, every field kind, mapped exactly; a key imported from new-api works
//! on `/v1` with its old secret; unmappable values are reported and nothing is half-imported.
use std::process::Command;

use diesel::{Connection, SqliteConnection, connection::SimpleConnection};
use diesel_async::{AsyncConnection, AsyncMysqlConnection, AsyncPgConnection, SimpleAsyncConnection};
use router_tests::{
    Backend, ControlPlane, DataPlane, TestDb, bin, http_client, mock::MockUpstream, random_name,
};
use serde_json::{Value, json};

on_both_backends!(import_from_new_api);

/// Which database their gateway ran on.
#[derive(Clone, Copy, PartialEq)]
enum Their {
    Sqlite,
    Postgres,
    Mysql,
}

/// A column type as gorm creates it on each backend.
#[derive(Clone, Copy)]
enum Ty {
    Int,
    Text,
    Varchar,
    Bool,
    Float,
    Json,
    Time,
}

impl Ty {
    fn sql(self, their: Their) -> &'static str {
        match (self, their) {
            (Ty::Int, Their::Sqlite) => "integer",
            (Ty::Int, _) => "bigint",
            (Ty::Text, Their::Mysql) => "longtext",
            (Ty::Text, _) => "text",
            (Ty::Varchar, _) => "varchar(191)",
            (Ty::Bool, Their::Sqlite) => "numeric",
            (Ty::Bool, Their::Postgres) => "boolean",
            (Ty::Bool, Their::Mysql) => "tinyint(1)",
            (Ty::Float, Their::Mysql) => "double",
            (Ty::Float, _) => "real",
            (Ty::Json, _) => "json",
            (Ty::Time, Their::Postgres) => "timestamptz",
            (Ty::Time, Their::Mysql) => "datetime(3)",
            (Ty::Time, Their::Sqlite) => "datetime",
        }
    }
}

use Ty::*;

const NEW_API: &[(&str, &[(&str, Ty)])] = &[
    (
        "channels",
        &[
            ("id", Int),
            ("type", Int),
            ("key", Text),
            ("openai_organization", Text),
            ("test_model", Text),
            ("status", Int),
            ("name", Varchar),
            ("weight", Int),
            ("created_time", Int),
            ("test_time", Int),
            ("response_time", Int),
            ("base_url", Varchar),
            ("other", Text),
            ("balance", Float),
            ("balance_updated_time", Int),
            ("models", Text),
            ("group", Varchar),
            ("used_quota", Int),
            ("model_mapping", Text),
            ("status_code_mapping", Varchar),
            ("priority", Int),
            ("auto_ban", Int),
            ("other_info", Text),
            ("tag", Varchar),
            ("setting", Text),
            ("param_override", Text),
            ("header_override", Text),
            ("remark", Varchar),
            ("channel_info", Json),
            ("settings", Text),
        ],
    ),
    (
        "users",
        &[
            ("id", Int),
            ("username", Varchar),
            ("password", Text),
            ("display_name", Varchar),
            ("role", Int),
            ("status", Int),
            ("email", Varchar),
            ("github_id", Varchar),
            ("access_token", Varchar),
            ("quota", Int),
            ("used_quota", Int),
            ("request_count", Int),
            ("group", Varchar),
            ("aff_code", Varchar),
            ("inviter_id", Int),
            ("deleted_at", Time),
            ("setting", Text),
            ("remark", Varchar),
        ],
    ),
    (
        "tokens",
        &[
            ("id", Int),
            ("user_id", Int),
            ("key", Varchar),
            ("status", Int),
            ("name", Varchar),
            ("created_time", Int),
            ("accessed_time", Int),
            ("expired_time", Int),
            ("remain_quota", Int),
            ("unlimited_quota", Bool),
            ("model_limits_enabled", Bool),
            ("model_limits", Text),
            ("allow_ips", Varchar),
            ("used_quota", Int),
            ("group", Varchar),
            ("cross_group_retry", Bool),
            ("billing_type", Int),
            ("deleted_at", Time),
        ],
    ),
    (
        "redemptions",
        &[
            ("id", Int),
            ("user_id", Int),
            ("key", Varchar),
            ("status", Int),
            ("name", Varchar),
            ("quota", Int),
            ("created_time", Int),
            ("redeemed_time", Int),
            ("used_user_id", Int),
            ("deleted_at", Time),
            ("expired_time", Int),
        ],
    ),
    ("options", &[("key", Varchar), ("value", Text)]),
];

const ONE_API: &[(&str, &[(&str, Ty)])] = &[
    (
        "channels",
        &[
            ("id", Int),
            ("type", Int),
            ("key", Text),
            ("status", Int),
            ("name", Varchar),
            ("weight", Int),
            ("created_time", Int),
            ("test_time", Int),
            ("response_time", Int),
            ("base_url", Varchar),
            ("other", Text),
            ("balance", Float),
            ("balance_updated_time", Int),
            ("models", Text),
            ("group", Varchar),
            ("used_quota", Int),
            ("model_mapping", Varchar),
            ("priority", Int),
            ("config", Text),
            ("system_prompt", Text),
        ],
    ),
    (
        "users",
        &[
            ("id", Int),
            ("username", Varchar),
            ("password", Text),
            ("display_name", Varchar),
            ("role", Int),
            ("status", Int),
            ("email", Varchar),
            ("access_token", Varchar),
            ("quota", Int),
            ("used_quota", Int),
            ("request_count", Int),
            ("group", Varchar),
            ("aff_code", Varchar),
            ("inviter_id", Int),
        ],
    ),
    (
        "tokens",
        &[
            ("id", Int),
            ("user_id", Int),
            ("key", Varchar),
            ("status", Int),
            ("name", Varchar),
            ("created_time", Int),
            ("accessed_time", Int),
            ("expired_time", Int),
            ("remain_quota", Int),
            ("unlimited_quota", Bool),
            ("used_quota", Int),
            ("models", Text),
            ("subnet", Varchar),
        ],
    ),
    (
        "redemptions",
        &[
            ("id", Int),
            ("user_id", Int),
            ("key", Varchar),
            ("status", Int),
            ("name", Varchar),
            ("quota", Int),
            ("created_time", Int),
            ("redeemed_time", Int),
        ],
    ),
    ("options", &[("key", Varchar), ("value", Text)]),
];

/// The secret of alice's token in their database (without `sk-`).
const ALICE_TOKEN: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKL";

fn quoted(their: Their, name: &str) -> String {
    if their == Their::Mysql { format!("`{name}`") } else { format!("\"{name}\"") }
}

/// Their tables, created from the schema, with rows of every kind of value.
fn script(their: Their, schema: &[(&str, &[(&str, Ty)])], upstream: &str, new_api: bool) -> String {
    let mut sql = String::new();
    for (table, columns) in schema {
        let defs: Vec<String> = columns
            .iter()
            .map(|(name, ty)| {
                let key = if *name == "id" || (*table == "options" && *name == "key") {
                    " PRIMARY KEY"
                } else {
                    ""
                };
                format!("{} {}{key}", quoted(their, name), ty.sql(their))
            })
            .collect();
        sql.push_str(&format!("CREATE TABLE {} ({});\n", quoted(their, table), defs.join(", ")));
    }
    let (t, f) = if their == Their::Postgres { ("true", "false") } else { ("1", "0") };
    let q = |name: &str| quoted(their, name);
    let mut insert = |table: &str, columns: &[&str], values: &[String]| {
        let columns: Vec<String> = columns.iter().map(|c| q(c)).collect();
        sql.push_str(&format!(
            "INSERT INTO {} ({}) VALUES ({});\n",
            q(table),
            columns.join(", "),
            values.join(", ")
        ));
    };
    let s = |text: &str| format!("'{}'", text.replace('\'', "''"));
    let options = [
        ("ModelRatio", r#"{"gpt-4o-mini": 0.075, "gpt-4o": 1.25}"#),
        ("CompletionRatio", r#"{"gpt-4o-mini": 4, "gpt-4o": 4}"#),
        ("ModelPrice", r#"{"dall-e-3": 0.04}"#),
        ("GroupRatio", r#"{"default": 1, "vip": 0.8}"#),
    ];
    for (key, value) in options {
        insert("options", &["key", "value"], &[s(key), s(value)]);
    }
    // Their OpenAI base URL has no /v1; two keys, one per line; a channel type with no equivalent.
    insert(
        "channels",
        &[
            "id",
            "type",
            "key",
            "status",
            "name",
            "weight",
            "base_url",
            "models",
            "group",
            "model_mapping",
            "priority",
            "balance",
        ],
        &[
            "1".into(),
            "1".into(),
            s("sk-upstream-one\nsk-upstream-two"),
            "1".into(),
            s("main openai"),
            "1".into(),
            s(upstream),
            s("gpt-4o-mini,gpt-4o,dall-e-3"),
            s("default,vip"),
            s(r#"{"gpt-4o": "gpt-4o-2024-08-06"}"#),
            "5".into(),
            "1.5".into(),
        ],
    );
    insert(
        "channels",
        &["id", "type", "key", "status", "name", "weight", "base_url", "models", "group", "priority"],
        &[
            "2".into(),
            "15".into(),
            s("baidu-key"),
            "1".into(),
            s("ernie"),
            "1".into(),
            s(""),
            s("ernie-4"),
            s("default,vip"),
            "0".into(),
        ],
    );
    let deleted = if new_api { Some("NULL") } else { None };
    let mut user = |id: &str,
                    name: &str,
                    status: &str,
                    quota: &str,
                    group: &str,
                    deleted_at: Option<&str>| {
        let mut columns =
            vec!["id", "username", "password", "display_name", "role", "status", "quota", "group"];
        let mut values =
            vec![id.into(), s(name), s("hash"), s(name), "1".into(), status.into(), quota.into(), s(group)];
        if let Some(at) = deleted_at {
            columns.push("deleted_at");
            values.push(at.into());
        }
        insert("users", &columns, &values);
    };
    user("1", "alice", "1", "5000001", "vip", deleted);
    user("2", "bob", "2", "1000000", "default", deleted);
    if new_api {
        user("3", "gone", "1", "77", "default", Some("'2026-01-01 00:00:00'"));
    }
    let mut token = |values: Vec<String>| {
        let mut columns =
            vec!["id", "user_id", "key", "status", "name", "expired_time", "remain_quota", "unlimited_quota"];
        columns.push(if new_api { "model_limits" } else { "models" });
        let mut values = values;
        if new_api {
            columns.extend(["model_limits_enabled", "group", "deleted_at"]);
            values.extend([t.to_owned(), s(""), "NULL".into()]);
        }
        insert("tokens", &columns, &values);
    };
    token(vec![
        "1".into(),
        "1".into(),
        s(ALICE_TOKEN),
        "1".into(),
        s("laptop"),
        "-1".into(),
        "1000000".into(),
        f.into(),
        s("gpt-4o-mini,gpt-4o"),
    ]);
    token(vec![
        "2".into(),
        "2".into(),
        s("bobstokenbobstokenbobstokenbobstokenbobstokenbo"),
        "1".into(),
        s("bob"),
        "1900000000".into(),
        "0".into(),
        t.into(),
        s(""),
    ]);
    let code = |id: &str, key: &str, status: &str| {
        vec![id.into(), "1".into(), s(key), status.into(), s("promo"), "250000".into()]
    };
    let columns = ["id", "user_id", "key", "status", "name", "quota"];
    insert("redemptions", &columns, &code("1", "UNUSEDCODE0123456789abcdefghijkl", "1"));
    insert("redemptions", &columns, &code("2", "USEDCODE0123456789abcdefghijklmn", "3"));
    sql
}

/// A database of theirs on `their`, filled by `script`; returns its URL and a guard to drop it.
async fn their_database(their: Their, script: &str, dir: &std::path::Path) -> (String, Option<String>) {
    match their {
        Their::Sqlite => {
            let path = dir.join("their.db");
            let mut conn = SqliteConnection::establish(&path.display().to_string()).unwrap();
            conn.batch_execute(script).unwrap();
            (format!("sqlite://{}", path.display()), None)
        }
        Their::Postgres => {
            let name = format!("their_{}", random_name(12));
            let admin = router_tests::postgres_admin_url();
            let mut conn = AsyncPgConnection::establish(&admin).await.unwrap();
            conn.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
            let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
            AsyncPgConnection::establish(&url).await.unwrap().batch_execute(script).await.unwrap();
            (url, Some(name))
        }
        Their::Mysql => {
            let name = format!("their_{}", random_name(12));
            let mut conn =
                AsyncMysqlConnection::establish(&mysql_url("test")).await.expect("MariaDB at 127.0.0.1:3306");
            conn.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
            let url = mysql_url(&name);
            AsyncMysqlConnection::establish(&url).await.unwrap().batch_execute(script).await.unwrap();
            (url, Some(name))
        }
    }
}

fn mysql_url(db: &str) -> String {
    std::env::var("ROUTER_TEST_MYSQL_URL")
        .map_or_else(|_| format!("mysql://root@127.0.0.1:3306/{db}"), |base| format!("{base}/{db}"))
}

async fn drop_their(their: Their, name: Option<String>) {
    let Some(name) = name else { return };
    match their {
        Their::Postgres => {
            let mut conn = AsyncPgConnection::establish(&router_tests::postgres_admin_url()).await.unwrap();
            let _ = conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
        }
        Their::Mysql => {
            let mut conn = AsyncMysqlConnection::establish(&mysql_url("test")).await.unwrap();
            let _ = conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).await;
        }
        Their::Sqlite => {}
    }
}

fn import(cp: &ControlPlane, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(bin("routerctl"))
        .args(args)
        .env("ROUTER_ENDPOINT", &cp.endpoint)
        .env("ROUTER_ADMIN_TOKEN", &cp.admin_token)
        .env_remove("ROUTER_JSON")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn created(report: &Value) -> Vec<String> {
    report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["action"] == "create")
        .map(|c| format!("{} {}", c["kind"].as_str().unwrap(), c["name"].as_str().unwrap()))
        .collect()
}

async fn import_from_new_api(backend: Backend) {
    let db = TestDb::create(backend).await.unwrap();
    let cp = ControlPlane::start(&db).unwrap();
    let mock = MockUpstream::start(2).await;
    let (url, guard) =
        their_database(Their::Sqlite, &script(Their::Sqlite, NEW_API, &mock.url, true), &db.dir).await;
    let empty = cp.ctl(&["export", "--with-secrets"]).stdout;

    // A dry run lists what it would create and what it cannot map; nothing is written.
    let (ok, stdout, stderr) = import(&cp, &["--json", "import", "new-api", "--from", &url, "--dry-run"]);
    assert!(ok, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let unmappable = report["unmappable"].to_string();
    assert!(unmappable.contains("type 15") && unmappable.contains("ernie"), "{unmappable}");
    let planned = created(&report);
    for expected in [
        "channel main-openai-1",
        "channel main-openai-2",
        "account alice",
        "account bob",
        "key sk-abcdefgh",
        "balance alice",
        "code UNUS…",
        "group vip",
        "model gpt-4o",
    ] {
        assert!(planned.iter().any(|p| p == expected), "{expected} not planned: {planned:?}");
    }
    assert!(!planned.iter().any(|p| p.contains("gone") || p.starts_with("code USED")), "{planned:?}");
    assert_eq!(cp.ctl(&["export", "--with-secrets"]).stdout, empty, "a dry run wrote something");

    // Unmappable values and no --force: refused, nothing written.
    let (ok, stdout, stderr) = import(&cp, &["import", "new-api", "--from", &url]);
    assert!(
        !ok && stdout.is_empty() && stderr.contains("cannot map") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(cp.ctl(&["export", "--with-secrets"]).stdout, empty);

    // One item the control plane refuses fails the whole import, even forced.
    let (bad_url, bad_guard) = {
        let dir = db.dir.join("bad");
        std::fs::create_dir_all(&dir).unwrap();
        let broken = script(Their::Sqlite, NEW_API, "ftp://not-a-url", true);
        their_database(Their::Sqlite, &broken, &dir).await
    };
    let (ok, _, stderr) = import(&cp, &["import", "new-api", "--from", &bad_url, "--force"]);
    assert!(!ok && stderr.contains("base URL"), "{stderr}");
    assert_eq!(cp.ctl(&["export", "--with-secrets"]).stdout, empty, "a failed import left something behind");
    drop_their(Their::Sqlite, bad_guard).await;

    // Forced: everything that maps, exactly.
    let (ok, stdout, stderr) = import(&cp, &["--json", "import", "new-api", "--from", &url, "--force"]);
    assert!(ok, "{stderr}");
    assert_eq!(created(&serde_json::from_str(&stdout).unwrap()), planned);
    let alice = cp.json(&["account", "show", "alice"]);
    assert_eq!((alice["balance"].as_str(), alice["group"].as_str()), (Some("10.000002"), Some("vip")));
    assert_eq!(cp.json(&["account", "show", "bob"])["balance"], "2");
    let models = cp.json(&["model", "list"]);
    let model = |name: &str| models.as_array().unwrap().iter().find(|m| m["name"] == name).cloned().unwrap();
    assert_eq!(
        (model("gpt-4o-mini")["input_price"].as_str(), model("gpt-4o-mini")["output_price"].as_str()),
        (Some("0.15"), Some("0.6"))
    );
    assert_eq!(
        (model("gpt-4o")["input_price"].as_str(), model("gpt-4o")["output_price"].as_str()),
        (Some("2.5"), Some("10"))
    );
    assert_eq!(model("dall-e-3")["per_call_price"], "0.04");
    let channel = cp.json(&["channel", "show", "main-openai-2"]);
    assert_eq!(channel["base_url"], format!("{}/v1", mock.url));
    assert_eq!(
        (channel["priority"].as_i64(), channel["model_map"].clone()),
        (Some(5), json!({"gpt-4o": "gpt-4o-2024-08-06"}))
    );
    let vip =
        cp.json(&["group", "list"]).as_array().unwrap().iter().find(|g| g["name"] == "vip").cloned().unwrap();
    assert_eq!(vip["multiplier"], "0.8");
    let keys = cp.json(&["key", "list", "--account", "alice"]);
    assert_eq!(
        (keys[0]["limit"].as_str(), keys[0]["models"].clone()),
        (Some("2"), json!(["gpt-4o-mini", "gpt-4o"]))
    );
    let bobs = cp.json(&["key", "list", "--account", "bob"]);
    assert_eq!(bobs[0]["revoked"], true, "a disabled user's key must stay refused");
    assert_eq!(cp.json(&["code", "list"]).as_array().unwrap().len(), 1);
    assert!(
        !db.dump().await.unwrap().contains("UNUSEDCODE0123456789abcdefghijkl"),
        "an imported code in clear"
    );

    // Alice's old secret works on /v1 and is billed at the imported price.
    let spool = db.dir.join("spool");
    let dp = DataPlane::start(&cp, &spool, &[]).await.unwrap();
    let secret = format!("sk-{ALICE_TOKEN}");
    let answer = http_client::post_json(
        &format!("{}/v1/chat/completions", dp.url),
        &[("authorization", &format!("Bearer {secret}"))],
        &json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(mock.seen().last().is_some_and(|seen| seen.uri.starts_with("/v1/chat/completions")));
    let refused = http_client::post_json(
        &format!("{}/v1/chat/completions", dp.url),
        &[("authorization", "Bearer sk-bobstokenbobstokenbobstokenbobstokenbobstokenbo")],
        &json!({"model": "gpt-4o-mini", "messages": []}),
    )
    .await
    .unwrap();
    assert_eq!(refused.status, 401);

    // Again: nothing new, balances not posted twice.
    let (ok, stdout, stderr) = import(&cp, &["--json", "import", "new-api", "--from", &url, "--force"]);
    assert!(ok, "{stderr}");
    assert!(created(&serde_json::from_str(&stdout).unwrap()).is_empty(), "{stdout}");
    let ledger = cp.json(&["ledger", "--account", "alice"]);
    assert_eq!(ledger.as_array().unwrap().iter().filter(|e| e["kind"] == "topup").count(), 1);
    drop_their(Their::Sqlite, guard).await;
}

/// The other source databases (their PostgreSQL for one-api, their MariaDB for new-api).
#[tokio::test(flavor = "multi_thread")]
async fn import_from_postgres_and_mysql() {
    let db = TestDb::create(Backend::Sqlite).await.unwrap();
    let cp = ControlPlane::start(&db).unwrap();
    for (their, flavor, schema) in [(Their::Postgres, "one-api", ONE_API), (Their::Mysql, "new-api", NEW_API)]
    {
        let (url, guard) = their_database(
            their,
            &script(their, schema, "https://api.example.com", flavor == "new-api"),
            &db.dir,
        )
        .await;
        let (ok, stdout, stderr) = import(&cp, &["--json", "import", flavor, "--from", &url, "--force"]);
        drop_their(their, guard).await;
        assert!(ok, "{flavor}: {stderr}");
        let report: Value = serde_json::from_str(&stdout).unwrap();
        let created = created(&report);
        assert!(
            created.iter().any(|c| c == "key sk-abcdefgh") || flavor == "new-api",
            "{flavor}: {created:?}"
        );
        assert!(report["unmappable"].to_string().contains("type 15"), "{flavor}: {report}");
    }
    // Both imports named the same users and key: the second found them all in place.
    let alice = cp.json(&["account", "show", "alice"]);
    assert_eq!(alice["balance"], "10.000002");
    let keys = cp.json(&["key", "list", "--account", "alice"]);
    assert_eq!(keys.as_array().unwrap().len(), 1);
    assert_eq!(keys[0]["limit"], "2");
    assert_eq!(cp.json(&["channel", "show", "main-openai-1"])["base_url"], "https://api.example.com/v1");
}
