use super::*;

const EXAMPLE: &str = r#"
[[channel]]
name = "openai"
type = "openai"
base_url = "https://api.openai.com/v1/"
api_key = "sk-literal-key"
models = ["gpt-4o-mini", "gpt-4o"]
priority = 5
model_map = { "gpt-4o" = "gpt-4o-2024-08-06" }

[[model]]
name = "gpt-4o-mini"
input_price = "0.15"
output_price = "0.6"
cached_input_price = "0.075"
max_output_tokens = 16384

[[model]]
name = "dall-e-3"
per_call = "0.04"

[[model_group]]
name = "claude"
models = ["claude-sonnet-4-5"]
input_price = "3"
output_price = "15"

[[group]]
name = "vip"
multiplier = "0.8"
models = ["gpt-4o"]
rpm = 600
max_concurrent = 0

[[account]]
name = "alice"
group = "vip"
daily_limit = "2"
weekly_limit = "10"
monthly_limit = "30.5"
tpm = 100000
"#;

fn parse(text: &str) -> Result<Parsed, Error> {
    Parsed::parse("setup.toml", text.to_owned())
}

fn error(text: &str) -> String {
    match parse(text).and_then(|parsed| parsed.to_proto()) {
        Ok(setup) => panic!("accepted: {setup:?}"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn a_complete_file_becomes_the_request() {
    let setup = parse(EXAMPLE).and_then(|p| p.to_proto()).expect("a valid file");
    let channel = setup.channels[0].channel.as_ref().expect("a channel");
    assert_eq!(channel.base_url, "https://api.openai.com/v1");
    assert_eq!(channel.api_key, "sk-literal-key");
    assert_eq!(channel.priority, Some(5));
    assert_eq!(channel.weight, None);
    assert_eq!(channel.model_map["gpt-4o"], "gpt-4o-2024-08-06");
    assert_eq!(setup.channels[0].enabled, None);
    let Some(pb::price::Billing::Tokens(tokens)) = setup.models[0].price.as_ref().and_then(|p| p.billing)
    else {
        panic!("not per token")
    };
    assert_eq!(
        (tokens.input_nanos, tokens.output_nanos, tokens.cached_input_nanos),
        (150_000_000, 600_000_000, Some(75_000_000))
    );
    assert_eq!(
        setup.models[1].price.as_ref().and_then(|p| p.billing),
        Some(pb::price::Billing::PerCallNanos(40_000_000))
    );
    assert_eq!(setup.groups[0].multiplier_micros, Some(800_000));
    assert_eq!(setup.accounts[0].daily_limit_nanos, Some(2_000_000_000));
    assert_eq!(setup.accounts[0].balance_nanos, None);
    assert_eq!((setup.groups[0].rpm, setup.groups[0].tpm), (Some(600), None));
    assert_eq!(setup.groups[0].max_concurrent, None, "0 is no limit");
    let alice = &setup.accounts[0];
    assert_eq!(
        (alice.weekly_limit_nanos, alice.monthly_limit_nanos),
        (Some(10_000_000_000), Some(30_500_000_000))
    );
    assert_eq!((alice.rpm, alice.tpm, alice.max_concurrent), (None, Some(100_000), None));
}

#[test]
fn negative_rate_limits_name_the_line() {
    let message = error("[[group]]\nname = \"g\"\nrpm = -1\n");
    assert!(message.starts_with("setup.toml:3:"), "{message}");
}

#[test]
fn bad_files_name_the_line() {
    let text = "[[model]]\nname = \"m\"\ninput_price = 0.15\noutput_price = \"1\"\n";
    let message = error(text);
    assert!(message.starts_with("setup.toml:3:"), "{message}");
    assert!(message.contains("as a string"), "{message}");
    assert!(
        error("[[model]]\nname = \"m\"\ninput_price = \"0.0000000001\"\noutput_price = \"1\"\n")
            .starts_with("setup.toml:3:")
    );
    let message = error("[[channel]]\nname = \"c\"\nbogus = 1\n");
    assert!(message.starts_with("setup.toml:3:"), "{message}");
    assert!(error("[[aliases]]\nname = \"c\"\n").contains("aliases"));
    let message = error("[[alias]]\nname = \"c-*\"\n");
    assert!(message.starts_with("setup.toml:1:") && message.contains("target"), "{message}");
    assert!(error("[[model]\n").starts_with("setup.toml:1:"));
    let message = error("\n\n[[model]]\nname = \"m\"\ninput_price = \"1\"\n");
    assert!(message.starts_with("setup.toml:4:") && message.contains("output_price"), "{message}");
    let message = error("[[group]]\nname = \"g\"\nall_models = true\nmodels = [\"a\"]\n");
    assert!(message.starts_with("setup.toml:2:"), "{message}");
    let channel = "[[channel]]\nname = \"c\"\ntype = \"bedrock\"\nbase_url = \"https://x\"\napi_key = \"k\"\nmodels = [\"m\"]\n";
    assert!(error(channel).contains("unknown type"));
    let channel =
        channel.replace("bedrock", "openai").replace("\"k\"", "\"env:ROUTERCTL_SURELY_UNSET_VARIABLE\"");
    let message = error(&channel);
    assert!(
        message.starts_with("setup.toml:2:") && message.contains("ROUTERCTL_SURELY_UNSET_VARIABLE"),
        "{message}"
    );
}

#[test]
fn server_errors_get_the_line_of_their_item() {
    let parsed = parse(EXAMPLE).expect("a valid file");
    let located = parsed.locate(Error::Server("model_group \"claude\": model \"x\" already belongs".into()));
    assert!(located.to_string().starts_with("setup.toml:23: model_group"), "{located}");
    let other = parsed.locate(Error::Server("something else".into()));
    assert_eq!(other.to_string(), "something else");
}

#[test]
fn export_renders_deterministically_and_parses_back() {
    let setup = parse(EXAMPLE).and_then(|p| p.to_proto()).expect("a valid file");
    let first = render(&from_proto(setup.clone(), false)).expect("renders");
    let second = render(&from_proto(setup.clone(), false)).expect("renders");
    assert_eq!(first, second);
    assert!(first.contains("api_key = \"env:ROUTER_CHANNEL_OPENAI_KEY\""), "{first}");
    assert!(!first.contains("sk-literal-key"));
    let with_secrets = render(&from_proto(setup.clone(), true)).expect("renders");
    let back = parse(&with_secrets).and_then(|p| p.to_proto()).expect("export parses back");
    assert_eq!(back, setup, "{with_secrets}");
}
