//! The protocols a channel speaks natively (`--protocols`), their defaults by channel type and
//! which types can speak which: one list the control plane validates with, routerctl parses
//! with and the data plane routes by.

/// Every protocol, in the canonical order lists are kept in.
pub const PROTOCOLS: [&str; 5] = ["chat", "completions", "embeddings", "responses", "messages"];

/// The protocols a channel type speaks when `--protocols` is not given (`None`: unknown type).
pub fn defaults(channel_type: &str) -> Option<&'static [&'static str]> {
    Some(match channel_type {
        "openai" | "azure" => &["chat", "completions", "embeddings", "responses"],
        "anthropic" => &["messages"],
        "gemini" => &["chat", "embeddings"],
        _ => return None,
    })
}

/// The protocols a channel type can speak at all: an OpenAI-compatible server may also serve
/// Anthropic's Messages API (DeepSeek, Kimi, GLM, OpenRouter); Anthropic speaks only Messages.
pub fn possible(channel_type: &str) -> &'static [&'static str] {
    match channel_type {
        "openai" => &PROTOCOLS,
        "azure" => &["chat", "completions", "embeddings", "responses"],
        "anthropic" => &["messages"],
        "gemini" => &["chat", "embeddings"],
        _ => &[],
    }
}

/// Checks a declared list for `channel_type` and puts it in canonical order without
/// duplicates; an empty list stands for the type's defaults and stays empty, as does a list
/// equal to them (so a later change of type brings that type's defaults).
pub fn normalize(channel_type: &str, declared: &[String]) -> Result<Vec<String>, String> {
    for name in declared {
        if !PROTOCOLS.contains(&name.as_str()) {
            return Err(format!("unknown protocol {name:?} (expected one of {})", PROTOCOLS.join(", ")));
        }
        if !possible(channel_type).contains(&name.as_str()) {
            return Err(format!(
                "a {channel_type} channel cannot speak {name} (it can speak {})",
                possible(channel_type).join(", ")
            ));
        }
    }
    let list: Vec<String> =
        PROTOCOLS.iter().filter(|p| declared.iter().any(|d| d == *p)).map(|p| (*p).to_owned()).collect();
    if defaults(channel_type).is_some_and(|d| d.iter().eq(list.iter())) {
        return Ok(Vec::new());
    }
    Ok(list)
}

/// The protocols a channel speaks: its declared list, or its type's defaults when it declares
/// none.
pub fn effective(channel_type: &str, declared: &[String]) -> Vec<String> {
    if declared.is_empty() {
        defaults(channel_type).unwrap_or(&[]).iter().map(|p| (*p).to_owned()).collect()
    } else {
        declared.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn lists_are_checked_ordered_and_defaults_kept_implicit() {
        assert_eq!(
            normalize("openai", &list(&["messages", "chat", "chat"])),
            Ok(list(&["chat", "messages"]))
        );
        assert_eq!(
            normalize("openai", &list(&["responses", "embeddings", "completions", "chat"])),
            Ok(Vec::new())
        );
        let refused = normalize("anthropic", &list(&["chat"])).expect_err("anthropic cannot speak chat");
        assert!(refused.contains("cannot speak chat"), "{refused}");
        let unknown = normalize("openai", &list(&["grpc"])).expect_err("unknown");
        assert!(unknown.contains("unknown protocol \"grpc\""), "{unknown}");
        assert!(normalize("gemini", &list(&["responses"])).is_err());
        assert_eq!(effective("anthropic", &[]), ["messages"]);
        assert_eq!(effective("gemini", &[]), ["chat", "embeddings"]);
        assert_eq!(effective("openai", &list(&["chat"])), ["chat"]);
    }
}
