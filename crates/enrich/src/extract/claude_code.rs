//! Claude Code's OTLP events (`claude_code.api_request`, `claude_code.api_error`)
//! and its beta `claude_code.llm_request` spans.
//!
//! Claude Code retries failed calls itself and logs one `api_error` for the
//! last attempt, with `attempt` = total attempts. Its `input_tokens` is the
//! API's uncached count; its `ttft_ms` is the time to the first SSE event.

use claudewatch_otlp::proto::logs::v1::LogRecord;
use claudewatch_otlp::view::{KeyValueRef, ValueRef};

use super::{ResourceCtx, ERROR_MESSAGE_MAX_LEN};
use crate::attrs::{as_f64, as_ident, as_str, as_u64, cut_utf8};
use crate::observation::{Observation, Ttft, TtftQuality};
use crate::text::intern;

/// The Claude Code event name of a log record (`api_request`, ...), if the
/// record is a Claude Code event.
pub(crate) fn event_name<'a>(
    scope: &str,
    rec: &'a LogRecord,
    res: &ResourceCtx,
) -> Option<&'a str> {
    let from_field = rec.event_name.strip_prefix("claude_code.");
    let from_body = rec
        .body
        .as_ref()
        .and_then(|b| as_str(ValueRef::from_proto(b)))
        .and_then(|b| b.strip_prefix("claude_code."));
    let is_claude_code = scope.starts_with("com.anthropic.claude_code")
        || from_field.is_some()
        || from_body.is_some()
        || res
            .service
            .as_deref()
            .is_some_and(|s| s.starts_with("claude-code"));
    if !is_claude_code {
        return None;
    }
    from_field.or(from_body).or_else(|| {
        rec.attributes
            .iter()
            .find(|kv| kv.key == "event.name")
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| as_str(ValueRef::from_proto(v)))
            .map(|n| n.strip_prefix("claude_code.").unwrap_or(n))
    })
}

/// Events that describe one API call.
pub(crate) fn is_call_event(event: &str) -> bool {
    matches!(event, "api_request" | "api_error")
}

/// Fills `o` from an event's attributes; returns the unmapped attributes.
pub(crate) fn fill_log<'a>(
    event: &str,
    attributes: &[KeyValueRef<'a>],
    o: &mut Observation,
) -> Vec<KeyValueRef<'a>> {
    let rest = fill_common(attributes, o);
    if event == "api_request" {
        o.http_status = o.http_status.or(Some(200));
        // The dated id on api_request is the model that answered.
        o.response_model = o.request_model.take();
    } else {
        o.failed = true;
    }
    rest
}

/// Fills `o` from a `claude_code.llm_request` span's attributes.
pub(crate) fn fill_span(attributes: &[KeyValueRef<'_>], o: &mut Observation) {
    let _ = fill_common(attributes, o);
    let ok = attributes
        .iter()
        .find(|kv| kv.key == "success")
        .and_then(|kv| crate::attrs::as_bool(kv.value));
    if ok == Some(false) {
        o.failed = true;
    } else if ok == Some(true) {
        o.http_status = o.http_status.or(Some(200));
    }
}

fn fill_common<'a>(attributes: &[KeyValueRef<'a>], o: &mut Observation) -> Vec<KeyValueRef<'a>> {
    // Claude Code always streams.
    o.stream = Some(true);
    let mut rest = Vec::new();
    for kv in attributes {
        let v = kv.value;
        if v == ValueRef::Empty {
            continue;
        }
        let count = || as_u64(v);
        match kv.key {
            "model" | "gen_ai.request.model" => {
                if o.request_model.is_none() {
                    o.request_model = as_ident(v).map(intern);
                }
            }
            "input_tokens" => o.usage.input_uncached = count(),
            "output_tokens" => o.usage.output = count(),
            "cache_read_tokens" => o.usage.cache_read = count(),
            "cache_creation_tokens" => o.usage.cache_write = count(),
            "cache_creation_1h_tokens" => o.usage.cache_write_1h = count(),
            "cost_usd_micros" => {
                o.reported_cost_micros = count().and_then(|c| i64::try_from(c).ok())
            }
            "duration_ms" => o.duration_ms = as_f64(v),
            "ttft_ms" => {
                o.ttft = as_f64(v).filter(|t| *t >= 0.0).map(|ms| Ttft {
                    ms,
                    quality: TtftQuality::FirstEvent,
                })
            }
            "request_id" => o.request_id = as_ident(v).map(Box::from),
            // On llm_request spans gen_ai.response.id holds the request id, not a msg_ id.
            "gen_ai.response.id" => {
                if let Some(id) = as_ident(v) {
                    if id.starts_with("msg") {
                        o.response_id = Some(id.into());
                    } else if o.request_id.is_none() {
                        o.request_id = Some(id.into());
                    }
                }
            }
            "status_code" => {
                o.http_status = as_u64(v)
                    .and_then(|s| u16::try_from(s).ok())
                    .filter(|s| (100..600).contains(s))
            }
            "error" => {
                o.error_message = as_str(v).map(|s| cut_utf8(s, ERROR_MESSAGE_MAX_LEN).0.into())
            }
            "attempt" => {
                o.retry_attempt = count().and_then(|a| u32::try_from(a.saturating_sub(1)).ok())
            }
            "stop_reason" => o.stop_reason = as_ident(v).map(intern),
            "organization.id" => o.organization_id = as_ident(v).map(intern),
            // Claude Code's own estimate (a binary double): cost_usd_micros is kept instead.
            "cost_usd" | "event.name" | "event.timestamp" | "event.sequence" | "success" => {}
            _ => rest.push(*kv),
        }
    }
    rest
}
