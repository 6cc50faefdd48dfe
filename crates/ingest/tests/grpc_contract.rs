//! SPEC.md section 8 for OTLP/gRPC, against a real tonic server on loopback
//! with a scripted pipeline: each test asserts the status code, the message
//! or details, and what reached the pipeline.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use claudewatch_ingest::grpc::RawCodec;
use claudewatch_ingest::{
    grpc_services, GrpcSettings, Refusal, Submission, Submit, SubmitFuture, Verdict,
};
use claudewatch_otlp::proto::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use claudewatch_otlp::Signal;
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic::transport::{Channel, Server};
use tonic::{Code, Status};

#[derive(Clone)]
struct Scripted {
    seen: Arc<Mutex<Vec<Submission>>>,
    answer: Result<Verdict, Refusal>,
}

impl Submit for Scripted {
    fn submit(&self, s: Submission) -> SubmitFuture<'_> {
        self.seen.lock().unwrap().push(s);
        let answer = self.answer.clone();
        Box::pin(async move { answer })
    }
}

fn accepted(rejected: u64, message: &str) -> Result<Verdict, Refusal> {
    Ok(Verdict::Accepted {
        items: 3,
        rejected,
        message: message.into(),
    })
}

struct Harness {
    channel: Channel,
    seen: Arc<Mutex<Vec<Submission>>>,
}

async fn serve(answer: Result<Verdict, Refusal>, settings: GrpcSettings) -> Harness {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (t, l, m) = grpc_services(
        settings,
        Scripted {
            seen: seen.clone(),
            answer,
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        Server::builder()
            .add_service(t)
            .add_service(l)
            .add_service(m)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    Harness { channel, seen }
}

fn settings() -> GrpcSettings {
    GrpcSettings {
        max_message_bytes: 1 << 20,
        tokens: HashMap::new(),
    }
}

const TRACES: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
const LOGS: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
const METRICS: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";

async fn export(
    h: &Harness,
    path: &'static str,
    body: Bytes,
    compression: Option<CompressionEncoding>,
    token: Option<&str>,
) -> Result<Bytes, Status> {
    let mut client = tonic::client::Grpc::new(h.channel.clone());
    if let Some(c) = compression {
        client = client.send_compressed(c);
    }
    client = client.accept_compressed(CompressionEncoding::Gzip);
    client.ready().await.unwrap();
    let mut req = tonic::Request::new(body);
    if let Some(t) = token {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    client
        .unary(req, path.parse().unwrap(), RawCodec)
        .await
        .map(tonic::Response::into_inner)
}

fn a_request() -> Bytes {
    Bytes::from(ExportTraceServiceRequest::default().encode_to_vec())
}

#[tokio::test]
async fn success_has_no_partial_success_and_the_body_reaches_the_pipeline_as_sent() {
    let h = serve(accepted(0, ""), settings()).await;
    let body = Bytes::from_static(b"\x0a\x00");
    let answer = export(&h, TRACES, body.clone(), None, None).await.unwrap();
    let resp = ExportTraceServiceResponse::decode(answer).unwrap();
    assert_eq!(resp.partial_success, None);
    let seen = h.seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].signal, Signal::Traces);
    assert_eq!(seen[0].body, body);
}

#[tokio::test]
async fn each_service_routes_to_its_signal() {
    let h = serve(accepted(0, ""), settings()).await;
    for path in [TRACES, LOGS, METRICS] {
        export(&h, path, a_request(), None, None).await.unwrap();
    }
    let signals: Vec<Signal> = h.seen.lock().unwrap().iter().map(|s| s.signal).collect();
    assert_eq!(signals, vec![Signal::Traces, Signal::Logs, Signal::Metrics]);
}

#[tokio::test]
async fn partial_success_carries_the_count_and_the_message() {
    let h = serve(accepted(2, "2 not_a_claude_call"), settings()).await;
    let answer = export(&h, TRACES, a_request(), None, None).await.unwrap();
    let partial = ExportTraceServiceResponse::decode(answer)
        .unwrap()
        .partial_success
        .expect("partial success");
    assert_eq!(partial.rejected_spans, 2);
    assert_eq!(partial.error_message, "2 not_a_claude_call");
}

#[tokio::test]
async fn undecodable_data_is_invalid_argument() {
    let h = serve(
        Ok(Verdict::Invalid("bad protobuf at byte 3".into())),
        settings(),
    )
    .await;
    let err = export(&h, TRACES, Bytes::from_static(b"\xff\xff"), None, None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("bad protobuf"), "{}", err.message());
}

#[tokio::test]
async fn gzip_and_zstd_messages_are_undone_before_the_pipeline() {
    let h = serve(accepted(0, ""), settings()).await;
    let body = Bytes::from(vec![b'x'; 100_000]);
    for c in [CompressionEncoding::Gzip, CompressionEncoding::Zstd] {
        export(&h, TRACES, body.clone(), Some(c), None)
            .await
            .unwrap();
    }
    let seen = h.seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|s| s.body == body));
}

#[tokio::test]
async fn over_the_limit_is_resource_exhausted_compressed_or_not_and_a_bomb_never_expands() {
    let h = serve(accepted(0, ""), settings()).await;
    // Plain, over the 1 MiB limit.
    let big = Bytes::from(vec![0u8; (1 << 20) + 1]);
    let err = export(&h, TRACES, big, None, None).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    // Bombs: 64 MiB of zeros compress to a few KiB; the server stops at 1 MiB.
    let bomb = Bytes::from(vec![0u8; 64 << 20]);
    for c in [CompressionEncoding::Gzip, CompressionEncoding::Zstd] {
        let err = export(&h, TRACES, bomb.clone(), Some(c), None)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted, "{c:?}: {err:?}");
    }
    assert!(
        h.seen.lock().unwrap().is_empty(),
        "nothing reached the pipeline"
    );
}

#[tokio::test]
async fn a_missing_or_wrong_token_is_unauthenticated_and_a_good_one_names_the_tenant() {
    let mut s = settings();
    s.tokens.insert("sesame".into(), "team-a".into());
    let h = serve(accepted(0, ""), s).await;
    for token in [None, Some("wrong")] {
        let err = export(&h, TRACES, a_request(), None, token)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated);
    }
    export(&h, TRACES, a_request(), None, Some("sesame"))
        .await
        .unwrap();
    let seen = h.seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].tenant.as_deref(), Some("team-a"));
}

/// The `RetryInfo` delay in seconds inside `grpc-status-details-bin`.
fn retry_delay_secs(status: &Status) -> Option<i64> {
    #[derive(Clone, PartialEq, prost::Message)]
    struct Duration {
        #[prost(int64, tag = "1")]
        seconds: i64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct RetryInfo {
        #[prost(message, optional, tag = "1")]
        retry_delay: Option<Duration>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct Any {
        #[prost(string, tag = "1")]
        type_url: String,
        #[prost(bytes = "vec", tag = "2")]
        value: Vec<u8>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct RpcStatus {
        #[prost(int32, tag = "1")]
        code: i32,
        #[prost(message, repeated, tag = "3")]
        details: Vec<Any>,
    }
    let s = RpcStatus::decode(status.details()).ok()?;
    let any = s
        .details
        .iter()
        .find(|a| a.type_url == "type.googleapis.com/google.rpc.RetryInfo")?;
    RetryInfo::decode(any.value.as_slice())
        .ok()?
        .retry_delay
        .map(|d| d.seconds)
}

#[tokio::test]
async fn push_back_is_unavailable_with_retry_info() {
    for refusal in [
        Refusal::Busy {
            retry_after_secs: 3,
            reason: "queue full".into(),
        },
        Refusal::Unavailable {
            retry_after_secs: 3,
            reason: "sink down".into(),
        },
    ] {
        let h = serve(Err(refusal), settings()).await;
        let err = export(&h, TRACES, a_request(), None, None)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unavailable);
        assert_eq!(retry_delay_secs(&err), Some(3));
    }
}

/// Sends a gRPC frame built by hand (tonic's client only sends valid frames,
/// and chooses its own headers) to the trace service over HTTP/2.
async fn send_frame(
    h: &Harness,
    frame: Vec<u8>,
    header: (&str, &str),
) -> http::Response<tonic::body::Body> {
    use tower::ServiceExt;
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("http://127.0.0.1{TRACES}"))
        .header("content-type", "application/grpc")
        .header(header.0, header.1)
        .header("te", "trailers")
        .body(tonic::body::Body::new(http_body_util::Full::new(
            Bytes::from(frame),
        )))
        .unwrap();
    h.channel.clone().oneshot(request).await.unwrap()
}

#[tokio::test]
async fn a_corrupt_compressed_message_is_invalid_argument_not_internal() {
    let h = serve(accepted(0, ""), settings()).await;
    // A gRPC frame flagged compressed whose payload is not gzip, built by
    // hand (tonic's client only sends valid frames) and sent over HTTP/2.
    let frame = {
        let mut f = vec![1u8];
        f.extend_from_slice(&4u32.to_be_bytes());
        f.extend_from_slice(b"junk");
        f
    };
    let resp = send_frame(&h, frame, ("grpc-encoding", "gzip")).await;
    let headers = resp.headers().clone();
    let trailers = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .trailers()
        .cloned()
        .unwrap_or_default();
    let status = headers
        .get("grpc-status")
        .or_else(|| trailers.get("grpc-status"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    assert_eq!(
        status.as_deref(),
        Some("3"),
        "headers {headers:?} trailers {trailers:?}"
    );
}

#[tokio::test]
async fn an_answer_is_not_compressed_even_for_a_client_that_accepts_gzip() {
    // The answer is a few bytes: gzipping it would cost a compressor's set-up
    // per request and save nothing.
    let h = serve(accepted(2, "2 spans without a trace id"), settings()).await;
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(a_request().len() as u32).to_be_bytes());
    frame.extend_from_slice(&a_request());
    let resp = send_frame(&h, frame, ("grpc-accept-encoding", "gzip")).await;
    assert_eq!(resp.headers().get("grpc-encoding"), None);
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(body[0], 0, "the message is flagged uncompressed");
    let resp = ExportTraceServiceResponse::decode(&body[5..]).unwrap();
    assert_eq!(resp.partial_success.unwrap().rejected_spans, 2);
}

#[tokio::test]
async fn an_unknown_encoding_is_unimplemented_and_names_the_served_ones() {
    let h = serve(accepted(0, ""), settings()).await;
    let mut frame = vec![1u8];
    frame.extend_from_slice(&3u32.to_be_bytes());
    frame.extend_from_slice(b"abc");
    let resp = send_frame(&h, frame, ("grpc-encoding", "snappy")).await;
    let headers = resp.headers();
    assert_eq!(
        headers.get("grpc-status").and_then(|v| v.to_str().ok()),
        Some("12"),
        "{headers:?}"
    );
    assert_eq!(
        headers
            .get("grpc-accept-encoding")
            .and_then(|v| v.to_str().ok()),
        Some("gzip,zstd")
    );
    assert!(h.seen.lock().unwrap().is_empty());
}
