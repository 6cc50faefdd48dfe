//! Sending to tiny local receivers (OTLP/HTTP with hyper, OTLP/gRPC with
//! tonic's generated server): what the receiver acknowledged holds exactly
//! the calls the report counts, retries included.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use claudewatch_enrich::{EnrichConfig, Enricher};
use claudewatch_loadgen::{run, Config, Protocol, Report, Stop};
use claudewatch_otlp::{decode, Encoding, Signal};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;

/// What a receiver kept: the bodies it acknowledged, decompressed.
#[derive(Default)]
struct Received {
    bodies: Mutex<Vec<(Encoding, Vec<u8>)>>,
    /// Answer this many requests with push-back first.
    push_back: AtomicU64,
    /// Answer every request with 400.
    reject_all: bool,
    /// Bearer token required, if any.
    token: Option<&'static str>,
}

impl Received {
    fn records(&self) -> (u64, u64) {
        let mut e = Enricher::new(EnrichConfig::default());
        let mut spans = 0u64;
        for (enc, body) in self.bodies.lock().unwrap().iter() {
            let req = decode(Signal::Traces, *enc, body).expect("receiver got a valid body");
            if let claudewatch_otlp::ExportRequest::Traces(t) = &req {
                spans += t
                    .resource_spans
                    .iter()
                    .flat_map(|r| &r.scope_spans)
                    .map(|s| s.spans.len() as u64)
                    .sum::<u64>();
            }
            e.push(&req);
        }
        (e.finish().len() as u64, spans)
    }
}

async fn http_server(state: Arc<Received>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let state = state.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let state = state.clone();
                        async move { Ok::<_, std::convert::Infallible>(answer(&state, req).await) }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

async fn answer(
    state: &Received,
    req: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let status = |code: u16| {
        let mut r = hyper::Response::new(Full::new(Bytes::new()));
        *r.status_mut() = hyper::StatusCode::from_u16(code).unwrap();
        r
    };
    assert_eq!(req.uri().path(), "/v1/traces");
    if let Some(t) = state.token {
        let auth = req
            .headers()
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_owned());
        if auth.as_deref() != Some(&format!("Bearer {t}")) {
            return status(401);
        }
    }
    let encoding = match req
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap())
    {
        Some("application/json") => Encoding::Json,
        _ => Encoding::Protobuf,
    };
    let gzip = req
        .headers()
        .get("content-encoding")
        .is_some_and(|v| v == "gzip");
    let body = req.into_body().collect().await.unwrap().to_bytes();
    if state.reject_all {
        return status(400);
    }
    if state
        .push_back
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        let mut r = status(503);
        r.headers_mut().insert("retry-after", "0".parse().unwrap());
        return r;
    }
    let body = if gzip {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .unwrap();
        out
    } else {
        body.to_vec()
    };
    state.bodies.lock().unwrap().push((encoding, body));
    let mut r = status(200);
    if encoding == Encoding::Protobuf {
        *r.body_mut() = Full::new(Bytes::from(
            ExportTraceServiceResponse::default().encode_to_vec(),
        ));
    }
    r
}

struct Grpc(Arc<Received>);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        if self
            .0
            .push_back
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(tonic::Status::unavailable("queue full"));
        }
        if self.0.reject_all {
            return Err(tonic::Status::invalid_argument("refused"));
        }
        if let Some(t) = self.0.token {
            let auth = request
                .metadata()
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_owned());
            if auth.as_deref() != Some(&format!("Bearer {t}")) {
                return Err(tonic::Status::unauthenticated("token"));
            }
        }
        let body = request.into_inner().encode_to_vec();
        self.0
            .bodies
            .lock()
            .unwrap()
            .push((Encoding::Protobuf, body));
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

async fn grpc_server(state: Arc<Received>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = TraceServiceServer::new(Grpc(state))
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    format!("http://{addr}")
}

fn config(protocol: Protocol, endpoint: String, stop: Stop) -> Config {
    Config {
        protocol,
        endpoint: Some(endpoint),
        stop,
        concurrency: 3,
        spans_per_request: 40,
        seed: 17,
        timeout: Duration::from_secs(10),
        ..Config::default()
    }
}

/// `c` with gzip on and a bearer token.
fn gzip_with_token(c: Config, token: &str) -> Config {
    Config {
        gzip: true,
        bearer: Some(token.into()),
        ..c
    }
}

fn assert_exact(report: &Report, state: &Received) {
    assert!(report.ok(), "{report:?}");
    let (records, spans) = state.records();
    assert_eq!(
        records, report.calls_acked,
        "records vs calls acked: {report:?}"
    );
    assert_eq!(spans, report.spans_acked);
    assert_eq!(report.calls_generated, report.calls_acked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_protobuf_gzip_with_a_503_then_success() {
    let state = Arc::new(Received {
        push_back: AtomicU64::new(1),
        token: Some("s3cret"),
        ..Received::default()
    });
    let url = http_server(state.clone()).await;
    let report = run(gzip_with_token(
        config(Protocol::HttpProtobuf, url, Stop::Count(700)),
        "s3cret",
    ))
    .await
    .unwrap();
    assert_eq!(report.calls_acked, 700);
    assert_eq!(report.retries, 1, "{report:?}");
    assert_eq!(report.errors_by_kind.get("http_503"), Some(&1));
    assert_exact(&report, &state);
    assert!(report.latency_ms.p50 > 0.0 && report.latency_ms.max >= report.latency_ms.p99);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_json_for_a_duration_at_a_rate_flushes_every_twin() {
    let state = Arc::new(Received::default());
    let url = http_server(state.clone()).await;
    let mut c = config(
        Protocol::HttpJson,
        url,
        Stop::Duration(Duration::from_millis(600)),
    );
    c.rate = 20_000.0;
    let report = run(c).await.unwrap();
    assert!(report.calls_acked > 1000, "{report:?}");
    // Paced: not much above the target (the first batch goes at once).
    assert!(report.rate_spans_per_s < 20_000.0 * 1.3, "{report:?}");
    assert_exact(&report, &state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_gzip_with_unavailable_then_success() {
    let state = Arc::new(Received {
        push_back: AtomicU64::new(2),
        token: Some("t0k"),
        ..Received::default()
    });
    let url = grpc_server(state.clone()).await;
    let report = run(gzip_with_token(
        config(Protocol::Grpc, url, Stop::Count(900)),
        "t0k",
    ))
    .await
    .unwrap();
    assert_eq!(report.calls_acked, 900);
    assert_eq!(report.retries, 2, "{report:?}");
    assert_eq!(report.errors_by_kind.get("grpc_unavailable"), Some(&2));
    assert_exact(&report, &state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prebuilt_requests_send_the_same_calls_exactly_once() {
    // Built before the start, then sent (one request pushed back and resent):
    // the receiver holds exactly the calls counted, and the same bodies as a
    // run that builds while it sends (same seed), timestamps aside.
    let prebuilt = Arc::new(Received {
        push_back: AtomicU64::new(1),
        ..Received::default()
    });
    let url = http_server(prebuilt.clone()).await;
    let mut c = config(Protocol::HttpProtobuf, url, Stop::Count(800));
    c.prebuild = true;
    let report = run(c).await.unwrap();
    assert_eq!(report.calls_acked, 800);
    assert_eq!(report.retries, 1, "{report:?}");
    assert_exact(&report, &prebuilt);

    let live = Arc::new(Received::default());
    let url = http_server(live.clone()).await;
    let live_report = run(config(Protocol::HttpProtobuf, url, Stop::Count(800)))
        .await
        .unwrap();
    assert_eq!(live_report.requests, report.requests);
    assert_eq!(live_report.spans_acked, report.spans_acked);
    let sizes = |r: &Received| {
        let mut v: Vec<usize> = r
            .bodies
            .lock()
            .unwrap()
            .iter()
            .map(|(_, b)| b.len())
            .collect();
        v.sort_unstable();
        v
    };
    assert_eq!(sizes(&prebuilt), sizes(&live));
}

#[tokio::test]
async fn prebuild_needs_a_count() {
    let mut c = config(
        Protocol::HttpProtobuf,
        "http://127.0.0.1:9".into(),
        Stop::Duration(Duration::from_millis(100)),
    );
    c.prebuild = true;
    let err = run(c).await.unwrap_err();
    assert!(err.to_string().contains("prebuild needs a count"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_plain_for_a_duration() {
    let state = Arc::new(Received::default());
    let url = grpc_server(state.clone()).await;
    let report = run(config(
        Protocol::Grpc,
        url,
        Stop::Duration(Duration::from_millis(400)),
    ))
    .await
    .unwrap();
    assert!(report.calls_acked > 100, "{report:?}");
    assert_exact(&report, &state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_count_as_failed_never_as_sent() {
    let state = Arc::new(Received {
        reject_all: true,
        ..Received::default()
    });
    let url = http_server(state.clone()).await;
    let report = run(config(Protocol::HttpProtobuf, url, Stop::Count(100)))
        .await
        .unwrap();
    assert!(!report.ok());
    assert_eq!(report.calls_acked, 0);
    assert_eq!(report.calls_failed, 100);
    assert_eq!(report.spans_acked, 0);
    assert_eq!(report.retries, 0, "400 is not retried");
    assert_eq!(
        report.errors_by_kind.get("http_400"),
        Some(&report.requests)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_statuses_that_retrying_cannot_fix_fail_the_request() {
    let state = Arc::new(Received {
        reject_all: true,
        ..Received::default()
    });
    let url = grpc_server(state.clone()).await;
    let report = run(config(Protocol::Grpc, url.clone(), Stop::Count(100)))
        .await
        .unwrap();
    assert_eq!((report.calls_acked, report.calls_failed), (0, 100));
    assert_eq!(report.retries, 0, "INVALID_ARGUMENT is not retried");
    assert_eq!(
        report.errors_by_kind.get("grpc_invalid_argument"),
        Some(&report.requests)
    );
    // A wrong token: UNAUTHENTICATED, in a Trailers-Only answer.
    let state = Arc::new(Received {
        token: Some("right"),
        ..Received::default()
    });
    let url = grpc_server(state.clone()).await;
    let report = run(gzip_with_token(
        config(Protocol::Grpc, url, Stop::Count(10)),
        "wrong",
    ))
    .await
    .unwrap();
    assert_eq!(report.calls_failed, 10);
    assert_eq!(
        report.errors_by_kind.get("grpc_unauthenticated"),
        Some(&report.requests)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_listening_fails_after_retries() {
    // Bind then drop: a port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut c = config(
        Protocol::HttpProtobuf,
        format!("http://127.0.0.1:{port}"),
        Stop::Count(10),
    );
    c.max_retries = 2;
    c.concurrency = 1;
    let report = run(c).await.unwrap();
    assert!(!report.ok());
    assert_eq!(report.calls_acked, 0);
    assert_eq!(report.errors_by_kind.get("connect"), Some(&3));
}
