//! OTLP wire formats: decoding export requests from protobuf and OTLP/JSON.
//!
//! Both decoders produce the same `opentelemetry-proto` message types, so the
//! enricher never knows which encoding arrived. Errors say what is wrong and,
//! for JSON, where (`resourceSpans[0].scopeSpans[1].spans[3].traceId`).
//!
//! Architecture invariant: decoding is bounded. Nesting depth is capped (prost's
//! recursion limit for protobuf, [`MAX_ANY_VALUE_DEPTH`] for JSON), no input
//! makes a decoder panic, and nothing here does IO.

#![forbid(unsafe_code)]

mod json;
pub mod view;
mod wire;

pub use view::TraceBatch;
pub use wire::scan_traces;

use std::fmt;

/// The generated OTLP message types, re-exported so callers need no second dependency.
pub use opentelemetry_proto::tonic as proto;
pub use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
pub use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
pub use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use prost::Message;

/// Deepest nesting of `AnyValue` arrays and key-value lists accepted in OTLP/JSON.
pub const MAX_ANY_VALUE_DEPTH: usize = 32;

/// One of the three OTLP signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    /// `ExportTraceServiceRequest`.
    Traces,
    /// `ExportLogsServiceRequest`.
    Logs,
    /// `ExportMetricsServiceRequest`.
    Metrics,
}

impl Signal {
    /// The lowercase name, as in `/v1/<name>` and file names.
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Logs => "logs",
            Signal::Metrics => "metrics",
        }
    }

    /// Parses `traces`, `logs` or `metrics` (also the singular forms).
    pub fn parse(s: &str) -> Option<Signal> {
        match s.to_ascii_lowercase().as_str() {
            "traces" | "trace" | "spans" => Some(Signal::Traces),
            "logs" | "log" => Some(Signal::Logs),
            "metrics" | "metric" => Some(Signal::Metrics),
            _ => None,
        }
    }

    /// Guesses the signal from a file name such as `003-logs.json`.
    pub fn from_file_name(name: &str) -> Option<Signal> {
        let lower = name.to_ascii_lowercase();
        let stem = lower.rsplit('/').next().unwrap_or(&lower);
        [Signal::Traces, Signal::Logs, Signal::Metrics]
            .into_iter()
            .find(|s| stem.contains(s.as_str()))
    }

    /// The top-level OTLP/JSON key of this signal's export request.
    pub fn json_key(self) -> &'static str {
        match self {
            Signal::Traces => "resourceSpans",
            Signal::Logs => "resourceLogs",
            Signal::Metrics => "resourceMetrics",
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an export request is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Binary protobuf (`application/x-protobuf`).
    Protobuf,
    /// OTLP/JSON (`application/json`).
    Json,
}

impl Encoding {
    /// Guesses the encoding from a file name: `.json` is JSON, anything else protobuf.
    pub fn from_file_name(name: &str) -> Encoding {
        if name.to_ascii_lowercase().ends_with(".json") {
            Encoding::Json
        } else {
            Encoding::Protobuf
        }
    }
}

/// Why an export request could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The protobuf bytes are truncated, corrupt or of another message type.
    #[error("invalid protobuf {signal} request: {source}")]
    Protobuf {
        /// The signal that was expected.
        signal: Signal,
        /// prost's description, including the field path.
        #[source]
        source: prost::DecodeError,
    },
    /// The bytes are not JSON at all.
    #[error("invalid JSON: {0}")]
    JsonSyntax(#[from] serde_json::Error),
    /// The JSON is well-formed but is not a valid OTLP/JSON request.
    #[error("invalid OTLP/JSON at {path}: {message}")]
    JsonShape {
        /// Where in the document, e.g. `resourceSpans[0].scopeSpans[0].spans[2].traceId`.
        path: String,
        /// What is wrong there.
        message: String,
    },
    /// The request holds another signal than the one expected.
    #[error("this is a {found} request, not {expected}")]
    WrongSignal {
        /// The signal that was expected.
        expected: Signal,
        /// The signal the content holds.
        found: Signal,
    },
}

/// A decoded export request of any signal.
#[derive(Debug, Clone, PartialEq)]
pub enum ExportRequest {
    /// Spans.
    Traces(ExportTraceServiceRequest),
    /// Log records.
    Logs(ExportLogsServiceRequest),
    /// Metric data points.
    Metrics(ExportMetricsServiceRequest),
}

impl ExportRequest {
    /// The signal of this request.
    pub fn signal(&self) -> Signal {
        match self {
            ExportRequest::Traces(_) => Signal::Traces,
            ExportRequest::Logs(_) => Signal::Logs,
            ExportRequest::Metrics(_) => Signal::Metrics,
        }
    }

    /// Number of items (spans, log records or data points) in the request.
    pub fn item_count(&self) -> usize {
        match self {
            ExportRequest::Traces(r) => r
                .resource_spans
                .iter()
                .flat_map(|rs| &rs.scope_spans)
                .map(|ss| ss.spans.len())
                .sum(),
            ExportRequest::Logs(r) => r
                .resource_logs
                .iter()
                .flat_map(|rl| &rl.scope_logs)
                .map(|sl| sl.log_records.len())
                .sum(),
            ExportRequest::Metrics(r) => r
                .resource_metrics
                .iter()
                .flat_map(|rm| &rm.scope_metrics)
                .flat_map(|sm| &sm.metrics)
                .map(metric_point_count)
                .sum(),
        }
    }
}

/// Number of data points in one metric, whatever its type.
pub fn metric_point_count(m: &proto::metrics::v1::Metric) -> usize {
    use proto::metrics::v1::metric::Data;
    match &m.data {
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(Data::Summary(s)) => s.data_points.len(),
        None => 0,
    }
}

/// Decodes an export request of the given signal and encoding.
///
/// An empty body is a valid, empty request (OTLP says so).
pub fn decode(
    signal: Signal,
    encoding: Encoding,
    bytes: &[u8],
) -> Result<ExportRequest, DecodeError> {
    match encoding {
        Encoding::Protobuf => decode_protobuf(signal, bytes),
        Encoding::Json => json::decode(signal, bytes),
    }
}

fn decode_protobuf(signal: Signal, bytes: &[u8]) -> Result<ExportRequest, DecodeError> {
    let wrap = |source| DecodeError::Protobuf { signal, source };
    Ok(match signal {
        Signal::Traces => {
            ExportRequest::Traces(ExportTraceServiceRequest::decode(bytes).map_err(wrap)?)
        }
        Signal::Logs => ExportRequest::Logs(ExportLogsServiceRequest::decode(bytes).map_err(wrap)?),
        Signal::Metrics => {
            ExportRequest::Metrics(ExportMetricsServiceRequest::decode(bytes).map_err(wrap)?)
        }
    })
}

/// A borrowed view of a protobuf traces request: the zero-copy scanner when
/// the encoding is canonical, else prost (whose decoded request is kept in
/// `holder` for the view to borrow from). Errors are prost's.
pub fn trace_batch_protobuf<'a>(
    bytes: &'a [u8],
    holder: &'a mut Option<ExportTraceServiceRequest>,
) -> Result<TraceBatch<'a>, DecodeError> {
    if let Some(batch) = scan_traces(bytes) {
        return Ok(batch);
    }
    let req = ExportTraceServiceRequest::decode(bytes).map_err(|source| DecodeError::Protobuf {
        signal: Signal::Traces,
        source,
    })?;
    Ok(TraceBatch::from_proto(holder.insert(req)))
}

/// When `expected` failed to decode, finds which other signal the bytes decode
/// as, to turn "invalid protobuf" into "this is a logs request".
pub fn sniff_other_signal(expected: Signal, encoding: Encoding, bytes: &[u8]) -> Option<Signal> {
    [Signal::Traces, Signal::Logs, Signal::Metrics]
        .into_iter()
        .filter(|s| *s != expected)
        .find(|s| match decode(*s, encoding, bytes) {
            Ok(req) => req.item_count() > 0,
            Err(_) => false,
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn signal_from_file_names() {
        assert_eq!(
            Signal::from_file_name("dir/001-traces.pb"),
            Some(Signal::Traces)
        );
        assert_eq!(Signal::from_file_name("003-logs.json"), Some(Signal::Logs));
        assert_eq!(
            Signal::from_file_name("x-metrics.pb"),
            Some(Signal::Metrics)
        );
        assert_eq!(Signal::from_file_name("body.bin"), None);
    }

    #[test]
    fn empty_protobuf_is_an_empty_request() {
        let req = decode(Signal::Traces, Encoding::Protobuf, &[]).unwrap();
        assert_eq!(req.item_count(), 0);
    }

    #[test]
    fn truncated_protobuf_is_an_error() {
        // field 1, length-delimited, says 100 bytes follow; only 2 do.
        let err = decode(Signal::Traces, Encoding::Protobuf, &[0x0a, 100, 1, 2]).unwrap_err();
        assert!(
            err.to_string().contains("invalid protobuf traces request"),
            "{err}"
        );
    }
}
