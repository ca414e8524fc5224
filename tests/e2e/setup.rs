//! `routerctl apply` and `routerctl export`: idempotence, dry runs, all-or-nothing, prune,
//! the round trip through an empty deployment, and errors that name the line.
use std::{path::Path, process::Command};

use router_tests::{Backend, ControlPlane, TestDb, bin};
use serde_json::{Value, json};

on_both_backends!(setup_files_apply_and_export);

const KEY_OPENAI: &str = "sk-openai-0123456789abcdefghij";
const KEY_CLAUDE: &str = "sk-ant-from-a-file-0123456789";

/// routerctl with extra environment (for `env:` secrets); returns (success, stdout, stderr).
fn ctl(cp: &ControlPlane, env: &[(&str, &str)], args: &[&str]) -> (bool, String, String) {
    let mut command = Command::new(bin("routerctl"));
    command
        .args(args)
        .env("ROUTER_ENDPOINT", &cp.endpoint)
        .env("ROUTER_ADMIN_TOKEN", &cp.admin_token)
        .env_remove("ROUTER_JSON");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("routerctl runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn apply_json(cp: &ControlPlane, env: &[(&str, &str)], args: &[&str]) -> Vec<(String, String, String)> {
    let mut all = vec!["--json", "apply"];
    all.extend_from_slice(args);
    let (ok, stdout, stderr) = ctl(cp, env, &all);
    assert!(ok, "apply {args:?} failed: {stderr}");
    let changes: Value = serde_json::from_str(&stdout).expect("one JSON value");
    changes
        .as_array()
        .expect("an array")
        .iter()
        .map(|c| {
            let field = |name: &str| c[name].as_str().expect("a string").to_owned();
            (field("kind"), field("name"), field("action"))
        })
        .collect()
}

fn actions(changes: &[(String, String, String)], action: &str) -> Vec<String> {
    changes.iter().filter(|c| c.2 == action).map(|c| format!("{} {}", c.0, c.1)).collect()
}

fn export(cp: &ControlPlane, args: &[&str]) -> String {
    let mut all = vec!["export"];
    all.extend_from_slice(args);
    let (ok, stdout, stderr) = ctl(cp, &[], &all);
    assert!(ok, "export failed: {stderr}");
    stdout
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path.display().to_string()
}

const SETUP: &str = r#"
[[channel]]
name = "openai"
type = "openai"
base_url = "https://api.openai.com/v1"
api_key = "env:TEST_OPENAI_KEY"
models = ["gpt-4o-mini", "gpt-4o"]
priority = 5
weight = 3
model_map = { "gpt-4o" = "gpt-4o-2024-08-06" }

[[channel]]
name = "claude"
type = "anthropic"
base_url = "https://api.anthropic.com"
api_key = "file:claude.key"
models = ["claude"]

[[model]]
name = "gpt-4o-mini"
input_price = "0.15"
output_price = "0.6"
cached_input_price = "0.075"

[[model]]
name = "gpt-4o"
input_price = "2.5"
output_price = "10"
max_output_tokens = 16384

[[model_group]]
name = "claude"
models = ["claude-sonnet-4-5", "claude-haiku-4-5"]
input_price = "3"
output_price = "15"
cache_write_price = "3.75"

[[alias]]
name = "claude-opus-*"
target = "claude-sonnet-4-5"

[[alias]]
name = "gpt-latest"
target = "gpt-4o"

[[group]]
name = "vip"
multiplier = "0.8"
models = ["gpt-4o", "claude"]
rpm = 600

[[account]]
name = "alice"
group = "vip"
daily_limit = "2"
weekly_limit = "10"
monthly_limit = "25"
tpm = 100000
max_concurrent = 4

[[account]]
name = "bob"
"#;

async fn setup_files_apply_and_export(backend: Backend) {
    let db = TestDb::create(backend).await.unwrap();
    let cp = ControlPlane::start(&db).unwrap();
    let env = [("TEST_OPENAI_KEY", KEY_OPENAI)];
    std::fs::write(db.dir.join("claude.key"), format!("{KEY_CLAUDE}\n")).unwrap();
    let file = write(&db.dir, "setup.toml", SETUP);
    let empty = export(&cp, &["--with-secrets"]);

    // A dry run reports every creation and changes nothing.
    let planned = apply_json(&cp, &env, &["-f", &file, "--dry-run"]);
    assert_eq!(actions(&planned, "create").len(), 10, "{planned:?}");
    assert_eq!(export(&cp, &["--with-secrets"]), empty, "a dry run changed something");

    // The real run does what the dry run said; a second run changes nothing.
    let applied = apply_json(&cp, &env, &["-f", &file]);
    assert_eq!(applied, planned);
    let again = apply_json(&cp, &env, &["-f", &file]);
    assert_eq!(actions(&again, "unchanged").len(), 10, "{again:?}");
    let (ok, text, _) = ctl(&cp, &env, &["apply", "-f", &file]);
    assert!(ok && text.contains("0 created, 0 updated, 0 deleted, 10 unchanged"), "{text}");

    // What was applied is what the other commands show.
    let channel = cp.json(&["channel", "show", "openai"]);
    assert_eq!(channel["model_map"], json!({"gpt-4o": "gpt-4o-2024-08-06"}));
    assert_eq!((channel["priority"].as_i64(), channel["weight"].as_i64()), (Some(5), Some(3)));
    let alice = cp.json(&["account", "show", "alice"]);
    assert_eq!(
        (alice["group"].as_str(), alice["daily_limit"].as_str(), alice["balance"].as_str()),
        (Some("vip"), Some("2"), Some("0"))
    );
    assert_eq!((alice["weekly_limit"].as_str(), alice["monthly_limit"].as_str()), (Some("10"), Some("25")));
    assert_eq!(
        (alice["rpm"].as_i64(), alice["tpm"].as_i64(), alice["max_concurrent"].as_i64()),
        (None, Some(100_000), Some(4))
    );
    let groups = cp.json(&["group", "list"]);
    let vip = groups.as_array().unwrap().iter().find(|g| g["name"] == "vip").expect("vip is listed");
    assert_eq!(vip["rpm"].as_i64(), Some(600), "{vip}");
    let models = cp.json(&["model", "list"]);
    assert_eq!(models[0]["name"], "gpt-4o");
    assert_eq!(models[0]["max_output_tokens"], 16384);

    // Export: deterministic, secrets as env: references unless asked.
    let exported = export(&cp, &[]);
    assert_eq!(exported, export(&cp, &[]));
    assert!(exported.contains("api_key = \"env:ROUTER_CHANNEL_OPENAI_KEY\""), "{exported}");
    assert!(!exported.contains(KEY_OPENAI) && !exported.contains(KEY_CLAUDE));
    let with_secrets = export(&cp, &["--with-secrets"]);
    assert!(with_secrets.contains(KEY_OPENAI) && with_secrets.contains(KEY_CLAUDE));

    // Round trip: export -> apply on an empty deployment -> export, byte for byte.
    let other_db = TestDb::create(backend).await.unwrap();
    let other = ControlPlane::start(&other_db).unwrap();
    let exported_file = write(&db.dir, "exported.toml", &exported);
    let env_refs = [("ROUTER_CHANNEL_OPENAI_KEY", KEY_OPENAI), ("ROUTER_CHANNEL_CLAUDE_KEY", KEY_CLAUDE)];
    let created = apply_json(&other, &env_refs, &["-f", &exported_file]);
    assert_eq!(actions(&created, "create").len(), 10, "{created:?}");
    assert_eq!(export(&other, &[]), exported);
    assert_eq!(export(&other, &["--with-secrets"]), with_secrets);

    // A change is an update of that item only.
    let cheaper = SETUP.replace("input_price = \"2.5\"", "input_price = \"2\"");
    let cheaper_file = write(&db.dir, "cheaper.toml", &cheaper);
    let changed = apply_json(&cp, &env, &["-f", &cheaper_file]);
    assert_eq!(actions(&changed, "update"), ["model gpt-4o"]);
    // A limit is part of the declared item: changing it updates that item, and a limit set
    // by hand is reset to the file's on the next apply.
    let limited = cheaper.replace("rpm = 600", "rpm = 60");
    let limited_file = write(&db.dir, "limited.toml", &limited);
    assert_eq!(actions(&apply_json(&cp, &env, &["-f", &limited_file]), "update"), ["group vip"]);
    let (ok, _, stderr) = ctl(&cp, &env, &["account", "update", "alice", "--weekly-limit", "3"]);
    assert!(ok, "{stderr}");
    assert_eq!(actions(&apply_json(&cp, &env, &["-f", &limited_file]), "update"), ["account alice"]);
    assert_eq!(cp.json(&["account", "show", "alice"])["weekly_limit"].as_str(), Some("10"));
    apply_json(&cp, &env, &["-f", &cheaper_file]);

    // One failing item rolls back the whole file, and the error names its line.
    let broken = format!(
        "{cheaper}\n[[channel]]\nname = \"extra\"\ntype = \"openai\"\nbase_url = \"https://x.example\"\n\
         api_key = \"k\"\nmodels = [\"m\"]\n\n[[account]]\nname = \"carol\"\ngroup = \"nonexistent\"\n"
    );
    let broken_file = write(&db.dir, "broken.toml", &broken);
    let before = export(&cp, &["--with-secrets"]);
    let (ok, stdout, stderr) = ctl(&cp, &env, &["--json", "apply", "-f", &broken_file]);
    assert!(!ok && stdout.is_empty(), "{stdout}");
    let carol_line = broken.lines().position(|l| l == "name = \"carol\"").unwrap() + 1;
    assert!(stderr.contains(&format!("broken.toml:{carol_line}: account \"carol\"")), "{stderr}");
    assert!(stderr.contains("nonexistent"), "{stderr}");
    assert_eq!(export(&cp, &["--with-secrets"]), before, "a failed apply left something behind");

    // Bad files: the line, a non-zero exit, nothing changed.
    let bad =
        write(&db.dir, "bad.toml", "[[model]]\nname = \"m\"\ninput_price = 0.15\noutput_price = \"1\"\n");
    let (ok, _, stderr) = ctl(&cp, &[], &["apply", "-f", &bad]);
    assert!(!ok && stderr.contains("bad.toml:3:"), "{stderr}");
    let (ok, _, stderr) = ctl(&cp, &[], &["apply", "-f", &file]);
    assert!(!ok && stderr.contains("TEST_OPENAI_KEY"), "{stderr}");
    // An alias must point at a priced model: refused with its line, nothing changed.
    let unpriced = write(&db.dir, "alias.toml", "[[alias]]\nname = \"x-*\"\ntarget = \"nope\"\n");
    let (ok, _, stderr) = ctl(&cp, &[], &["apply", "-f", &unpriced]);
    assert!(
        !ok && stderr.contains("alias.toml:2: alias \"x-*\"") && stderr.contains("not a priced model"),
        "{stderr}"
    );
    assert_eq!(export(&cp, &["--with-secrets"]), before);

    // Prune: what the file no longer names goes, except a group still in use.
    let smaller = cheaper.split("[[channel]]\nname = \"claude\"").next().unwrap().to_owned()
        + "[[account]]\nname = \"alice\"\n";
    let smaller_file = write(&db.dir, "smaller.toml", &smaller);
    let pruned = apply_json(&cp, &env, &["-f", &smaller_file, "--prune", "--dry-run"]);
    let mut deleted = actions(&pruned, "delete");
    deleted.sort();
    assert_eq!(
        deleted,
        [
            "alias claude-opus-*",
            "alias gpt-latest",
            "channel claude",
            "group vip",
            "model gpt-4o",
            "model gpt-4o-mini",
            "model_group claude"
        ]
    );
    assert_eq!(export(&cp, &["--with-secrets"]), before, "a dry run changed something");
    apply_json(&cp, &env, &["-f", &smaller_file, "--prune"]);
    let left = export(&cp, &[]);
    assert!(left.contains("name = \"openai\"") && !left.contains("name = \"claude\""), "{left}");
    assert!(left.contains("name = \"bob\""), "prune deleted an account: {left}");
    // An account the file does not name still uses the group: pruning it is refused, whole.
    let with_vip = smaller.clone() + "\n[[group]]\nname = \"vip\"\nall_models = true\n";
    apply_json(&cp, &env, &["-f", &write(&db.dir, "vip.toml", &with_vip)]);
    cp.json(&["account", "add", "dave", "--group", "vip"]);
    let (ok, _, stderr) = ctl(&cp, &env, &["apply", "-f", &smaller_file, "--prune"]);
    assert!(!ok && stderr.contains("group \"vip\"") && stderr.contains("in use"), "{stderr}");
}
