//! The OTLP/HTTP receiver (`POST /v1/traces|logs|metrics`), following the
//! contract of SPEC.md section 8 line by line.
//!
//! Checks, in order: method (405), media type (415), credentials (401),
//! content encoding (415), compressed size (413), decompressed size (413),
//! then the pipeline decides (200, partial success, 400, 503 + Retry-After).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::routing::any;
use axum::Router;
use claudewatch_otlp::{Encoding, Signal};
use http_body_util::BodyExt;

use crate::body::{decompress, BodyError, ContentEncoding};
use crate::response::{self, code, Format};
use crate::submit::{Submission, Submit, Verdict};

/// Settings of the HTTP receiver.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Largest body accepted, compressed or decompressed, in bytes.
    pub max_body_bytes: usize,
    /// Bearer tokens and the tenant each maps to; empty = no authentication.
    pub tokens: HashMap<String, String>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            max_body_bytes: 16 << 20,
            tokens: HashMap::new(),
        }
    }
}

struct Shared<S> {
    settings: HttpSettings,
    pipeline: S,
}

/// The receiver's routes, ready to serve.
pub fn router<S: Submit>(settings: HttpSettings, pipeline: S) -> Router {
    let shared = Arc::new(Shared { settings, pipeline });
    Router::new()
        .route("/v1/traces", any(export::<S, 0>))
        .route("/v1/logs", any(export::<S, 1>))
        .route("/v1/metrics", any(export::<S, 2>))
        .with_state(shared)
}

fn signal_of(n: u8) -> Signal {
    match n {
        0 => Signal::Traces,
        1 => Signal::Logs,
        _ => Signal::Metrics,
    }
}

async fn export<S: Submit, const SIGNAL: u8>(
    State(shared): State<Arc<Shared<S>>>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let signal = signal_of(SIGNAL);
    let header_str = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let requested = Format::from_content_type(header_str(header::CONTENT_TYPE));
    let format = requested.unwrap_or(Format::Protobuf);

    if method != Method::POST {
        let mut r = response::error(
            StatusCode::METHOD_NOT_ALLOWED,
            format,
            code::UNIMPLEMENTED,
            format!("method {method} not allowed: use POST"),
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return r;
    }
    let Some(format) = requested else {
        return response::error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format,
            code::UNIMPLEMENTED,
            format!(
                "unsupported content type {:?}: use application/x-protobuf or application/json",
                header_str(header::CONTENT_TYPE).unwrap_or("")
            ),
        );
    };
    let tenant = if shared.settings.tokens.is_empty() {
        None
    } else {
        let token = header_str(header::AUTHORIZATION)
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match token.and_then(|t| shared.settings.tokens.get(t)) {
            Some(tenant) => Some(tenant.clone()),
            None => {
                let mut r = response::error(
                    StatusCode::UNAUTHORIZED,
                    format,
                    code::UNAUTHENTICATED,
                    "missing or unknown bearer token",
                );
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return r;
            }
        }
    };
    let Some(encoding) = ContentEncoding::parse(header_str(header::CONTENT_ENCODING)) else {
        return response::error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format,
            code::UNIMPLEMENTED,
            format!(
                "unsupported content encoding {:?}: use gzip, zstd or none",
                header_str(header::CONTENT_ENCODING).unwrap_or("")
            ),
        );
    };
    let limit = shared.settings.max_body_bytes;
    let too_large = || {
        response::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format,
            code::RESOURCE_EXHAUSTED,
            format!("request body exceeds the limit of {limit} bytes"),
        )
    };
    let raw = match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return too_large()
        }
        Err(e) => {
            return response::error(
                StatusCode::BAD_REQUEST,
                format,
                code::INVALID_ARGUMENT,
                format!("cannot read the request body: {e}"),
            )
        }
    };
    let body = match decompress(encoding, raw, limit) {
        Ok(b) => b,
        Err(BodyError::TooLarge { .. }) => return too_large(),
        Err(e @ BodyError::Corrupt { .. }) => {
            return response::error(
                StatusCode::BAD_REQUEST,
                format,
                code::INVALID_ARGUMENT,
                e.to_string(),
            )
        }
    };
    if body.is_empty() {
        // An empty request is a success (OTLP).
        return response::success(signal, format, 0, "");
    }
    let encoding = match format {
        Format::Protobuf => Encoding::Protobuf,
        Format::Json => Encoding::Json,
    };
    match shared
        .pipeline
        .submit(Submission {
            signal,
            encoding,
            body,
            tenant,
        })
        .await
    {
        Ok(Verdict::Accepted {
            rejected, message, ..
        }) => response::success(signal, format, rejected, &message),
        Ok(Verdict::Invalid(message)) => response::error(
            StatusCode::BAD_REQUEST,
            format,
            code::INVALID_ARGUMENT,
            message,
        ),
        Err(refusal) => {
            let (retry_after_secs, reason) = refusal.into_retry();
            response::unavailable(format, retry_after_secs, reason)
        }
    }
}
