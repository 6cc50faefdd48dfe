//! OTLP/HTTP answers: export responses (full or partial success) and
//! `google.rpc.Status` error bodies, in the request's content type.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use claudewatch_otlp::proto::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceResponse,
};
use claudewatch_otlp::proto::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceResponse,
};
use claudewatch_otlp::proto::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use claudewatch_otlp::Signal;
use prost::Message;

/// `google.rpc.Status`, the body of every OTLP/HTTP 4xx/5xx answer.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    /// A `google.rpc.Code`.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// A developer-facing message.
    #[prost(string, tag = "2")]
    pub message: String,
}

/// `google.rpc.Code` values used here.
pub mod code {
    /// The request is malformed.
    pub const INVALID_ARGUMENT: i32 = 3;
    /// Too large, or over a quota.
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    /// Not authenticated.
    pub const UNAUTHENTICATED: i32 = 16;
    /// Temporarily unable: retry.
    pub const UNAVAILABLE: i32 = 14;
    /// Not supported (method, media type).
    pub const UNIMPLEMENTED: i32 = 12;
    /// An internal failure.
    pub const INTERNAL: i32 = 13;
}

/// The encoding of the request, and so of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/x-protobuf`.
    Protobuf,
    /// `application/json`.
    Json,
}

impl Format {
    /// From a `Content-Type` header; `None` for other media types.
    pub fn from_content_type(ct: Option<&str>) -> Option<Format> {
        let media = ct?.split(';').next()?.trim().to_ascii_lowercase();
        match media.as_str() {
            "application/x-protobuf" | "application/protobuf" => Some(Format::Protobuf),
            "application/json" => Some(Format::Json),
            _ => None,
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::Protobuf => "application/x-protobuf",
            Format::Json => "application/json",
        }
    }
}

fn with_body(status: StatusCode, format: Format, body: Vec<u8>) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    r
}

/// An error answer with a `google.rpc.Status` body.
pub fn error(
    status: StatusCode,
    format: Format,
    rpc_code: i32,
    message: impl Into<String>,
) -> Response {
    let message = message.into();
    let body = match format {
        Format::Protobuf => RpcStatus {
            code: rpc_code,
            message,
        }
        .encode_to_vec(),
        Format::Json => serde_json::json!({ "code": rpc_code, "message": message })
            .to_string()
            .into_bytes(),
    };
    with_body(status, format, body)
}

/// A retryable push-back: 503 with `Retry-After`.
pub fn unavailable(format: Format, retry_after_secs: u32, message: impl Into<String>) -> Response {
    let mut r = error(
        StatusCode::SERVICE_UNAVAILABLE,
        format,
        code::UNAVAILABLE,
        message,
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
    r
}

/// The protobuf export response of `signal`: partial success when
/// `rejected > 0` or a message is given.
pub fn export_response(signal: Signal, rejected: u64, message: &str) -> bytes::Bytes {
    let rejected_i = i64::try_from(rejected).unwrap_or(i64::MAX);
    let partial = rejected > 0 || !message.is_empty();
    bytes::Bytes::from(match signal {
        Signal::Traces => ExportTraceServiceResponse {
            partial_success: partial.then(|| ExportTracePartialSuccess {
                rejected_spans: rejected_i,
                error_message: message.to_owned(),
            }),
        }
        .encode_to_vec(),
        Signal::Logs => ExportLogsServiceResponse {
            partial_success: partial.then(|| ExportLogsPartialSuccess {
                rejected_log_records: rejected_i,
                error_message: message.to_owned(),
            }),
        }
        .encode_to_vec(),
        Signal::Metrics => ExportMetricsServiceResponse {
            partial_success: partial.then(|| ExportMetricsPartialSuccess {
                rejected_data_points: rejected_i,
                error_message: message.to_owned(),
            }),
        }
        .encode_to_vec(),
    })
}

/// A success: partial when `rejected > 0`.
pub fn success(signal: Signal, format: Format, rejected: u64, message: &str) -> Response {
    let partial = rejected > 0 || !message.is_empty();
    let body = match format {
        Format::Protobuf => export_response(signal, rejected, message).to_vec(),
        Format::Json => {
            if partial {
                let key = match signal {
                    Signal::Traces => "rejectedSpans",
                    Signal::Logs => "rejectedLogRecords",
                    Signal::Metrics => "rejectedDataPoints",
                };
                serde_json::json!({ "partialSuccess": { key: rejected.to_string(), "errorMessage": message } })
                    .to_string()
                    .into_bytes()
            } else {
                b"{}".to_vec()
            }
        }
    };
    with_body(StatusCode::OK, format, body)
}
