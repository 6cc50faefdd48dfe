//! SPEC.md section 8, line by line, against the HTTP receiver with a scripted
//! pipeline: each test asserts the status, the headers and the decoded body.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use claudewatch_ingest::response::RpcStatus;
use claudewatch_ingest::{
    router, HttpSettings, Refusal, Submission, Submit, SubmitFuture, Verdict,
};
use claudewatch_otlp::proto::collector::logs::v1::ExportLogsServiceResponse;
use claudewatch_otlp::proto::collector::trace::v1::ExportTraceServiceResponse;
use claudewatch_otlp::{Encoding, Signal};
use http_body_util::BodyExt;
use prost::Message;
use tower::ServiceExt;

/// A pipeline that records what it got and answers as scripted.
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

fn accepted() -> Result<Verdict, Refusal> {
    Ok(Verdict::Accepted {
        items: 1,
        rejected: 0,
        message: String::new(),
    })
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: bytes::Bytes,
    seen: Vec<Submission>,
}

async fn call(
    answer: Result<Verdict, Refusal>,
    settings: HttpSettings,
    req: Request<Body>,
) -> Answer {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let app = router(
        settings,
        Scripted {
            seen: seen.clone(),
            answer,
        },
    );
    let resp = app.oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let seen = seen.lock().unwrap().clone();
    Answer {
        status,
        headers,
        body,
        seen,
    }
}

fn post(path: &str, content_type: &str) -> axum::http::request::Builder {
    Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", content_type)
}

fn req(path: &str, content_type: &str, body: Vec<u8>) -> Request<Body> {
    post(path, content_type).body(Body::from(body)).unwrap()
}

fn fixture() -> Vec<u8> {
    let shared = std::env::var("CLAUDEWATCH_SHARED")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared")
        });
    std::fs::read(shared.join("fixtures/anthropic-native/001-traces.pb")).unwrap()
}

fn status_of(a: &Answer) -> RpcStatus {
    match a.headers["content-type"].to_str().unwrap() {
        "application/json" => {
            let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
            RpcStatus {
                code: v["code"].as_i64().unwrap() as i32,
                message: v["message"].as_str().unwrap().to_owned(),
            }
        }
        _ => RpcStatus::decode(&a.body[..]).unwrap(),
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[tokio::test]
async fn protobuf_success_answers_protobuf_without_partial_success() {
    let a = call(
        accepted(),
        HttpSettings::default(),
        req("/v1/traces", "application/x-protobuf", fixture()),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.headers["content-type"], "application/x-protobuf");
    assert_eq!(
        ExportTraceServiceResponse::decode(&a.body[..])
            .unwrap()
            .partial_success,
        None
    );
    assert_eq!(a.seen.len(), 1);
    assert_eq!(
        (a.seen[0].signal, a.seen[0].encoding),
        (Signal::Traces, Encoding::Protobuf)
    );
    assert_eq!(&a.seen[0].body[..], &fixture()[..]);
}

#[tokio::test]
async fn json_success_answers_json() {
    let a = call(
        accepted(),
        HttpSettings::default(),
        req(
            "/v1/logs",
            "application/json; charset=utf-8",
            br#"{"resourceLogs":[]}"#.to_vec(),
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.headers["content-type"], "application/json");
    assert_eq!(&a.body[..], b"{}");
    assert_eq!(
        (a.seen[0].signal, a.seen[0].encoding),
        (Signal::Logs, Encoding::Json)
    );
}

#[tokio::test]
async fn partial_success_carries_counts_and_message() {
    let answer = Ok(Verdict::Accepted {
        items: 5,
        rejected: 2,
        message: "2 spans with invalid ids".into(),
    });
    let a = call(
        answer.clone(),
        HttpSettings::default(),
        req("/v1/traces", "application/x-protobuf", fixture()),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let p = ExportTraceServiceResponse::decode(&a.body[..])
        .unwrap()
        .partial_success
        .unwrap();
    assert_eq!(
        (p.rejected_spans, p.error_message.as_str()),
        (2, "2 spans with invalid ids")
    );
    let j = call(
        answer,
        HttpSettings::default(),
        req("/v1/logs", "application/json", b"{}".to_vec()),
    )
    .await;
    let v: serde_json::Value = serde_json::from_slice(&j.body).unwrap();
    assert_eq!(v["partialSuccess"]["rejectedLogRecords"], "2");
    assert_eq!(
        v["partialSuccess"]["errorMessage"],
        "2 spans with invalid ids"
    );
}

#[tokio::test]
async fn undecodable_data_is_400_with_status() {
    let a = call(
        Ok(Verdict::Invalid(
            "invalid protobuf traces request: buffer underflow".into(),
        )),
        HttpSettings::default(),
        req("/v1/traces", "application/x-protobuf", vec![0x0a, 0x50]),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let s = status_of(&a);
    assert_eq!(s.code, 3);
    assert!(s.message.contains("buffer underflow"));
}

#[tokio::test]
async fn other_methods_are_405_with_allow() {
    let r = Request::builder()
        .method("GET")
        .uri("/v1/traces")
        .header("content-type", "application/json")
        .body(Body::empty())
        .unwrap();
    let a = call(accepted(), HttpSettings::default(), r).await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(a.headers["allow"], "POST");
    assert!(status_of(&a).message.contains("GET"));
    assert!(a.seen.is_empty());
}

#[tokio::test]
async fn other_content_types_are_415() {
    let a = call(
        accepted(),
        HttpSettings::default(),
        req("/v1/traces", "text/plain", b"hi".to_vec()),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(status_of(&a).message.contains("text/plain"));
    assert!(a.seen.is_empty());
}

#[tokio::test]
async fn unsupported_content_encoding_is_415() {
    let r = post("/v1/traces", "application/x-protobuf")
        .header("content-encoding", "br")
        .body(Body::from(fixture()))
        .unwrap();
    let a = call(accepted(), HttpSettings::default(), r).await;
    assert_eq!(a.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(status_of(&a).message.contains("br"));
}

#[tokio::test]
async fn gzip_and_zstd_are_undone_before_the_pipeline() {
    for (enc, body) in [
        ("gzip", gzip(&fixture())),
        ("zstd", zstd::encode_all(&fixture()[..], 3).unwrap()),
    ] {
        let r = post("/v1/traces", "application/x-protobuf")
            .header("content-encoding", enc)
            .body(Body::from(body))
            .unwrap();
        let a = call(accepted(), HttpSettings::default(), r).await;
        assert_eq!(a.status, StatusCode::OK, "{enc}");
        assert_eq!(&a.seen[0].body[..], &fixture()[..], "{enc}");
    }
}

#[tokio::test]
async fn a_gzip_bomb_is_413_and_never_reaches_the_pipeline() {
    let bomb = gzip(&vec![0u8; 32 << 20]);
    let settings = HttpSettings {
        max_body_bytes: 1 << 20,
        ..Default::default()
    };
    let r = post("/v1/traces", "application/x-protobuf")
        .header("content-encoding", "gzip")
        .body(Body::from(bomb))
        .unwrap();
    let a = call(accepted(), settings, r).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(status_of(&a).code, 8);
    assert!(a.seen.is_empty());
}

#[tokio::test]
async fn an_oversized_body_is_413() {
    let settings = HttpSettings {
        max_body_bytes: 100,
        ..Default::default()
    };
    let a = call(
        accepted(),
        settings,
        req("/v1/traces", "application/x-protobuf", fixture()),
    )
    .await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(a.seen.is_empty());
}

#[tokio::test]
async fn a_corrupt_gzip_body_is_400() {
    let r = post("/v1/traces", "application/x-protobuf")
        .header("content-encoding", "gzip")
        .body(Body::from(b"not gzip".to_vec()))
        .unwrap();
    let a = call(accepted(), HttpSettings::default(), r).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(status_of(&a).message.contains("gzip"));
}

#[tokio::test]
async fn an_empty_request_is_a_success() {
    let a = call(
        accepted(),
        HttpSettings::default(),
        req("/v1/metrics", "application/x-protobuf", Vec::new()),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.seen.is_empty());
}

#[tokio::test]
async fn push_back_is_503_with_retry_after() {
    let busy = Err(Refusal::Busy {
        retry_after_secs: 2,
        reason: "queue full".into(),
    });
    let a = call(
        busy,
        HttpSettings::default(),
        req("/v1/traces", "application/x-protobuf", fixture()),
    )
    .await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.headers["retry-after"], "2");
    assert_eq!(status_of(&a).code, 14);
}

#[tokio::test]
async fn bearer_tokens_map_to_tenants_and_others_get_401() {
    let settings = HttpSettings {
        tokens: HashMap::from([("s3cret".to_owned(), "team-a".to_owned())]),
        ..Default::default()
    };
    let none = call(
        accepted(),
        settings.clone(),
        req("/v1/traces", "application/x-protobuf", fixture()),
    )
    .await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(status_of(&none).code, 16);
    let bad = post("/v1/traces", "application/x-protobuf")
        .header("authorization", "Bearer nope")
        .body(Body::from(fixture()))
        .unwrap();
    assert_eq!(
        call(accepted(), settings.clone(), bad).await.status,
        StatusCode::UNAUTHORIZED
    );
    let good = post("/v1/traces", "application/x-protobuf")
        .header("authorization", "Bearer s3cret")
        .body(Body::from(fixture()))
        .unwrap();
    let a = call(accepted(), settings, good).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.seen[0].tenant.as_deref(), Some("team-a"));
}

#[tokio::test]
async fn logs_responses_use_the_logs_message() {
    let answer = Ok(Verdict::Accepted {
        items: 3,
        rejected: 1,
        message: "one record too large".into(),
    });
    let a = call(
        answer,
        HttpSettings::default(),
        req("/v1/logs", "application/x-protobuf", vec![0x0a, 0x00]),
    )
    .await;
    let p = ExportLogsServiceResponse::decode(&a.body[..])
        .unwrap()
        .partial_success
        .unwrap();
    assert_eq!(p.rejected_log_records, 1);
}
