//! Runs the real `routerctl` binary against a fake AdminService on an ephemeral port: what an
//! operator types, what goes over the wire, and what comes back on stdout, stderr and the exit
//! code.
use std::{
    collections::HashMap,
    fmt::Debug,
    process::Output,
    sync::{Arc, Mutex},
};

use prost::Message;
use router_proto::pb::{self, admin_service_server::AdminService};
use serde_json::{Value, json};
use tonic::{
    Code, Request, Response, Status,
    transport::{Server, server::TcpIncoming},
};

const TOKEN: &str = "t0ken";

/// One call the fake received.
#[derive(Debug, Clone)]
struct Call {
    method: &'static str,
    authorization: String,
    request: String,
}

#[derive(Default)]
struct State {
    /// Encoded reply message, or the status to fail with, per RPC method.
    replies: HashMap<&'static str, Result<Vec<u8>, (Code, String)>>,
    calls: Vec<Call>,
    /// Pages `export_usage` streams after its reply.
    pages: Vec<pb::ListUsageResponse>,
}

/// An AdminService that checks the token, records every call and answers what it was told to.
#[derive(Clone, Default)]
struct Fake(Arc<Mutex<State>>);

impl Fake {
    fn reply(&self, method: &'static str, message: &impl Message) -> &Fake {
        self.state().replies.insert(method, Ok(message.encode_to_vec()));
        self
    }

    fn fail(&self, method: &'static str, code: Code, message: &str) -> &Fake {
        self.state().replies.insert(method, Err((code, message.to_owned())));
        self
    }

    fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().expect("no test thread panicked holding the lock")
    }

    fn answer<Req: Debug, Resp: Message + Default>(
        &self,
        method: &'static str,
        request: Request<Req>,
    ) -> Result<Response<Resp>, Status> {
        let authorization = request
            .metadata()
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let mut state = self.state();
        let request = format!("{:?}", request.get_ref());
        state.calls.push(Call { method, authorization: authorization.clone(), request });
        if authorization != format!("Bearer {TOKEN}") {
            return Err(Status::unauthenticated("invalid admin token"));
        }
        match state.replies.get(method) {
            Some(Ok(bytes)) => Resp::decode(bytes.as_slice())
                .map(Response::new)
                .map_err(|error| Status::internal(error.to_string())),
            Some(Err((code, message))) => Err(Status::new(*code, message.clone())),
            None => Err(Status::unimplemented(method)),
        }
    }
}

/// Implements every RPC by [`Fake::answer`]; a macro, because the trait has 31 methods.
/// `export_usage` streams the `list_usage` reply once per page given to [`Fake::pages`].
macro_rules! fake_admin_service {
    ($($method:ident: $request:ident -> $response:ident;)*) => {
        #[tonic::async_trait]
        impl AdminService for Fake {
            type ExportUsageStream = futures::stream::Iter<std::vec::IntoIter<Result<pb::ListUsageResponse, Status>>>;

            async fn export_usage(
                &self,
                request: Request<pb::ListUsageRequest>,
            ) -> Result<Response<Self::ExportUsageStream>, Status> {
                let pages = self.state().pages.clone();
                let first: Response<pb::ListUsageResponse> = self.answer("export_usage", request)?;
                let pages: Vec<_> = std::iter::once(first.into_inner()).chain(pages).map(Ok).collect();
                Ok(Response::new(futures::stream::iter(pages)))
            }
            $(
                async fn $method(
                    &self,
                    request: Request<pb::$request>,
                ) -> Result<Response<pb::$response>, Status> {
                    self.answer(stringify!($method), request)
                }
            )*
        }
    };
}

fake_admin_service! {
    add_channel: AddChannelRequest -> Channel;
    update_channel: UpdateChannelRequest -> Channel;
    get_channel: NameRequest -> Channel;
    test_channel: TestChannelRequest -> ChannelTestResult;
    list_channels: ListChannelsRequest -> ListChannelsResponse;
    set_channel_enabled: SetChannelEnabledRequest -> Channel;
    delete_channel: NameRequest -> Empty;
    set_model: SetModelRequest -> Model;
    list_models: ListModelsRequest -> ListModelsResponse;
    delete_model: NameRequest -> Empty;
    add_model_group: AddModelGroupRequest -> ModelGroup;
    list_model_groups: ListModelGroupsRequest -> ListModelGroupsResponse;
    delete_model_group: NameRequest -> Empty;
    set_model_alias: SetModelAliasRequest -> ModelAlias;
    list_model_aliases: ListModelAliasesRequest -> ListModelAliasesResponse;
    delete_model_alias: NameRequest -> Empty;
    add_group: AddGroupRequest -> Group;
    update_group: UpdateGroupRequest -> Group;
    list_groups: ListGroupsRequest -> ListGroupsResponse;
    delete_group: NameRequest -> Empty;
    add_account: AddAccountRequest -> Account;
    update_account: UpdateAccountRequest -> Account;
    get_account: NameRequest -> Account;
    list_accounts: ListAccountsRequest -> ListAccountsResponse;
    set_account_password: SetAccountPasswordRequest -> Account;
    create_key: CreateKeyRequest -> CreatedKey;
    update_key: UpdateKeyRequest -> Key;
    revoke_key: KeyIdRequest -> Key;
    list_keys: ListKeysRequest -> ListKeysResponse;
    top_up: TopUpRequest -> BalanceChange;
    adjust: AdjustRequest -> BalanceChange;
    list_ledger: ListLedgerRequest -> ListLedgerResponse;
    create_codes: CreateCodesRequest -> CreateCodesResponse;
    list_codes: ListCodesRequest -> ListCodesResponse;
    list_orders: ListOrdersRequest -> ListOrdersResponse;
    list_usage: ListUsageRequest -> ListUsageResponse;
    summarize_usage: SummarizeUsageRequest -> UsageSummary;
    list_quarantined_usage: ListQuarantinedUsageRequest -> ListQuarantinedUsageResponse;
    get_pricing: GetPricingRequest -> Pricing;
    apply_setup: ApplySetupRequest -> ApplySetupResponse;
    export_setup: ExportSetupRequest -> Setup;
    import: ImportRequest -> ApplySetupResponse;
}

/// Serves `fake` on an ephemeral port and returns its endpoint.
async fn serve(fake: &Fake) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("a bound address");
    let service = pb::admin_service_server::AdminServiceServer::new(fake.clone());
    tokio::spawn(Server::builder().add_service(service).serve_with_incoming(TcpIncoming::from(listener)));
    format!("http://{address}")
}

/// Runs routerctl with `args` against `endpoint`, the right token coming from the environment.
async fn routerctl(endpoint: &str, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_routerctl"))
        .args(args)
        .env("ROUTER_ENDPOINT", endpoint)
        .env("ROUTER_ADMIN_TOKEN", TOKEN)
        .env_remove("ROUTER_JSON")
        .output()
        .await
        .expect("routerctl runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn account() -> pb::Account {
    pb::Account {
        id: 1,
        name: "bob".into(),
        group: "default".into(),
        balance_nanos: 9_999_986_000,
        reserved_nanos: 500_000_000,
        daily_limit_nanos: None,
        spent_today_nanos: 14_000,
        created_at_unix_micros: 1_795_759_982_123_456,
        ..pb::Account::default()
    }
}

#[tokio::test]
async fn json_output_is_one_value_with_decimal_strings() {
    let fake = Fake::default();
    fake.reply("get_account", &account());
    let endpoint = serve(&fake).await;

    let output = routerctl(&endpoint, &["account", "show", "bob", "--json"]).await;

    assert!(output.status.success(), "{}", stderr(&output));
    let value: Value = serde_json::from_str(&stdout(&output)).expect("exactly one JSON value");
    assert_eq!(
        value,
        json!({
            "id": 1, "name": "bob", "group": "default", "balance": "9.999986", "reserved": "0.5",
            "daily_limit": null, "spent_today": "0.000014",
            "weekly_limit": null, "spent_this_week": "0", "monthly_limit": null,
            "spent_this_month": "0", "rpm": null, "tpm": null, "max_concurrent": null,
            "created_at": "2026-11-27T06:13:02.123456Z",
            "email": null, "disabled": false,
            "has_password": false,
        })
    );
    let calls = fake.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].method, "get_account");
    assert_eq!(calls[0].authorization, format!("Bearer {TOKEN}"));
}

#[tokio::test]
async fn text_output_is_aligned_lines() {
    let fake = Fake::default();
    fake.reply("list_accounts", &pb::ListAccountsResponse { accounts: vec![account()] });
    let endpoint = serve(&fake).await;

    let output = routerctl(&endpoint, &["account", "list"]).await;

    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("ID  NAME  GROUP    BALANCE   RESERVED"), "{text}");
    assert!(lines[1].starts_with("1   bob   default  9.999986  0.5"), "{text}");
}

#[tokio::test]
async fn key_create_shows_the_secret_once() {
    let fake = Fake::default();
    let key = pb::Key {
        id: 5,
        prefix: "sk-abcd".into(),
        account: "bob".into(),
        effective_group: "default".into(),
        ..pb::Key::default()
    };
    fake.reply("create_key", &pb::CreatedKey { key: Some(key), secret: "sk-abcdefgh".into() });
    let endpoint = serve(&fake).await;

    let output = routerctl(&endpoint, &["key", "create", "--account", "bob", "--json"]).await;
    let value: Value = serde_json::from_str(&stdout(&output)).expect("exactly one JSON value");
    assert_eq!((&value["id"], &value["key"]), (&json!(5), &json!("sk-abcdefgh")));

    let output = routerctl(&endpoint, &["key", "create", "--account", "bob"]).await;
    let text = stdout(&output);
    assert!(text.contains("key: sk-abcdefgh") && text.contains("shown only once"), "{text}");
}

#[tokio::test]
async fn update_flags_become_set_and_clear_fields() {
    let fake = Fake::default();
    fake.reply("update_key", &pb::Key { id: 5, ..pb::Key::default() });
    let endpoint = serve(&fake).await;

    let output = routerctl(&endpoint, &["key", "update", "5", "--limit", "none", "--models", "a,b"]).await;

    assert!(output.status.success(), "{}", stderr(&output));
    let request = &fake.calls()[0].request;
    for part in ["id: 5", "clear_limit: true", "set_models: true", "models: [\"a\", \"b\"]"] {
        assert!(request.contains(part), "{part} not in {request}");
    }
    assert!(request.contains("limit_nanos: None"), "{request}");
}

#[tokio::test]
async fn server_refusals_are_its_message_on_stderr() {
    let fake = Fake::default();
    fake.fail("get_account", Code::NotFound, "account \"nobody\" not found");
    let endpoint = serve(&fake).await;

    let output = routerctl(&endpoint, &["account", "show", "nobody", "--json"]).await;

    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stderr(&output), "error: account \"nobody\" not found\n");
    assert!(output.stdout.is_empty());
}

#[tokio::test]
async fn a_wrong_token_is_named_as_such() {
    let fake = Fake::default();
    let endpoint = serve(&fake).await;

    // The flag wins over ROUTER_ADMIN_TOKEN from the environment.
    let output = routerctl(&endpoint, &["pricing", "--admin-token", "wrong"]).await;

    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("refused the admin token"), "{}", stderr(&output));
    assert_eq!(fake.calls()[0].authorization, "Bearer wrong");
}

#[tokio::test]
async fn the_admin_token_can_be_read_from_a_file() {
    let fake = Fake::default();
    fake.reply("list_accounts", &pb::ListAccountsResponse { accounts: vec![account()] });
    let endpoint = serve(&fake).await;
    let path = std::env::temp_dir().join(format!("routerctl-token-{}", std::process::id()));
    std::fs::write(&path, format!("{TOKEN}\n")).expect("write the token file");
    let file = path.to_str().expect("a UTF-8 path");
    let without_token = |args: &[&str], env: Option<(&str, &str)>| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_routerctl"));
        command.args(args).env("ROUTER_ENDPOINT", &endpoint).env_remove("ROUTER_ADMIN_TOKEN");
        command.env_remove("ROUTER_ADMIN_TOKEN_FILE").env_remove("ROUTER_JSON");
        if let Some((name, value)) = env {
            command.env(name, value);
        }
        command.output()
    };
    let by_flag = without_token(&["account", "list", "--admin-token-file", file], None).await.expect("runs");
    assert_eq!(by_flag.status.code(), Some(0), "{}", stderr(&by_flag));
    let by_env =
        without_token(&["account", "list"], Some(("ROUTER_ADMIN_TOKEN_FILE", file))).await.expect("runs");
    assert_eq!(by_env.status.code(), Some(0), "{}", stderr(&by_env));
    let calls = fake.calls();
    assert_eq!(calls.len(), 2);
    assert!(calls.iter().all(|c| c.authorization == format!("Bearer {TOKEN}")), "the newline was sent");

    let both = routerctl(&endpoint, &["account", "list", "--admin-token-file", file]).await;
    assert_eq!(both.status.code(), Some(1));
    assert!(
        stderr(&both).contains("give --admin-token or --admin-token-file, not both"),
        "{}",
        stderr(&both)
    );
    std::fs::remove_file(&path).expect("remove");
    let gone = without_token(&["account", "list", "--admin-token-file", file], None).await.expect("runs");
    assert_eq!(gone.status.code(), Some(1));
    assert!(stderr(&gone).contains(&format!("cannot read --admin-token-file {file}")), "{}", stderr(&gone));
    assert_eq!(fake.calls().len(), 2, "a refused token file made a call");
}

#[tokio::test]
async fn bad_values_are_refused_before_any_call() {
    let fake = Fake::default();
    let endpoint = serve(&fake).await;

    for args in [
        &["topup", "--account", "bob", "--amount", "1.0000000001"][..],
        &["topup", "--account", "bob", "--amount=-1"],
        &["group", "add", "vip", "--multiplier", "0.1234567"],
        &["model", "set", "m", "--per-call", "1", "--input-price", "1", "--output-price", "1"],
        &["key", "create", "--account", "bob", "--expires-at", "next week"],
        &["channel", "add", "--name", "c", "--type", "bedrock"],
    ] {
        let output = routerctl(&endpoint, args).await;
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(stderr(&output).starts_with("error: "), "{args:?}: {}", stderr(&output));
    }
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn no_token_or_no_server_is_a_clear_error() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_routerctl"))
        .args(["account", "list"])
        .env_remove("ROUTER_ADMIN_TOKEN")
        .output()
        .await
        .expect("routerctl runs");
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("no admin token"), "{}", stderr(&output));

    // Port 1 is closed: the connection is refused at once.
    let output = routerctl("http://127.0.0.1:1", &["account", "list"]).await;
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(message.starts_with("error: cannot reach the control plane at http://127.0.0.1:1"));
}

#[tokio::test]
async fn router_json_in_the_environment_selects_json() {
    let fake = Fake::default();
    fake.reply("get_account", &account());
    let endpoint = serve(&fake).await;

    for (value, json) in [("1", true), ("true", true), ("0", false), ("false", false), ("", false)] {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_routerctl"))
            .args(["account", "show", "bob"])
            .env("ROUTER_ENDPOINT", &endpoint)
            .env("ROUTER_ADMIN_TOKEN", TOKEN)
            .env("ROUTER_JSON", value)
            .output()
            .await
            .expect("routerctl runs");
        assert!(output.status.success(), "{value:?}: {}", stderr(&output));
        let parsed = serde_json::from_str::<Value>(&stdout(&output)).is_ok();
        assert_eq!(parsed, json, "ROUTER_JSON={value:?}");
    }
}

fn usage_record(request_id: &str, cost_nanos: i64) -> pb::UsageRecord {
    pb::UsageRecord {
        request_id: request_id.into(),
        key_id: 3,
        account: "bob".into(),
        model: "gpt-4o".into(),
        channel: "oa".into(),
        input_tokens: 10,
        output_tokens: 5,
        cost_nanos,
        status: "ok".into(),
        created_at_unix_micros: 1_796_083_200_000_000,
        endpoint: "/v1/chat/completions".into(),
        ..pb::UsageRecord::default()
    }
}

#[tokio::test]
async fn usage_pages_say_how_to_continue_on_stderr_only() {
    let fake = Fake::default();
    let page = pb::ListUsageResponse {
        records: vec![usage_record("r2", 20), usage_record("r1", 10)],
        next_before_request_id: Some("r1".into()),
    };
    fake.reply("list_usage", &page);
    let endpoint = serve(&fake).await;

    let output = routerctl(
        &endpoint,
        &["usage", "--json", "--limit", "2", "--model", "gpt-4o", "--since", "2026-12-01T00:00:00Z"],
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let records: Value = serde_json::from_str(&stdout(&output)).expect("exactly one JSON value");
    let ids: Vec<&str> =
        records.as_array().unwrap().iter().map(|r| r["request_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["r2", "r1"]);
    assert_eq!(records[0]["cost"], "0.00000002");
    assert!(stderr(&output).contains("--before r1"), "{}", stderr(&output));
    let request = &fake.calls()[0].request;
    assert!(request.contains("limit: Some(2)") && request.contains("model: Some(\"gpt-4o\")"), "{request}");
    assert!(request.contains("since_unix_micros: Some(1796083200000000)"), "{request}");

    // The last page: nothing more to say.
    fake.reply(
        "list_usage",
        &pb::ListUsageResponse { records: vec![usage_record("r0", 1)], ..Default::default() },
    );
    let output = routerctl(&endpoint, &["usage", "--before", "r1"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("r0") && stderr(&output).is_empty(), "{}", stderr(&output));
}

#[tokio::test]
async fn usage_limits_beyond_a_page_are_refused_before_any_call() {
    let fake = Fake::default();
    let endpoint = serve(&fake).await;
    for args in [&["usage", "--limit", "20000"][..], &["usage", "--limit", "1000000"], &["usage", "--all"]] {
        let output = routerctl(&endpoint, args).await;
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(stderr(&output).starts_with("error: "), "{args:?}: {}", stderr(&output));
        assert!(stdout(&output).is_empty());
    }
    let output = routerctl(&endpoint, &["usage", "--limit", "20000"]).await;
    assert!(stderr(&output).contains("20000 is not in 1..=10000"), "{}", stderr(&output));
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn usage_all_streams_every_page_as_csv() {
    let fake = Fake::default();
    fake.reply(
        "export_usage",
        &pb::ListUsageResponse { records: vec![usage_record("r3", 3)], ..Default::default() },
    );
    fake.state().pages = vec![pb::ListUsageResponse {
        records: vec![usage_record("r2", 2), usage_record("r1", 1_500_000_000)],
        ..Default::default()
    }];
    let endpoint = serve(&fake).await;

    let output = routerctl(&endpoint, &["usage", "--all", "--csv", "--account", "bob"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].starts_with("request_id,key_id,account,model,requested_model,channel,"), "{text}");
    assert!(lines[1].starts_with("r3,3,bob,gpt-4o,gpt-4o,oa,"), "{text}");
    assert!(lines[3].contains(",1.5,ok,"), "amounts as decimal strings: {text}");
    assert_eq!(fake.calls()[0].method, "export_usage");

    let output = routerctl(&endpoint, &["usage", "--csv", "--json"]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("choose one"), "{}", stderr(&output));
}

#[tokio::test]
async fn usage_summary_is_a_table_or_a_json_array() {
    let fake = Fake::default();
    let bucket = |name: &str, cost_nanos: i64| pb::UsageBucket {
        bucket: name.into(),
        requests: 2,
        input_tokens: 30,
        cost_nanos,
        ..pb::UsageBucket::default()
    };
    fake.reply(
        "summarize_usage",
        &pb::UsageSummary { buckets: vec![bucket("gpt-4o", 2_000_000_000), bucket("mini", 5)] },
    );
    let endpoint = serve(&fake).await;

    let output =
        routerctl(&endpoint, &["usage", "summary", "--by", "model", "--account", "bob", "--json"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let rows: Value = serde_json::from_str(&stdout(&output)).expect("exactly one JSON value");
    assert_eq!(rows[0]["model"], "gpt-4o");
    assert_eq!(rows[0]["cost"], "2");
    assert_eq!(rows[1]["cost"], "0.000000005");
    assert!(fake.calls()[0].request.contains("by: \"model\""), "{}", fake.calls()[0].request);

    let output = routerctl(&endpoint, &["usage", "summary", "--by", "model"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.starts_with("MODEL   REQUESTS  INPUT_TOKENS"), "{text}");
    assert!(text.contains("gpt-4o  2         30"), "{text}");
}
