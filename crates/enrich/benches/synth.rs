//! A realistic batch of Anthropic SDK spans for benchmarks: ~1 KB each,
//! 21 attributes, unique ids, a mix of models, streams, caches and errors.

use claudewatch_otlp::proto::collector::trace::v1::ExportTraceServiceRequest;
use claudewatch_otlp::proto::common::v1::{
    any_value::Value as V, AnyValue, InstrumentationScope, KeyValue,
};
use claudewatch_otlp::proto::resource::v1::Resource;
use claudewatch_otlp::proto::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

fn kv(k: &str, v: V) -> KeyValue {
    KeyValue {
        key: k.to_owned(),
        value: Some(AnyValue { value: Some(v) }),
        key_strindex: 0,
    }
}
fn s(x: &str) -> V {
    V::StringValue(x.to_owned())
}

/// One export request of `n` spans.
pub fn batch(n: usize, seed: u64) -> ExportTraceServiceRequest {
    let models = [
        "claude-sonnet-4-5",
        "claude-haiku-4-5",
        "claude-opus-4-1",
        "claude-sonnet-4",
    ];
    let spans = (0..n)
        .map(|i| {
            let id = seed.wrapping_mul(1_000_003).wrapping_add(i as u64);
            let model = models[i % models.len()];
            let status = match i % 50 {
                0 => 529,
                1 => 429,
                _ => 200,
            };
            let mut attrs = vec![
                kv("server.address", s("api.anthropic.com")),
                kv("server.port", V::IntValue(443)),
                kv("gen_ai.provider.name", s("anthropic")),
                kv("gen_ai.operation.name", s("chat")),
                kv("gen_ai.request.model", s(model)),
                kv("gen_ai.request.max_tokens", V::IntValue(1024)),
                kv("http.request.method", s("POST")),
                kv("http.route", s("/v1/messages")),
                kv("url.scheme", s("https")),
                kv("url.path", s("/v1/messages")),
                kv("url.full", s("https://api.anthropic.com/v1/messages")),
                kv("http.response.status_code", V::IntValue(status)),
                kv("anthropic.request.id", s(&format!("req_011CW{id:020}"))),
                kv(
                    "anthropic.organization.id",
                    s("6f1c2a70-3b4d-4e5f-9a0b-1c2d3e4f5a6b"),
                ),
            ];
            if status == 200 {
                attrs.extend([
                    kv(
                        "gen_ai.usage.input_tokens",
                        V::IntValue(1200 + (i as i64 % 7) * 4096),
                    ),
                    kv("gen_ai.response.id", s(&format!("msg_01{id:024}"))),
                    kv("gen_ai.response.model", s(&format!("{model}-20250929"))),
                    kv("gen_ai.usage.cache_write.input_tokens", V::IntValue(0)),
                    kv(
                        "gen_ai.usage.cache_read.input_tokens",
                        V::IntValue((i as i64 % 7) * 4096),
                    ),
                    kv("gen_ai.usage.output_tokens", V::IntValue(85)),
                    kv("anthropic.message.stop_reason", s("end_turn")),
                ]);
                if i % 3 == 0 {
                    attrs.push(kv("gen_ai.request.stream", V::BoolValue(true)));
                    attrs.push(kv(
                        "gen_ai.response.time_to_first_chunk",
                        V::DoubleValue(0.4),
                    ));
                }
            } else {
                attrs.push(kv(
                    "error.type",
                    s(if status == 529 {
                        "overloaded_error"
                    } else {
                        "rate_limit_error"
                    }),
                ));
            }
            Span {
                trace_id: (id as u128 + 1).to_be_bytes().to_vec(),
                span_id: (id + 1).to_be_bytes().to_vec(),
                name: "anthropic.messages.create".into(),
                kind: 3,
                start_time_unix_nano: 1_795_393_612_000_000_000 + id * 1_000_000,
                end_time_unix_nano: 1_795_393_612_000_000_000 + id * 1_000_000 + 400_000_000,
                attributes: attrs,
                status: Some(Status {
                    code: if status == 200 { 1 } else { 2 },
                    message: String::new(),
                }),
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", s("checkout")),
                    kv("deployment.environment.name", s("prod")),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "com.anthropic.sdk.python".into(),
                    version: "2.12.0".into(),
                    ..Default::default()
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}
