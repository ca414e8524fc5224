//! A gateway for a test, from one builder: a control plane on a database of its own with
//! channels on a mock upstream and priced models ([`Stack`]), and, unless the test starts its
//! own, a data plane with an account and a key ([`Gateway`]).
use std::{
    ops::{Deref, DerefMut},
    path::PathBuf,
    time::Duration,
};

use serde_json::Value;

use crate::{Backend, ControlPlane, DataPlane, TestDb, eventually, mock::MockUpstream, nanos};

/// How a test's gateway is set up; made by [`Gateway::builder`].
pub struct GatewayBuilder {
    backend: Backend,
    price: Option<String>,
    control_plane_env: Vec<(String, String)>,
    data_plane_args: Vec<String>,
}

impl GatewayBuilder {
    /// Instead of the default channels: one OpenAI channel `main` (key `k`) serving
    /// `gpt-4o-mini`, every token of it at `price` per 1M tokens.
    pub fn priced(mut self, price: &str) -> GatewayBuilder {
        self.price = Some(price.to_owned());
        self
    }

    /// Extra environment of the control plane (such as `ROUTER_RATE_WINDOW_MS`).
    pub fn control_plane_env(mut self, env: &[(&str, &str)]) -> GatewayBuilder {
        self.control_plane_env.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        self
    }

    /// Extra flags of the data plane.
    pub fn data_plane_args(mut self, args: &[&str]) -> GatewayBuilder {
        self.data_plane_args.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    /// The control plane with its channels and prices; the test starts its data planes and
    /// makes its accounts and keys.
    pub async fn without_data_plane(self) -> Stack {
        self.stack().await
    }

    /// The same with account `acme` (balance 100), a key `test` on it, and a data plane
    /// (spool `spool`) that serves it.
    pub async fn start(self) -> Gateway {
        let stack = self.stack().await;
        stack.cp.json(&["account", "add", "acme", "--balance", "100"]);
        let created = stack.cp.json(&["key", "create", "--account", "acme", "--name", "test"]);
        let key = created["key"].as_str().unwrap().to_owned();
        let key_id = created["id"].as_i64().unwrap();
        let args: Vec<&str> = self.data_plane_args.iter().map(String::as_str).collect();
        let dp = stack.launch_data_plane("spool", &args).await;
        Gateway { stack, dp, key, key_id }
    }

    async fn stack(&self) -> Stack {
        let db = TestDb::create(self.backend).await.unwrap();
        let env: Vec<(&str, &str)> =
            self.control_plane_env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let cp = ControlPlane::start_with_env(&db, &env).unwrap();
        let mock = MockUpstream::start(5).await;
        match &self.price {
            Some(price) => add_priced_channel(&cp, &mock, price),
            None => add_default_channels(&cp, &mock),
        }
        Stack { db, cp, mock }
    }
}

/// The models of the default channels and their prices (`routerctl model set NAME …`).
const DEFAULT_PRICES: [(&str, &[&str]); 4] = [
    ("gpt-4o-mini", &["--input-price", "0.15", "--output-price", "0.6", "--cached-input-price", "0.075"]),
    ("alias", &["--input-price", "0.15", "--output-price", "0.6"]),
    ("text-embedding-3-small", &["--input-price", "0.02", "--output-price", "0"]),
    (
        "claude-sonnet-4",
        &[
            "--input-price",
            "3",
            "--output-price",
            "15",
            "--cached-input-price",
            "0.3",
            "--cache-write-price",
            "3.75",
        ],
    ),
];

/// `main` (OpenAI: `gpt-4o-mini`, `text-embedding-3-small`, and `alias` mapped to
/// `gpt-4o-mini`) and `claude` (Anthropic: `claude-sonnet-4`) on `mock`, each model priced.
fn add_default_channels(cp: &ControlPlane, mock: &MockUpstream) {
    let openai_base = format!("{}/v1", mock.url);
    let models = "gpt-4o-mini,text-embedding-3-small,alias";
    let map = ["--model-map", "alias=gpt-4o-mini"];
    cp.add_channel("main", "openai", &openai_base, "upstream-openai-secret", models, &map);
    cp.add_channel("claude", "anthropic", &mock.url, "upstream-anthropic-secret", "claude-sonnet-4", &[]);
    for (model, prices) in DEFAULT_PRICES {
        let mut args = vec!["model", "set", model];
        args.extend_from_slice(prices);
        cp.json(&args);
    }
}

/// `main` (OpenAI, key `k`) serving `gpt-4o-mini` on `mock`, every token at `price`.
fn add_priced_channel(cp: &ControlPlane, mock: &MockUpstream, price: &str) {
    cp.add_channel("main", "openai", &format!("{}/v1", mock.url), "k", "gpt-4o-mini", &[]);
    let prices = ["--input-price", price, "--output-price", price, "--cached-input-price", price];
    cp.json(&[&["model", "set", "gpt-4o-mini"][..], &prices].concat());
}

/// A control plane on a database of its own, with channels on a mock upstream and priced
/// models (see [`GatewayBuilder`]).
pub struct Stack {
    /// Kept alive (and removed) with the stack.
    pub db: TestDb,
    /// The control plane.
    pub cp: ControlPlane,
    /// The upstream of every channel.
    pub mock: MockUpstream,
}

impl Stack {
    /// Adds `account` (with `account_args`) and a key on it (with `key_args`); returns the
    /// key's secret.
    pub fn key(&self, account: &str, account_args: &[&str], key_args: &[&str]) -> String {
        let mut args = vec!["account", "add", account];
        args.extend_from_slice(account_args);
        self.cp.json(&args);
        let mut args = vec!["key", "create", "--account", account, "--name", "k"];
        args.extend_from_slice(key_args);
        self.cp.json(&args)["key"].as_str().unwrap().to_owned()
    }

    /// A data plane of this control plane with its spool in the folder `spool` (the same name
    /// again: the same spool), ready.
    pub async fn data_plane(&self, spool: &str) -> DataPlane {
        self.launch_data_plane(spool, &[]).await
    }

    async fn launch_data_plane(&self, spool: &str, args: &[&str]) -> DataPlane {
        DataPlane::start(&self.cp, &self.spool(spool), args).await.unwrap()
    }

    fn spool(&self, name: &str) -> PathBuf {
        self.db.dir.join(name)
    }

    /// The account's balance in nano-units.
    pub fn balance(&self, account: &str) -> i64 {
        nanos(&self.cp.json(&["account", "show", account])["balance"])
    }

    /// Waits until the control plane holds `n` usage records; returns them (newest first).
    pub async fn usage(&self, n: usize) -> Vec<Value> {
        let records = eventually(Duration::from_secs(10), || async {
            let records = self.cp.json(&["usage", "--limit", "1000"]);
            let records = records.as_array().cloned().unwrap_or_default();
            (records.len() >= n).then_some(records)
        })
        .await;
        let records = records
            .unwrap_or_else(|| panic!("expected {n} usage records; have {}", self.cp.json(&["usage"])));
        assert_eq!(records.len(), n, "more usage records than requests: {records:?}");
        records
    }

    /// Waits until `n` usage records exist for the account (and no more arrive); returns them.
    pub async fn records(&self, account: &str, n: usize) -> Vec<Value> {
        let found = eventually(Duration::from_secs(15), || async {
            let records = self.cp.json(&["usage", "--account", account, "--limit", "10000"]);
            let records = records.as_array().cloned().unwrap_or_default();
            (records.len() >= n).then_some(records)
        })
        .await
        .unwrap_or_else(|| {
            panic!("fewer than {n} usage records: {}", self.cp.json(&["usage", "--account", account]))
        });
        // Not a synchronization: a record arriving late is what this looks for.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let again = self.cp.json(&["usage", "--account", account, "--limit", "10000"]);
        assert_eq!(again.as_array().unwrap().len(), found.len(), "records kept arriving");
        found
    }

    /// Σ cost of the records == Σ usage debits in the ledger == the balance change; returns
    /// what was billed.
    pub fn assert_books(&self, account: &str, start_balance: i64, records: &[Value]) -> i64 {
        let billed: i64 = records.iter().map(|r| nanos(&r["cost"])).sum();
        let ledger = self.cp.json(&["ledger", "--account", account, "--limit", "10000"]);
        let debits: i64 = ledger
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "usage")
            .map(|e| -nanos(&e["amount"]).abs())
            .sum();
        assert_eq!(-debits, billed, "ledger debits == usage records");
        assert_eq!(start_balance - self.balance(account), billed, "balance change == usage records");
        billed
    }

    /// Adds `chatonly`, a channel speaking only Chat on the mock, serving `gpt-4o` (priced,
    /// output capped at 1000), so that Responses and Messages clients of it are converted.
    pub fn add_chat_only_channel(&self) {
        let base = format!("{}/v1", self.mock.url);
        self.cp.json(&[
            "channel",
            "add",
            "--name",
            "chatonly",
            "--type",
            "openai",
            "--base-url",
            &base,
            "--api-key",
            "upstream-chat-secret",
            "--models",
            "gpt-4o",
            "--protocols",
            "chat",
        ]);
        self.cp.json(&[
            "model",
            "set",
            "gpt-4o",
            "--input-price",
            "2.5",
            "--output-price",
            "10",
            "--cached-input-price",
            "1.25",
            "--max-output-tokens",
            "1000",
        ]);
    }
}

/// A [`Stack`] with a data plane, account `acme` (balance 100) and a key on it; it reads as its
/// stack too (`gw.cp`, `gw.mock`, `gw.usage(n)`).
pub struct Gateway {
    /// The control plane, channels and mock upstream.
    pub stack: Stack,
    /// The data plane (spool `spool`).
    pub dp: DataPlane,
    /// The key's secret.
    pub key: String,
    /// The key's id.
    pub key_id: i64,
}

impl Gateway {
    /// How a gateway on `backend` is set up: by default the `main` (OpenAI) and `claude`
    /// (Anthropic) channels on one mock, their models priced.
    pub fn builder(backend: Backend) -> GatewayBuilder {
        GatewayBuilder { backend, price: None, control_plane_env: Vec::new(), data_plane_args: Vec::new() }
    }

    /// A gateway with the default channels and a data plane started with `dp_args`.
    pub async fn start(backend: Backend, dp_args: &[&str]) -> Gateway {
        Gateway::builder(backend).data_plane_args(dp_args).start().await
    }

    /// `path` on the data plane.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.dp.url)
    }

    /// The `authorization` value of the key.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.key)
    }
}

impl Deref for Gateway {
    type Target = Stack;

    fn deref(&self) -> &Stack {
        &self.stack
    }
}

impl DerefMut for Gateway {
    fn deref_mut(&mut self) -> &mut Stack {
        &mut self.stack
    }
}
