//! Which convention wrote a span, and whether it is about a Claude call at all.
//!
//! Detection is by instrumentation scope first (the most reliable signal),
//! then by attribute signature, then by the HTTP request itself.

use super::span_attrs::SpanAttrs;
use crate::attrs::{as_ident, as_str, ValueRef};
use crate::model_id;
use crate::observation::{Convention, EvidenceKind};

/// A detected convention and evidence kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detected {
    /// The convention to read the item with.
    pub convention: Convention,
    /// What kind of evidence the item is.
    pub kind: EvidenceKind,
}

fn found(convention: Convention, kind: EvidenceKind) -> Option<Detected> {
    Some(Detected { convention, kind })
}

/// Detects the convention of a span (or a GenAI event log record, with an
/// empty span name). `None` when the item is not about a Claude call.
pub(crate) fn detect_span(scope: &str, span_name: &str, a: &SpanAttrs<'_>) -> Option<Detected> {
    use Convention::*;
    use EvidenceKind::*;
    // Only calls that create a message: not count_tokens, batches, models,
    // embeddings, tool executions or agent spans that sum a whole run.
    if let Some(op) = a.operation.and_then(as_str) {
        if !matches!(op, "chat" | "text_completion" | "generate_content" | "") {
            return None;
        }
    }
    if let Some(path) = a
        .url
        .and_then(as_str)
        .map(url_path)
        .or_else(|| a.url_path.and_then(as_str))
    {
        if !is_messages_path(path) {
            return None;
        }
    }
    if span_name == "claude_code.llm_request" {
        return found(ClaudeCode, FirstPartyLog);
    }
    if scope.starts_with("com.anthropic.sdk")
        || (span_name == "anthropic.messages.create" && a.request_id.is_some())
    {
        return found(AnthropicSdk, SdkSpan);
    }
    let claude = || mentions_claude(span_name, a);
    if scope.starts_with("openinference") || a.oi_kind.is_some() {
        let is_llm = a
            .oi_kind
            .and_then(as_str)
            .is_none_or(|k| k.eq_ignore_ascii_case("LLM"));
        return (is_llm && claude()).then_some(Detected {
            convention: OpenInference,
            kind: InstrumentationSpan,
        });
    }
    if scope.starts_with("openlit") || a.sdk_name.and_then(as_str) == Some("openlit") {
        // OpenLIT's Anthropic error spans carry no attributes at all: its scope names the provider.
        let ok = scope.ends_with("anthropic") || claude();
        return ok.then_some(Detected {
            convention: OpenLit,
            kind: InstrumentationSpan,
        });
    }
    if scope.starts_with("logfire") || a.logfire_msg.is_some() {
        if a.request_data.is_none() && a.request_model.is_none() {
            return None;
        }
        return claude().then_some(Detected {
            convention: Logfire,
            kind: InstrumentationSpan,
        });
    }
    if scope.starts_with("opentelemetry.instrumentation.genai")
        || scope.starts_with("opentelemetry.util.genai")
    {
        return claude().then_some(Detected {
            convention: OtelAnthropic,
            kind: InstrumentationSpan,
        });
    }
    if scope == "opentelemetry.instrumentation.anthropic" || scope.contains("traceloop") {
        return claude().then_some(Detected {
            convention: OpenLlmetry,
            kind: InstrumentationSpan,
        });
    }
    if a.provider_name.is_some() || a.system.is_some() || a.request_model.is_some() {
        return claude().then_some(Detected {
            convention: GenAi,
            kind: InstrumentationSpan,
        });
    }
    if is_messages_http_request(a) {
        return found(HttpClient, HttpSpan);
    }
    None
}

/// The span is about a Claude model or the Anthropic provider.
fn mentions_claude(span_name: &str, a: &SpanAttrs<'_>) -> bool {
    let model_is_claude = [a.request_model, a.response_model, a.llm_model]
        .into_iter()
        .flatten()
        .filter_map(as_ident)
        .any(model_id::is_claude);
    if model_is_claude {
        return true;
    }
    let provider_is_anthropic = [a.provider_name, a.system, a.llm_provider, a.llm_system]
        .into_iter()
        .flatten()
        .filter_map(as_str)
        .any(|p| p.eq_ignore_ascii_case("anthropic"));
    if provider_is_anthropic {
        return true;
    }
    // Span names such as "chat claude-sonnet-4-5" or "Message with 'claude-...'".
    span_name.split([' ', '\'', '"']).any(model_id::is_claude)
}

/// A plain HTTP client span of a Messages API call (Anthropic, Bedrock or Vertex).
fn is_messages_http_request(a: &SpanAttrs<'_>) -> bool {
    let method = a.http_method.and_then(as_str);
    if method.is_some_and(|m| !m.eq_ignore_ascii_case("POST")) {
        return false;
    }
    let path = a
        .url
        .and_then(as_str)
        .map(url_path)
        .or_else(|| a.url_path.and_then(as_str));
    path.is_some_and(is_messages_path)
}

/// The path part of a URL, without query.
pub(crate) fn url_path(url: &str) -> &str {
    let after_scheme = after_first(url, "://").unwrap_or(url);
    let path = after_scheme
        .find('/')
        .map(|i| &after_scheme[i..])
        .unwrap_or("/");
    let end = path.bytes().position(|b| b == b'?' || b == b'#');
    end.map_or(path, |end| &path[..end])
}

/// The text after the first `sep` (which starts with `:`), found by its
/// first byte, which is cheaper than a substring search on short URLs.
fn after_first<'a>(text: &'a str, sep: &str) -> Option<&'a str> {
    let mut from = 0;
    while let Some(i) = text[from..].find(':') {
        let at = from + i;
        if text[at..].starts_with(sep) {
            return Some(&text[at + sep.len()..]);
        }
        from = at + 1;
    }
    None
}

/// `/v1/messages` (not `count_tokens` or batches), Bedrock `.../model/<claude>/invoke*`
/// and `converse*`, and Vertex `.../publishers/anthropic/models/...:rawPredict`.
pub(crate) fn is_messages_path(path: &str) -> bool {
    let path = path.trim_end_matches('/');
    if path.ends_with("/v1/messages") {
        return true;
    }
    if let Some(rest) = path.split("/model/").nth(1) {
        let model = rest.split('/').next().unwrap_or("");
        let model = percent_decode_colon(model);
        return model_id::is_claude(&model)
            && (path.ends_with("/invoke")
                || path.ends_with("/invoke-with-response-stream")
                || path.contains("/converse"));
    }
    path.contains("/publishers/anthropic/models/")
        && (path.ends_with(":rawPredict") || path.ends_with(":streamRawPredict"))
}

fn percent_decode_colon(s: &str) -> String {
    s.replace("%3A", ":").replace("%3a", ":")
}

/// The model id in a Bedrock or Vertex URL path, if any.
pub(crate) fn model_from_path(path: &str) -> Option<String> {
    if let Some(rest) = path.split("/model/").nth(1) {
        return Some(percent_decode_colon(rest.split('/').next()?));
    }
    let rest = path.split("/publishers/anthropic/models/").nth(1)?;
    Some(rest.split(':').next()?.to_owned())
}

/// The model named in a span name such as `chat claude-sonnet-4-5`.
pub(crate) fn model_from_span_name(name: &str) -> Option<&str> {
    name.split([' ', '\'', '"'])
        .find(|w| model_id::is_claude(w))
}

/// A value that is an identifier string, for callers outside this module.
pub(crate) fn ident(v: Option<ValueRef<'_>>) -> Option<&str> {
    v.and_then(as_ident)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn messages_paths() {
        assert!(is_messages_path("/v1/messages"));
        assert!(!is_messages_path("/v1/messages/count_tokens"));
        assert!(!is_messages_path("/v1/messages/batches"));
        assert!(is_messages_path(
            "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke"
        ));
        assert!(is_messages_path(
            "/model/anthropic.claude-3-haiku-20240307-v1:0/invoke-with-response-stream"
        ));
        assert!(!is_messages_path(
            "/model/amazon.titan-text-express-v1/invoke"
        ));
        assert!(is_messages_path(
            "/v1/projects/p/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5@20250929:streamRawPredict"
        ));
        assert_eq!(
            url_path("http://127.0.0.1:18080/v1/messages?beta=true"),
            "/v1/messages"
        );
        assert_eq!(url_path("127.0.0.1:18080/v1/messages#x"), "/v1/messages");
        assert_eq!(url_path("https://api.anthropic.com"), "/");
        assert_eq!(url_path("https:/x://h/p?a=1"), "/p");
        assert_eq!(url_path("/v1/messages"), "/v1/messages");
        assert_eq!(
            model_from_path("/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke")
                .as_deref(),
            Some("us.anthropic.claude-sonnet-4-5-20250929-v1:0")
        );
    }

    #[test]
    fn span_name_models() {
        assert_eq!(
            model_from_span_name("chat claude-sonnet-4-5"),
            Some("claude-sonnet-4-5")
        );
        assert_eq!(
            model_from_span_name("Message with 'claude-3-haiku-20240307'"),
            Some("claude-3-haiku-20240307")
        );
        assert_eq!(model_from_span_name("chat gpt-4o"), None);
    }
}
