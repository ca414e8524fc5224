//! The proxied endpoints as clients call them: which path is which, the protocol it speaks,
//! how its answers report usage and how its errors look.
use router_upstream::Api;

use super::usage::Dialect;
use crate::{convert::Conversion, policy::Protocol};

/// The proxied endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/chat/completions`.
    ChatCompletions,
    /// `POST /v1/completions`.
    Completions,
    /// `POST /v1/embeddings`.
    Embeddings,
    /// `POST /v1/responses`.
    Responses,
    /// `POST /v1/messages`.
    Messages,
    /// `POST /v1/messages/count_tokens` (free, unmetered).
    CountTokens,
}

impl Endpoint {
    /// The endpoint for a request path (query already removed).
    pub fn from_path(path: &str) -> Option<Endpoint> {
        Some(match path.trim_end_matches('/') {
            "/v1/chat/completions" | "/chat/completions" => Endpoint::ChatCompletions,
            "/v1/completions" | "/completions" => Endpoint::Completions,
            "/v1/embeddings" | "/embeddings" => Endpoint::Embeddings,
            "/v1/responses" | "/responses" => Endpoint::Responses,
            "/v1/messages" => Endpoint::Messages,
            "/v1/messages/count_tokens" => Endpoint::CountTokens,
            _ => return None,
        })
    }

    /// The path as clients call it (for usage records and metrics).
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/v1/chat/completions",
            Endpoint::Completions => "/v1/completions",
            Endpoint::Embeddings => "/v1/embeddings",
            Endpoint::Responses => "/v1/responses",
            Endpoint::Messages => "/v1/messages",
            Endpoint::CountTokens => "/v1/messages/count_tokens",
        }
    }

    /// The protocol it speaks: channels listing it serve it natively.
    pub fn protocol(self) -> Protocol {
        match self {
            Endpoint::ChatCompletions => Protocol::Chat,
            Endpoint::Completions => Protocol::Completions,
            Endpoint::Embeddings => Protocol::Embeddings,
            Endpoint::Responses => Protocol::Responses,
            Endpoint::Messages | Endpoint::CountTokens => Protocol::Messages,
        }
    }

    /// The upstream API it calls.
    pub fn api(self) -> Api {
        match self {
            Endpoint::ChatCompletions => Api::ChatCompletions,
            Endpoint::Completions => Api::Completions,
            Endpoint::Embeddings => Api::Embeddings,
            Endpoint::Responses => Api::Responses,
            Endpoint::Messages => Api::Messages,
            Endpoint::CountTokens => Api::CountTokens,
        }
    }

    /// How it is served on channels that do not speak its protocol: the conversion, and the
    /// upstream endpoint it converts to (Messages ⇄ Chat, Responses → Chat).
    pub fn conversion(self) -> Option<(Conversion, Endpoint)> {
        match self {
            Endpoint::Messages => Some((Conversion::MessagesToChat, Endpoint::ChatCompletions)),
            Endpoint::ChatCompletions => Some((Conversion::ChatToMessages, Endpoint::Messages)),
            Endpoint::Responses => Some((Conversion::ResponsesToChat, Endpoint::ChatCompletions)),
            Endpoint::Completions | Endpoint::Embeddings | Endpoint::CountTokens => None,
        }
    }

    /// How its answers report usage.
    pub fn dialect(self) -> Dialect {
        match self {
            Endpoint::Messages | Endpoint::CountTokens => Dialect::Anthropic,
            Endpoint::Responses => Dialect::Responses,
            _ => Dialect::OpenAi,
        }
    }

    /// Whether its protocol has `stream_options.include_usage` (the Responses API rejects it).
    pub fn has_stream_usage_option(self) -> bool {
        matches!(self, Endpoint::ChatCompletions | Endpoint::Completions)
    }

    /// Whether errors use Anthropic's shape.
    pub fn anthropic_errors(self) -> bool {
        self.protocol() == Protocol::Messages
    }

    /// Whether requests to it are billed (`count_tokens` is free and leaves no usage record).
    pub fn is_billed(self) -> bool {
        self != Endpoint::CountTokens
    }
}
