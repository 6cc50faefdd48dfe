//! Extraction: walks decoded OTLP requests and turns every span or log record
//! that describes a Claude call into an [`Observation`].
//!
//! Each convention's dialect is read here and nowhere else; what comes out has
//! one meaning whatever the source (uncached input, milliseconds, API error
//! types). Message contents are dropped here and never reach a record.

mod claude_code;
mod detect;
mod genai;
mod json_usage;
mod span_attrs;
pub mod tokens;

use std::collections::BTreeMap;
use std::sync::Arc;

use claudewatch_model::{ATTRIBUTES_MAX_COUNT, ATTRIBUTE_VALUE_MAX_LEN};

/// Error messages are kept up to this many bytes.
pub(crate) const ERROR_MESSAGE_MAX_LEN: usize = 4096;

/// Unmapped attribute keys are kept up to this many bytes.
const UNMAPPED_KEY_MAX_LEN: usize = 128;
use claudewatch_otlp::proto::common::v1::{InstrumentationScope, KeyValue};
use claudewatch_otlp::proto::logs::v1::LogRecord;
use claudewatch_otlp::view::{KeyValueRef, SpanRef, TraceBatch, ValueRef};
use claudewatch_otlp::{metric_point_count, ExportRequest};
use smallvec::SmallVec;

use crate::attrs::{as_ident, as_str, cut_utf8, is_content_key, render_bounded_into};
use crate::observation::{Convention, EvidenceKind, Observation};
use crate::text::{intern, Unmapped};
pub use detect::Detected;
use span_attrs::SpanAttrs;

/// Counters of what extraction saw, kept across requests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtractStats {
    /// Spans read.
    pub spans: u64,
    /// Log records read.
    pub log_records: u64,
    /// Metric data points read (metrics produce no call records).
    pub metric_points: u64,
    /// Items that described a Claude call.
    pub observations: u64,
    /// Items that were valid but not about a Claude call.
    pub not_claude: u64,
    /// Rejected items by reason.
    pub rejected: BTreeMap<&'static str, u64>,
    /// Unmapped attribute values cut to the length bound.
    pub truncated_values: u64,
    /// Unmapped attributes dropped over the count bound.
    pub dropped_attributes: u64,
    /// Total-token attributes that disagreed with input + cache + output.
    pub total_token_mismatches: u64,
    /// Input-token attributes that contradicted their convention's folding.
    pub folding_contradictions: u64,
}

impl ExtractStats {
    fn reject(&mut self, reason: &'static str) {
        *self.rejected.entry(reason).or_default() += 1;
    }

    /// Total rejected items.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }
}

/// Resource-level facts shared by all items of a resource.
#[derive(Debug, Clone, Default)]
pub(crate) struct ResourceCtx {
    pub service: Option<Arc<str>>,
    pub service_version: Option<Arc<str>>,
    pub environment: Option<Arc<str>>,
    pub language: Option<Arc<str>>,
}

impl ResourceCtx {
    fn from_attributes(attributes: &[KeyValueRef<'_>]) -> ResourceCtx {
        let mut ctx = ResourceCtx::default();
        for kv in attributes {
            let slot = match kv.key {
                "service.name" => &mut ctx.service,
                "service.version" => &mut ctx.service_version,
                "deployment.environment.name" => &mut ctx.environment,
                "deployment.environment" if ctx.environment.is_none() => &mut ctx.environment,
                "telemetry.sdk.language" => &mut ctx.language,
                _ => continue,
            };
            *slot = as_ident(kv.value).map(intern);
        }
        ctx
    }
}

/// Views of a decoded item's attributes.
fn views(attributes: &[KeyValue]) -> SmallVec<[KeyValueRef<'_>; 16]> {
    attributes.iter().map(KeyValueRef::from_proto).collect()
}

/// Extracts observations from a traces request view, appending to `out`.
pub fn extract_traces(
    batch: &TraceBatch<'_>,
    seq: &mut u64,
    stats: &mut ExtractStats,
    out: &mut Vec<Observation>,
) {
    let resources: SmallVec<[ResourceCtx; 2]> = batch
        .resources
        .iter()
        .map(|r| ResourceCtx::from_attributes(batch.attrs(&r.attributes)))
        .collect();
    let versions: SmallVec<[Option<Arc<str>>; 4]> = batch
        .scopes
        .iter()
        .map(|s| (!s.version.is_empty()).then(|| Arc::from(s.version)))
        .collect();
    out.reserve(batch.spans.len());
    let mut attrs = SpanAttrs::default();
    for span in &batch.spans {
        stats.spans += 1;
        *seq += 1;
        let Some(scope) = batch.scopes.get(span.scope) else {
            continue;
        };
        let Some(res) = resources.get(scope.resource) else {
            continue;
        };
        let version = &versions[span.scope];
        if let Some(o) = span_observation(
            batch, res, scope.name, version, span, *seq, stats, &mut attrs,
        ) {
            stats.observations += 1;
            out.push(o);
        }
    }
}

/// Extracts observations from one decoded request, appending to `out`.
/// `seq` numbers items in arrival order across requests.
pub fn extract(
    req: &ExportRequest,
    seq: &mut u64,
    stats: &mut ExtractStats,
    out: &mut Vec<Observation>,
) {
    match req {
        ExportRequest::Traces(t) => extract_traces(&TraceBatch::from_proto(t), seq, stats, out),
        ExportRequest::Logs(l) => {
            for rl in &l.resource_logs {
                let res = ResourceCtx::from_attributes(&views(
                    rl.resource
                        .as_ref()
                        .map(|r| r.attributes.as_slice())
                        .unwrap_or(&[]),
                ));
                for sl in &rl.scope_logs {
                    let version = scope_version(sl.scope.as_ref());
                    for rec in &sl.log_records {
                        stats.log_records += 1;
                        *seq += 1;
                        if let Some(o) =
                            log_observation(&res, sl.scope.as_ref(), &version, rec, *seq, stats)
                        {
                            stats.observations += 1;
                            out.push(o);
                        }
                    }
                }
            }
        }
        ExportRequest::Metrics(m) => {
            // Metrics are aggregates, never one point per call: they are
            // validated and counted, and produce no call records.
            for rm in &m.resource_metrics {
                for sm in &rm.scope_metrics {
                    for metric in &sm.metrics {
                        stats.metric_points += metric_point_count(metric) as u64;
                    }
                }
            }
        }
    }
}

/// A valid trace id and span id (absent or all-zero ids are `None`).
type Ids = (Option<[u8; 16]>, Option<[u8; 8]>);

fn ids(trace_id: &[u8], span_id: &[u8], stats: &mut ExtractStats) -> Result<Ids, ()> {
    let trace = match trace_id.len() {
        0 => None,
        16 => trace_id
            .try_into()
            .ok()
            .filter(|t: &[u8; 16]| t.iter().any(|b| *b != 0)),
        _ => {
            stats.reject("invalid_trace_id");
            return Err(());
        }
    };
    let span = match span_id.len() {
        0 => None,
        8 => span_id
            .try_into()
            .ok()
            .filter(|s: &[u8; 8]| s.iter().any(|b| *b != 0)),
        _ => {
            stats.reject("invalid_span_id");
            return Err(());
        }
    };
    Ok((trace, span))
}

/// The scope's version, shared by all items of the scope.
fn scope_version(scope: Option<&InstrumentationScope>) -> Option<Arc<str>> {
    scope
        .map(|s| s.version.as_str())
        .filter(|v| !v.is_empty())
        .map(Arc::from)
}

#[allow(clippy::too_many_arguments)]
fn span_observation<'a>(
    batch: &TraceBatch<'a>,
    res: &ResourceCtx,
    scope_name: &str,
    version: &Option<Arc<str>>,
    span: &SpanRef<'a>,
    seq: u64,
    stats: &mut ExtractStats,
    a: &mut SpanAttrs<'a>,
) -> Option<Observation> {
    let attributes = batch.attrs(&span.attributes);
    a.reindex(attributes);
    let a = &*a;
    let detected = detect::detect_span(scope_name, span.name, a);
    let Some(Detected { convention, kind }) = detected else {
        stats.not_claude += 1;
        return None;
    };
    let (trace_id, span_id) = ids(span.trace_id, span.span_id, stats).ok()?;
    let parent_span_id = match span.parent_span_id.len() {
        8 => span.parent_span_id.try_into().ok(),
        _ => None,
    };
    if span.end_time_unix_nano != 0 && span.end_time_unix_nano < span.start_time_unix_nano {
        stats.reject("end_before_start");
        return None;
    }
    let mut o = Observation {
        seq,
        kind: Some(kind),
        convention: Some(convention),
        convention_version: version.clone(),
        start_unix_nano: span.start_time_unix_nano,
        end_unix_nano: span.end_time_unix_nano,
        trace_id,
        span_id,
        parent_span_id,
        service: a
            .service
            .and_then(as_ident)
            .map(intern)
            .or_else(|| res.service.clone()),
        environment: a
            .environment
            .and_then(as_ident)
            .map(intern)
            .or_else(|| res.environment.clone()),
        ..Observation::default()
    };
    if span.end_time_unix_nano > 0 && span.start_time_unix_nano > 0 {
        o.duration_ms = Some((span.end_time_unix_nano - span.start_time_unix_nano) as f64 / 1e6);
    }
    if span.status_code == 2 {
        o.failed = true;
        if !span.status_message.is_empty() {
            o.error_message = Some(
                cut_utf8(span.status_message, ERROR_MESSAGE_MAX_LEN)
                    .0
                    .into(),
            );
        }
    }
    for ev in batch.events.get(span.events.clone()).unwrap_or(&[]) {
        if ev.name == "exception" {
            for kv in batch.attrs(&ev.attributes) {
                match kv.key {
                    "exception.type" => o.exception_type = as_ident(kv.value).map(intern),
                    "exception.message" if o.error_message.is_none() => {
                        o.error_message =
                            as_str(kv.value).map(|s| cut_utf8(s, ERROR_MESSAGE_MAX_LEN).0.into());
                    }
                    _ => {}
                }
            }
            o.failed = true;
        }
    }
    match convention {
        Convention::ClaudeCode => claude_code::fill_span(attributes, &mut o),
        _ => genai::fill(convention, span.name, a, res, &mut o, stats),
    }
    o.unmapped = bounded_unmapped(&a.rest, stats);
    Some(o)
}

fn log_observation(
    res: &ResourceCtx,
    scope: Option<&InstrumentationScope>,
    version: &Option<Arc<str>>,
    rec: &LogRecord,
    seq: u64,
    stats: &mut ExtractStats,
) -> Option<Observation> {
    let scope_name = scope.map(|s| s.name.as_str()).unwrap_or("");
    if let Some(event) = claude_code::event_name(scope_name, rec, res) {
        if !claude_code::is_call_event(event) {
            stats.not_claude += 1;
            return None;
        }
        let (trace_id, span_id) = ids(&rec.trace_id, &rec.span_id, stats).ok()?;
        let mut o = Observation {
            seq,
            kind: Some(EvidenceKind::FirstPartyLog),
            convention: Some(Convention::ClaudeCode),
            convention_version: res.service_version.clone(),
            trace_id,
            span_id,
            service: res.service.clone(),
            environment: res.environment.clone(),
            ..Observation::default()
        };
        let time = if rec.time_unix_nano != 0 {
            rec.time_unix_nano
        } else {
            rec.observed_time_unix_nano
        };
        let attributes = views(&rec.attributes);
        let rest = claude_code::fill_log(event, &attributes, &mut o);
        o.end_unix_nano = time;
        let dur_ns = o.duration_ms.map(|d| (d * 1e6) as u64).unwrap_or(0);
        o.start_unix_nano = time.saturating_sub(dur_ns);
        o.unmapped = bounded_unmapped(&rest, stats);
        return Some(o);
    }
    // The GenAI "inference details" event carries the span's attributes.
    let event = if rec.event_name.is_empty() {
        rec.attributes
            .iter()
            .find(|kv| kv.key == "event.name")
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| as_str(ValueRef::from_proto(v)))
            .unwrap_or("")
    } else {
        rec.event_name.as_str()
    };
    if event != "gen_ai.client.inference.operation.details" {
        stats.not_claude += 1;
        return None;
    }
    let attributes = views(&rec.attributes);
    let a = SpanAttrs::index(&attributes);
    let Some(Detected { convention, .. }) = detect::detect_span(scope_name, "", &a) else {
        stats.not_claude += 1;
        return None;
    };
    let (trace_id, span_id) = ids(&rec.trace_id, &rec.span_id, stats).ok()?;
    let time = if rec.time_unix_nano != 0 {
        rec.time_unix_nano
    } else {
        rec.observed_time_unix_nano
    };
    let mut o = Observation {
        seq,
        kind: Some(EvidenceKind::InstrumentationLog),
        convention: Some(convention),
        convention_version: version.clone(),
        start_unix_nano: time,
        trace_id,
        span_id,
        service: res.service.clone(),
        environment: res.environment.clone(),
        failed: rec.severity_number >= 17,
        ..Observation::default()
    };
    genai::fill(convention, "", &a, res, &mut o, stats);
    // A log record has no duration of its own and is not a span to parent.
    o.span_id = None;
    o.unmapped = bounded_unmapped(&a.rest, stats);
    Some(o)
}

/// Unmapped, non-content attributes, bounded in count and value length.
fn bounded_unmapped(rest: &[KeyValueRef<'_>], stats: &mut ExtractStats) -> Unmapped {
    let kept: SmallVec<[&KeyValueRef<'_>; 16]> = rest
        .iter()
        .filter(|kv| !is_content_key(kv.key) && kv.value != ValueRef::Empty)
        .collect();
    // Sized for string values exactly (other values render short): one allocation.
    let estimate: usize = kept
        .iter()
        .take(ATTRIBUTES_MAX_COUNT)
        .map(|kv| {
            let value = match kv.value {
                ValueRef::Str(s) => s.len().min(ATTRIBUTE_VALUE_MAX_LEN),
                _ => 24,
            };
            4 + kv.key.len().min(UNMAPPED_KEY_MAX_LEN) + value
        })
        .sum();
    let mut out = Unmapped::with_capacity(estimate);
    let mut value = String::new();
    for kv in kept {
        if out.len() >= ATTRIBUTES_MAX_COUNT {
            stats.dropped_attributes += 1;
            continue;
        }
        let (key, key_cut) = cut_utf8(kv.key, UNMAPPED_KEY_MAX_LEN);
        // Text is kept as it is (cut like a rendered value); anything else
        // is rendered first.
        let (text, cut) = match kv.value {
            ValueRef::Str(s) => cut_utf8(s, ATTRIBUTE_VALUE_MAX_LEN),
            other => {
                let cut = render_bounded_into(other, &mut value);
                (value.as_str(), cut)
            }
        };
        if cut || key_cut {
            stats.truncated_values += 1;
        }
        out.push(key, text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmapped_values_are_kept_cut_and_counted() {
        // The cut falls inside an "é": it backs off to the character before.
        let long = format!("x{}", "é".repeat(300));
        let rest = [
            KeyValueRef {
                key: "plain",
                value: ValueRef::Str("v"),
            },
            KeyValueRef {
                key: "long",
                value: ValueRef::Str(&long),
            },
            KeyValueRef {
                key: "int",
                value: ValueRef::Int(-42),
            },
            KeyValueRef {
                key: "gen_ai.prompt",
                value: ValueRef::Str("content, never kept"),
            },
        ];
        let mut stats = ExtractStats::default();
        let kept: Vec<(String, String)> = bounded_unmapped(&rest, &mut stats)
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let cut = format!("x{}", "é".repeat((ATTRIBUTE_VALUE_MAX_LEN - 1) / 2));
        assert_eq!(
            kept,
            [("plain", "v"), ("long", cut.as_str()), ("int", "-42")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        assert_eq!(stats.truncated_values, 1);
    }
}
