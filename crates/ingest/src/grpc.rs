//! The OTLP/gRPC receiver: the `Export` method of the trace, logs and
//! metrics services, following SPEC.md section 8, as tower services that a
//! tonic server routes to.
//!
//! `Export` is unary, so the receiver reads its one message itself
//! ([`message`]) rather than through tonic's `Grpc::unary`: a message that
//! arrives in one HTTP/2 chunk reaches the pipeline as a slice of it, without
//! tonic's copy into a growing buffer, and gzip or zstd is undone by
//! [`crate::body::decompress`], the HTTP receiver's bounded decompression
//! (one allocation of the expected size; a bomb stops at the limit). The
//! pipeline decodes the message exactly as it decodes an HTTP body. Answers
//! are never compressed: they are a few bytes.
//!
//! Status codes: `OK` with `partial_success` when items were rejected;
//! `INVALID_ARGUMENT` for undecodable data, a corrupt compressed message or a
//! malformed frame; `RESOURCE_EXHAUSTED` over the size limit (compressed or
//! not); `UNIMPLEMENTED` for an unknown `grpc-encoding` (with
//! `grpc-accept-encoding`) or method; `UNAUTHENTICATED` without a valid
//! token; `UNAVAILABLE` with `RetryInfo` for push-back.

pub mod message;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes};
use claudewatch_otlp::{Encoding, Signal};
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http_body_util::BodyExt;
use prost::Message as _;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::server::NamedService;
use tonic::{Code, Status};

use crate::body::{self, BodyError, ContentEncoding};
use crate::response;
use crate::submit::{Submission, Submit, Verdict};
use message::MessageReader;

/// Settings of the gRPC receiver.
#[derive(Debug, Clone)]
pub struct GrpcSettings {
    /// Largest message accepted, decompressed, in bytes.
    pub max_message_bytes: usize,
    /// Bearer tokens and the tenant each maps to; empty = no authentication.
    pub tokens: HashMap<String, String>,
}

/// A gRPC codec that passes messages as bytes both ways, for clients (tests,
/// tools) that send pre-encoded or deliberately invalid messages with tonic.
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

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Serves one `Export` call: the encoded answer, or the status to send.
async fn export<S: Submit, B>(
    shared: &Shared<S>,
    signal: Signal,
    request: http::Request<B>,
) -> Result<Bytes, Status>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, request_body) = request.into_parts();
    let encoding = message_encoding(&parts.headers)?;
    let tenant = authenticate(&shared.settings.tokens, &parts.headers)?;
    let limit = shared.settings.max_message_bytes;
    let message = read_message(request_body, limit).await?;
    let bytes = match (message.compressed, encoding) {
        (false, _) => message.bytes,
        (true, Some(encoding)) => {
            body::decompress(encoding, message.bytes, limit).map_err(|e| match e {
                BodyError::TooLarge { limit } => Status::resource_exhausted(format!(
                    "message larger than the limit of {limit} bytes (after decompression)"
                )),
                BodyError::Corrupt { .. } => Status::invalid_argument(format!(
                    "the compressed message could not be decompressed: {e}"
                )),
            })?
        }
        (true, None) => {
            return Err(Status::invalid_argument(
                "the message is flagged compressed but the request has no grpc-encoding",
            ))
        }
    };
    let submission = Submission {
        signal,
        encoding: Encoding::Protobuf,
        body: bytes,
        tenant,
    };
    match shared.pipeline.submit(submission).await {
        Ok(Verdict::Accepted {
            rejected, message, ..
        }) => Ok(response::export_response(signal, rejected, &message)),
        Ok(Verdict::Invalid(reason)) => Err(Status::invalid_argument(reason)),
        Err(refusal) => {
            let (retry_after_secs, reason) = refusal.into_retry();
            Err(unavailable(retry_after_secs, reason))
        }
    }
}

/// How the request's messages are compressed (`grpc-encoding`); an encoding
/// not served is `UNIMPLEMENTED`, naming the ones that are.
fn message_encoding(headers: &http::HeaderMap) -> Result<Option<ContentEncoding>, Status> {
    match headers.get("grpc-encoding").map(HeaderValue::as_bytes) {
        None | Some(b"identity") => Ok(None),
        Some(b"gzip") => Ok(Some(ContentEncoding::Gzip)),
        Some(b"zstd") => Ok(Some(ContentEncoding::Zstd)),
        Some(other) => {
            let mut metadata = MetadataMap::new();
            metadata.insert(
                "grpc-accept-encoding",
                MetadataValue::from_static("gzip,zstd"),
            );
            Err(Status::with_metadata(
                Code::Unimplemented,
                format!(
                    "messages compressed with `{}` are not supported (gzip and zstd are)",
                    String::from_utf8_lossy(other)
                ),
                metadata,
            ))
        }
    }
}

/// Reads the request's one message, refusing one over `limit` bytes.
async fn read_message<B>(request_body: B, limit: usize) -> Result<message::Message, Status>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut request_body = std::pin::pin!(request_body);
    let mut reader = MessageReader::new(limit);
    while let Some(frame) = request_body.frame().await {
        let frame = frame.map_err(|e| Status::from_error(e.into()))?;
        if let Ok(mut chunk) = frame.into_data() {
            // `Bytes` (what hyper gives) hands itself over without a copy.
            reader.push(chunk.copy_to_bytes(chunk.remaining()))?;
        }
    }
    reader.finish()
}

/// A successful answer: `message` in one uncompressed frame, then the
/// `grpc-status: 0` trailer.
fn answer(message: &[u8]) -> http::Response<tonic::body::Body> {
    let mut trailers = http::HeaderMap::new();
    trailers.insert(
        HeaderName::from_static("grpc-status"),
        HeaderValue::from_static("0"),
    );
    let frame = http_body_util::Full::new(message::frame(message))
        .with_trailers(std::future::ready(Some(Ok::<_, Infallible>(trailers))));
    let mut response = http::Response::new(tonic::body::Body::new(frame));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    response
}

/// The tenant of a request's bearer token; `UNAUTHENTICATED` without a valid one.
fn authenticate(
    tokens: &HashMap<String, String>,
    headers: &http::HeaderMap,
) -> Result<Option<String>, Status> {
    if tokens.is_empty() {
        return Ok(None);
    }
    let token = headers
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
        Box::pin(async move {
            if !req.uri().path().ends_with("/Export") {
                return Ok(Status::unimplemented("only Export is served").into_http());
            }
            Ok(match export(&shared, signal, req).await {
                Ok(message) => answer(&message),
                Err(status) => status.into_http(),
            })
        })
    }
}
