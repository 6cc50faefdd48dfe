//! Conventions we have no captures of, from their documentation and source
//! (see docs/conventions.md): each test builds what the instrumentation emits
//! and asserts the record.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use claudewatch_enrich::{CallRecord, EnrichConfig, Enricher};
use claudewatch_model::{LimitKind, Outcome, Provider};
use claudewatch_otlp::{decode, Encoding, ExportRequest, Signal};
use serde_json::{json, Value};

const T0: u64 = 1_795_393_612_000_000_000;

fn attr(key: &str, v: Value) -> Value {
    let value = match v {
        Value::String(s) => json!({ "stringValue": s }),
        Value::Bool(b) => json!({ "boolValue": b }),
        Value::Number(n) if n.is_i64() || n.is_u64() => json!({ "intValue": n.to_string() }),
        Value::Number(n) => json!({ "doubleValue": n }),
        Value::Array(a) => {
            json!({ "arrayValue": { "values": a.into_iter().map(|x| json!({"stringValue": x})).collect::<Vec<_>>() } })
        }
        other => panic!("unsupported {other}"),
    };
    json!({ "key": key, "value": value })
}

struct SpanSpec<'a> {
    scope: &'a str,
    scope_version: &'a str,
    name: &'a str,
    trace: &'a str,
    span: &'a str,
    parent: &'a str,
    start_ms: u64,
    end_ms: u64,
    error: Option<&'a str>,
    attrs: Vec<(&'a str, Value)>,
    exception: Option<(&'a str, &'a str)>,
}

impl Default for SpanSpec<'_> {
    fn default() -> Self {
        SpanSpec {
            scope: "",
            scope_version: "",
            name: "chat",
            trace: "0af7651916cd43dd8448eb211c80319c",
            span: "b7ad6b7169203331",
            parent: "",
            start_ms: 0,
            end_ms: 40,
            error: None,
            attrs: Vec::new(),
            exception: None,
        }
    }
}

fn traces(language: &str, spans: &[SpanSpec<'_>]) -> ExportRequest {
    let scope_spans: Vec<Value> = spans
        .iter()
        .map(|s| {
            let mut span = json!({
                "traceId": s.trace, "spanId": s.span, "parentSpanId": s.parent, "name": s.name, "kind": 3,
                "startTimeUnixNano": (T0 + s.start_ms * 1_000_000).to_string(),
                "endTimeUnixNano": (T0 + s.end_ms * 1_000_000).to_string(),
                "attributes": s.attrs.iter().map(|(k, v)| attr(k, v.clone())).collect::<Vec<_>>(),
            });
            if let Some(msg) = s.error {
                span["status"] = json!({ "code": 2, "message": msg });
            }
            if let Some((t, m)) = s.exception {
                span["events"] = json!([{ "name": "exception", "timeUnixNano": "1",
                    "attributes": [attr("exception.type", json!(t)), attr("exception.message", json!(m))] }]);
            }
            json!({ "scope": { "name": s.scope, "version": s.scope_version }, "spans": [span] })
        })
        .collect();
    let doc = json!({ "resourceSpans": [{
        "resource": { "attributes": [attr("service.name", json!("checkout")), attr("telemetry.sdk.language", json!(language))] },
        "scopeSpans": scope_spans }] });
    decode(Signal::Traces, Encoding::Json, doc.to_string().as_bytes()).expect("valid OTLP/JSON")
}

fn enrich(reqs: &[ExportRequest]) -> Vec<CallRecord> {
    let mut e = Enricher::new(EnrichConfig::default());
    for r in reqs {
        e.push(r);
    }
    e.finish()
}

fn cost(r: &CallRecord) -> String {
    r.cost_usd
        .map(|c| c.to_string())
        .unwrap_or_else(|| "null".into())
}

#[test]
fn otel_genai_instrumentation_input_includes_cache_tokens() {
    // opentelemetry-instrumentation-genai-anthropic: semconv >= 1.40, input = raw + cache read + cache write.
    let req = traces(
        "python",
        &[SpanSpec {
            scope: "opentelemetry.instrumentation.genai.anthropic",
            scope_version: "1.1b1",
            name: "chat claude-sonnet-4-5-20250929",
            attrs: vec![
                ("gen_ai.operation.name", json!("chat")),
                ("gen_ai.provider.name", json!("anthropic")),
                ("gen_ai.request.model", json!("claude-sonnet-4-5-20250929")),
                ("gen_ai.response.id", json!("msg_01XFDUDYJgAACzvnptvVoYEL")),
                ("gen_ai.response.finish_reasons", json!(["stop"])),
                ("gen_ai.usage.input_tokens", json!(2572)),
                ("gen_ai.usage.cache_read.input_tokens", json!(2048)),
                ("gen_ai.usage.cache_creation.input_tokens", json!(512)),
                ("gen_ai.usage.output_tokens", json!(180)),
                (
                    "gen_ai.input.messages",
                    json!("[{\"role\":\"user\",\"parts\":[{\"content\":\"secret prompt\"}]}]"),
                ),
                ("server.address", json!("api.anthropic.com")),
            ],
            ..Default::default()
        }],
    );
    let r = &enrich(&[req])[0];
    assert_eq!(
        (
            r.input_tokens,
            r.cache_read_tokens,
            r.cache_write_tokens,
            r.output_tokens
        ),
        (Some(12), Some(2048), Some(512), Some(180))
    );
    // 12*3 + 2048*0.3 + 512*3.75 + 180*15 = 36 + 614.4 + 1920 + 2700 micro-USD
    assert_eq!(cost(r), "0.0052704");
    assert_eq!(r.outcome, Outcome::Success);
    assert!(r.source.starts_with("otel_anthropic@1.1b1"), "{}", r.source);
    assert!(
        !r.attributes.contains_key("gen_ai.input.messages"),
        "message contents must never be copied"
    );
    assert!(!serde_json::to_string(r).unwrap().contains("secret prompt"));
}

#[test]
fn legacy_bedrock_gen_ai_system_is_uncached_and_bedrock() {
    let req = traces(
        "python",
        &[SpanSpec {
            scope: "opentelemetry.instrumentation.botocore.bedrock-runtime",
            name: "chat anthropic.claude-sonnet-4-5-20250929-v1:0",
            attrs: vec![
                ("gen_ai.system", json!("aws.bedrock")),
                ("gen_ai.operation.name", json!("chat")),
                (
                    "gen_ai.request.model",
                    json!("us.anthropic.claude-sonnet-4-5-20250929-v1:0"),
                ),
                ("gen_ai.usage.input_tokens", json!(1200)),
                ("gen_ai.usage.output_tokens", json!(85)),
            ],
            ..Default::default()
        }],
    );
    let r = &enrich(&[req])[0];
    assert_eq!(r.provider, Some(Provider::Bedrock));
    assert_eq!(r.model_family.as_deref(), Some("claude-sonnet-4-5"));
    assert_eq!(r.input_tokens, Some(1200));
    assert_eq!(cost(r), "0.004875");
}

#[test]
fn non_claude_genai_spans_are_ignored() {
    let req = traces(
        "python",
        &[SpanSpec {
            scope: "opentelemetry.instrumentation.openai_v2",
            attrs: vec![
                ("gen_ai.provider.name", json!("openai")),
                ("gen_ai.request.model", json!("gpt-4o")),
            ],
            ..Default::default()
        }],
    );
    assert!(enrich(&[req]).is_empty());
}

#[test]
fn openinference_wrapping_the_sdk_span_is_one_call() {
    // OpenInference makes its span current around create(): the SDK span is its child.
    let output = r#"{"id":"msg_01Bx","content":[{"text":"Paris","type":"text"}],"model":"claude-sonnet-4-5-20250929","stop_reason":"end_turn","usage":{"cache_creation_input_tokens":1733,"cache_read_input_tokens":512,"input_tokens":10,"output_tokens":11}}"#;
    let req = traces(
        "python",
        &[
            SpanSpec {
                scope: "openinference.instrumentation.anthropic",
                scope_version: "1.1.2",
                name: "messages.create",
                span: "1111111111111111",
                end_ms: 50,
                attrs: vec![
                    ("openinference.span.kind", json!("LLM")),
                    ("llm.provider", json!("anthropic")),
                    ("llm.system", json!("anthropic")),
                    ("llm.model_name", json!("claude-sonnet-4-5-20250929")),
                    ("llm.token_count.prompt", json!(2255)),
                    ("llm.token_count.completion", json!(11)),
                    ("llm.token_count.total", json!(2266)),
                    ("llm.token_count.prompt_details.cache_read", json!(512)),
                    ("llm.token_count.prompt_details.cache_write", json!(1733)),
                    (
                        "llm.input_messages.0.message.content",
                        json!("What is the capital of France?"),
                    ),
                    ("output.value", json!(output)),
                    ("output.mime_type", json!("application/json")),
                ],
                ..Default::default()
            },
            SpanSpec {
                scope: "com.anthropic.sdk.python",
                scope_version: "2.12.0",
                name: "anthropic.messages.create",
                span: "2222222222222222",
                parent: "1111111111111111",
                start_ms: 2,
                end_ms: 48,
                attrs: vec![
                    ("gen_ai.provider.name", json!("anthropic")),
                    ("gen_ai.request.model", json!("claude-sonnet-4-5")),
                    ("gen_ai.response.model", json!("claude-sonnet-4-5-20250929")),
                    ("gen_ai.usage.input_tokens", json!(2255)),
                    ("gen_ai.usage.cache_read.input_tokens", json!(512)),
                    ("gen_ai.usage.cache_write.input_tokens", json!(1733)),
                    ("gen_ai.usage.output_tokens", json!(11)),
                    ("http.response.status_code", json!(200)),
                    ("anthropic.request.id", json!("req_011abc")),
                ],
                ..Default::default()
            },
        ],
    );
    let records = enrich(&[req]);
    assert_eq!(records.len(), 1, "{records:#?}");
    let r = &records[0];
    assert_eq!(
        (
            r.input_tokens,
            r.cache_read_tokens,
            r.cache_write_tokens,
            r.output_tokens
        ),
        (Some(10), Some(512), Some(1733), Some(11))
    );
    assert_eq!(r.request_id.as_deref(), Some("req_011abc"));
    assert_eq!(r.response_id.as_deref(), Some("msg_01Bx"));
    assert!(
        r.source.contains("anthropic_sdk") && r.source.contains("openinference"),
        "{}",
        r.source
    );
    assert!(!serde_json::to_string(r).unwrap().contains("Paris"));
}

#[test]
fn openinference_token_counts_fold_by_version_and_language() {
    let span = |language: &str, version: &str| {
        traces(
            language,
            &[SpanSpec {
                scope: "openinference.instrumentation.anthropic",
                scope_version: version,
                name: "messages.create",
                attrs: vec![
                    ("openinference.span.kind", json!("LLM")),
                    ("llm.provider", json!("anthropic")),
                    ("llm.model_name", json!("claude-haiku-4-5")),
                    ("llm.token_count.prompt", json!(2255)),
                    ("llm.token_count.completion", json!(11)),
                    ("llm.token_count.prompt_details.cache_read", json!(512)),
                    ("llm.token_count.prompt_details.cache_write", json!(1733)),
                ],
                ..Default::default()
            }],
        )
    };
    assert_eq!(enrich(&[span("python", "1.1.2")])[0].input_tokens, Some(10));
    // The JS instrumentation reports the API's uncached prompt count.
    assert_eq!(
        enrich(&[span("nodejs", "0.1.21")])[0].input_tokens,
        Some(2255)
    );
}

#[test]
fn logfire_success_uses_raw_usage_and_errors_parse_the_message() {
    let ok = traces(
        "python",
        &[SpanSpec {
            scope: "logfire.anthropic",
            scope_version: "4.41.0",
            name: "Message with {request_data[model]!r}",
            attrs: vec![
                ("logfire.msg", json!("Message with 'claude-haiku-4-5'")),
                (
                    "request_data",
                    json!(
                        r#"{"model":"claude-haiku-4-5","max_tokens":100,"messages":[{"role":"user","content":"hi"}]}"#
                    ),
                ),
                (
                    "response_data",
                    json!(
                        r#"{"message":{"role":"assistant","content":"hello"},"usage":{"input_tokens":5,"cache_read_input_tokens":3000,"cache_creation_input_tokens":0,"output_tokens":7}}"#
                    ),
                ),
                ("gen_ai.provider.name", json!("anthropic")),
                ("gen_ai.request.model", json!("claude-haiku-4-5")),
                ("gen_ai.response.model", json!("claude-haiku-4-5-20251001")),
                ("gen_ai.response.id", json!("msg_lf1")),
                ("gen_ai.usage.input_tokens", json!(3005)),
                ("gen_ai.usage.output_tokens", json!(7)),
            ],
            ..Default::default()
        }],
    );
    let r = &enrich(&[ok])[0];
    assert_eq!(
        (r.input_tokens, r.cache_read_tokens, r.output_tokens),
        (Some(5), Some(3000), Some(7))
    );
    assert_eq!(r.model_family.as_deref(), Some("claude-haiku-4-5"));

    let msg = "Error code: 429 - {'type': 'error', 'error': {'type': 'rate_limit_error', 'message': 'This request would exceed the rate limit for your organization of 8,000 output tokens per minute.'}}";
    let err = traces(
        "python",
        &[SpanSpec {
            scope: "logfire.anthropic",
            scope_version: "4.41.0",
            name: "Message with {request_data[model]!r}",
            error: Some(&format!("RateLimitError: {msg}")),
            exception: Some(("RateLimitError", msg)),
            attrs: vec![
                ("request_data", json!(r#"{"model":"claude-sonnet-4-5"}"#)),
                ("gen_ai.request.model", json!("claude-sonnet-4-5")),
                ("logfire.level_num", json!(17)),
            ],
            ..Default::default()
        }],
    );
    let r = &enrich(&[err])[0];
    assert_eq!(r.outcome, Outcome::RateLimited);
    assert_eq!(r.http_status, Some(429));
    assert_eq!(r.error_type.as_deref(), Some("rate_limit_error"));
    assert_eq!(r.limit_kind, Some(LimitKind::OutputTokens));
    assert_eq!(cost(r), "0");
    assert!(!r.overload);
}

#[test]
fn unlinked_twin_error_spans_merge_by_time_and_model() {
    // OpenLLMetry and the SDK both root their spans; an error leaves no shared id.
    let req = traces(
        "python",
        &[
            SpanSpec {
                scope: "opentelemetry.instrumentation.anthropic",
                scope_version: "0.62.4",
                name: "anthropic.chat",
                trace: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                span: "1111111111111111",
                start_ms: 0,
                end_ms: 9,
                error: Some("boom"),
                attrs: vec![
                    ("gen_ai.request.model", json!("claude-sonnet-4-5")),
                    ("error.type", json!("OverloadedError")),
                ],
                ..Default::default()
            },
            SpanSpec {
                scope: "com.anthropic.sdk.python",
                scope_version: "2.12.0",
                name: "anthropic.messages.create",
                trace: "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
                span: "2222222222222222",
                start_ms: 1,
                end_ms: 8,
                error: Some(""),
                attrs: vec![
                    ("gen_ai.request.model", json!("claude-sonnet-4-5")),
                    ("http.response.status_code", json!(529)),
                    ("error.type", json!("overloaded_error")),
                    ("anthropic.request.id", json!("req_twin")),
                ],
                ..Default::default()
            },
        ],
    );
    let records = enrich(&[req]);
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0].outcome, Outcome::Overloaded);
    assert_eq!(records[0].request_id.as_deref(), Some("req_twin"));
}

#[test]
fn separate_calls_of_one_model_are_not_merged() {
    // Two sequential SDK-only calls in one trace: no shared id, no nesting.
    let call = |span: &'static str, start: u64, req: &'static str| SpanSpec {
        scope: "com.anthropic.sdk.python",
        scope_version: "2.12.0",
        name: "anthropic.messages.create",
        span,
        start_ms: start,
        end_ms: start + 40,
        attrs: vec![
            ("gen_ai.request.model", json!("claude-sonnet-4-5")),
            ("http.response.status_code", json!(200)),
            ("anthropic.request.id", json!(req)),
            ("gen_ai.usage.input_tokens", json!(10)),
            ("gen_ai.usage.output_tokens", json!(1)),
        ],
        ..Default::default()
    };
    let req = traces(
        "python",
        &[
            call("1111111111111111", 0, "req_a"),
            call("2222222222222222", 100, "req_b"),
        ],
    );
    assert_eq!(enrich(&[req]).len(), 2);
}

#[test]
fn api_error_saying_overloaded_is_flagged() {
    let req = traces(
        "python",
        &[SpanSpec {
            scope: "com.anthropic.sdk.python",
            scope_version: "2.12.0",
            name: "anthropic.messages.create",
            error: Some("Error code: 500 - {'type': 'error', 'error': {'type': 'api_error', 'message': 'Overloaded'}}"),
            attrs: vec![
                ("gen_ai.request.model", json!("claude-opus-4-5")),
                ("http.response.status_code", json!(500)),
                ("error.type", json!("api_error")),
            ],
            ..Default::default()
        }],
    );
    let r = &enrich(&[req])[0];
    assert_eq!(r.outcome, Outcome::ApiError);
    assert!(r.overload);
}

#[test]
fn bedrock_http_span_alone_is_a_call() {
    let req = traces(
        "python",
        &[SpanSpec {
            scope: "opentelemetry.instrumentation.httpx",
            name: "POST",
            attrs: vec![
                ("http.request.method", json!("POST")),
                ("url.full", json!("https://bedrock-runtime.us-east-1.amazonaws.com/model/us.anthropic.claude-haiku-4-5-20251001-v1%3A0/invoke")),
                ("http.response.status_code", json!(429)),
            ],
            ..Default::default()
        }],
    );
    let r = &enrich(&[req])[0];
    assert_eq!(r.outcome, Outcome::RateLimited);
    assert_eq!(r.provider, Some(Provider::Bedrock));
    assert_eq!(r.model_family.as_deref(), Some("claude-haiku-4-5"));
}

#[test]
fn claude_code_over_protobuf_with_event_name_field() {
    use claudewatch_otlp::proto::collector::logs::v1::ExportLogsServiceRequest;
    use claudewatch_otlp::proto::common::v1::{any_value::Value as V, AnyValue, KeyValue};
    use claudewatch_otlp::proto::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use claudewatch_otlp::proto::resource::v1::Resource;
    use prost::Message;

    let kv = |k: &str, v: V| KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        key_strindex: 0,
    };
    let record = |event_name: &str, body: Option<&str>, attrs: Vec<KeyValue>| LogRecord {
        time_unix_nano: T0,
        event_name: event_name.into(),
        body: body.map(|b| AnyValue {
            value: Some(V::StringValue(b.into())),
        }),
        attributes: attrs,
        ..Default::default()
    };
    let req = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", V::StringValue("claude-code".into())),
                    kv("service.version", V::StringValue("2.1.330".into())),
                ],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: None,
                log_records: vec![
                    // Older releases sent numbers as strings; newer set the event_name field.
                    record(
                        "claude_code.api_request",
                        None,
                        vec![
                            kv(
                                "model",
                                V::StringValue(
                                    "us.anthropic.claude-sonnet-4-5-20250929-v1:0".into(),
                                ),
                            ),
                            kv("input_tokens", V::StringValue("3".into())),
                            kv("output_tokens", V::IntValue(200)),
                            kv("cache_read_tokens", V::IntValue(30906)),
                            kv("cache_creation_tokens", V::IntValue(19688)),
                            kv("duration_ms", V::IntValue(2100)),
                            kv("request_id", V::StringValue("req_cc1".into())),
                            kv("prompt", V::StringValue("secret".into())),
                        ],
                    ),
                    record(
                        "",
                        Some("claude_code.api_error"),
                        vec![
                            kv("model", V::StringValue("claude-opus-4-5".into())),
                            kv("status_code", V::IntValue(500)),
                            kv("error", V::StringValue("Overloaded".into())),
                            kv("attempt", V::IntValue(3)),
                        ],
                    ),
                    record("", Some("claude_code.tool_result"), vec![]),
                ],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    };
    let bytes = req.encode_to_vec();
    let decoded = decode(Signal::Logs, Encoding::Protobuf, &bytes).unwrap();
    let records = enrich(&[decoded]);
    assert_eq!(records.len(), 2);
    let ok = &records[0];
    assert_eq!(ok.provider, Some(Provider::Bedrock));
    assert_eq!(
        (
            ok.input_tokens,
            ok.cache_read_tokens,
            ok.cache_write_tokens,
            ok.output_tokens
        ),
        (Some(3), Some(30906), Some(19688), Some(200))
    );
    // 3*3 + 30906*0.3 + 19688*3.75 + 200*15 = 9 + 9271.8 + 73830 + 3000 micro-USD
    assert_eq!(cost(ok), "0.0861108");
    assert!(!serde_json::to_string(ok).unwrap().contains("secret"));
    let err = &records[1];
    assert_eq!(
        (err.outcome, err.overload, err.retry_attempt),
        (Outcome::ApiError, true, Some(2))
    );
}

#[test]
fn non_message_operations_are_not_calls() {
    // count_tokens through the SDK, and an agent span summing a whole run.
    let req = traces(
        "python",
        &[
            SpanSpec {
                scope: "com.anthropic.sdk.python",
                scope_version: "2.12.0",
                name: "anthropic.messages.count_tokens",
                span: "1111111111111111",
                attrs: vec![
                    ("gen_ai.request.model", json!("claude-sonnet-4-5")),
                    (
                        "url.full",
                        json!("https://api.anthropic.com/v1/messages/count_tokens"),
                    ),
                    ("gen_ai.usage.input_tokens", json!(900)),
                ],
                ..Default::default()
            },
            SpanSpec {
                scope: "opentelemetry.instrumentation.genai.anthropic",
                name: "invoke_agent planner",
                span: "2222222222222222",
                attrs: vec![
                    ("gen_ai.operation.name", json!("invoke_agent")),
                    ("gen_ai.provider.name", json!("anthropic")),
                    ("gen_ai.request.model", json!("claude-sonnet-4-5")),
                    ("gen_ai.usage.input_tokens", json!(50_000)),
                ],
                ..Default::default()
            },
        ],
    );
    assert!(enrich(&[req]).is_empty());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

    /// In-suite fuzzing: mutated real captures never make decode or enrich panic.
    #[test]
    fn mutated_captures_never_panic(seed_index in 0usize..4, flips in proptest::collection::vec((0usize..4096, proptest::num::u8::ANY), 1..8), cut in 0usize..4096) {
        let files = [
            "fixtures/anthropic-native/013-traces.pb",
            "fixtures/traceloop/006-traces.pb",
            "fixtures/openlit/003-logs.pb",
            "fixtures/claude-code-json/001-logs.json",
        ];
        let shared = std::env::var("CLAUDEWATCH_SHARED")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|_| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
        let mut bytes = std::fs::read(shared.join(files[seed_index])).expect("fixture");
        for (pos, b) in flips {
            if !bytes.is_empty() {
                let i = pos % bytes.len();
                bytes[i] ^= b;
            }
        }
        bytes.truncate(cut.max(1).min(bytes.len()));
        let mut e = Enricher::new(EnrichConfig::default());
        for enc in [Encoding::Protobuf, Encoding::Json] {
            for s in [Signal::Traces, Signal::Logs, Signal::Metrics] {
                if let Ok(req) = decode(s, enc, &bytes) {
                    e.push(&req);
                }
            }
        }
        let _ = e.finish();
    }
}
