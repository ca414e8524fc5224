//! How to reach a channel's upstream, by channel type: the URL of each API and the header that
//! carries the channel's key. The data plane's requests and the control plane's channel checks
//! both build their requests from an [`Upstream`], so a check calls exactly what traffic calls.
#![forbid(unsafe_code)]

use http::{HeaderName, HeaderValue, header};

/// Anthropic API version sent on Messages requests that name none.
pub const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";
/// Azure `api-version` used when the channel names none.
pub const DEFAULT_AZURE_API_VERSION: &str = "2024-10-21";

/// The header carrying a channel's key: its name and its value (marked sensitive).
pub type Credential = (HeaderName, HeaderValue);

/// How to talk to a channel's upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Any OpenAI-compatible server: `{base}/chat/completions`, Bearer auth.
    OpenAi,
    /// Anthropic: `{base}/v1/messages`, `x-api-key`.
    Anthropic,
    /// Azure OpenAI: deployment URLs, `api-key`, `api-version`.
    Azure,
    /// Gemini's OpenAI-compatible endpoint, Bearer auth.
    Gemini,
}

impl Kind {
    /// The kind of a channel type as stored (`openai`, `anthropic`, `azure`, `gemini`).
    pub fn parse(channel_type: &str) -> Option<Kind> {
        Some(match channel_type {
            "openai" => Kind::OpenAi,
            "anthropic" => Kind::Anthropic,
            "azure" => Kind::Azure,
            "gemini" => Kind::Gemini,
            _ => return None,
        })
    }
}

/// An API called upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// OpenAI Chat Completions.
    ChatCompletions,
    /// OpenAI legacy completions.
    Completions,
    /// OpenAI embeddings.
    Embeddings,
    /// OpenAI Responses.
    Responses,
    /// Anthropic Messages.
    Messages,
    /// Anthropic Messages' token count.
    CountTokens,
}

impl Api {
    /// Whether it is Anthropic's Messages API: `x-api-key` and `anthropic-version` on any
    /// channel type.
    pub fn is_messages(self) -> bool {
        matches!(self, Api::Messages | Api::CountTokens)
    }

    /// Its path under a base URL.
    fn path(self) -> &'static str {
        match self {
            Api::ChatCompletions => "chat/completions",
            Api::Completions => "completions",
            Api::Embeddings => "embeddings",
            Api::Responses => "responses",
            Api::Messages => "v1/messages",
            Api::CountTokens => "v1/messages/count_tokens",
        }
    }
}

/// Where and how to reach one channel's upstream; built once per channel, so that a request
/// only formats its URL and clones a ready header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    kind: Kind,
    /// Without a trailing slash.
    base_url: String,
    /// Where a non-Anthropic channel serves Messages (`{URL}/v1/messages`), without a trailing
    /// slash; `None`: beside its other APIs (`{base_url}/messages`).
    messages_base_url: Option<String>,
    /// Azure `api-version`.
    api_version: Option<String>,
    /// `None`: the key is not a valid header value.
    credential: Option<Credential>,
    /// The `x-api-key` header of a non-Anthropic channel on Messages.
    messages_credential: Option<Credential>,
}

impl Upstream {
    /// The upstream of a channel of `kind` at `base_url` with `api_key`; `messages_base_url`
    /// only matters to a non-Anthropic channel that speaks Messages.
    pub fn new(
        kind: Kind,
        base_url: &str,
        api_key: &str,
        api_version: Option<&str>,
        messages_base_url: Option<&str>,
    ) -> Upstream {
        let messages_credential =
            (kind != Kind::Anthropic).then(|| credential(Kind::Anthropic, api_key)).flatten();
        Upstream {
            kind,
            base_url: base_url.trim_end_matches('/').to_owned(),
            messages_base_url: messages_base_url.map(|u| u.trim_end_matches('/').to_owned()),
            api_version: api_version.map(str::to_owned),
            credential: credential(kind, api_key),
            messages_credential,
        }
    }

    /// The URL of `api` for `upstream_model` (which only Azure puts in the URL).
    pub fn url(&self, api: Api, upstream_model: &str) -> String {
        let base = &self.base_url;
        match self.kind {
            // An OpenAI-compatible server's Anthropic API: at `--messages-base-url` as at an
            // Anthropic base, else beside its other endpoints (`{base}/messages`).
            Kind::OpenAi | Kind::Azure | Kind::Gemini if api.is_messages() => match &self.messages_base_url {
                Some(messages_base) => format!("{messages_base}/{}", api.path()),
                None => format!("{base}/{}", &api.path()["v1/".len()..]),
            },
            Kind::Azure => {
                let version = self.api_version.as_deref().unwrap_or(DEFAULT_AZURE_API_VERSION);
                format!("{base}/openai/deployments/{upstream_model}/{}?api-version={version}", api.path())
            }
            Kind::OpenAi | Kind::Gemini | Kind::Anthropic => format!("{base}/{}", api.path()),
        }
    }

    /// The credential header for a request to `api` (`None`: the key is not a valid header
    /// value).
    pub fn credential(&self, api: Api) -> Option<&Credential> {
        if api.is_messages() && self.kind != Kind::Anthropic {
            self.messages_credential.as_ref()
        } else {
            self.credential.as_ref()
        }
    }
}

/// The credential header of a channel type: Bearer for OpenAI-compatible upstreams, `api-key`
/// for Azure, `x-api-key` for Anthropic; marked sensitive so it is never logged.
fn credential(kind: Kind, api_key: &str) -> Option<Credential> {
    let (name, value) = match kind {
        Kind::OpenAi | Kind::Gemini => (header::AUTHORIZATION, format!("Bearer {api_key}")),
        Kind::Azure => (HeaderName::from_static("api-key"), api_key.to_owned()),
        Kind::Anthropic => (HeaderName::from_static("x-api-key"), api_key.to_owned()),
    };
    let mut value = HeaderValue::from_str(&value).ok()?;
    value.set_sensitive(true);
    Some((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(kind: Kind, base: &str) -> Upstream {
        Upstream::new(kind, base, "upstream-key", Some("2024-06-01"), None)
    }

    fn header_of(upstream: &Upstream, api: Api) -> (String, String) {
        let (name, value) = upstream.credential(api).expect("a valid key");
        (name.as_str().to_owned(), value.to_str().expect("ascii").to_owned())
    }

    #[test]
    fn urls_follow_each_channel_type() {
        let openai = upstream(Kind::OpenAi, "https://api.openai.com/v1/");
        assert_eq!(openai.url(Api::ChatCompletions, "m"), "https://api.openai.com/v1/chat/completions");
        assert_eq!(openai.url(Api::Completions, "m"), "https://api.openai.com/v1/completions");
        assert_eq!(openai.url(Api::Embeddings, "m"), "https://api.openai.com/v1/embeddings");
        assert_eq!(openai.url(Api::Responses, "m"), "https://api.openai.com/v1/responses");
        let anthropic = upstream(Kind::Anthropic, "https://api.anthropic.com");
        assert_eq!(anthropic.url(Api::Messages, "m"), "https://api.anthropic.com/v1/messages");
        assert_eq!(
            anthropic.url(Api::CountTokens, "m"),
            "https://api.anthropic.com/v1/messages/count_tokens"
        );
        let gemini = upstream(Kind::Gemini, "https://generativelanguage.googleapis.com/v1beta/openai");
        assert_eq!(
            gemini.url(Api::ChatCompletions, "m"),
            "https://generativelanguage.googleapis.com/v1beta/openai/chat/completions"
        );
        let azure = upstream(Kind::Azure, "https://x.openai.azure.com");
        assert_eq!(
            azure.url(Api::Embeddings, "dep"),
            "https://x.openai.azure.com/openai/deployments/dep/embeddings?api-version=2024-06-01"
        );
        let unversioned = Upstream::new(Kind::Azure, "https://x.openai.azure.com", "k", None, None);
        assert_eq!(
            unversioned.url(Api::ChatCompletions, "dep"),
            "https://x.openai.azure.com/openai/deployments/dep/chat/completions?api-version=2024-10-21"
        );
    }

    #[test]
    fn an_openai_compatible_channel_serves_messages_beside_its_apis_or_at_its_own_base() {
        let deepseek = upstream(Kind::OpenAi, "https://api.deepseek.com/v1");
        assert_eq!(deepseek.url(Api::Messages, "m"), "https://api.deepseek.com/v1/messages");
        assert_eq!(deepseek.url(Api::CountTokens, "m"), "https://api.deepseek.com/v1/messages/count_tokens");
        let at_own_base = Upstream::new(
            Kind::OpenAi,
            "https://api.deepseek.com/v1",
            "k",
            None,
            Some("https://api.deepseek.com/anthropic/"),
        );
        assert_eq!(at_own_base.url(Api::Messages, "m"), "https://api.deepseek.com/anthropic/v1/messages");
        assert_eq!(
            at_own_base.url(Api::ChatCompletions, "m"),
            "https://api.deepseek.com/v1/chat/completions"
        );
    }

    #[test]
    fn credentials_follow_the_type_and_the_api() {
        let openai = upstream(Kind::OpenAi, "http://h");
        assert_eq!(
            header_of(&openai, Api::ChatCompletions),
            ("authorization".into(), "Bearer upstream-key".into())
        );
        assert_eq!(header_of(&openai, Api::Messages), ("x-api-key".into(), "upstream-key".into()));
        let gemini = upstream(Kind::Gemini, "http://h");
        assert_eq!(
            header_of(&gemini, Api::Embeddings),
            ("authorization".into(), "Bearer upstream-key".into())
        );
        let azure = upstream(Kind::Azure, "http://h");
        assert_eq!(header_of(&azure, Api::Responses), ("api-key".into(), "upstream-key".into()));
        let anthropic = upstream(Kind::Anthropic, "http://h");
        assert_eq!(header_of(&anthropic, Api::CountTokens), ("x-api-key".into(), "upstream-key".into()));
        let (_, value) = anthropic.credential(Api::Messages).expect("a valid key");
        assert!(value.is_sensitive(), "a key must never be logged");
    }

    #[test]
    fn a_key_that_is_no_header_value_has_no_credential() {
        let broken = Upstream::new(Kind::OpenAi, "http://h", "line\nbreak", None, None);
        assert!(broken.credential(Api::ChatCompletions).is_none());
        assert!(broken.credential(Api::Messages).is_none());
    }

    #[test]
    fn kinds_parse_from_the_stored_channel_types() {
        assert_eq!(Kind::parse("openai"), Some(Kind::OpenAi));
        assert_eq!(Kind::parse("anthropic"), Some(Kind::Anthropic));
        assert_eq!(Kind::parse("azure"), Some(Kind::Azure));
        assert_eq!(Kind::parse("gemini"), Some(Kind::Gemini));
        assert_eq!(Kind::parse("OpenAI"), None);
    }
}
