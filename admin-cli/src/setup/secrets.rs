//! Secrets in a setup file: `env:NAME` and `file:PATH` references, resolved by routerctl from
//! its own environment, and the stable `env:` names `routerctl export` writes instead of keys.
use std::path::Path;

/// What `value` stands for: the environment variable's value for `env:NAME`, the file's
/// content (one trailing newline dropped) for `file:PATH` (relative to `base`), else itself.
pub fn resolve(value: &str, base: &Path) -> Result<String, String> {
    if let Some(name) = value.strip_prefix("env:") {
        return std::env::var(name).map_err(|error| match error {
            std::env::VarError::NotPresent => format!("environment variable {name} is not set"),
            std::env::VarError::NotUnicode(_) => format!("environment variable {name} is not valid UTF-8"),
        });
    }
    if let Some(path) = value.strip_prefix("file:") {
        let path = base.join(path);
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let text = text.strip_suffix('\n').map_or(text.as_str(), |t| t.strip_suffix('\r').unwrap_or(t));
        return Ok(text.to_owned());
    }
    Ok(value.to_owned())
}

/// The environment variable `export` names for a channel's key: `ROUTER_CHANNEL_<NAME>_KEY`,
/// the name upper-cased with every other character than a letter or digit as `_`.
pub fn channel_key_var(channel: &str) -> String {
    let name: String = channel
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' })
        .collect();
    format!("ROUTER_CHANNEL_{name}_KEY")
}

/// Makes names unique in order: a name seen before gets `_2`, `_3`, … before its `_KEY`.
pub fn unique_vars(names: Vec<String>) -> Vec<String> {
    let mut taken: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        let mut candidate = name.clone();
        let mut n = 2;
        while taken.contains(&candidate) {
            let stem = name.strip_suffix("_KEY").unwrap_or(&name);
            candidate = format!("{stem}_{n}_KEY");
            n += 1;
        }
        taken.push(candidate);
    }
    taken
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_names_are_stable_and_unique() {
        assert_eq!(channel_key_var("openai"), "ROUTER_CHANNEL_OPENAI_KEY");
        assert_eq!(channel_key_var("open-ai.eu"), "ROUTER_CHANNEL_OPEN_AI_EU_KEY");
        let names = unique_vars(vec![channel_key_var("a-b"), channel_key_var("a_b"), channel_key_var("a.b")]);
        assert_eq!(names, ["ROUTER_CHANNEL_A_B_KEY", "ROUTER_CHANNEL_A_B_2_KEY", "ROUTER_CHANNEL_A_B_3_KEY"]);
    }

    #[test]
    fn references_resolve() {
        let dir = std::env::temp_dir().join(format!("routerctl-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("key.txt"), "sk-from-file\n").expect("write");
        assert_eq!(resolve("file:key.txt", &dir).as_deref(), Ok("sk-from-file"));
        assert!(resolve("file:missing.txt", &dir).is_err());
        assert_eq!(resolve("sk-literal", &dir).as_deref(), Ok("sk-literal"));
        assert_eq!(resolve("env:PATH", &dir).ok(), std::env::var("PATH").ok());
        assert!(resolve("env:ROUTERCTL_SURELY_UNSET_VARIABLE", &dir).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
