//! Encoding an `ExportTraceServiceRequest` straight from [`SpanOut`]s, as
//! protobuf (byte-identical to what prost writes, so a receiver's zero-copy
//! path sees canonical input) or OTLP/JSON. No intermediate message structs:
//! this is the generator's per-span cost.

use crate::spans::{Attr, EventOut, SpanOut, Val};

/// Body format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/x-protobuf`.
    Protobuf,
    /// `application/json` (OTLP/JSON).
    Json,
}

/// Encodes `spans` as one export request into `buf` (cleared first), grouped
/// by resource then scope, keeping each group's span order. `order` is
/// scratch space.
pub fn encode_request(
    spans: &[SpanOut],
    format: Format,
    order: &mut Vec<usize>,
    buf: &mut Vec<u8>,
) {
    buf.clear();
    order.clear();
    order.extend(0..spans.len());
    order.sort_by_key(|&i| (spans[i].service, spans[i].scope));
    match format {
        Format::Protobuf => pb::request(spans, order, buf),
        Format::Json => json::request(spans, order, buf),
    }
}

/// Runs of `order` with equal keys.
fn runs<'a, K: PartialEq>(
    order: &'a [usize],
    key: impl Fn(usize) -> K + 'a,
) -> impl Iterator<Item = &'a [usize]> + 'a {
    let mut rest = order;
    std::iter::from_fn(move || {
        let first = *rest.first()?;
        let k = key(first);
        let n = rest.iter().take_while(|&&i| key(i) == k).count();
        let (run, tail) = rest.split_at(n);
        rest = tail;
        Some(run)
    })
}

mod pb {
    use super::*;

    fn varint(buf: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        buf.push(v as u8);
    }

    fn varint_len(v: u64) -> usize {
        (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
    }

    fn tag(buf: &mut Vec<u8>, field: u32, wire: u8) {
        varint(buf, (u64::from(field) << 3) | u64::from(wire));
    }

    /// A length-delimited field being written: where its content starts and
    /// how many bytes were set aside for its length.
    #[derive(Clone, Copy)]
    struct Open {
        pos: usize,
        width: usize,
    }

    /// Starts a length-delimited field whose length is expected to fit in one byte.
    fn open(buf: &mut Vec<u8>, field: u32) -> Open {
        open_wide(buf, field, 1)
    }

    /// Starts a length-delimited field, setting `width` bytes aside for its
    /// length: the varint width its length is expected to need, so that
    /// closing it moves nothing when the guess is right.
    fn open_wide(buf: &mut Vec<u8>, field: u32, width: usize) -> Open {
        tag(buf, field, 2);
        buf.resize(buf.len() + width, 0);
        Open {
            pos: buf.len(),
            width,
        }
    }

    /// Ends the field: writes its length as a minimal varint (canonical
    /// bytes), moving the content when the length needs another width than
    /// was set aside.
    fn close(buf: &mut Vec<u8>, open: Open) {
        let Open { pos, width } = open;
        let len = buf.len() - pos;
        let n = varint_len(len as u64);
        if n > width {
            buf.resize(buf.len() + n - width, 0);
            buf.copy_within(pos..pos + len, pos + n - width);
        } else if n < width {
            buf.copy_within(pos..pos + len, pos - (width - n));
            buf.truncate(buf.len() - (width - n));
        }
        let start = pos - width;
        let mut v = len as u64;
        for (k, byte) in buf[start..start + n].iter_mut().enumerate() {
            *byte = if k + 1 < n { (v as u8) | 0x80 } else { v as u8 };
            v >>= 7;
        }
    }

    fn bytes_field(buf: &mut Vec<u8>, field: u32, b: &[u8]) {
        if b.is_empty() {
            return;
        }
        tag(buf, field, 2);
        varint(buf, b.len() as u64);
        buf.extend_from_slice(b);
    }

    fn fixed64(buf: &mut Vec<u8>, field: u32, v: u64) {
        if v == 0 {
            return;
        }
        tag(buf, field, 1);
        buf.extend_from_slice(&v.to_le_bytes());
    }

    fn any_value(buf: &mut Vec<u8>, v: &Val) {
        match v {
            // Oneof members are written even when they hold the default value.
            Val::Str(s) => {
                tag(buf, 1, 2);
                varint(buf, s.len() as u64);
                buf.extend_from_slice(s.as_bytes());
            }
            Val::Bool(x) => {
                tag(buf, 2, 0);
                buf.push(u8::from(*x));
            }
            Val::Int(x) => {
                tag(buf, 3, 0);
                varint(buf, *x as u64);
            }
            Val::Double(x) => {
                tag(buf, 4, 1);
                buf.extend_from_slice(&x.to_le_bytes());
            }
            Val::StrArray(items) => {
                let arr = open(buf, 5);
                for s in *items {
                    let item = open(buf, 1);
                    tag(buf, 1, 2);
                    varint(buf, s.len() as u64);
                    buf.extend_from_slice(s.as_bytes());
                    close(buf, item);
                }
                close(buf, arr);
            }
        }
    }

    /// Bytes of a length-delimited field with a one-byte tag and `content` bytes.
    fn delimited_len(content: usize) -> usize {
        1 + varint_len(content as u64) + content
    }

    /// Bytes of a scalar `AnyValue`'s encoding; `None` for an array.
    fn scalar_len(v: &Val) -> Option<usize> {
        match v {
            Val::Str(s) => Some(delimited_len(s.len())),
            Val::Bool(_) => Some(2),
            Val::Int(x) => Some(1 + varint_len(*x as u64)),
            Val::Double(_) => Some(9),
            Val::StrArray(_) => None,
        }
    }

    pub(super) fn key_value(buf: &mut Vec<u8>, field: u32, key: &str, value: &Val) {
        // With a scalar value both lengths are known up front: nothing set
        // aside to patch afterwards (two patches per attribute were the
        // encoder's largest cost).
        if let Some(value_len) = scalar_len(value) {
            // An empty key is left out, as `bytes_field` does.
            let key_len = if key.is_empty() {
                0
            } else {
                delimited_len(key.len())
            };
            tag(buf, field, 2);
            varint(buf, (key_len + delimited_len(value_len)) as u64);
            bytes_field(buf, 1, key.as_bytes());
            tag(buf, 2, 2);
            varint(buf, value_len as u64);
            any_value(buf, value);
            return;
        }
        let kv = open(buf, field);
        bytes_field(buf, 1, key.as_bytes());
        let v = open(buf, 2);
        any_value(buf, value);
        close(buf, v);
        close(buf, kv);
    }

    fn attrs(buf: &mut Vec<u8>, field: u32, attrs: &[Attr]) {
        for a in attrs {
            key_value(buf, field, a.key, &a.value);
        }
    }

    fn event(buf: &mut Vec<u8>, e: &EventOut) {
        let ev = open(buf, 11);
        fixed64(buf, 1, e.time_unix_nano);
        bytes_field(buf, 2, e.name.as_bytes());
        attrs(buf, 3, &e.attrs);
        close(buf, ev);
    }

    fn span(buf: &mut Vec<u8>, s: &SpanOut) {
        // Spans are hundreds of bytes to a few KiB: a 2-byte length.
        let sp = open_wide(buf, 2, 2);
        bytes_field(buf, 1, &s.trace_id);
        bytes_field(buf, 2, &s.span_id);
        if let Some(p) = &s.parent_span_id {
            bytes_field(buf, 4, p);
        }
        bytes_field(buf, 5, s.name.as_bytes());
        if s.kind != 0 {
            tag(buf, 6, 0);
            varint(buf, s.kind as u64);
        }
        fixed64(buf, 7, s.start_unix_nano);
        fixed64(buf, 8, s.end_unix_nano);
        attrs(buf, 9, &s.attrs);
        for e in &s.events {
            event(buf, e);
        }
        let st = open(buf, 15);
        bytes_field(buf, 2, s.status_message.as_bytes());
        if s.status_code != 0 {
            tag(buf, 3, 0);
            varint(buf, s.status_code as u64);
        }
        close(buf, st);
        if s.flags != 0 {
            tag(buf, 16, 5);
            buf.extend_from_slice(&s.flags.to_le_bytes());
        }
        close(buf, sp);
    }

    pub(super) fn request(spans: &[SpanOut], order: &[usize], buf: &mut Vec<u8>) {
        for res_run in runs(order, |i| spans[i].service) {
            // A request's resource and scope groups run to tens of KiB.
            let rs = open_wide(buf, 1, 3);
            let res = open_wide(buf, 1, 2);
            for (k, v) in spans[res_run[0]].service.attributes() {
                key_value(buf, 1, k, &Val::Str(std::borrow::Cow::Borrowed(v)));
            }
            close(buf, res);
            for scope_run in runs(res_run, |i| spans[i].scope) {
                let ss = open_wide(buf, 2, 3);
                let (name, version) = spans[scope_run[0]].scope.name_version();
                let sc = open(buf, 1);
                bytes_field(buf, 1, name.as_bytes());
                bytes_field(buf, 2, version.as_bytes());
                close(buf, sc);
                for &i in scope_run {
                    span(buf, &spans[i]);
                }
                close(buf, ss);
            }
            close(buf, rs);
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_field_closes_with_a_minimal_length_whatever_width_was_set_aside() {
            for len in [
                0usize,
                1,
                127,
                128,
                300,
                16383,
                16384,
                70_000,
                (1 << 21) + 5,
            ] {
                let content: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
                let mut expected = vec![9u8];
                bytes_field(&mut expected, 1, &content);
                if content.is_empty() {
                    expected.extend_from_slice(&[10, 0]);
                }
                for width in 1..=4 {
                    let mut buf = vec![9u8];
                    let f = open_wide(&mut buf, 1, width);
                    buf.extend_from_slice(&content);
                    close(&mut buf, f);
                    assert!(buf == expected, "len {len}, width {width}");
                }
            }
        }
    }
}

mod json {
    use super::*;
    use std::io::Write;

    const HEX: &[u8; 16] = b"0123456789abcdef";

    fn hex(buf: &mut Vec<u8>, b: &[u8]) {
        buf.push(b'"');
        for &x in b {
            buf.push(HEX[usize::from(x >> 4)]);
            buf.push(HEX[usize::from(x & 15)]);
        }
        buf.push(b'"');
    }

    fn string(buf: &mut Vec<u8>, s: &str) {
        buf.push(b'"');
        let bytes = s.as_bytes();
        let mut start = 0;
        for (k, &c) in bytes.iter().enumerate() {
            let esc: &[u8] = match c {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                b'\t' => b"\\t",
                0..=0x1f => b"",
                _ => continue,
            };
            buf.extend_from_slice(&bytes[start..k]);
            if esc.is_empty() {
                let _ = write!(buf, "\\u{:04x}", c);
            } else {
                buf.extend_from_slice(esc);
            }
            start = k + 1;
        }
        buf.extend_from_slice(&bytes[start..]);
        buf.push(b'"');
    }

    fn u64_str(buf: &mut Vec<u8>, v: u64) {
        let _ = write!(buf, "\"{v}\"");
    }

    fn any_value(buf: &mut Vec<u8>, v: &Val) {
        match v {
            Val::Str(s) => {
                buf.extend_from_slice(b"{\"stringValue\":");
                string(buf, s);
            }
            Val::Bool(x) => {
                let _ = write!(buf, "{{\"boolValue\":{x}");
            }
            Val::Int(x) => {
                let _ = write!(buf, "{{\"intValue\":\"{x}\"");
            }
            Val::Double(x) => {
                if x.is_finite() {
                    let _ = write!(buf, "{{\"doubleValue\":{x:?}");
                } else {
                    buf.extend_from_slice(b"{\"doubleValue\":0.0");
                }
            }
            Val::StrArray(items) => {
                buf.extend_from_slice(b"{\"arrayValue\":{\"values\":[");
                for (k, s) in items.iter().enumerate() {
                    if k > 0 {
                        buf.push(b',');
                    }
                    buf.extend_from_slice(b"{\"stringValue\":");
                    string(buf, s);
                    buf.push(b'}');
                }
                buf.extend_from_slice(b"]}");
            }
        }
        buf.push(b'}');
    }

    fn key_value(buf: &mut Vec<u8>, key: &str, v: &Val) {
        buf.extend_from_slice(b"{\"key\":");
        string(buf, key);
        buf.extend_from_slice(b",\"value\":");
        any_value(buf, v);
        buf.push(b'}');
    }

    fn attrs(buf: &mut Vec<u8>, attrs: &[Attr]) {
        buf.extend_from_slice(b"\"attributes\":[");
        for (k, a) in attrs.iter().enumerate() {
            if k > 0 {
                buf.push(b',');
            }
            key_value(buf, a.key, &a.value);
        }
        buf.push(b']');
    }

    fn event(buf: &mut Vec<u8>, e: &EventOut) {
        buf.extend_from_slice(b"{\"timeUnixNano\":");
        u64_str(buf, e.time_unix_nano);
        buf.extend_from_slice(b",\"name\":");
        string(buf, e.name);
        buf.push(b',');
        attrs(buf, &e.attrs);
        buf.push(b'}');
    }

    fn span(buf: &mut Vec<u8>, s: &SpanOut) {
        buf.extend_from_slice(b"{\"traceId\":");
        hex(buf, &s.trace_id);
        buf.extend_from_slice(b",\"spanId\":");
        hex(buf, &s.span_id);
        if let Some(p) = &s.parent_span_id {
            buf.extend_from_slice(b",\"parentSpanId\":");
            hex(buf, p);
        }
        buf.extend_from_slice(b",\"name\":");
        string(buf, &s.name);
        let _ = write!(buf, ",\"kind\":{}", s.kind);
        buf.extend_from_slice(b",\"startTimeUnixNano\":");
        u64_str(buf, s.start_unix_nano);
        buf.extend_from_slice(b",\"endTimeUnixNano\":");
        u64_str(buf, s.end_unix_nano);
        buf.push(b',');
        attrs(buf, &s.attrs);
        if !s.events.is_empty() {
            buf.extend_from_slice(b",\"events\":[");
            for (k, e) in s.events.iter().enumerate() {
                if k > 0 {
                    buf.push(b',');
                }
                event(buf, e);
            }
            buf.push(b']');
        }
        buf.extend_from_slice(b",\"status\":{");
        if s.status_code != 0 {
            let _ = write!(buf, "\"code\":{}", s.status_code);
        }
        if !s.status_message.is_empty() {
            if s.status_code != 0 {
                buf.push(b',');
            }
            buf.extend_from_slice(b"\"message\":");
            string(buf, &s.status_message);
        }
        let _ = write!(buf, "}},\"flags\":{}}}", s.flags);
    }

    pub(super) fn request(spans: &[SpanOut], order: &[usize], buf: &mut Vec<u8>) {
        buf.extend_from_slice(b"{\"resourceSpans\":[");
        for (r, res_run) in runs(order, |i| spans[i].service).enumerate() {
            if r > 0 {
                buf.push(b',');
            }
            buf.extend_from_slice(b"{\"resource\":{\"attributes\":[");
            for (k, (key, v)) in spans[res_run[0]].service.attributes().iter().enumerate() {
                if k > 0 {
                    buf.push(b',');
                }
                key_value(buf, key, &Val::Str(std::borrow::Cow::Borrowed(v)));
            }
            buf.extend_from_slice(b"]},\"scopeSpans\":[");
            for (g, scope_run) in runs(res_run, |i| spans[i].scope).enumerate() {
                if g > 0 {
                    buf.push(b',');
                }
                let (name, version) = spans[scope_run[0]].scope.name_version();
                buf.extend_from_slice(b"{\"scope\":{\"name\":");
                string(buf, name);
                if !version.is_empty() {
                    buf.extend_from_slice(b",\"version\":");
                    string(buf, version);
                }
                buf.extend_from_slice(b"},\"spans\":[");
                for (k, &i) in scope_run.iter().enumerate() {
                    if k > 0 {
                        buf.push(b',');
                    }
                    span(buf, &spans[i]);
                }
                buf.extend_from_slice(b"]}");
            }
            buf.extend_from_slice(b"]}");
        }
        buf.extend_from_slice(b"]}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::IdKeys;
    use crate::mix::CallSpec;
    use crate::spans::build_call;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;

    fn sample() -> Vec<SpanOut> {
        let keys = IdKeys::new(3);
        let mut spans = Vec::new();
        for i in 0..300 {
            build_call(
                &CallSpec::generate(3, i),
                &keys,
                1_795_393_612_843_722_046 + i * 1000,
                &mut spans,
            );
        }
        spans
    }

    #[test]
    fn protobuf_is_canonical_prost_encoding() {
        let spans = sample();
        let (mut order, mut buf) = (Vec::new(), Vec::new());
        encode_request(&spans, Format::Protobuf, &mut order, &mut buf);
        let decoded = ExportTraceServiceRequest::decode(buf.as_slice()).unwrap();
        let n: usize = decoded
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        assert_eq!(n, spans.len());
        assert_eq!(decoded.encode_to_vec(), buf, "not prost's canonical bytes");
    }

    #[test]
    fn every_kind_of_attribute_is_prost_encoding() {
        use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, ArrayValue, KeyValue};
        let long = "x".repeat(300);
        let cases: Vec<(&str, Val, any_value::Value)> = vec![
            (
                "s",
                Val::Str("v".into()),
                any_value::Value::StringValue("v".into()),
            ),
            (
                "",
                Val::Str("".into()),
                any_value::Value::StringValue(String::new()),
            ),
            (
                &long,
                Val::Str(long.clone().into()),
                any_value::Value::StringValue(long.clone()),
            ),
            ("b", Val::Bool(false), any_value::Value::BoolValue(false)),
            ("i", Val::Int(0), any_value::Value::IntValue(0)),
            ("i", Val::Int(-3), any_value::Value::IntValue(-3)),
            ("i", Val::Int(1 << 40), any_value::Value::IntValue(1 << 40)),
            ("d", Val::Double(0.25), any_value::Value::DoubleValue(0.25)),
            (
                "a",
                Val::StrArray(&["x", "y"]),
                any_value::Value::ArrayValue(ArrayValue {
                    values: ["x", "y"]
                        .iter()
                        .map(|s| AnyValue {
                            value: Some(any_value::Value::StringValue((*s).into())),
                        })
                        .collect(),
                }),
            ),
        ];
        for (key, val, want) in cases {
            let mut buf = Vec::new();
            pb::key_value(&mut buf, 9, key, &val);
            let kv = KeyValue {
                key: key.into(),
                value: Some(AnyValue { value: Some(want) }),
                ..Default::default()
            };
            let mut expected = Vec::new();
            prost::encoding::message::encode(9, &kv, &mut expected);
            assert_eq!(buf, expected, "{key:.10}: {val:?}");
        }
    }

    #[test]
    fn json_decodes_to_the_same_message() {
        let spans = sample();
        let (mut order, mut pb_buf, mut json_buf) = (Vec::new(), Vec::new(), Vec::new());
        encode_request(&spans, Format::Protobuf, &mut order, &mut pb_buf);
        encode_request(&spans, Format::Json, &mut order, &mut json_buf);
        let _: serde_json::Value = serde_json::from_slice(&json_buf).unwrap();
        let from_json =
            claudewatch_otlp_json_decode(&json_buf).expect("claudewatch's OTLP/JSON reader");
        let from_pb = ExportTraceServiceRequest::decode(pb_buf.as_slice()).unwrap();
        let flat = |r: &ExportTraceServiceRequest| {
            r.resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .flat_map(|s| s.spans.clone())
                .collect::<Vec<_>>()
        };
        for (a, b) in flat(&from_json).iter().zip(flat(&from_pb).iter()) {
            if a != b {
                for (x, y) in a.attributes.iter().zip(&b.attributes) {
                    assert_eq!(x, y);
                }
                assert_eq!(a.events, b.events);
                assert_eq!(a.status, b.status);
                assert_eq!(a.name, b.name);
                assert_eq!(a.flags, b.flags);
            }
        }
        assert!(from_json == from_pb);
    }

    fn claudewatch_otlp_json_decode(b: &[u8]) -> Option<ExportTraceServiceRequest> {
        match claudewatch_otlp::decode(
            claudewatch_otlp::Signal::Traces,
            claudewatch_otlp::Encoding::Json,
            b,
        ) {
            Ok(claudewatch_otlp::ExportRequest::Traces(t)) => Some(t),
            _ => None,
        }
    }
}
