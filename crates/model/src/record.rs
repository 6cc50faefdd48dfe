//! The call record itself.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::{Attributes, Blame, LimitKind, Outcome, Provider};

/// At most this many unmapped attributes are kept on a record.
pub const ATTRIBUTES_MAX_COUNT: usize = 32;
/// Unmapped attribute values longer than this (in bytes) are truncated.
pub const ATTRIBUTE_VALUE_MAX_LEN: usize = 256;

/// One Claude API call, whatever instrumentation described it and however many
/// spans or log records did.
///
/// Unknown values are `None` (JSON `null`), never a made-up 0. Token counts
/// follow the API's meaning: `input_tokens` excludes cached tokens.
/// Message contents are never stored here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// Call start, nanoseconds since the Unix epoch (UTC).
    pub time_unix_nano: u64,
    /// Tenant the data was received for (from the deployment's auth), if any.
    pub tenant: Option<String>,
    /// `service.name` of the calling application.
    pub service: Option<String>,
    /// Deployment environment (`deployment.environment.name` or the older key).
    pub environment: Option<String>,
    /// Anthropic organization id: the quota key when present.
    pub organization_id: Option<String>,
    /// Trace id (32 hex digits) of the most trusted span of the call.
    pub trace_id: Option<String>,
    /// Span id (16 hex digits) of the most trusted span of the call.
    pub span_id: Option<String>,
    /// The API's `request-id` (`req_...`) of the last attempt.
    pub request_id: Option<String>,
    /// The message id (`msg_...`) of the response.
    pub response_id: Option<String>,
    /// API surface: anthropic, bedrock or vertex.
    pub provider: Option<Provider>,
    /// Model id as the telemetry gave it (the request model when known).
    pub model: Option<String>,
    /// Normalised model family and version, e.g. `claude-sonnet-4-5`.
    pub model_family: Option<String>,
    /// Whether the call was streamed.
    pub stream: Option<bool>,
    /// HTTP status of the last attempt (200 for a stream that failed mid-way).
    pub http_status: Option<u16>,
    /// API error type (`overloaded_error`, `rate_limit_error`, ...).
    pub error_type: Option<String>,
    /// How the call ended.
    pub outcome: Outcome,
    /// Who is at fault for a failure.
    pub blame: Option<Blame>,
    /// Whether retrying can help.
    pub retryable: bool,
    /// True for any of the three overload forms (529, mid-stream
    /// `overloaded_error`, 500 `api_error` saying `Overloaded`).
    pub overload: bool,
    /// Which limit a 429 names, when known.
    pub limit_kind: Option<LimitKind>,
    /// Why generation stopped (`end_turn`, `max_tokens`, `tool_use`, ...).
    pub stop_reason: Option<String>,
    /// Uncached input tokens, as the API reports them.
    pub input_tokens: Option<u64>,
    /// Tokens read from the prompt cache.
    pub cache_read_tokens: Option<u64>,
    /// Tokens written to the prompt cache (all TTLs).
    pub cache_write_tokens: Option<u64>,
    /// The part of `cache_write_tokens` written with a 1-hour TTL.
    pub cache_write_1h_tokens: Option<u64>,
    /// Output tokens.
    pub output_tokens: Option<u64>,
    /// Exact cost in USD; `None` when unpriced or when a billable count is unknown.
    #[serde(with = "rust_decimal::serde::str_option")]
    pub cost_usd: Option<Decimal>,
    /// True when the model has no price in the price table.
    pub unpriced: bool,
    /// Time to the first content token in milliseconds (streams only).
    pub ttft_ms: Option<f64>,
    /// Duration of the call in milliseconds, including client retries.
    pub duration_ms: Option<f64>,
    /// Retries before the attempt this record describes (0 = first attempt).
    pub retry_attempt: Option<u32>,
    /// Which instrumentation(s) described the call, with versions.
    pub source: String,
    /// Attributes that were not mapped, bounded in count and length.
    pub attributes: Attributes,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn sample() -> CallRecord {
        CallRecord {
            time_unix_nano: 1,
            tenant: None,
            service: Some("svc".into()),
            environment: None,
            organization_id: None,
            trace_id: None,
            span_id: None,
            request_id: Some("req_1".into()),
            response_id: None,
            provider: Some(Provider::Anthropic),
            model: Some("claude-sonnet-4-5".into()),
            model_family: Some("claude-sonnet-4-5".into()),
            stream: Some(false),
            http_status: Some(200),
            error_type: None,
            outcome: Outcome::Success,
            blame: None,
            retryable: false,
            overload: false,
            limit_kind: None,
            stop_reason: Some("end_turn".into()),
            input_tokens: Some(1200),
            cache_read_tokens: Some(0),
            cache_write_tokens: Some(0),
            cache_write_1h_tokens: None,
            output_tokens: Some(85),
            cost_usd: Some(Decimal::from_str("0.004875").unwrap()),
            unpriced: false,
            ttft_ms: None,
            duration_ms: Some(41.5),
            retry_attempt: Some(0),
            source: "anthropic_sdk_python@2.12.0".into(),
            attributes: Attributes::new(),
        }
    }

    #[test]
    fn cost_serialises_as_exact_decimal_string() {
        let v = serde_json::to_value(sample()).unwrap();
        assert_eq!(v["cost_usd"], "0.004875");
        assert_eq!(v["outcome"], "success");
        assert!(v["ttft_ms"].is_null());
    }

    #[test]
    fn round_trips_through_json() {
        let r = sample();
        let back: CallRecord = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }
}
