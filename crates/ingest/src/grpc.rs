//! The OTLP/gRPC receiver: the `Export` method of the trace, logs and
//! metrics services, on tonic, following SPEC.md section 8.
//!
//! The request message is taken as raw bytes (a pass-through codec), so the
//! pipeline decodes it exactly as it decodes an HTTP body (zero-copy for
//! traces). tonic undoes gzip and zstd within the size limit: the limit
//! applies to the decompressed message and a bomb stops at it. Answers are
//! never compressed: they are a few bytes, and a gzip compressor's set-up per
//! answer cost about 1.6 % of serve's CPU for clients that accept gzip.
//!
//! Status codes: `OK` with `partial_success` when items were rejected;
//! `INVALID_ARGUMENT` for undecodable data; `RESOURCE_EXHAUSTED` over the size
//! limit; `UNAUTHENTICATED` without a valid token; `UNAVAILABLE` with
//! `RetryInfo` for push-back. tonic's own answers that a client would retry
//! for nothing (`OUT_OF_RANGE` for a message over the limit, `INTERNAL` for a
//! corrupt compressed message) are rewritten to those.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes};
use claudewatch_otlp::{Encoding, Signal};
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Code, Status};

use crate::response;
use crate::submit::{Refusal, Submission, Submit, Verdict};

/// Settings of the gRPC receiver.
#[derive(Debug, Clone)]
pub struct GrpcSettings {
    /// Largest message accepted, decompressed, in bytes.
    pub max_message_bytes: usize,
    /// Bearer tokens and the tenant each maps to; empty = no authentication.
    pub tokens: HashMap<String, String>,
}

/// A gRPC codec that passes messages as bytes both ways: the receiver hands
/// the request to the pipeline undecoded and sends a pre-encoded response;
/// clients (tests, tools) can send any bytes with it.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n)))
    }
}

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

struct Shared<S> {
    settings: GrpcSettings,
    pipeline: S,
}

/// One OTLP service (`SIGNAL`: 0 traces, 1 logs, 2 metrics) in front of the pipeline.
pub struct OtlpService<S, const SIGNAL: u8> {
    shared: Arc<Shared<S>>,
}

impl<S, const SIGNAL: u8> Clone for OtlpService<S, SIGNAL> {
    fn clone(&self) -> Self {
        OtlpService {
            shared: self.shared.clone(),
        }
    }
}

/// The trace, logs and metrics services, sharing one pipeline.
pub type OtlpServices<S> = (OtlpService<S, 0>, OtlpService<S, 1>, OtlpService<S, 2>);

/// The three OTLP services to add to a tonic server.
pub fn services<S: Submit>(settings: GrpcSettings, pipeline: S) -> OtlpServices<S> {
    let shared = Arc::new(Shared { settings, pipeline });
    (
        OtlpService {
            shared: shared.clone(),
        },
        OtlpService {
            shared: shared.clone(),
        },
        OtlpService { shared },
    )
}

impl<S> NamedService for OtlpService<S, 0> {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}
impl<S> NamedService for OtlpService<S, 1> {
    const NAME: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
}
impl<S> NamedService for OtlpService<S, 2> {
    const NAME: &'static str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
}

fn signal_of(n: u8) -> Signal {
    match n {
        0 => Signal::Traces,
        1 => Signal::Logs,
        _ => Signal::Metrics,
    }
}

/// The unary `Export` handler of one signal.
struct Export<S> {
    shared: Arc<Shared<S>>,
    signal: Signal,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S: Submit> UnaryService<Bytes> for Export<S> {
    type Response = Bytes;
    type Future = BoxFuture<Result<tonic::Response<Bytes>, Status>>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let shared = self.shared.clone();
        let signal = self.signal;
        Box::pin(async move {
            let tenant = authenticate(&shared.settings.tokens, request.metadata())?;
            let submission = Submission {
                signal,
                encoding: Encoding::Protobuf,
                body: request.into_inner(),
                tenant,
            };
            match shared.pipeline.submit(submission).await {
                Ok(Verdict::Accepted {
                    rejected, message, ..
                }) => Ok(tonic::Response::new(response::export_response(
                    signal, rejected, &message,
                ))),
                Ok(Verdict::Invalid(reason)) => Err(Status::invalid_argument(reason)),
                Err(Refusal::Busy {
                    retry_after_secs,
                    reason,
                })
                | Err(Refusal::Unavailable {
                    retry_after_secs,
                    reason,
                }) => Err(unavailable(retry_after_secs, reason)),
                Err(Refusal::ShuttingDown) => Err(unavailable(
                    1,
                    "shutting down: retry another instance".into(),
                )),
            }
        })
    }
}

/// The tenant of a request's bearer token; `UNAUTHENTICATED` without a valid one.
fn authenticate(
    tokens: &HashMap<String, String>,
    metadata: &tonic::metadata::MetadataMap,
) -> Result<Option<String>, Status> {
    if tokens.is_empty() {
        return Ok(None);
    }
    let token = metadata
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    match token.and_then(|t| tokens.get(t)) {
        Some(tenant) => Ok(Some(tenant.clone())),
        None => Err(Status::unauthenticated(
            "a valid bearer token is required (authorization metadata)",
        )),
    }
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, prost::Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<prost_types_duration::Duration>,
}

/// `google.protobuf.Duration`, the one well-known type needed here.
mod prost_types_duration {
    /// Seconds and nanoseconds.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Duration {
        /// Whole seconds.
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        /// Nanoseconds.
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, prost::Message)]
struct Any {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

/// `google.rpc.Status` with details, for `grpc-status-details-bin`.
#[derive(Clone, PartialEq, prost::Message)]
struct StatusWithDetails {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<Any>,
}

/// `UNAVAILABLE` carrying a `RetryInfo` with the suggested delay.
fn unavailable(retry_after_secs: u32, message: String) -> Status {
    let retry = RetryInfo {
        retry_delay: Some(prost_types_duration::Duration {
            seconds: i64::from(retry_after_secs),
            nanos: 0,
        }),
    };
    let details = StatusWithDetails {
        code: Code::Unavailable as i32,
        message: message.clone(),
        details: vec![Any {
            type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
            value: retry.encode_to_vec(),
        }],
    };
    Status::with_details(
        Code::Unavailable,
        message,
        Bytes::from(details.encode_to_vec()),
    )
}

impl<S: Submit, B, const SIGNAL: u8> tower_service::Service<http::Request<B>>
    for OtlpService<S, SIGNAL>
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let signal = signal_of(SIGNAL);
        let shared = self.shared.clone();
        let is_export = req.uri().path().ends_with("/Export");
        Box::pin(async move {
            if !is_export {
                return Ok(Status::unimplemented("only Export is served").into_http());
            }
            let limit = shared.settings.max_message_bytes;
            let mut grpc = Grpc::new(RawCodec)
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd)
                .max_decoding_message_size(limit);
            let method = Export { shared, signal };
            let mut response = grpc.unary(method, req).await;
            rewrite_unhelpful_status(response.headers_mut(), limit);
            Ok(response)
        })
    }
}

/// Replaces tonic's answers that would make a client retry in vain, or hide
/// a client error as a server error, with the codes SPEC.md section 8 asks for.
fn rewrite_unhelpful_status(headers: &mut http::HeaderMap, limit: usize) {
    let code = headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok());
    let replacement = match code {
        // "decoded message length too large": the size limit, not a retryable range error.
        Some(c) if c == Code::OutOfRange as i32 => Some((
            Code::ResourceExhausted,
            format!("message larger than the limit of {limit} bytes"),
        )),
        // A corrupt compressed message is the client's data, not our failure.
        Some(c) if c == Code::Internal as i32 => {
            let msg = headers
                .get("grpc-message")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            msg.contains("decompress").then(|| {
                (
                    Code::InvalidArgument,
                    "the compressed message could not be decompressed".to_owned(),
                )
            })
        }
        _ => None,
    };
    if let Some((code, message)) = replacement {
        let status = Status::new(code, message);
        let mut fresh = http::HeaderMap::new();
        if status.add_header(&mut fresh).is_ok() {
            for (k, v) in fresh.iter() {
                headers.insert(k.clone(), v.clone());
            }
            headers.remove("grpc-status-details-bin");
        }
    }
}
