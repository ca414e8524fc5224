use super::*;
use crate::import::{TheirChannel, TheirCode, TheirToken, TheirUser};

fn data() -> TheirData {
    let mut options = BTreeMap::new();
    options
        .insert("ModelRatio".into(), r#"{"gpt-4o-mini": 0.075, "gpt-4o": 1.25, "odd": 0.0000000001}"#.into());
    options.insert("CompletionRatio".into(), r#"{"gpt-4o-mini": 4, "gpt-4o": 4}"#.into());
    options.insert("ModelPrice".into(), r#"{"dall-e-3": 0.04}"#.into());
    options.insert("GroupRatio".into(), r#"{"default": 1, "vip": 0.8}"#.into());
    TheirData {
        channels: vec![
            TheirChannel {
                id: 1,
                kind: 1,
                key: "sk-a\nsk-b\n".into(),
                status: 1,
                name: "main openai".into(),
                weight: 2,
                base_url: String::new(),
                models: "gpt-4o-mini,gpt-4o".into(),
                group: "default,vip".into(),
                model_mapping: r#"{"gpt-4o": "gpt-4o-2024-08-06"}"#.into(),
                priority: 3,
                other: String::new(),
            },
            TheirChannel {
                id: 2,
                kind: 40,
                key: "x".into(),
                name: "baidu".into(),
                models: "ernie".into(),
                ..TheirChannel::default()
            },
            TheirChannel {
                id: 3,
                kind: 3,
                key: "az".into(),
                status: 2,
                name: "az".into(),
                base_url: "https://x.openai.azure.com/".into(),
                models: "gpt-4o".into(),
                other: "2024-10-21".into(),
                group: "default".into(),
                ..TheirChannel::default()
            },
        ],
        users: vec![
            TheirUser { id: 7, username: "alice".into(), status: 1, quota: 5_000_001, group: "vip".into() },
            TheirUser { id: 8, username: "bob".into(), status: 2, quota: 0, group: String::new() },
        ],
        tokens: vec![
            TheirToken {
                id: 1,
                user_id: 7,
                key: "abc".into(),
                status: 1,
                name: "laptop".into(),
                expired_time: -1,
                remain_quota: 1_000_000,
                models: "gpt-4o".into(),
                ..TheirToken::default()
            },
            TheirToken {
                id: 2,
                user_id: 8,
                key: "def".into(),
                status: 1,
                unlimited_quota: true,
                expired_time: 1_900_000_000,
                ..TheirToken::default()
            },
            TheirToken { id: 3, user_id: 99, key: "ghi".into(), ..TheirToken::default() },
        ],
        codes: vec![
            TheirCode { id: 1, key: "unused".into(), status: 1, quota: 250_000, expired_time: 0 },
            TheirCode { id: 2, key: "used".into(), status: 3, quota: 250_000, expired_time: 0 },
            TheirCode { id: 3, key: "stale".into(), status: 1, quota: 250_000, expired_time: 10 },
        ],
        options,
    }
}

fn token_price(setup: &pb::Setup, name: &str) -> Option<pb::price::Billing> {
    setup.models.iter().find(|m| m.name == name).and_then(|m| m.price.as_ref()).and_then(|p| p.billing)
}

#[test]
fn maps_exactly_what_their_schema_says() {
    let mapped = map(&data(), 1_000);
    let setup = mapped.request.setup.clone().unwrap_or_default();
    // r = 0.075: input 2·r = 0.15 per 1M; c = 4: output 0.6.
    assert_eq!(
        token_price(&setup, "gpt-4o-mini"),
        Some(pb::price::Billing::Tokens(pb::TokenPrice {
            input_nanos: 150_000_000,
            output_nanos: 600_000_000,
            cached_input_nanos: None,
            cache_write_nanos: None
        }))
    );
    assert_eq!(token_price(&setup, "dall-e-3"), Some(pb::price::Billing::PerCallNanos(40_000_000)));
    assert!(token_price(&setup, "odd").is_none());
    // Two keys: two channels; their OpenAI base gets our /v1; disabled stays disabled.
    let names: Vec<&str> =
        setup.channels.iter().filter_map(|c| c.channel.as_ref()).map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["main-openai-1", "main-openai-2", "az"]);
    let first = setup.channels[0]
        .channel
        .as_ref()
        .map(|c| (c.base_url.as_str(), c.api_key.as_str(), c.priority, c.weight));
    assert_eq!(first, Some(("https://api.openai.com/v1", "sk-a", Some(3), Some(2))));
    let azure = &setup.channels[2];
    assert_eq!(azure.enabled, Some(false));
    assert_eq!(azure.channel.as_ref().and_then(|c| c.api_version.as_deref()), Some("2024-10-21"));
    assert_eq!(azure.channel.as_ref().map(|c| c.base_url.as_str()), Some("https://x.openai.azure.com"));
    // Groups and balances: 5,000,001 quota = 10.000002 exactly.
    let vip = setup.groups.iter().find(|g| g.name == "vip").and_then(|g| g.multiplier_micros);
    assert_eq!(vip, Some(800_000));
    assert_eq!(mapped.request.balances[0].amount_nanos, 10_000_002_000);
    // Keys by the hash of sk- + their key; bob is disabled, so his key is revoked.
    let key = &mapped.request.keys[0];
    assert_eq!(key.secret_hash, format!("{:x}", Sha256::digest(b"sk-abc")));
    assert_eq!((key.prefix.as_str(), key.limit_nanos, key.revoked), ("sk-abc", Some(2_000_000_000), false));
    assert_eq!(key.models, ["gpt-4o"]);
    let bobs = &mapped.request.keys[1];
    assert_eq!(
        (bobs.limit_nanos, bobs.revoked, bobs.expires_at_unix_micros),
        (None, true, Some(1_900_000_000_000_000))
    );
    // Only the unused, unexpired code.
    assert_eq!(mapped.request.codes.len(), 1);
    assert_eq!(mapped.request.codes[0].amount_nanos, 500_000_000);
    // What cannot be mapped is listed.
    let text = mapped.unmappable.join("\n");
    for expected in ["type 40", "odd", "user 99", "channel \"az\" (id 3): limited to groups"] {
        assert!(text.contains(expected), "{expected:?} missing from:\n{text}");
    }
}

#[test]
fn inexact_quotas_are_unmappable() {
    let mut data = data();
    data.options.insert("QuotaPerUnit".into(), "7".into());
    let mapped = map(&data, 0);
    assert!(mapped.unmappable.iter().any(|u| u.contains("user alice") && u.contains("not an exact amount")));
}
