//! OTLP/JSON decoding (OTLP specification 1.x, "JSON Protobuf Encoding").
//!
//! Rules implemented: field names in lowerCamelCase (the proto names are
//! accepted too); trace and span ids as hex strings; enums as integers or
//! their names; 64-bit integers as strings or numbers; `bytesValue` as base64;
//! unknown fields ignored. Errors carry the JSON path of the offending value.

use serde_json::{Map, Value};

use crate::proto::common::v1::{
    any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use crate::proto::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use crate::proto::metrics::v1::{
    exponential_histogram_data_point::Buckets, metric, number_data_point,
    summary_data_point::ValueAtQuantile, ExponentialHistogram, ExponentialHistogramDataPoint,
    Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    Sum, Summary, SummaryDataPoint,
};
use crate::proto::resource::v1::Resource;
use crate::proto::trace::v1::{span, status, ResourceSpans, ScopeSpans, Span, Status};
use crate::{
    DecodeError, ExportLogsServiceRequest, ExportMetricsServiceRequest, ExportRequest,
    ExportTraceServiceRequest, Signal, MAX_ANY_VALUE_DEPTH,
};

/// An error with its path, built innermost-first as it propagates.
struct JErr {
    segments: Vec<String>,
    message: String,
}

impl JErr {
    fn new(message: impl Into<String>) -> JErr {
        JErr {
            segments: Vec::new(),
            message: message.into(),
        }
    }
    fn at(mut self, key: &str) -> JErr {
        self.segments.push(format!(".{key}"));
        self
    }
    fn at_index(mut self, key: &str, i: usize) -> JErr {
        self.segments.push(format!(".{key}[{i}]"));
        self
    }
    fn into_decode_error(self) -> DecodeError {
        let mut path: String = self.segments.iter().rev().map(String::as_str).collect();
        if path.starts_with('.') {
            path.remove(0);
        }
        if path.is_empty() {
            path.push('$');
        }
        DecodeError::JsonShape {
            path,
            message: self.message,
        }
    }
}

type R<T> = Result<T, JErr>;

pub(crate) fn decode(signal: Signal, bytes: &[u8]) -> Result<ExportRequest, DecodeError> {
    let value: Value = serde_json::from_slice(bytes)?;
    let obj = value
        .as_object()
        .ok_or_else(|| JErr::new("expected a JSON object").into_decode_error())?;
    if !obj.contains_key(signal.json_key()) {
        for other in [Signal::Traces, Signal::Logs, Signal::Metrics] {
            if other != signal && obj.contains_key(other.json_key()) {
                return Err(DecodeError::WrongSignal {
                    expected: signal,
                    found: other,
                });
            }
        }
    }
    let result = match signal {
        Signal::Traces => {
            list(obj, "resourceSpans", "resource_spans", resource_spans).map(|resource_spans| {
                ExportRequest::Traces(ExportTraceServiceRequest { resource_spans })
            })
        }
        Signal::Logs => list(obj, "resourceLogs", "resource_logs", resource_logs)
            .map(|resource_logs| ExportRequest::Logs(ExportLogsServiceRequest { resource_logs })),
        Signal::Metrics => list(obj, "resourceMetrics", "resource_metrics", resource_metrics).map(
            |resource_metrics| {
                ExportRequest::Metrics(ExportMetricsServiceRequest { resource_metrics })
            },
        ),
    };
    result.map_err(JErr::into_decode_error)
}

// ---- generic helpers -------------------------------------------------------

fn field<'a>(obj: &'a Map<String, Value>, camel: &str, snake: &str) -> Option<&'a Value> {
    obj.get(camel)
        .or_else(|| obj.get(snake))
        .filter(|v| !v.is_null())
}

fn as_object<'a>(v: &'a Value, what: &str) -> R<&'a Map<String, Value>> {
    v.as_object()
        .ok_or_else(|| JErr::new(format!("expected {what} to be an object")))
}

fn list<T>(
    obj: &Map<String, Value>,
    camel: &str,
    snake: &str,
    each: impl Fn(&Map<String, Value>) -> R<T>,
) -> R<Vec<T>> {
    let Some(v) = field(obj, camel, snake) else {
        return Ok(Vec::new());
    };
    let arr = v
        .as_array()
        .ok_or_else(|| JErr::new("expected an array").at(camel))?;
    arr.iter()
        .enumerate()
        .map(|(i, item)| {
            as_object(item, "each element")
                .and_then(&each)
                .map_err(|e| e.at_index(camel, i))
        })
        .collect()
}

fn string(obj: &Map<String, Value>, camel: &str, snake: &str) -> R<String> {
    match field(obj, camel, snake) {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(JErr::new("expected a string").at(camel)),
    }
}

fn parse_u64(v: &Value) -> Result<u64, String> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| format!("expected an unsigned integer, got {n}")),
        Value::String(s) => s
            .parse()
            .map_err(|_| format!("expected an unsigned integer, got {s:?}")),
        _ => Err("expected an unsigned integer (number or string)".into()),
    }
}

fn parse_i64(v: &Value) -> Result<i64, String> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| format!("expected an integer, got {n}")),
        Value::String(s) => s
            .parse()
            .map_err(|_| format!("expected an integer, got {s:?}")),
        _ => Err("expected an integer (number or string)".into()),
    }
}

fn parse_f64(v: &Value) -> Result<f64, String> {
    match v {
        Value::Number(n) => n.as_f64().ok_or_else(|| "expected a number".to_string()),
        Value::String(s) => match s.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            other => other
                .parse()
                .map_err(|_| format!("expected a number, got {other:?}")),
        },
        _ => Err("expected a number".into()),
    }
}

fn u64_field(obj: &Map<String, Value>, camel: &str, snake: &str) -> R<u64> {
    field(obj, camel, snake)
        .map(|v| parse_u64(v).map_err(|m| JErr::new(m).at(camel)))
        .unwrap_or(Ok(0))
}

fn opt_f64_field(obj: &Map<String, Value>, camel: &str, snake: &str) -> R<Option<f64>> {
    field(obj, camel, snake)
        .map(|v| parse_f64(v).map(Some).map_err(|m| JErr::new(m).at(camel)))
        .unwrap_or(Ok(None))
}

fn u32_field(obj: &Map<String, Value>, camel: &str, snake: &str) -> R<u32> {
    let v = u64_field(obj, camel, snake)?;
    u32::try_from(v).map_err(|_| JErr::new(format!("{v} does not fit in 32 bits")).at(camel))
}

fn i32_field(obj: &Map<String, Value>, camel: &str, snake: &str) -> R<i32> {
    let Some(v) = field(obj, camel, snake) else {
        return Ok(0);
    };
    let n = parse_i64(v).map_err(|m| JErr::new(m).at(camel))?;
    i32::try_from(n).map_err(|_| JErr::new(format!("{n} does not fit in 32 bits")).at(camel))
}

/// An enum given as its integer or its name (`SPAN_KIND_CLIENT`).
fn enum_field(
    obj: &Map<String, Value>,
    camel: &str,
    snake: &str,
    by_name: fn(&str) -> Option<i32>,
) -> R<i32> {
    match field(obj, camel, snake) {
        None => Ok(0),
        Some(Value::String(s)) => by_name(s)
            .or_else(|| s.parse().ok())
            .ok_or_else(|| JErr::new(format!("unknown enum value {s:?}")).at(camel)),
        Some(v) => {
            let n = parse_i64(v).map_err(|m| JErr::new(m).at(camel))?;
            i32::try_from(n).map_err(|_| JErr::new(format!("{n} is not an enum value")).at(camel))
        }
    }
}

/// A trace or span id: hex of exactly `len` bytes, or absent/empty.
fn id_field(obj: &Map<String, Value>, camel: &str, snake: &str, len: usize) -> R<Vec<u8>> {
    let s = string(obj, camel, snake)?;
    if s.is_empty() {
        return Ok(Vec::new());
    }
    let bytes = hex::decode(&s)
        .map_err(|_| JErr::new(format!("expected {} hex digits, got {s:?}", len * 2)).at(camel))?;
    if bytes.len() != len {
        return Err(
            JErr::new(format!("expected {} hex digits, got {}", len * 2, s.len())).at(camel),
        );
    }
    Ok(bytes)
}

fn f64_list(obj: &Map<String, Value>, camel: &str, snake: &str) -> R<Vec<f64>> {
    let Some(v) = field(obj, camel, snake) else {
        return Ok(Vec::new());
    };
    let arr = v
        .as_array()
        .ok_or_else(|| JErr::new("expected an array").at(camel))?;
    arr.iter()
        .enumerate()
        .map(|(i, x)| parse_f64(x).map_err(|m| JErr::new(m).at_index(camel, i)))
        .collect()
}

fn u64_list(obj: &Map<String, Value>, camel: &str, snake: &str) -> R<Vec<u64>> {
    let Some(v) = field(obj, camel, snake) else {
        return Ok(Vec::new());
    };
    let arr = v
        .as_array()
        .ok_or_else(|| JErr::new("expected an array").at(camel))?;
    arr.iter()
        .enumerate()
        .map(|(i, x)| parse_u64(x).map_err(|m| JErr::new(m).at_index(camel, i)))
        .collect()
}

// ---- common ----------------------------------------------------------------

fn attributes(obj: &Map<String, Value>) -> R<Vec<KeyValue>> {
    list(obj, "attributes", "attributes", |kv| key_value(kv, 0))
}

fn key_value(obj: &Map<String, Value>, depth: usize) -> R<KeyValue> {
    let key = string(obj, "key", "key")?;
    let value = match field(obj, "value", "value") {
        None => None,
        Some(v) => Some(
            any_value(as_object(v, "value").map_err(|e| e.at("value"))?, depth)
                .map_err(|e| e.at("value"))?,
        ),
    };
    Ok(KeyValue {
        key,
        value,
        key_strindex: 0,
    })
}

fn any_value(obj: &Map<String, Value>, depth: usize) -> R<AnyValue> {
    use any_value::Value as V;
    if depth > MAX_ANY_VALUE_DEPTH {
        return Err(JErr::new(format!(
            "values nested deeper than {MAX_ANY_VALUE_DEPTH} levels"
        )));
    }
    let value = if let Some(v) = field(obj, "stringValue", "string_value") {
        V::StringValue(
            v.as_str()
                .ok_or_else(|| JErr::new("expected a string").at("stringValue"))?
                .to_owned(),
        )
    } else if let Some(v) = field(obj, "boolValue", "bool_value") {
        V::BoolValue(
            v.as_bool()
                .ok_or_else(|| JErr::new("expected a boolean").at("boolValue"))?,
        )
    } else if let Some(v) = field(obj, "intValue", "int_value") {
        V::IntValue(parse_i64(v).map_err(|m| JErr::new(m).at("intValue"))?)
    } else if let Some(v) = field(obj, "doubleValue", "double_value") {
        V::DoubleValue(parse_f64(v).map_err(|m| JErr::new(m).at("doubleValue"))?)
    } else if let Some(v) = field(obj, "bytesValue", "bytes_value") {
        use base64::Engine;
        let s = v
            .as_str()
            .ok_or_else(|| JErr::new("expected a base64 string").at("bytesValue"))?;
        V::BytesValue(
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|e| JErr::new(format!("invalid base64: {e}")).at("bytesValue"))?,
        )
    } else if let Some(v) = field(obj, "arrayValue", "array_value") {
        let inner = as_object(v, "arrayValue").map_err(|e| e.at("arrayValue"))?;
        let values = list(inner, "values", "values", |x| any_value(x, depth + 1))
            .map_err(|e| e.at("arrayValue"))?;
        V::ArrayValue(ArrayValue { values })
    } else if let Some(v) = field(obj, "kvlistValue", "kvlist_value") {
        let inner = as_object(v, "kvlistValue").map_err(|e| e.at("kvlistValue"))?;
        let values = list(inner, "values", "values", |x| key_value(x, depth + 1))
            .map_err(|e| e.at("kvlistValue"))?;
        V::KvlistValue(KeyValueList { values })
    } else {
        return Ok(AnyValue { value: None });
    };
    Ok(AnyValue { value: Some(value) })
}

fn resource(obj: &Map<String, Value>) -> R<Option<Resource>> {
    let Some(v) = field(obj, "resource", "resource") else {
        return Ok(None);
    };
    let r = as_object(v, "resource").map_err(|e| e.at("resource"))?;
    Ok(Some(Resource {
        attributes: attributes(r).map_err(|e| e.at("resource"))?,
        dropped_attributes_count: u32_field(
            r,
            "droppedAttributesCount",
            "dropped_attributes_count",
        )
        .map_err(|e| e.at("resource"))?,
        entity_refs: Vec::new(),
    }))
}

fn scope(obj: &Map<String, Value>) -> R<Option<InstrumentationScope>> {
    let Some(v) = field(obj, "scope", "scope") else {
        return Ok(None);
    };
    let s = as_object(v, "scope").map_err(|e| e.at("scope"))?;
    let build = || -> R<InstrumentationScope> {
        Ok(InstrumentationScope {
            name: string(s, "name", "name")?,
            version: string(s, "version", "version")?,
            attributes: attributes(s)?,
            dropped_attributes_count: u32_field(
                s,
                "droppedAttributesCount",
                "dropped_attributes_count",
            )?,
        })
    };
    build().map(Some).map_err(|e| e.at("scope"))
}

// ---- traces ----------------------------------------------------------------

fn resource_spans(obj: &Map<String, Value>) -> R<ResourceSpans> {
    Ok(ResourceSpans {
        resource: resource(obj)?,
        scope_spans: list(obj, "scopeSpans", "scope_spans", |ss| {
            Ok(ScopeSpans {
                scope: scope(ss)?,
                spans: list(ss, "spans", "spans", span)?,
                schema_url: string(ss, "schemaUrl", "schema_url")?,
            })
        })?,
        schema_url: string(obj, "schemaUrl", "schema_url")?,
    })
}

fn span(obj: &Map<String, Value>) -> R<Span> {
    Ok(Span {
        trace_id: id_field(obj, "traceId", "trace_id", 16)?,
        span_id: id_field(obj, "spanId", "span_id", 8)?,
        trace_state: string(obj, "traceState", "trace_state")?,
        parent_span_id: id_field(obj, "parentSpanId", "parent_span_id", 8)?,
        flags: u32_field(obj, "flags", "flags")?,
        name: string(obj, "name", "name")?,
        kind: enum_field(obj, "kind", "kind", |s| {
            span::SpanKind::from_str_name(s).map(|k| k as i32)
        })?,
        start_time_unix_nano: u64_field(obj, "startTimeUnixNano", "start_time_unix_nano")?,
        end_time_unix_nano: u64_field(obj, "endTimeUnixNano", "end_time_unix_nano")?,
        attributes: attributes(obj)?,
        dropped_attributes_count: u32_field(
            obj,
            "droppedAttributesCount",
            "dropped_attributes_count",
        )?,
        events: list(obj, "events", "events", |e| {
            Ok(span::Event {
                time_unix_nano: u64_field(e, "timeUnixNano", "time_unix_nano")?,
                name: string(e, "name", "name")?,
                attributes: attributes(e)?,
                dropped_attributes_count: u32_field(
                    e,
                    "droppedAttributesCount",
                    "dropped_attributes_count",
                )?,
            })
        })?,
        dropped_events_count: u32_field(obj, "droppedEventsCount", "dropped_events_count")?,
        links: list(obj, "links", "links", |l| {
            Ok(span::Link {
                trace_id: id_field(l, "traceId", "trace_id", 16)?,
                span_id: id_field(l, "spanId", "span_id", 8)?,
                trace_state: string(l, "traceState", "trace_state")?,
                attributes: attributes(l)?,
                dropped_attributes_count: u32_field(
                    l,
                    "droppedAttributesCount",
                    "dropped_attributes_count",
                )?,
                flags: u32_field(l, "flags", "flags")?,
            })
        })?,
        dropped_links_count: u32_field(obj, "droppedLinksCount", "dropped_links_count")?,
        status: match field(obj, "status", "status") {
            None => None,
            Some(v) => {
                let s = as_object(v, "status").map_err(|e| e.at("status"))?;
                Some(Status {
                    message: string(s, "message", "message").map_err(|e| e.at("status"))?,
                    code: enum_field(s, "code", "code", |n| {
                        status::StatusCode::from_str_name(n).map(|c| c as i32)
                    })
                    .map_err(|e| e.at("status"))?,
                })
            }
        },
    })
}

// ---- logs ------------------------------------------------------------------

fn resource_logs(obj: &Map<String, Value>) -> R<ResourceLogs> {
    Ok(ResourceLogs {
        resource: resource(obj)?,
        scope_logs: list(obj, "scopeLogs", "scope_logs", |sl| {
            Ok(ScopeLogs {
                scope: scope(sl)?,
                log_records: list(sl, "logRecords", "log_records", log_record)?,
                schema_url: string(sl, "schemaUrl", "schema_url")?,
            })
        })?,
        schema_url: string(obj, "schemaUrl", "schema_url")?,
    })
}

fn log_record(obj: &Map<String, Value>) -> R<LogRecord> {
    use crate::proto::logs::v1::SeverityNumber;
    Ok(LogRecord {
        time_unix_nano: u64_field(obj, "timeUnixNano", "time_unix_nano")?,
        observed_time_unix_nano: u64_field(obj, "observedTimeUnixNano", "observed_time_unix_nano")?,
        severity_number: enum_field(obj, "severityNumber", "severity_number", |s| {
            SeverityNumber::from_str_name(s).map(|n| n as i32)
        })?,
        severity_text: string(obj, "severityText", "severity_text")?,
        body: match field(obj, "body", "body") {
            None => None,
            Some(v) => Some(
                any_value(as_object(v, "body").map_err(|e| e.at("body"))?, 0)
                    .map_err(|e| e.at("body"))?,
            ),
        },
        attributes: attributes(obj)?,
        dropped_attributes_count: u32_field(
            obj,
            "droppedAttributesCount",
            "dropped_attributes_count",
        )?,
        flags: u32_field(obj, "flags", "flags")?,
        trace_id: id_field(obj, "traceId", "trace_id", 16)?,
        span_id: id_field(obj, "spanId", "span_id", 8)?,
        event_name: string(obj, "eventName", "event_name")?,
    })
}

// ---- metrics ---------------------------------------------------------------

fn resource_metrics(obj: &Map<String, Value>) -> R<ResourceMetrics> {
    Ok(ResourceMetrics {
        resource: resource(obj)?,
        scope_metrics: list(obj, "scopeMetrics", "scope_metrics", |sm| {
            Ok(ScopeMetrics {
                scope: scope(sm)?,
                metrics: list(sm, "metrics", "metrics", metric)?,
                schema_url: string(sm, "schemaUrl", "schema_url")?,
            })
        })?,
        schema_url: string(obj, "schemaUrl", "schema_url")?,
    })
}

fn temporality(obj: &Map<String, Value>) -> R<i32> {
    use crate::proto::metrics::v1::AggregationTemporality as T;
    enum_field(
        obj,
        "aggregationTemporality",
        "aggregation_temporality",
        |s| T::from_str_name(s).map(|t| t as i32),
    )
}

fn metric(obj: &Map<String, Value>) -> R<Metric> {
    let sub = |camel: &str, snake: &str| -> R<Option<&Map<String, Value>>> {
        match field(obj, camel, snake) {
            None => Ok(None),
            Some(v) => as_object(v, camel).map(Some).map_err(|e| e.at(camel)),
        }
    };
    let data = if let Some(g) = sub("gauge", "gauge")? {
        Some(metric::Data::Gauge(Gauge {
            data_points: list(g, "dataPoints", "data_points", number_point)
                .map_err(|e| e.at("gauge"))?,
        }))
    } else if let Some(s) = sub("sum", "sum")? {
        let build = || -> R<Sum> {
            Ok(Sum {
                data_points: list(s, "dataPoints", "data_points", number_point)?,
                aggregation_temporality: temporality(s)?,
                is_monotonic: field(s, "isMonotonic", "is_monotonic")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            })
        };
        Some(metric::Data::Sum(build().map_err(|e| e.at("sum"))?))
    } else if let Some(h) = sub("histogram", "histogram")? {
        let build = || -> R<Histogram> {
            Ok(Histogram {
                data_points: list(h, "dataPoints", "data_points", histogram_point)?,
                aggregation_temporality: temporality(h)?,
            })
        };
        Some(metric::Data::Histogram(
            build().map_err(|e| e.at("histogram"))?,
        ))
    } else if let Some(h) = sub("exponentialHistogram", "exponential_histogram")? {
        let build = || -> R<ExponentialHistogram> {
            Ok(ExponentialHistogram {
                data_points: list(h, "dataPoints", "data_points", exp_histogram_point)?,
                aggregation_temporality: temporality(h)?,
            })
        };
        Some(metric::Data::ExponentialHistogram(
            build().map_err(|e| e.at("exponentialHistogram"))?,
        ))
    } else if let Some(s) = sub("summary", "summary")? {
        Some(metric::Data::Summary(Summary {
            data_points: list(s, "dataPoints", "data_points", summary_point)
                .map_err(|e| e.at("summary"))?,
        }))
    } else {
        None
    };
    Ok(Metric {
        name: string(obj, "name", "name")?,
        description: string(obj, "description", "description")?,
        unit: string(obj, "unit", "unit")?,
        metadata: list(obj, "metadata", "metadata", |kv| key_value(kv, 0))?,
        data,
    })
}

fn number_point(obj: &Map<String, Value>) -> R<NumberDataPoint> {
    let value = if let Some(v) = field(obj, "asInt", "as_int") {
        Some(number_data_point::Value::AsInt(
            parse_i64(v).map_err(|m| JErr::new(m).at("asInt"))?,
        ))
    } else if let Some(v) = field(obj, "asDouble", "as_double") {
        Some(number_data_point::Value::AsDouble(
            parse_f64(v).map_err(|m| JErr::new(m).at("asDouble"))?,
        ))
    } else {
        None
    };
    Ok(NumberDataPoint {
        attributes: attributes(obj)?,
        start_time_unix_nano: u64_field(obj, "startTimeUnixNano", "start_time_unix_nano")?,
        time_unix_nano: u64_field(obj, "timeUnixNano", "time_unix_nano")?,
        exemplars: Vec::new(),
        flags: u32_field(obj, "flags", "flags")?,
        value,
    })
}

fn histogram_point(obj: &Map<String, Value>) -> R<HistogramDataPoint> {
    Ok(HistogramDataPoint {
        attributes: attributes(obj)?,
        start_time_unix_nano: u64_field(obj, "startTimeUnixNano", "start_time_unix_nano")?,
        time_unix_nano: u64_field(obj, "timeUnixNano", "time_unix_nano")?,
        count: u64_field(obj, "count", "count")?,
        sum: opt_f64_field(obj, "sum", "sum")?,
        bucket_counts: u64_list(obj, "bucketCounts", "bucket_counts")?,
        explicit_bounds: f64_list(obj, "explicitBounds", "explicit_bounds")?,
        exemplars: Vec::new(),
        flags: u32_field(obj, "flags", "flags")?,
        min: opt_f64_field(obj, "min", "min")?,
        max: opt_f64_field(obj, "max", "max")?,
    })
}

fn buckets(obj: &Map<String, Value>, camel: &str, snake: &str) -> R<Option<Buckets>> {
    let Some(v) = field(obj, camel, snake) else {
        return Ok(None);
    };
    let b = as_object(v, camel).map_err(|e| e.at(camel))?;
    let build = || -> R<Buckets> {
        Ok(Buckets {
            offset: i32_field(b, "offset", "offset")?,
            bucket_counts: u64_list(b, "bucketCounts", "bucket_counts")?,
        })
    };
    build().map(Some).map_err(|e| e.at(camel))
}

fn exp_histogram_point(obj: &Map<String, Value>) -> R<ExponentialHistogramDataPoint> {
    Ok(ExponentialHistogramDataPoint {
        attributes: attributes(obj)?,
        start_time_unix_nano: u64_field(obj, "startTimeUnixNano", "start_time_unix_nano")?,
        time_unix_nano: u64_field(obj, "timeUnixNano", "time_unix_nano")?,
        count: u64_field(obj, "count", "count")?,
        sum: opt_f64_field(obj, "sum", "sum")?,
        scale: i32_field(obj, "scale", "scale")?,
        zero_count: u64_field(obj, "zeroCount", "zero_count")?,
        positive: buckets(obj, "positive", "positive")?,
        negative: buckets(obj, "negative", "negative")?,
        flags: u32_field(obj, "flags", "flags")?,
        exemplars: Vec::new(),
        min: opt_f64_field(obj, "min", "min")?,
        max: opt_f64_field(obj, "max", "max")?,
        zero_threshold: opt_f64_field(obj, "zeroThreshold", "zero_threshold")?.unwrap_or(0.0),
    })
}

fn summary_point(obj: &Map<String, Value>) -> R<SummaryDataPoint> {
    Ok(SummaryDataPoint {
        attributes: attributes(obj)?,
        start_time_unix_nano: u64_field(obj, "startTimeUnixNano", "start_time_unix_nano")?,
        time_unix_nano: u64_field(obj, "timeUnixNano", "time_unix_nano")?,
        count: u64_field(obj, "count", "count")?,
        sum: opt_f64_field(obj, "sum", "sum")?.unwrap_or(0.0),
        quantile_values: list(obj, "quantileValues", "quantile_values", |q| {
            Ok(ValueAtQuantile {
                quantile: opt_f64_field(q, "quantile", "quantile")?.unwrap_or(0.0),
                value: opt_f64_field(q, "value", "value")?.unwrap_or(0.0),
            })
        })?,
        flags: u32_field(obj, "flags", "flags")?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{decode as decode_any, Encoding};

    fn traces(json: &str) -> Result<ExportTraceServiceRequest, DecodeError> {
        match decode_any(Signal::Traces, Encoding::Json, json.as_bytes())? {
            ExportRequest::Traces(t) => Ok(t),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn accepts_numbers_and_strings_for_64_bit_integers_and_enum_names() {
        let t = traces(
            r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{
                "traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708",
                "kind":"SPAN_KIND_CLIENT","startTimeUnixNano":"5","endTimeUnixNano":7,
                "status":{"code":2},"unknownField":{"x":1},
                "attributes":[{"key":"a","value":{"intValue":3}},{"key":"b","value":{"intValue":"4"}}]}]}]}]}"#,
        )
        .unwrap();
        let s = &t.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(s.kind, 3);
        assert_eq!((s.start_time_unix_nano, s.end_time_unix_nano), (5, 7));
        assert_eq!(s.status.as_ref().unwrap().code, 2);
        assert_eq!(s.attributes.len(), 2);
    }

    #[test]
    fn bad_trace_id_names_its_path() {
        let err =
            traces(r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{},{"traceId":"xyz"}]}]}]}"#)
                .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("resourceSpans[0].scopeSpans[0].spans[1].traceId"),
            "{msg}"
        );
    }

    #[test]
    fn wrong_signal_is_named() {
        let err = traces(r#"{"resourceLogs":[]}"#).unwrap_err();
        assert_eq!(err.to_string(), "this is a logs request, not traces");
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut v = String::from(r#"{"stringValue":"x"}"#);
        for _ in 0..35 {
            v = format!(r#"{{"arrayValue":{{"values":[{v}]}}}}"#);
        }
        let doc = format!(
            r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"attributes":[{{"key":"k","value":{v}}}]}}]}}]}}]}}"#
        );
        let err = traces(&doc).unwrap_err();
        assert!(err.to_string().contains("nested deeper"), "{err}");
    }
}
