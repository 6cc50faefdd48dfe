//! Reading spans of the `gen_ai.*`-family conventions (the Anthropic SDK,
//! OpenLLMetry, the OpenTelemetry GenAI instrumentation and semconv, OpenLIT,
//! Logfire), OpenInference's `llm.*` spans, and plain HTTP client spans.

use claudewatch_model::Provider;
use claudewatch_otlp::view::ValueRef;

use super::detect::{ident, model_from_path, model_from_span_name, url_path};
use super::json_usage::{self, LogfireResponseJson, MessageJson, RequestJson, UsageJson};
use super::span_attrs::SpanAttrs;
use super::tokens::{input_meaning, uncached_input, Emitter, InputMeaning};
use super::{ExtractStats, ResourceCtx};
use crate::attrs::{as_bool, as_f64, as_i64, as_str, as_u64, first_string};
use crate::classify::{is_api_error_type, parse_error_text};
use crate::observation::{Convention, Observation, Ttft, TtftQuality, Usage};
use crate::text::intern;

/// Fills `o` from the span attributes of a GenAI-family or OpenInference span.
pub(crate) fn fill(
    convention: Convention,
    span_name: &str,
    a: &SpanAttrs<'_>,
    res: &ResourceCtx,
    o: &mut Observation,
    stats: &mut ExtractStats,
) {
    let shared = |v: Option<ValueRef<'_>>| ident(v).map(intern);
    let unique = |v: Option<ValueRef<'_>>| ident(v).map(Box::from);

    // --- identity and model -------------------------------------------------
    o.request_model = shared(a.request_model)
        .or_else(|| shared(a.llm_model))
        .or_else(|| model_from_span_name(span_name).map(intern));
    o.response_model = shared(a.response_model);
    o.response_id = unique(a.response_id);
    o.request_id = unique(a.request_id);
    o.organization_id = shared(a.organization_id);
    o.provider = provider(a);
    o.http_status = a
        .http_status
        .and_then(as_i64)
        .and_then(|s| u16::try_from(s).ok())
        .filter(|s| (100..600).contains(s));
    o.retry_attempt = a
        .resend_count
        .and_then(as_u64)
        .and_then(|n| u32::try_from(n).ok());
    o.batch = a.service_tier.and_then(as_str).map(|t| t == "batch");
    o.stop_reason = shared(a.stop_reason).or_else(|| {
        a.finish_reasons
            .and_then(first_string)
            .map(|r| intern(normalise_finish_reason(r)))
    });

    // --- error type -----------------------------------------------------------
    if let Some(et) = ident(a.error_type) {
        if is_api_error_type(et) {
            o.api_error_type = Some(intern(et));
        } else if let Ok(status) = et.parse::<u16>() {
            o.http_status = o.http_status.or(Some(status));
        } else if et != "_OTHER" {
            o.exception_type = o.exception_type.take().or_else(|| Some(intern(et)));
        }
        o.failed = true;
    }
    if let Some(msg) = &o.error_message {
        // Error bodies quote the request id: the only id an error span of
        // some conventions has, and the key to its twin SDK span.
        if o.request_id.is_none() {
            o.request_id = parse_error_text(msg).request_id.map(Box::from);
        }
    }

    // --- stream flag ------------------------------------------------------------
    o.stream = a.stream.and_then(as_bool);
    if convention == Convention::AnthropicSdk {
        // The SDK sets gen_ai.request.stream only on streams, and
        // http.request.resend_count only when it retried.
        o.stream = o.stream.or(Some(false));
        o.retry_attempt = o.retry_attempt.or(Some(0));
    }

    // --- convention-specific parts ------------------------------------------------
    match convention {
        Convention::OpenInference => fill_openinference(a, res, o),
        Convention::Logfire => fill_logfire(span_name, a, res, o),
        Convention::HttpClient => fill_http(a, o),
        _ => fill_gen_ai_usage(convention, a, res, o, stats),
    }

    // --- TTFT -------------------------------------------------------------------
    if o.stream == Some(true) {
        let secs = |v: Option<ValueRef<'_>>| v.and_then(as_f64).filter(|s| *s >= 0.0);
        o.ttft = match convention {
            // The SDK measures from the call's start to the first content_block_delta.
            Convention::AnthropicSdk => {
                secs(a.ttft_first_chunk).map(|s| ttft(s, TtftQuality::FirstContent))
            }
            // OpenLIT's value is right for create(stream=True) but is the time to the
            // first SSE event for messages.stream(): not documented which.
            Convention::OpenLit => secs(a.ttft_server).map(|s| ttft(s, TtftQuality::FirstToken)),
            // The GenAI instrumentation measures to the first stream event.
            _ => secs(a.ttft_first_chunk).map(|s| ttft(s, TtftQuality::FirstEvent)),
        };
    }

    // --- provider from the model id when attributes did not say -----------------
    if o.provider.is_none() || o.provider == Some(Provider::Anthropic) {
        let implied = [o.request_model.as_deref(), o.response_model.as_deref()]
            .into_iter()
            .flatten()
            .find_map(crate::model_id::provider_hint);
        if implied.is_some() {
            o.provider = implied;
        }
    }
}

fn ttft(seconds: f64, quality: TtftQuality) -> Ttft {
    Ttft {
        ms: seconds * 1000.0,
        quality,
    }
}

/// Finish reasons some instrumentations rewrite to OpenAI's vocabulary.
fn normalise_finish_reason(r: &str) -> &str {
    match r {
        "length" => "max_tokens",
        "tool_call" | "tool_calls" => "tool_use",
        "content_filter" => "refusal",
        other => other,
    }
}

fn provider(a: &SpanAttrs<'_>) -> Option<Provider> {
    let from_name = [a.provider_name, a.system, a.llm_provider, a.llm_system]
        .into_iter()
        .flatten()
        .filter_map(as_str)
        .find_map(|p| match p.to_ascii_lowercase().as_str() {
            "anthropic" => Some(Provider::Anthropic),
            "aws.bedrock" | "aws" | "bedrock" => Some(Provider::Bedrock),
            "gcp.vertex_ai" | "vertex_ai" | "gcp.gen_ai" | "google" | "vertexai" => {
                Some(Provider::Vertex)
            }
            _ => None,
        });
    // The GenAI instrumentation reports `anthropic` even for Bedrock and Vertex
    // clients: the server address tells the truth.
    let from_host = ident(a.server_address).and_then(|host| {
        if host.contains("bedrock") && host.contains("amazonaws.com") {
            Some(Provider::Bedrock)
        } else if host.contains("aiplatform.googleapis.com") {
            Some(Provider::Vertex)
        } else {
            None
        }
    });
    from_host.or(from_name)
}

/// Usage for the `gen_ai.usage.*` conventions, unfolded per convention.
fn fill_gen_ai_usage(
    convention: Convention,
    a: &SpanAttrs<'_>,
    res: &ResourceCtx,
    o: &mut Observation,
    stats: &mut ExtractStats,
) {
    let input = a.input_tokens.and_then(as_u64);
    let cache_read = a.cache_read.and_then(as_u64);
    let cache_write = a.cache_write.and_then(as_u64);
    let output = a.output_tokens.and_then(as_u64);
    let emitter = Emitter {
        version: o.convention_version.as_deref(),
        language: res.language.as_deref(),
        stream: o.stream == Some(true),
        has_provider_name: a.provider_name.is_some(),
        has_cache_attrs: cache_read.is_some() || cache_write.is_some(),
    };
    let meaning = input_meaning(convention, emitter);
    o.usage = unfold(input, cache_read, cache_write, output, meaning, stats);
    let w1h = a.cache_write_1h.and_then(as_u64);
    let w5m = a.cache_write_5m.and_then(as_u64);
    o.usage.cache_write_1h = w1h.or(w5m.map(|_| 0));
    let usage = o.usage;
    check_total(a.total_tokens.and_then(as_u64), input, &usage, stats, o);
}

/// Applies the folding decision; keeps the convention's own input for the total check.
fn unfold(
    input: Option<u64>,
    cache_read: Option<u64>,
    cache_write: Option<u64>,
    output: Option<u64>,
    meaning: InputMeaning,
    stats: &mut ExtractStats,
) -> Usage {
    let input_uncached = input.map(|i| {
        let (n, contradiction) = uncached_input(
            i,
            cache_read.unwrap_or(0),
            cache_write.unwrap_or(0),
            meaning,
        );
        if contradiction {
            stats.folding_contradictions += 1;
        }
        n
    });
    Usage {
        input_uncached,
        cache_read,
        cache_write,
        cache_write_1h: None,
        output,
    }
}

/// Checks a total-token attribute against the parts; counts disagreements.
fn check_total(
    total: Option<u64>,
    input_attr: Option<u64>,
    u: &Usage,
    stats: &mut ExtractStats,
    o: &mut Observation,
) {
    let (Some(total), Some(out)) = (total, u.output) else {
        return;
    };
    // Saturating: hostile counts must not overflow.
    let full = u
        .input_uncached
        .unwrap_or(0)
        .saturating_add(u.cache_read.unwrap_or(0))
        .saturating_add(u.cache_write.unwrap_or(0))
        .saturating_add(out);
    let as_emitted = input_attr.unwrap_or(0).saturating_add(out);
    if total != full && total != as_emitted {
        stats.total_token_mismatches += 1;
        o.total_mismatch = true;
    }
}

/// OpenInference: raw usage from `output.value` when it is the response JSON,
/// else `llm.token_count.*` (prompt folded per version).
fn fill_openinference(a: &SpanAttrs<'_>, res: &ResourceCtx, o: &mut Observation) {
    if let Some(inv) = a
        .llm_invocation
        .and_then(as_str)
        .and_then(json_usage::parse::<RequestJson>)
    {
        o.stream = o.stream.or(inv.stream).or(Some(false));
    }
    let message = a
        .output_value
        .and_then(as_str)
        .filter(|_| {
            a.output_mime
                .and_then(as_str)
                .is_none_or(|m| m.contains("json"))
        })
        .and_then(json_usage::parse::<MessageJson>);
    if let Some(m) = &message {
        o.response_id = o.response_id.take().or_else(|| {
            m.id.as_deref()
                .filter(|i| i.starts_with("msg"))
                .map(Box::from)
        });
        o.response_model = o
            .response_model
            .take()
            .or_else(|| m.model.as_deref().map(intern));
        o.stop_reason = o
            .stop_reason
            .take()
            .or_else(|| m.stop_reason.as_deref().map(intern));
    }
    if let Some(u) = message.as_ref().and_then(|m| m.usage.as_ref()) {
        o.usage = u.to_usage();
        o.batch = o.batch.or(u.service_tier.as_deref().map(|t| t == "batch"));
        return;
    }
    let prompt = a.llm_prompt.and_then(as_u64);
    let completion = a.llm_completion.and_then(as_u64);
    if prompt.is_none() && completion.is_none() {
        return;
    }
    // OpenInference leaves zero counts out.
    let cache_read = a.llm_cache_read.and_then(as_u64).unwrap_or(0);
    let cache_write = a.llm_cache_write.and_then(as_u64).unwrap_or(0);
    let meaning = input_meaning(
        Convention::OpenInference,
        Emitter {
            version: o.convention_version.as_deref(),
            language: res.language.as_deref(),
            stream: o.stream == Some(true),
            ..Emitter::default()
        },
    );
    o.usage = Usage {
        input_uncached: Some(
            uncached_input(prompt.unwrap_or(0), cache_read, cache_write, meaning).0,
        ),
        cache_read: Some(cache_read),
        cache_write: Some(cache_write),
        cache_write_1h: None,
        output: Some(completion.unwrap_or(0)),
    };
}

/// Logfire: raw usage (`gen_ai.usage.raw`, `response_data.usage`) first; the
/// `gen_ai.usage.input_tokens` attribute is folded from 4.31.0 on.
fn fill_logfire(span_name: &str, a: &SpanAttrs<'_>, _res: &ResourceCtx, o: &mut Observation) {
    let request = a
        .request_data
        .and_then(as_str)
        .and_then(json_usage::parse::<RequestJson>);
    if let Some(r) = &request {
        o.request_model = o
            .request_model
            .take()
            .or_else(|| r.model.as_deref().map(intern));
        o.stream = o.stream.or(r.stream);
    }
    let is_stream_log = span_name.starts_with("streaming response from");
    if is_stream_log {
        o.stream = Some(true);
        o.kind = Some(crate::observation::EvidenceKind::InstrumentationLog);
    }
    // Logfire copies the request model into gen_ai.response.model when it has none.
    if o.response_id.is_none() {
        o.response_model = None;
    }
    let response = a
        .response_data
        .and_then(as_str)
        .and_then(json_usage::parse::<LogfireResponseJson>);
    let raw = a.usage_raw().and_then(json_usage::parse::<UsageJson>);
    if let Some(u) = raw
        .as_ref()
        .or(response.as_ref().and_then(|r| r.usage.as_ref()))
    {
        o.usage = u.to_usage();
        return;
    }
    let input = a.input_tokens.and_then(as_u64);
    let output = a.output_tokens.and_then(as_u64);
    let version = o
        .convention_version
        .as_deref()
        .map(super::tokens::parse_version);
    if version.is_some_and(|v| v >= (4, 31, 0)) {
        // Folded, and without the raw parts the split is unknown: keep only output.
        o.usage.output = output;
    } else {
        o.usage = Usage {
            input_uncached: input,
            output,
            ..Usage::default()
        };
    }
}

impl<'a> SpanAttrs<'a> {
    /// Logfire's `gen_ai.usage.raw` (JSON string), found among the unmapped attributes.
    fn usage_raw(&self) -> Option<&'a str> {
        self.rest
            .iter()
            .find(|kv| kv.key == "gen_ai.usage.raw")
            .and_then(|kv| as_str(kv.value))
    }
}

/// Plain HTTP client span: status, and for Bedrock/Vertex the model from the URL.
fn fill_http(a: &SpanAttrs<'_>, o: &mut Observation) {
    if let Some(url) = a.url.and_then(as_str) {
        let path = url_path(url);
        if let Some(model) = model_from_path(path) {
            o.request_model = Some(intern(&model));
        }
        if url.contains("bedrock") {
            o.provider = Some(Provider::Bedrock);
        } else if url.contains("aiplatform.googleapis.com")
            || path.contains("/publishers/anthropic/")
        {
            o.provider = Some(Provider::Vertex);
        } else if url.contains("api.anthropic.com") {
            o.provider = Some(Provider::Anthropic);
        }
        if path.ends_with("-with-response-stream") || path.ends_with(":streamRawPredict") {
            o.stream = Some(true);
        }
    }
    if o.http_status.is_some_and(|s| s >= 400) {
        o.failed = true;
    }
}
