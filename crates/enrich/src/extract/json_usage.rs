//! Raw Anthropic usage objects embedded as JSON strings by some conventions
//! (OpenInference `output.value`, Logfire `response_data` and
//! `gen_ai.usage.raw`). They carry the API's own, unambiguous meanings.
//!
//! Only ids, model, stop reason, stream flag and usage are read; any message
//! content in the same JSON is skipped and never kept.

use serde::Deserialize;

use crate::observation::Usage;

/// The usage object of an Anthropic response.
#[derive(Debug, Default, Deserialize)]
pub struct UsageJson {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_creation: Option<CacheCreationJson>,
    /// `standard`, `priority` or `batch`.
    pub service_tier: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct CacheCreationJson {
    ephemeral_1h_input_tokens: Option<u64>,
}

impl UsageJson {
    /// Converts to [`Usage`]; cache counts the API left out (null) are 0 when
    /// the usage object is present.
    pub fn to_usage(&self) -> Usage {
        let present = self.input_tokens.is_some() || self.output_tokens.is_some();
        Usage {
            input_uncached: self.input_tokens,
            cache_read: self.cache_read_input_tokens.or(present.then_some(0)),
            cache_write: self.cache_creation_input_tokens.or(present.then_some(0)),
            cache_write_1h: self
                .cache_creation
                .as_ref()
                .and_then(|c| c.ephemeral_1h_input_tokens),
            output: self.output_tokens,
        }
    }
}

/// An Anthropic `Message` (or the parts of one an instrumentation kept).
#[derive(Debug, Default, Deserialize)]
pub struct MessageJson {
    /// `msg_...`.
    pub id: Option<String>,
    /// Model that answered.
    pub model: Option<String>,
    /// Why generation stopped.
    pub stop_reason: Option<String>,
    /// Usage.
    pub usage: Option<UsageJson>,
}

/// Logfire's `response_data`: `{"message": {...}, "usage": {...}}` (the
/// message holds only content, which is skipped).
#[derive(Debug, Default, Deserialize)]
pub struct LogfireResponseJson {
    /// Usage.
    pub usage: Option<UsageJson>,
}

/// A request body: only the model and stream flag.
#[derive(Debug, Default, Deserialize)]
pub struct RequestJson {
    /// Model as requested.
    pub model: Option<String>,
    /// Whether the request streams.
    pub stream: Option<bool>,
}

/// Parses `text` as `T`, or `None` when it is not such JSON (bounded input).
pub fn parse<'a, T: Deserialize<'a>>(text: &'a str) -> Option<T> {
    if text.len() > 4 * 1024 * 1024 || !text.trim_start().starts_with('{') {
        return None;
    }
    serde_json::from_str(text).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn message_usage_is_read_and_content_skipped() {
        let m: MessageJson = parse(
            r#"{"id":"msg_1","content":[{"text":"secret","type":"text"}],"model":"claude-sonnet-4-6","stop_reason":"end_turn",
               "usage":{"cache_creation_input_tokens":1733,"cache_read_input_tokens":512,"input_tokens":10,"output_tokens":11,
                        "cache_creation":{"ephemeral_5m_input_tokens":1733,"ephemeral_1h_input_tokens":0}}}"#,
        )
        .unwrap();
        let u = m.usage.unwrap().to_usage();
        assert_eq!(
            u,
            Usage {
                input_uncached: Some(10),
                cache_read: Some(512),
                cache_write: Some(1733),
                cache_write_1h: Some(0),
                output: Some(11)
            }
        );
        assert_eq!(m.id.as_deref(), Some("msg_1"));
    }

    #[test]
    fn null_cache_counts_are_zero_when_usage_present() {
        let u: UsageJson =
            parse(r#"{"input_tokens":5,"output_tokens":2,"cache_read_input_tokens":null}"#)
                .unwrap();
        assert_eq!(u.to_usage().cache_read, Some(0));
        assert!(parse::<UsageJson>("not json").is_none());
    }
}
