//! One piece of evidence about a Claude call: what a single span or log record
//! says, already translated out of its convention's dialect.
//!
//! Token counts here are already unfolded: `input_uncached` has the API's
//! meaning whatever the convention's input attribute meant.

use std::sync::Arc;

use claudewatch_model::Provider;

use crate::text::Unmapped;

/// What kind of telemetry item an observation came from. The order of trust
/// when fields disagree is given by [`EvidenceKind::rank`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EvidenceKind {
    /// The Anthropic SDK's own span: exact usage, request id, HTTP status.
    SdkSpan,
    /// A first-party log event written by the calling program itself (Claude Code).
    FirstPartyLog,
    /// A span from an instrumentation library wrapping the SDK.
    InstrumentationSpan,
    /// A log event from an instrumentation library (usually a twin of its span).
    InstrumentationLog,
    /// An HTTP client span (`POST .../v1/messages`), one per attempt.
    HttpSpan,
}

impl EvidenceKind {
    /// Higher is more trusted for usage, ids and status.
    pub fn rank(self) -> u8 {
        match self {
            EvidenceKind::SdkSpan => 5,
            EvidenceKind::FirstPartyLog => 5,
            EvidenceKind::InstrumentationSpan => 4,
            EvidenceKind::InstrumentationLog => 3,
            EvidenceKind::HttpSpan => 1,
        }
    }

    /// Whether this evidence describes a whole SDK call (not a single HTTP attempt).
    pub fn is_call_level(self) -> bool {
        self != EvidenceKind::HttpSpan
    }
}

/// The telemetry convention (instrumentation) an observation was read with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Convention {
    /// The anthropic SDK's built-in tracing (`com.anthropic.sdk.*`).
    AnthropicSdk,
    /// OpenLLMetry / Traceloop (`opentelemetry-instrumentation-anthropic` by Traceloop).
    OpenLlmetry,
    /// The official OpenTelemetry contrib Anthropic instrumentation.
    OtelAnthropic,
    /// Generic OpenTelemetry GenAI semantic conventions (`gen_ai.*`).
    GenAi,
    /// OpenLIT.
    OpenLit,
    /// OpenInference (Arize; `llm.*` attributes).
    OpenInference,
    /// Pydantic Logfire's `instrument_anthropic()`.
    Logfire,
    /// Claude Code's OTLP log events.
    ClaudeCode,
    /// A plain HTTP client span.
    HttpClient,
}

impl Convention {
    /// Stable short name used in the record's `source` field.
    pub fn name(self) -> &'static str {
        match self {
            Convention::AnthropicSdk => "anthropic_sdk",
            Convention::OpenLlmetry => "openllmetry",
            Convention::OtelAnthropic => "otel_anthropic",
            Convention::GenAi => "gen_ai",
            Convention::OpenLit => "openlit",
            Convention::OpenInference => "openinference",
            Convention::Logfire => "logfire",
            Convention::ClaudeCode => "claude_code",
            Convention::HttpClient => "http_client",
        }
    }
}

/// Time to first token, with how much it can be trusted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ttft {
    /// Milliseconds from sending the request.
    pub ms: f64,
    /// What the source actually measured.
    pub quality: TtftQuality,
}

/// What a TTFT value measures; higher variants are preferred.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TtftQuality {
    /// Time to the first SSE event of any kind (Claude Code, OpenLIT's stream helper).
    FirstEvent,
    /// Time to a "first token" whose exact definition is not documented.
    FirstToken,
    /// Time to the first content delta, as TTFT is defined.
    FirstContent,
}

/// Token usage with the API's meanings. `None` means not reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Uncached input tokens.
    pub input_uncached: Option<u64>,
    /// Cache-read input tokens.
    pub cache_read: Option<u64>,
    /// Cache-write input tokens (all TTLs).
    pub cache_write: Option<u64>,
    /// The 1-hour-TTL part of the cache writes.
    pub cache_write_1h: Option<u64>,
    /// Output tokens.
    pub output: Option<u64>,
}

impl Usage {
    /// True when any count is known.
    pub fn any(&self) -> bool {
        self.input_uncached.is_some()
            || self.cache_read.is_some()
            || self.cache_write.is_some()
            || self.output.is_some()
    }
}

/// One span or log record's statement about one Claude call.
///
/// Observations wait in the merge window by the hundred thousand, so they are
/// kept compact: text that repeats across calls (service, environment,
/// organization, models, error and stop types) is interned
/// ([`crate::text::intern`]) and shared, text unique to a call (ids, error
/// messages) is one exact-size allocation, and the unmapped attributes are
/// packed into one buffer ([`Unmapped`]).
#[derive(Debug, Clone, Default)]
pub struct Observation {
    /// Arrival order within the stream.
    pub seq: u64,
    /// What kind of item this is.
    pub kind: Option<EvidenceKind>,
    /// The convention it was read with.
    pub convention: Option<Convention>,
    /// Version of the instrumentation (scope version), when known.
    pub convention_version: Option<Arc<str>>,
    /// Start of the call (or attempt), ns since the epoch; 0 when unknown.
    pub start_unix_nano: u64,
    /// End of the call (or attempt), ns since the epoch; 0 when unknown.
    pub end_unix_nano: u64,
    /// Trace id, when the item had a valid one.
    pub trace_id: Option<[u8; 16]>,
    /// Span id, when the item had a valid one.
    pub span_id: Option<[u8; 8]>,
    /// Parent span id, when the span has a parent.
    pub parent_span_id: Option<[u8; 8]>,
    /// `service.name`.
    pub service: Option<Arc<str>>,
    /// Deployment environment.
    pub environment: Option<Arc<str>>,
    /// Anthropic organization id.
    pub organization_id: Option<Arc<str>>,
    /// `request-id` of the (last) attempt.
    pub request_id: Option<Box<str>>,
    /// Response message id.
    pub response_id: Option<Box<str>>,
    /// API surface.
    pub provider: Option<Provider>,
    /// Model as requested.
    pub request_model: Option<Arc<str>>,
    /// Model the API answered with.
    pub response_model: Option<Arc<str>>,
    /// Streaming flag, when stated.
    pub stream: Option<bool>,
    /// HTTP status code, when stated.
    pub http_status: Option<u16>,
    /// API error type (`overloaded_error`), when stated.
    pub api_error_type: Option<Arc<str>>,
    /// Exception class name (`RateLimitError`, `anthropic.RateLimitError`).
    pub exception_type: Option<Arc<str>>,
    /// Error message or span status message (may hold the API error body).
    pub error_message: Option<Box<str>>,
    /// The span status or severity says the call failed.
    pub failed: bool,
    /// Token usage, unfolded.
    pub usage: Usage,
    /// The instrumentation's total-token attribute disagreed with its parts.
    pub total_mismatch: bool,
    /// Time to first token.
    pub ttft: Option<Ttft>,
    /// Duration in ms as the item states it.
    pub duration_ms: Option<f64>,
    /// Stop reason (`end_turn`, ...).
    pub stop_reason: Option<Arc<str>>,
    /// Retries before the last attempt, when stated.
    pub retry_attempt: Option<u32>,
    /// The request went through the Message Batches API or batch tier.
    pub batch: Option<bool>,
    /// Cost the source itself reported in micro-USD (for cross-checks only).
    pub reported_cost_micros: Option<i64>,
    /// Attributes that were not mapped (already bounded and content-free).
    pub unmapped: Unmapped,
}

impl Observation {
    /// The evidence kind; observations are always built with one.
    pub fn kind(&self) -> EvidenceKind {
        self.kind.unwrap_or(EvidenceKind::HttpSpan)
    }

    /// The convention; observations are always built with one.
    pub fn convention(&self) -> Convention {
        self.convention.unwrap_or(Convention::HttpClient)
    }
}
