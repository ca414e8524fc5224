//! Secrets given as files: every secret flag `--X` also has `--X-file PATH` (env `…_FILE`),
//! so a secret need not appear in `argv` (visible to every local user in `ps`) or in the
//! environment.
use std::path::Path;

use anyhow::Context;

/// The secret in force for `--{flag}`: its value, or the content of `--{flag}-file` with one
/// trailing newline (`\n` or `\r\n`) dropped; an error when both are given or the file cannot
/// be read.
pub fn resolve(flag: &str, value: Option<String>, file: Option<&Path>) -> anyhow::Result<Option<String>> {
    let Some(path) = file else { return Ok(value) };
    if value.is_some() {
        anyhow::bail!("give --{flag} or --{flag}-file, not both");
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read --{flag}-file {}", path.display()))?;
    let text = text.strip_suffix('\n').map_or(&*text, |t| t.strip_suffix('\r').unwrap_or(t));
    Ok(Some(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file of its own holding `content` (tests run in parallel: each call gets a new name).
    fn file(content: &str) -> std::path::PathBuf {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("router-secret-{}-{n}", std::process::id()));
        std::fs::write(&path, content).expect("write");
        path
    }

    #[test]
    fn a_file_gives_its_content_without_one_trailing_newline() {
        for (content, expected) in
            [("s3cret\n", "s3cret"), ("s3cret", "s3cret"), ("a\r\n", "a"), ("two\n\n\n", "two\n\n")]
        {
            let path = file(content);
            assert_eq!(resolve("admin-token", None, Some(&path)).expect("read").as_deref(), Some(expected));
            let _ = std::fs::remove_file(path);
        }
        assert_eq!(resolve("admin-token", Some("v".into()), None).expect("value").as_deref(), Some("v"));
        assert_eq!(resolve("admin-token", None, None).expect("none"), None);
    }

    #[test]
    fn both_or_an_unreadable_file_is_an_error() {
        let path = file("x-both");
        let both = resolve("node-token", Some("v".into()), Some(&path)).expect_err("both");
        assert_eq!(both.to_string(), "give --node-token or --node-token-file, not both");
        let _ = std::fs::remove_file(path);
        let missing =
            resolve("node-token", None, Some(Path::new("/nonexistent/token"))).expect_err("missing");
        let text = format!("{missing:#}");
        assert!(text.starts_with("cannot read --node-token-file /nonexistent/token: "), "{text}");
    }
}
