//! The spans that describe one call, with the attribute names and values the
//! real clients write (see `shared/fixtures/*/MANIFEST.md` and
//! `docs/conventions.md`).

use std::borrow::Cow;

use crate::ids::IdKeys;
use crate::mix::{CallSpec, Convention, Scenario, TwinLayout};

/// An attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    /// `stringValue`.
    Str(Cow<'static, str>),
    /// `intValue`.
    Int(i64),
    /// `doubleValue`.
    Double(f64),
    /// `boolValue`.
    Bool(bool),
    /// `arrayValue` of strings (possibly empty).
    StrArray(&'static [&'static str]),
}

/// One attribute.
#[derive(Debug, Clone, PartialEq)]
pub struct Attr {
    /// Its key.
    pub key: &'static str,
    /// Its value.
    pub value: Val,
}

fn s(key: &'static str, v: &'static str) -> Attr {
    Attr {
        key,
        value: Val::Str(Cow::Borrowed(v)),
    }
}
fn so(key: &'static str, v: String) -> Attr {
    Attr {
        key,
        value: Val::Str(Cow::Owned(v)),
    }
}
fn i(key: &'static str, v: u64) -> Attr {
    Attr {
        key,
        value: Val::Int(i64::try_from(v).unwrap_or(i64::MAX)),
    }
}
fn d(key: &'static str, v: f64) -> Attr {
    Attr {
        key,
        value: Val::Double(v),
    }
}
fn b(key: &'static str, v: bool) -> Attr {
    Attr {
        key,
        value: Val::Bool(v),
    }
}
fn arr(key: &'static str, v: &'static [&'static str]) -> Attr {
    Attr {
        key,
        value: Val::StrArray(v),
    }
}

/// A span event (only `exception` here).
#[derive(Debug, Clone, PartialEq)]
pub struct EventOut {
    /// Event time.
    pub time_unix_nano: u64,
    /// Event name.
    pub name: &'static str,
    /// Event attributes.
    pub attrs: Vec<Attr>,
}

/// The emitting process (one OTLP `Resource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Service {
    /// Python app with the Anthropic SDK's own tracing.
    Checkout,
    /// Python app with Traceloop (and the SDK's spans).
    Search,
    /// Python app with OpenLIT (anthropic < 1, no SDK spans).
    Support,
    /// Python app with the OTel GenAI instrumentation (and the SDK's spans).
    Agents,
    /// Node.js app with hand-written GenAI semconv spans.
    Ledger,
}

impl Service {
    /// The resource attributes, as the real SDKs write them.
    pub fn attributes(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Service::Checkout => &[
                ("telemetry.sdk.language", "python"),
                ("telemetry.sdk.name", "opentelemetry"),
                ("telemetry.sdk.version", "1.45.2"),
                (
                    "service.instance.id",
                    "fbd0421e-d832-4131-ae0c-1d8c0a50559d",
                ),
                ("service.name", "checkout"),
                ("deployment.environment.name", "prod"),
            ],
            Service::Search => &[
                ("telemetry.sdk.language", "python"),
                ("telemetry.sdk.name", "opentelemetry"),
                ("telemetry.sdk.version", "1.45.1"),
                (
                    "service.instance.id",
                    "3bcdf55e-5a63-42c8-b1a8-4a918f739d99",
                ),
                ("deployment.environment.name", "prod"),
                ("service.name", "search"),
            ],
            Service::Support => &[
                ("telemetry.sdk.language", "python"),
                ("telemetry.sdk.name", "openlit"),
                ("telemetry.sdk.version", "1.45.1"),
                (
                    "service.instance.id",
                    "468e0359-a1bb-400d-8202-650c7e1549fe",
                ),
                ("service.name", "support"),
                ("deployment.environment", "prod"),
            ],
            Service::Agents => &[
                ("telemetry.sdk.language", "python"),
                ("telemetry.sdk.name", "opentelemetry"),
                ("telemetry.sdk.version", "1.45.2"),
                (
                    "service.instance.id",
                    "0b9e3c52-8f31-4d5e-a0f7-6c2d1e9b4a87",
                ),
                ("service.name", "agents"),
                ("deployment.environment.name", "prod"),
            ],
            Service::Ledger => &[
                ("telemetry.sdk.language", "nodejs"),
                ("telemetry.sdk.name", "opentelemetry"),
                ("telemetry.sdk.version", "2.2.0"),
                (
                    "service.instance.id",
                    "e51f0a3c-2d47-4b8e-9c61-7a0d3f5b2e19",
                ),
                ("service.name", "ledger"),
                ("deployment.environment.name", "prod"),
            ],
        }
    }
}

/// The instrumentation scope of a span.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// `com.anthropic.sdk.python` 2.12.0.
    AnthropicSdk,
    /// `opentelemetry.instrumentation.anthropic` 0.62.4 (OpenLLMetry).
    Traceloop,
    /// `openlit.instrumentation.anthropic` (no version).
    OpenLit,
    /// `opentelemetry.instrumentation.httpx` 0.66b1.
    Httpx,
    /// `opentelemetry.instrumentation.genai.anthropic` 1.1b1.
    OtelGenAi,
    /// The Node app's own tracer.
    Ledger,
}

impl Scope {
    /// (name, version); an empty version is not written.
    pub fn name_version(self) -> (&'static str, &'static str) {
        match self {
            Scope::AnthropicSdk => ("com.anthropic.sdk.python", "2.12.0"),
            Scope::Traceloop => ("opentelemetry.instrumentation.anthropic", "0.62.4"),
            Scope::OpenLit => ("openlit.instrumentation.anthropic", ""),
            Scope::Httpx => ("opentelemetry.instrumentation.httpx", "0.66b1"),
            Scope::OtelGenAi => ("opentelemetry.instrumentation.genai.anthropic", "1.1b1"),
            Scope::Ledger => ("ledger.llm", "1.8.0"),
        }
    }
}

/// `SPAN_KIND_CLIENT`.
pub const KIND_CLIENT: i32 = 3;
/// `STATUS_CODE_OK`.
pub const STATUS_OK: i32 = 1;
/// `STATUS_CODE_ERROR`.
pub const STATUS_ERROR: i32 = 2;

/// One span to export.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanOut {
    /// The emitting process.
    pub service: Service,
    /// Its instrumentation scope.
    pub scope: Scope,
    /// Trace id.
    pub trace_id: [u8; 16],
    /// Span id.
    pub span_id: [u8; 8],
    /// Parent span id, if any.
    pub parent_span_id: Option<[u8; 8]>,
    /// Span name.
    pub name: Cow<'static, str>,
    /// Span kind.
    pub kind: i32,
    /// Start time.
    pub start_unix_nano: u64,
    /// End time.
    pub end_unix_nano: u64,
    /// Attributes, in the emitter's order.
    pub attrs: Vec<Attr>,
    /// Events.
    pub events: Vec<EventOut>,
    /// Status code (0 unset, 1 OK, 2 ERROR).
    pub status_code: i32,
    /// Status message.
    pub status_message: String,
    /// Span flags (256: "parent is not remote", as the Python SDK writes).
    pub flags: u32,
    /// The index of the call the span describes.
    pub call: u64,
    /// The span is the instrumentation twin that goes in a later request.
    pub deferred: bool,
}

const ORGS: [&str; 4] = [
    "6f1c2a70-3b4d-4e5f-9a0b-1c2d3e4f5a6b",
    "0e8d4f12-7a3b-4c59-8d2e-1f6a7b8c9d0e",
    "a4b5c6d7-e8f9-4a0b-8c1d-2e3f4a5b6c7d",
    "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a",
];

const PROMPTS: [&str; 8] = [
    "[{\"role\": \"user\", \"parts\": [{\"type\": \"text\", \"content\": \"Summarise this support ticket in two sentences.\"}]}]",
    "[{\"role\": \"user\", \"parts\": [{\"type\": \"text\", \"content\": \"Classify the sentiment of the review below.\"}]}]",
    "[{\"role\": \"user\", \"parts\": [{\"type\": \"text\", \"content\": \"Write a SQL query that lists last week's refunds.\"}]}]",
    "[{\"role\": \"user\", \"parts\": [{\"type\": \"text\", \"content\": \"Translate the product description into German.\"}]}]",
    "[{\"role\": \"user\", \"parts\": [{\"type\": \"text\", \"content\": \"Extract the invoice number and total as JSON.\"}]}]",
    "[{\"role\": \"user\", \"parts\": [{\"type\": \"text\", \"content\": \"Suggest three titles for this blog post.\"}]}]",
    "[{\"role\": \"user\", \"parts\": [{\"type\": \"text\", \"content\": \"Explain the stack trace and propose a fix.\"}]}]",
    "[{\"role\": \"user\", \"parts\": [{\"type\": \"text\", \"content\": \"Rank these search results by relevance.\"}]}]",
];

const COMPLETION: &str = "[{\"role\": \"assistant\", \"parts\": [{\"type\": \"text\", \"content\": \"Here is the answer you asked for, in a few short lines.\"}], \"finish_reason\": \"end_turn\"}]";

/// The error text the Python SDK's exceptions carry (`str(exc)`).
pub fn error_text(scenario: Scenario, model: &str, org: &str, request_id: &str) -> String {
    match scenario {
        Scenario::RateLimited => format!(
            "Error code: 429 - {{'type': 'error', 'error': {{'type': 'rate_limit_error', 'message': \"This request would exceed your organization's rate limit of 1,000 requests per minute (org: {org}, model: {model}). For details, refer to: https://docs.claude.com/en/api/rate-limits.\"}}, 'request_id': '{request_id}'}}"
        ),
        Scenario::Overloaded => format!(
            "Error code: 529 - {{'type': 'error', 'error': {{'type': 'overloaded_error', 'message': 'Overloaded'}}, 'request_id': '{request_id}'}}"
        ),
        _ => format!(
            "Error code: 500 - {{'type': 'error', 'error': {{'type': 'api_error', 'message': 'Internal server error'}}, 'request_id': '{request_id}'}}"
        ),
    }
}

/// Exception class name of an HTTP error scenario.
fn error_class(scenario: Scenario) -> &'static str {
    match scenario {
        Scenario::RateLimited => "RateLimitError",
        Scenario::Overloaded => "OverloadedError",
        _ => "InternalServerError",
    }
}

/// API error type of a failed scenario.
fn api_error_type(scenario: Scenario) -> &'static str {
    match scenario {
        Scenario::RateLimited => "rate_limit_error",
        Scenario::Overloaded | Scenario::MidStreamError => "overloaded_error",
        _ => "api_error",
    }
}

fn exception_event(time: u64, class: &'static str, message: &str, wrapper: &str) -> EventOut {
    let qualified = match class {
        "RateLimitError" => "anthropic.RateLimitError",
        "OverloadedError" => "anthropic.OverloadedError",
        _ => "anthropic.InternalServerError",
    };
    let stack = format!(
        "Traceback (most recent call last):\n  File \"/app/.venv/lib/python3.11/site-packages/{wrapper}\", line 568, in _wrap\n    response = wrapped(*args, **kwargs)\n  File \"/app/.venv/lib/python3.11/site-packages/anthropic/_base_client.py\", line 1346, in _request\n    raise self._make_status_error_from_response(response) from None\n{qualified}: {message}\n"
    );
    EventOut {
        time_unix_nano: time,
        name: "exception",
        attrs: vec![
            s("exception.type", qualified),
            so("exception.message", message.to_owned()),
            so("exception.stacktrace", stack),
            s("exception.escaped", "False"),
        ],
    }
}

/// Appends the spans of `call` to `out`. The call ends `end_unix_nano`.
pub fn build_call(call: &CallSpec, keys: &IdKeys, end_unix_nano: u64, out: &mut Vec<SpanOut>) {
    let start = end_unix_nano.saturating_sub(call.duration_ns);
    let request_id = keys.request_id(call.index);
    let org = ORGS[call.org % ORGS.len()];
    match call.convention {
        Convention::AnthropicSdk => {
            out.push(sdk_span(
                call,
                keys,
                &request_id,
                org,
                start,
                end_unix_nano,
                None,
            ));
        }
        Convention::TraceloopTwin => {
            let wrapper_trace = match call.twin {
                TwinLayout::Unlinked => keys.trace_id(call.index, 1),
                _ => keys.trace_id(call.index, 0),
            };
            let parent = (call.twin == TwinLayout::Nested).then(|| keys.span_id(call.index, 1));
            let w_start = start.saturating_sub(900_000);
            let w_end = end_unix_nano + 400_000;
            // The SDK span ends first: exporters write it first.
            out.push(sdk_span(
                call,
                keys,
                &request_id,
                org,
                start,
                end_unix_nano,
                parent,
            ));
            if call.scenario != Scenario::MidStreamError {
                let mut w = traceloop_span(call, keys, &request_id, org, w_start, w_end);
                w.trace_id = wrapper_trace;
                out.push(w);
            }
        }
        Convention::OtelGenAiTwin => {
            let parent = keys.span_id(call.index, 1);
            let w_start = start.saturating_sub(700_000);
            let w_end = end_unix_nano + 300_000;
            out.push(sdk_span(
                call,
                keys,
                &request_id,
                org,
                start,
                end_unix_nano,
                Some(parent),
            ));
            out.push(otel_genai_span(
                call,
                keys,
                &request_id,
                org,
                w_start,
                w_end,
            ));
        }
        Convention::OpenLit => {
            openlit_spans(call, keys, &request_id, org, start, end_unix_nano, out)
        }
        Convention::GenAiSemconv => out.push(semconv_span(call, keys, start, end_unix_nano)),
    }
}

#[allow(clippy::too_many_arguments)]
fn base_span(
    call: &CallSpec,
    service: Service,
    scope: Scope,
    trace_id: [u8; 16],
    span_id: [u8; 8],
    name: Cow<'static, str>,
    start: u64,
    end: u64,
) -> SpanOut {
    SpanOut {
        service,
        scope,
        trace_id,
        span_id,
        parent_span_id: None,
        name,
        kind: KIND_CLIENT,
        start_unix_nano: start,
        end_unix_nano: end,
        attrs: Vec::with_capacity(28),
        events: Vec::new(),
        status_code: if call.scenario.failed() {
            STATUS_ERROR
        } else {
            STATUS_OK
        },
        status_message: String::new(),
        flags: 256,
        call: call.index,
        deferred: false,
    }
}

fn service_of(c: Convention) -> Service {
    match c {
        Convention::AnthropicSdk => Service::Checkout,
        Convention::TraceloopTwin => Service::Search,
        Convention::OpenLit => Service::Support,
        Convention::OtelGenAiTwin => Service::Agents,
        Convention::GenAiSemconv => Service::Ledger,
    }
}

/// The SDK's `anthropic.messages.create` span (anthropic-native fixture).
fn sdk_span(
    call: &CallSpec,
    keys: &IdKeys,
    request_id: &str,
    org: &'static str,
    start: u64,
    end: u64,
    parent: Option<[u8; 8]>,
) -> SpanOut {
    let mut sp = base_span(
        call,
        service_of(call.convention),
        Scope::AnthropicSdk,
        keys.trace_id(call.index, 0),
        keys.span_id(call.index, 0),
        Cow::Borrowed("anthropic.messages.create"),
        start,
        end,
    );
    sp.parent_span_id = parent;
    let a = &mut sp.attrs;
    a.push(s("server.address", "api.anthropic.com"));
    a.push(i("server.port", 443));
    a.push(s("gen_ai.provider.name", "anthropic"));
    a.push(s("gen_ai.operation.name", "chat"));
    a.push(s("gen_ai.request.model", call.model.request));
    a.push(i("gen_ai.request.max_tokens", call.max_tokens));
    if call.stream {
        a.push(b("gen_ai.request.stream", true));
    }
    a.push(s("http.request.method", "POST"));
    a.push(s("http.route", "/v1/messages"));
    a.push(s("url.scheme", "https"));
    a.push(s("url.path", "/v1/messages"));
    a.push(s("url.full", "https://api.anthropic.com/v1/messages"));
    a.push(i(
        "http.response.status_code",
        u64::from(call.scenario.http_status()),
    ));
    if call.scenario == Scenario::RetriedOverload {
        a.push(i("http.request.resend_count", 2));
    }
    a.push(so("anthropic.request.id", request_id.to_owned()));
    a.push(s("anthropic.organization.id", org));
    match call.scenario {
        Scenario::Success | Scenario::RetriedOverload | Scenario::MidStreamError => {
            if call.stream {
                a.push(d("gen_ai.response.time_to_first_chunk", call.ttft_s));
            }
            a.push(so("gen_ai.response.id", keys.response_id(call.index)));
            a.push(s("gen_ai.response.model", call.model.response));
            a.push(i("gen_ai.usage.cache_write.input_tokens", call.cache_write));
            a.push(i("gen_ai.usage.cache_read.input_tokens", call.cache_read));
            a.push(i(
                "anthropic.usage.cache_creation.ephemeral_5m_input_tokens",
                call.cache_write,
            ));
            a.push(i(
                "anthropic.usage.cache_creation.ephemeral_1h_input_tokens",
                0,
            ));
            a.push(s("anthropic.response.service_tier", "standard"));
            if call.scenario != Scenario::MidStreamError {
                a.push(i("gen_ai.usage.output_tokens", call.output_tokens));
                a.push(s("anthropic.message.stop_reason", "end_turn"));
            }
            a.push(i("gen_ai.usage.input_tokens", call.folded_input()));
            if call.scenario == Scenario::MidStreamError {
                a.push(s("error.type", "overloaded_error"));
            }
        }
        _ => a.push(s("error.type", api_error_type(call.scenario))),
    }
    sp
}

/// OpenLLMetry's `anthropic.chat` span (traceloop fixture).
fn traceloop_span(
    call: &CallSpec,
    keys: &IdKeys,
    request_id: &str,
    org: &'static str,
    start: u64,
    end: u64,
) -> SpanOut {
    let mut sp = base_span(
        call,
        Service::Search,
        Scope::Traceloop,
        keys.trace_id(call.index, 0),
        keys.span_id(call.index, 1),
        Cow::Borrowed("anthropic.chat"),
        start,
        end,
    );
    sp.deferred = call.split;
    let a = &mut sp.attrs;
    a.push(s("gen_ai.provider.name", "anthropic"));
    a.push(s("gen_ai.operation.name", "chat"));
    a.push(s("gen_ai.request.model", call.model.request));
    a.push(i("gen_ai.request.max_tokens", call.max_tokens));
    if call.stream && !call.stream_helper {
        a.push(b("gen_ai.is_streaming", true));
    }
    a.push(s(
        "gen_ai.input.messages",
        PROMPTS[call.prompt % PROMPTS.len()],
    ));
    if call.scenario.failed() {
        let text = error_text(call.scenario, call.model.request, org, request_id);
        let class = error_class(call.scenario);
        a.push(s("error.type", class));
        sp.events.push(exception_event(
            end.saturating_sub(10_000),
            class,
            &text,
            "opentelemetry/instrumentation/anthropic/__init__.py",
        ));
        sp.status_message = text;
        return sp;
    }
    // OpenLLMetry adds message_start's output count (1) on streams.
    let out = call.output_tokens + u64::from(call.stream);
    a.push(so("gen_ai.response.id", keys.response_id(call.index)));
    a.push(i("gen_ai.usage.input_tokens", call.folded_input()));
    a.push(i("gen_ai.usage.output_tokens", out));
    a.push(i("gen_ai.usage.total_tokens", call.folded_input() + out));
    a.push(i("gen_ai.usage.cache_read.input_tokens", call.cache_read));
    a.push(i(
        "gen_ai.usage.cache_creation.input_tokens",
        call.cache_write,
    ));
    a.push(s("gen_ai.response.model", call.model.response));
    a.push(arr("gen_ai.response.finish_reasons", &["stop"]));
    a.push(s("gen_ai.output.messages", COMPLETION));
    sp
}

/// The OTel GenAI Anthropic instrumentation's `chat <model>` span.
fn otel_genai_span(
    call: &CallSpec,
    keys: &IdKeys,
    request_id: &str,
    org: &'static str,
    start: u64,
    end: u64,
) -> SpanOut {
    let mut sp = base_span(
        call,
        Service::Agents,
        Scope::OtelGenAi,
        keys.trace_id(call.index, 0),
        keys.span_id(call.index, 1),
        Cow::Owned(format!("chat {}", call.model.request)),
        start,
        end,
    );
    sp.deferred = call.split;
    let a = &mut sp.attrs;
    a.push(s("gen_ai.operation.name", "chat"));
    a.push(s("gen_ai.provider.name", "anthropic"));
    a.push(s("gen_ai.request.model", call.model.request));
    a.push(i("gen_ai.request.max_tokens", call.max_tokens));
    if call.stream {
        a.push(b("gen_ai.request.stream", true));
    }
    a.push(s("server.address", "api.anthropic.com"));
    a.push(i("server.port", 443));
    if call.scenario.failed() {
        a.push(s("error.type", error_class(call.scenario)));
        sp.status_message = error_text(call.scenario, call.model.request, org, request_id);
        return sp;
    }
    a.push(so("gen_ai.response.id", keys.response_id(call.index)));
    a.push(s("gen_ai.response.model", call.model.response));
    a.push(arr("gen_ai.response.finish_reasons", &["end_turn"]));
    // semconv >= 1.40: input includes cache reads and writes.
    a.push(i("gen_ai.usage.input_tokens", call.folded_input()));
    a.push(i("gen_ai.usage.cache_read.input_tokens", call.cache_read));
    a.push(i(
        "gen_ai.usage.cache_creation.input_tokens",
        call.cache_write,
    ));
    a.push(i("gen_ai.usage.output_tokens", call.output_tokens));
    if call.stream {
        a.push(d("gen_ai.response.time_to_first_chunk", call.ttft_s));
    }
    sp
}

/// A hand-written GenAI semconv span (Node app); errors carry the HTTP status
/// as `error.type`.
fn semconv_span(call: &CallSpec, keys: &IdKeys, start: u64, end: u64) -> SpanOut {
    let mut sp = base_span(
        call,
        Service::Ledger,
        Scope::Ledger,
        keys.trace_id(call.index, 0),
        keys.span_id(call.index, 0),
        Cow::Owned(format!("chat {}", call.model.request)),
        start,
        end,
    );
    let a = &mut sp.attrs;
    a.push(s("gen_ai.operation.name", "chat"));
    a.push(s("gen_ai.provider.name", "anthropic"));
    a.push(s("gen_ai.request.model", call.model.request));
    a.push(i("gen_ai.request.max_tokens", call.max_tokens));
    if call.stream {
        a.push(b("gen_ai.request.stream", true));
    }
    a.push(s("server.address", "api.anthropic.com"));
    if call.scenario.failed() {
        let status = match call.scenario.http_status() {
            429 => "429",
            529 => "529",
            _ => "500",
        };
        a.push(s("error.type", status));
        return sp;
    }
    a.push(so("gen_ai.response.id", keys.response_id(call.index)));
    a.push(s("gen_ai.response.model", call.model.response));
    a.push(arr("gen_ai.response.finish_reasons", &["end_turn"]));
    a.push(i("gen_ai.usage.input_tokens", call.folded_input()));
    a.push(i("gen_ai.usage.cache_read.input_tokens", call.cache_read));
    a.push(i(
        "gen_ai.usage.cache_creation.input_tokens",
        call.cache_write,
    ));
    a.push(i("gen_ai.usage.output_tokens", call.output_tokens));
    if call.stream {
        a.push(d("gen_ai.response.time_to_first_chunk", call.ttft_s));
    }
    sp
}

/// OpenLIT's `chat <model>` span and its httpx `POST` attempt children
/// (openlit fixture: error spans have no attributes at all).
fn openlit_spans(
    call: &CallSpec,
    keys: &IdKeys,
    request_id: &str,
    org: &'static str,
    start: u64,
    end: u64,
    out: &mut Vec<SpanOut>,
) {
    let trace = keys.trace_id(call.index, 0);
    let chat_id = keys.span_id(call.index, 0);
    // Attempts: (status, start, end).
    let mut attempts: [(u16, u64, u64); 3] = [(0, 0, 0); 3];
    let n = if call.scenario == Scenario::RetriedOverload {
        let a0 = start + 1_200_000;
        let a1 = a0 + 6_000_000 + (call.duration_ns / 3);
        let a2 = a1 + 6_000_000 + (call.duration_ns / 3);
        attempts[0] = (529, a0, a0 + 6_000_000);
        attempts[1] = (529, a1, a1 + 6_000_000);
        attempts[2] = (200, a2, end.saturating_sub(1_000_000).max(a2 + 1));
        3
    } else {
        let a_end = if call.stream {
            start + 2_500_000
        } else {
            end.saturating_sub(1_000_000)
        };
        attempts[0] = (call.scenario.http_status(), start + 1_200_000, a_end);
        1
    };
    for (k, &(status, a_start, a_end)) in attempts[..n].iter().enumerate() {
        let mut p = base_span(
            call,
            Service::Support,
            Scope::Httpx,
            trace,
            keys.span_id(call.index, 2 + k as u64),
            Cow::Borrowed("POST"),
            a_start,
            a_end,
        );
        p.parent_span_id = Some(chat_id);
        p.status_code = if status >= 400 { STATUS_ERROR } else { 0 };
        p.attrs.push(s("http.method", "POST"));
        p.attrs
            .push(s("http.url", "https://api.anthropic.com/v1/messages"));
        p.attrs.push(i("http.status_code", u64::from(status)));
        out.push(p);
    }
    let mut sp = base_span(
        call,
        Service::Support,
        Scope::OpenLit,
        trace,
        chat_id,
        Cow::Owned(format!("chat {}", call.model.request)),
        start,
        end,
    );
    if call.scenario.failed() {
        let text = error_text(call.scenario, call.model.request, org, request_id);
        let class = error_class(call.scenario);
        sp.events.push(exception_event(
            end.saturating_sub(12_000),
            class,
            &text,
            "openlit/instrumentation/anthropic/anthropic.py",
        ));
        sp.status_message = format!("{class}: {text}");
        out.push(sp);
        return;
    }
    let ttft = if call.stream {
        call.ttft_s
    } else {
        call.duration_ns as f64 / 1e9
    };
    let a = &mut sp.attrs;
    a.push(s("telemetry.sdk.name", "openlit"));
    a.push(s("gen_ai.operation.name", "chat"));
    a.push(s("gen_ai.provider.name", "anthropic"));
    a.push(s("server.address", "api.anthropic.com"));
    a.push(i("server.port", 443));
    a.push(s("gen_ai.request.model", call.model.request));
    a.push(s("gen_ai.response.model", call.model.response));
    a.push(s("deployment.environment", "prod"));
    a.push(s("service.name", "support"));
    a.push(b("gen_ai.request.stream", call.stream));
    a.push(d("gen_ai.server.time_per_output_token", 0.0148));
    a.push(d("gen_ai.server.time_to_first_token", ttft));
    a.push(s("gen_ai.sdk.version", "0.125.0"));
    a.push(i("gen_ai.request.max_tokens", call.max_tokens));
    a.push(arr("gen_ai.request.stop_sequences", &[]));
    a.push(d("gen_ai.request.temperature", 1.0));
    a.push(d("gen_ai.request.top_k", 1.0));
    a.push(d("gen_ai.request.top_p", 1.0));
    a.push(so("gen_ai.response.id", keys.response_id(call.index)));
    a.push(arr("gen_ai.response.finish_reasons", &["end_turn"]));
    a.push(s("gen_ai.output.type", "text"));
    // Not folded: the API's uncached input.
    a.push(i("gen_ai.usage.input_tokens", call.input_tokens));
    a.push(i("gen_ai.usage.output_tokens", call.output_tokens));
    a.push(i(
        "gen_ai.client.token.usage",
        call.input_tokens + call.output_tokens,
    ));
    a.push(i("gen_ai.usage.cost", 0));
    a.push(i("gen_ai.usage.cache_read.input_tokens", call.cache_read));
    a.push(i(
        "gen_ai.usage.cache_creation.input_tokens",
        call.cache_write,
    ));
    a.push(s("openlit.agent.version_hash", "7d65838a3df6221e"));
    a.push(s(
        "gen_ai.input.messages",
        PROMPTS[call.prompt % PROMPTS.len()],
    ));
    a.push(s("gen_ai.output.messages", COMPLETION));
    out.push(sp);
}
