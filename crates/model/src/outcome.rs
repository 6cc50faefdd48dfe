//! The closed vocabularies of a call record: outcome, blame, limit kind, provider.

use serde::{Deserialize, Serialize};

/// How a call ended, as SPEC.md section 2 names it.
///
/// 429 (`RateLimited`, the caller's own quota) and 529 (`Overloaded`, the
/// platform for everyone) are deliberately separate variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// 200 and the response completed.
    Success,
    /// 400 `invalid_request_error`.
    InvalidRequest,
    /// 401 `authentication_error`.
    Authentication,
    /// 402 `billing_error`.
    Billing,
    /// 403 `permission_error`.
    Permission,
    /// 404 `not_found_error` (often a retired model id).
    NotFound,
    /// 413 `request_too_large`.
    RequestTooLarge,
    /// 429 `rate_limit_error`: the caller's own RPM/TPM/RPD/spend limit.
    RateLimited,
    /// 500 `api_error`.
    ApiError,
    /// 504 `timeout_error`: the API timed out while processing.
    ApiTimeout,
    /// 529 `overloaded_error`: Anthropic-wide capacity.
    Overloaded,
    /// 200, then the stream died with an SSE `error` event.
    StreamError,
    /// Client-side timeout: no HTTP answer.
    Timeout,
    /// Client-side connection failure: no HTTP answer.
    ConnectionError,
    /// Another 4xx status.
    ClientError,
    /// Another 5xx status.
    ServerError,
    /// The telemetry says the call failed but not how, or says nothing at all.
    Unknown,
}

impl Outcome {
    /// The snake_case name used in JSON and ClickHouse.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::InvalidRequest => "invalid_request",
            Outcome::Authentication => "authentication",
            Outcome::Billing => "billing",
            Outcome::Permission => "permission",
            Outcome::NotFound => "not_found",
            Outcome::RequestTooLarge => "request_too_large",
            Outcome::RateLimited => "rate_limited",
            Outcome::ApiError => "api_error",
            Outcome::ApiTimeout => "api_timeout",
            Outcome::Overloaded => "overloaded",
            Outcome::StreamError => "stream_error",
            Outcome::Timeout => "timeout",
            Outcome::ConnectionError => "connection_error",
            Outcome::ClientError => "client_error",
            Outcome::ServerError => "server_error",
            Outcome::Unknown => "unknown",
        }
    }

    /// Who is at fault for this outcome; `None` for a success.
    pub fn blame(self) -> Option<Blame> {
        match self {
            Outcome::Success => None,
            Outcome::InvalidRequest
            | Outcome::Authentication
            | Outcome::Permission
            | Outcome::NotFound
            | Outcome::RequestTooLarge
            | Outcome::ClientError => Some(Blame::Client),
            Outcome::Billing | Outcome::RateLimited => Some(Blame::Quota),
            Outcome::ApiError
            | Outcome::ApiTimeout
            | Outcome::Overloaded
            | Outcome::StreamError
            | Outcome::ServerError => Some(Blame::Platform),
            Outcome::Timeout | Outcome::ConnectionError => Some(Blame::Network),
            Outcome::Unknown => None,
        }
    }

    /// Whether retrying the same request can help.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            Outcome::RateLimited
                | Outcome::ApiError
                | Outcome::ApiTimeout
                | Outcome::Overloaded
                | Outcome::StreamError
                | Outcome::Timeout
                | Outcome::ConnectionError
                | Outcome::ServerError
        )
    }

    /// Whether the call failed (anything but success).
    pub fn is_error(self) -> bool {
        self != Outcome::Success
    }
}

/// Which party a failed call is blamed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Blame {
    /// The request itself is wrong (fix it; never retry).
    Client,
    /// The caller's own quota or billing.
    Quota,
    /// Anthropic's platform.
    Platform,
    /// The network between caller and API.
    Network,
}

impl Blame {
    /// The snake_case name used in JSON and ClickHouse.
    pub fn as_str(self) -> &'static str {
        match self {
            Blame::Client => "client",
            Blame::Quota => "quota",
            Blame::Platform => "platform",
            Blame::Network => "network",
        }
    }
}

/// Which limit a 429 names, when its message or headers say so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    /// Requests per minute or per day.
    Requests,
    /// Input tokens per minute.
    InputTokens,
    /// Output tokens per minute.
    OutputTokens,
    /// Tokens per minute (input and output together).
    Tokens,
    /// A spend limit (monthly or otherwise).
    Spend,
    /// Long context requires extra usage.
    LongContext,
}

impl LimitKind {
    /// The snake_case name used in JSON and ClickHouse.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Requests => "requests",
            LimitKind::InputTokens => "input_tokens",
            LimitKind::OutputTokens => "output_tokens",
            LimitKind::Tokens => "tokens",
            LimitKind::Spend => "spend",
            LimitKind::LongContext => "long_context",
        }
    }
}

/// The API surface the call went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    /// The first-party Anthropic API.
    Anthropic,
    /// Amazon Bedrock.
    Bedrock,
    /// Google Cloud Vertex AI.
    Vertex,
}

impl Provider {
    /// The snake_case name used in JSON and ClickHouse.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Anthropic => "anthropic",
            Provider::Bedrock => "bedrock",
            Provider::Vertex => "vertex",
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_and_overload_are_blamed_differently() {
        assert_eq!(Outcome::RateLimited.blame(), Some(Blame::Quota));
        assert_eq!(Outcome::Overloaded.blame(), Some(Blame::Platform));
        assert_eq!(Outcome::Success.blame(), None);
    }

    #[test]
    fn client_errors_are_never_retryable() {
        for o in [
            Outcome::InvalidRequest,
            Outcome::Authentication,
            Outcome::Permission,
            Outcome::NotFound,
            Outcome::RequestTooLarge,
        ] {
            assert!(!o.retryable(), "{o:?}");
        }
        assert!(Outcome::Overloaded.retryable());
    }

    #[test]
    fn names_match_serde() {
        fn check<T: Serialize>(value: T, name: &str) {
            assert_eq!(
                serde_json::to_string(&value).unwrap(),
                format!("\"{name}\"")
            );
        }
        use Outcome as O;
        for o in [
            O::Success,
            O::InvalidRequest,
            O::Authentication,
            O::Billing,
            O::Permission,
            O::NotFound,
            O::RequestTooLarge,
            O::RateLimited,
            O::ApiError,
            O::ApiTimeout,
            O::Overloaded,
            O::StreamError,
            O::Timeout,
            O::ConnectionError,
            O::ClientError,
            O::ServerError,
            O::Unknown,
        ] {
            check(o, o.as_str());
        }
        for b in [Blame::Client, Blame::Quota, Blame::Platform, Blame::Network] {
            check(b, b.as_str());
        }
        use LimitKind as L;
        for k in [
            L::Requests,
            L::InputTokens,
            L::OutputTokens,
            L::Tokens,
            L::Spend,
            L::LongContext,
        ] {
            check(k, k.as_str());
        }
        for p in [Provider::Anthropic, Provider::Bedrock, Provider::Vertex] {
            check(p, p.as_str());
        }
        assert_eq!(Outcome::StreamError.as_str(), "stream_error");
    }
}
