//! Every routerctl command of INTERFACE.md, through the real binaries.
use router_tests::{Backend, ControlPlane, TestDb, nanos};
use serde_json::{Value, json};

on_both_backends!(every_routerctl_command_works, errors_are_clear_and_change_nothing);

fn names(list: &Value) -> Vec<&str> {
    list.as_array().expect("array").iter().map(|item| item["name"].as_str().expect("name")).collect()
}

async fn every_routerctl_command_works(backend: Backend) {
    let db = TestDb::create(backend).await.unwrap();
    let cp = ControlPlane::start(&db).unwrap();
    let upstream_key = "sk-upstream-0123456789abcdefghij";

    // Channels.
    let main = cp.json(&[
        "channel",
        "add",
        "--name",
        "main",
        "--type",
        "openai",
        "--base-url",
        "https://api.example.com/v1",
        "--api-key",
        upstream_key,
        "--models",
        "gpt-4o-mini,gpt-4o",
        "--priority",
        "5",
        "--weight",
        "3",
        "--model-map",
        "gpt-4o=gpt-4o-2024-08-06",
    ]);
    assert_eq!(main["name"], "main");
    assert_eq!(main["type"], "openai");
    assert_eq!(main["base_url"], "https://api.example.com/v1");
    assert_eq!(main["models"], json!(["gpt-4o-mini", "gpt-4o"]));
    assert_eq!((main["priority"].as_i64(), main["weight"].as_i64()), (Some(5), Some(3)));
    assert_eq!(main["model_map"], json!({"gpt-4o": "gpt-4o-2024-08-06"}));
    assert_eq!(main["enabled"], true);
    cp.json(&[
        "channel",
        "add",
        "--name",
        "az",
        "--type",
        "azure",
        "--base-url",
        "https://x.openai.azure.com",
        "--api-key",
        "azure-key-0123456789abcdef",
        "--models",
        "gpt-4o",
        "--api-version",
        "2024-10-21",
    ]);
    cp.json(&[
        "channel",
        "add",
        "--name",
        "claude",
        "--type",
        "anthropic",
        "--base-url",
        "https://api.anthropic.com",
        "--api-key",
        "sk-ant-0123456789abcdef",
        "--models",
        "claude-sonnet-4",
    ]);
    let list = cp.json(&["channel", "list"]);
    assert_eq!(names(&list), ["az", "claude", "main"]);
    assert!(!list.to_string().contains(upstream_key), "channel list --json shows an upstream key");
    let table = cp.ctl(&["channel", "list"]);
    assert!(table.status.success());
    assert!(
        !String::from_utf8_lossy(&table.stdout).contains(upstream_key),
        "channel list shows an upstream key"
    );
    assert_eq!(cp.json(&["channel", "show", "az"])["api_version"], "2024-10-21");
    let updated = cp.json(&["channel", "update", "main", "--priority", "7", "--models", "gpt-4o-mini"]);
    assert_eq!(updated["priority"].as_i64(), Some(7));
    assert_eq!(updated["models"], json!(["gpt-4o-mini"]));
    assert_eq!(updated["weight"].as_i64(), Some(3), "update must leave other fields alone");
    assert_eq!(cp.json(&["channel", "disable", "main"])["enabled"], false);
    assert_eq!(cp.json(&["channel", "show", "main"])["enabled"], false);
    assert_eq!(cp.json(&["channel", "enable", "main"])["enabled"], true);
    cp.json(&["channel", "delete", "az"]);
    assert_eq!(names(&cp.json(&["channel", "list"])), ["claude", "main"]);
    assert!(cp.fails(&["channel", "show", "az"]).contains("not found"));

    // Models and model groups.
    let mini = cp.json(&[
        "model",
        "set",
        "gpt-4o-mini",
        "--input-price",
        "0.15",
        "--output-price",
        "0.6",
        "--cached-input-price",
        "0.075",
        "--max-output-tokens",
        "16384",
    ]);
    assert_eq!(mini["billing"], "tokens");
    assert_eq!(mini["input_price"], "0.15");
    assert_eq!(mini["output_price"], "0.6");
    assert_eq!(mini["cached_input_price"], "0.075");
    assert_eq!(mini["cache_write_price"], Value::Null);
    assert_eq!(mini["max_output_tokens"].as_i64(), Some(16384));
    let per_call = cp.json(&["model", "set", "gpt-4o", "--per-call", "0.01"]);
    assert_eq!(
        (per_call["billing"].as_str(), per_call["per_call_price"].as_str()),
        (Some("per_call"), Some("0.01"))
    );
    let repriced = cp.json(&["model", "set", "gpt-4o", "--input-price", "2.5", "--output-price", "10"]);
    assert_eq!((repriced["billing"].as_str(), repriced["per_call_price"].as_str()), (Some("tokens"), None));
    assert_eq!(names(&cp.json(&["model", "list"])), ["gpt-4o", "gpt-4o-mini"]);
    let claude = cp.json(&[
        "model-group",
        "add",
        "claude-family",
        "--models",
        "claude-sonnet-4,claude-haiku-4",
        "--input-price",
        "3",
        "--output-price",
        "15",
    ]);
    assert_eq!(claude["models"], json!(["claude-sonnet-4", "claude-haiku-4"]));
    assert_eq!(claude["input_price"], "3");
    cp.json(&["model-group", "add", "cheap", "--models", "tiny", "--per-call", "0.001"]);
    assert_eq!(names(&cp.json(&["model-group", "list"])), ["cheap", "claude-family"]);
    assert!(
        cp.fails(&["model-group", "add", "again", "--models", "claude-sonnet-4"]).contains("already belongs")
    );
    cp.json(&["model-group", "delete", "cheap"]);
    assert_eq!(names(&cp.json(&["model-group", "list"])), ["claude-family"]);
    cp.json(&["model", "delete", "gpt-4o"]);
    assert_eq!(names(&cp.json(&["model", "list"])), ["gpt-4o-mini"]);

    // Token groups.
    let groups = cp.json(&["group", "list"]);
    assert_eq!(groups[0]["name"], "default");
    assert_eq!(groups[0]["multiplier"], "1");
    assert_eq!(groups[0]["all_models"], true);
    let vip = cp.json(&["group", "add", "vip", "--multiplier", "0.8"]);
    assert_eq!((vip["multiplier"].as_str(), vip["all_models"].as_bool()), (Some("0.8"), Some(true)));
    let mini_only = cp.json(&["group", "add", "mini", "--models", "gpt-4o-mini"]);
    assert_eq!(
        (mini_only["all_models"].as_bool(), &mini_only["models"]),
        (Some(false), &json!(["gpt-4o-mini"]))
    );
    assert_eq!(cp.json(&["group", "update", "vip", "--multiplier", "0.75"])["multiplier"], "0.75");
    assert_eq!(cp.json(&["group", "update", "mini", "--all-models"])["all_models"], true);
    cp.json(&["group", "delete", "mini"]);
    assert_eq!(names(&cp.json(&["group", "list"])), ["default", "vip"]);

    // Accounts.
    let alice =
        cp.json(&["account", "add", "alice", "--group", "vip", "--balance", "10", "--daily-limit", "2"]);
    assert_eq!(alice["name"], "alice");
    assert_eq!(alice["group"], "vip");
    assert_eq!(alice["balance"], "10");
    assert_eq!(alice["daily_limit"], "2");
    assert_eq!(alice["spent_today"], "0");
    let bob = cp.json(&["account", "add", "bob"]);
    assert_eq!((bob["group"].as_str(), bob["balance"].as_str()), (Some("default"), Some("0")));
    assert_eq!(bob["daily_limit"], Value::Null);
    assert_eq!(names(&cp.json(&["account", "list"])), ["alice", "bob"]);
    assert!(cp.fails(&["group", "delete", "vip"]).contains("in use"));
    let moved = cp.json(&["account", "update", "alice", "--group", "default", "--daily-limit", "3"]);
    assert_eq!((moved["group"].as_str(), moved["daily_limit"].as_str()), (Some("default"), Some("3")));
    assert_eq!(cp.json(&["account", "update", "alice", "--daily-limit", "none"])["daily_limit"], Value::Null);
    assert_eq!(cp.json(&["account", "show", "alice"])["balance"], "10");

    // Keys.
    let created = cp.json(&[
        "key",
        "create",
        "--account",
        "alice",
        "--name",
        "ci",
        "--group",
        "vip",
        "--limit",
        "5",
        "--daily-limit",
        "1",
        "--models",
        "gpt-4o-mini",
        "--expires-at",
        "2030-01-01T00:00:00Z",
    ]);
    let secret = created["key"].as_str().expect("secret");
    assert!(secret.starts_with("sk-") && secret.len() >= 40, "weak secret {secret}");
    assert!(secret.starts_with(created["prefix"].as_str().expect("prefix")));
    assert_eq!(created["name"], "ci");
    assert_eq!(created["account"], "alice");
    assert_eq!((created["group"].as_str(), created["effective_group"].as_str()), (Some("vip"), Some("vip")));
    assert_eq!((created["limit"].as_str(), created["daily_limit"].as_str()), (Some("5"), Some("1")));
    assert_eq!(created["models"], json!(["gpt-4o-mini"]));
    assert_eq!(created["expires_at"], "2030-01-01T00:00:00Z");
    let id = created["id"].as_i64().expect("id").to_string();
    let bobs = cp.json(&["key", "create", "--account", "bob"]);
    assert_eq!((bobs["group"].as_str(), bobs["effective_group"].as_str()), (None, Some("default")));
    let alices = cp.json(&["key", "list", "--account", "alice"]);
    assert_eq!(alices.as_array().map(Vec::len), Some(1));
    assert_eq!(alices[0]["key"], Value::Null, "key list must not carry a secret");
    assert_eq!(cp.json(&["key", "list"]).as_array().map(Vec::len), Some(2));
    let changed = cp.json(&["key", "update", &id, "--limit", "7", "--models", "none", "--group", "none"]);
    assert_eq!((changed["limit"].as_str(), &changed["models"]), (Some("7"), &json!([])));
    assert_eq!((changed["group"].as_str(), changed["effective_group"].as_str()), (None, Some("default")));
    assert_eq!(changed["daily_limit"], "1", "update must leave other limits alone");
    assert_eq!(cp.json(&["key", "revoke", &id])["revoked"], true);
    assert_eq!(cp.json(&["key", "list", "--account", "alice"])[0]["revoked"], true);

    // Money: top-ups, codes, ledger.
    let topped = cp.json(&["topup", "--account", "bob", "--amount", "2.5"]);
    assert_eq!((topped["amount"].as_str(), topped["balance"].as_str()), (Some("2.5"), Some("2.5")));
    let codes = cp.json(&["code", "create", "--amount", "1.25", "--count", "3"]);
    let codes = codes.as_array().expect("array");
    assert_eq!(codes.len(), 3);
    assert!(codes.iter().all(|c| c["amount"] == "1.25" && c["code"].as_str().is_some_and(|c| c.len() >= 16)));
    let listed = cp.json(&["code", "list"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(3));
    assert!(listed.as_array().expect("array").iter().all(|c| c["redeemed"] == false));
    let ledger = cp.json(&["ledger", "--account", "bob"]);
    assert_eq!(ledger[0]["kind"], "topup");
    assert_eq!(nanos(&ledger[0]["balance_after"]), nanos(&json!("2.5")));

    // Usage and pricing.
    assert_eq!(cp.json(&["usage"]), json!([]));
    assert_eq!(cp.json(&["usage", "--account", "alice", "--key", &id, "--limit", "5"]), json!([]));
    let pricing = cp.json(&["pricing"]);
    assert_eq!(pricing["currency"], "USD");
    let rows = pricing["data"].as_array().expect("rows");
    let models: Vec<&str> = rows.iter().map(|r| r["model"].as_str().expect("model")).collect();
    assert_eq!(models, ["claude-haiku-4", "claude-sonnet-4", "gpt-4o-mini"]);
    assert_eq!(rows[0]["model_group"], "claude-family");
    assert_eq!(rows[2]["input_price"], "0.15");
    assert_eq!(
        rows[2]["groups"],
        json!([{"name": "default", "multiplier": "1"}, {"name": "vip", "multiplier": "0.75"}])
    );
    assert!(cp.ctl(&["pricing"]).status.success());
}

async fn errors_are_clear_and_change_nothing(backend: Backend) {
    let db = TestDb::create(backend).await.unwrap();
    let cp = ControlPlane::start(&db).unwrap();
    cp.json(&["account", "add", "alice", "--balance", "1"]);

    assert!(cp.fails(&["key", "create", "--account", "nobody"]).contains("account \"nobody\" not found"));
    assert!(cp.fails(&["--json", "account", "show", "nobody"]).contains("not found"));
    assert!(cp.fails(&["account", "add", "alice"]).contains("already exists"));
    assert!(cp.fails(&["account", "add", "carol", "--group", "nogroup"]).contains("not found"));
    for bad in ["1.2345678901", "-1", "abc", "1e3", ""] {
        let error = cp.fails(&["topup", "--account", "alice", &format!("--amount={bad}")]);
        assert!(
            error.contains("amount") || error.contains("decimal") || error.contains("negative"),
            "{bad:?}: {error}"
        );
    }
    assert!(cp.fails(&["topup", "--account", "alice", "--amount", "0"]).contains("positive"));
    assert!(cp.fails(&["group", "delete", "default"]).contains("default"));
    assert!(
        cp.fails(&[
            "channel",
            "add",
            "--name",
            "x",
            "--type",
            "bogus",
            "--base-url",
            "http://h",
            "--api-key",
            "k",
            "--models",
            "m"
        ])
        .contains("bogus")
    );
    assert!(cp.fails(&["model", "set", "m", "--input-price", "1"]).contains("output"));
    assert!(cp.fails(&["key", "revoke", "424242"]).contains("not found"));
    assert!(cp.fails(&["code", "create", "--amount=-5"]).contains("negative"));

    // Nothing above changed the account.
    assert_eq!(cp.json(&["account", "show", "alice"])["balance"], "1");
    assert_eq!(cp.json(&["ledger", "--account", "alice"]).as_array().map(Vec::len), Some(1));
    assert_eq!(cp.json(&["account", "list"]).as_array().map(Vec::len), Some(1));

    // Wrong token and unreachable endpoint.
    let wrong = std::process::Command::new(router_tests::bin("routerctl"))
        .args(["account", "list"])
        .env("ROUTER_ENDPOINT", &cp.endpoint)
        .env("ROUTER_ADMIN_TOKEN", &cp.node_token)
        .output()
        .unwrap();
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("token"));
    let unreachable = std::process::Command::new(router_tests::bin("routerctl"))
        .args(["--endpoint", "http://127.0.0.1:1", "account", "list"])
        .env("ROUTER_ADMIN_TOKEN", &cp.admin_token)
        .output()
        .unwrap();
    assert!(!unreachable.status.success());
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("cannot reach"));
    let no_token = std::process::Command::new(router_tests::bin("routerctl"))
        .args(["account", "list"])
        .env("ROUTER_ENDPOINT", &cp.endpoint)
        .env_remove("ROUTER_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(!no_token.status.success());
    assert!(String::from_utf8_lossy(&no_token.stderr).contains("admin token"));
}
