//! Load for `serve`'s process tests: unique countable calls, posted from
//! several threads until the server goes away.

#![allow(dead_code)] // each test file uses a part

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use claudewatch_otlp::proto::collector::trace::v1::ExportTraceServiceRequest;
use claudewatch_otlp::proto::common::v1::{
    any_value::Value as V, AnyValue, InstrumentationScope, KeyValue,
};
use claudewatch_otlp::proto::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

/// An HTTP client that returns error statuses as answers, with a 30 s limit.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// POSTs a body; the status, or 0 when the connection failed.
pub fn post(base: &str, path: &str, content_type: &str, body: &[u8]) -> u16 {
    match agent()
        .post(format!("{base}{path}"))
        .header("content-type", content_type)
        .send(body)
    {
        Ok(resp) => resp.status().as_u16(),
        Err(_) => 0,
    }
}

/// The value of an unlabelled metric on serve's `/metrics`.
pub fn metric(base: &str, name: &str) -> f64 {
    let mut resp = agent().get(&format!("{base}/metrics")).call().unwrap();
    let text = resp.body_mut().read_to_string().unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not on /metrics:\n{text}"))
}

/// A traces request of `spans` SDK spans, each a call with its own request
/// id `req_load_<batch * 1_000_000 + i + 1>`, timed now.
pub fn unique_batch(batch: u64, spans: u64) -> Vec<u8> {
    let kv = |k: &str, v: V| KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        key_strindex: 0,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let spans = (0..spans)
        .map(|i| {
            let id = batch * 1_000_000 + i + 1;
            Span {
                trace_id: u128::from(id).to_be_bytes().to_vec(),
                span_id: id.to_be_bytes().to_vec(),
                name: "anthropic.messages.create".into(),
                start_time_unix_nano: now,
                end_time_unix_nano: now + 40_000_000,
                attributes: vec![
                    kv(
                        "gen_ai.request.model",
                        V::StringValue("claude-haiku-4-5".into()),
                    ),
                    kv("http.response.status_code", V::IntValue(200)),
                    kv(
                        "anthropic.request.id",
                        V::StringValue(format!("req_load_{id}")),
                    ),
                    kv("gen_ai.usage.input_tokens", V::IntValue(10)),
                    kv("gen_ai.usage.output_tokens", V::IntValue(2)),
                ],
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: None,
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "com.anthropic.sdk.python".into(),
                    ..Default::default()
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
    .encode_to_vec()
}

/// Posts unique batches of `spans` calls from `threads` threads until the
/// server goes away (or 5000 requests each); each thread returns the batch
/// numbers that were acknowledged. A 503 (shutting down, back-pressure) is
/// not acknowledged and not retried: the client would retry elsewhere.
pub fn load_until_gone(
    base: &str,
    threads: usize,
    spans: u64,
) -> Vec<std::thread::JoinHandle<Vec<u64>>> {
    let next = Arc::new(AtomicU64::new(0));
    (0..threads)
        .map(|_| {
            let (base, next) = (base.to_owned(), next.clone());
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                let mut failures = 0;
                for _ in 0..5000 {
                    let batch = next.fetch_add(1, Ordering::Relaxed);
                    let body = unique_batch(batch, spans);
                    match post(&base, "/v1/traces", "application/x-protobuf", &body) {
                        200 => acked.push(batch),
                        0 => {
                            failures += 1;
                            if failures > 3 {
                                break;
                            }
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        _ => {}
                    }
                }
                acked
            })
        })
        .collect()
}
