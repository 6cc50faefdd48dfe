//! A zero-copy scanner for protobuf `ExportTraceServiceRequest`s.
//!
//! It validates the whole message (structure, wire types, UTF-8 of every
//! string field prost would check) and builds a [`TraceBatch`] that borrows
//! from the input, in one pass and a few allocations.
//!
//! It handles the canonical encoding that exporters produce. Anything
//! irregular or invalid (a singular message field given twice, groups,
//! string-table references, deep nesting, corrupt bytes) makes it answer
//! `None`: the caller then decodes with prost, which defines the exact
//! semantics and error messages. So the fast path can never accept what prost
//! rejects, nor read a request differently (a differential test checks this).

use crate::view::{
    EventRef, KeyValueRef, KvListRef, ListRef, ResourceRef, ScopeRef, SpanRef, TraceBatch, ValueRef,
};

/// Deepest nesting of array / key-value list values the scanner follows.
/// Kept well under prost's recursion limit of 100 messages (a key-value list
/// level costs three), so the scanner never accepts what prost refuses.
const MAX_DEPTH: usize = 24;

/// One-byte tags (field number << 3 | wire type) of the canonical encoding.
const TAG_1_BYTES: u8 = 1 << 3 | 2;
const TAG_2_BYTES: u8 = 2 << 3 | 2;
const TAG_2_VARINT: u8 = 2 << 3;
const TAG_3_VARINT: u8 = 3 << 3;

/// The text of a string field, or `None` when it is not UTF-8 (as prost
/// would refuse it). Same answer as `std::str::from_utf8`; ASCII, which makes
/// up nearly all keys and values, is recognised by the word-at-a-time
/// `is_ascii` (inside `ascii`), several times cheaper on short strings.
#[inline]
fn utf8(bytes: &[u8]) -> Option<&str> {
    match ascii::AsciiStr::from_ascii(bytes) {
        Ok(text) => Some(text.as_str()),
        Err(_) => std::str::from_utf8(bytes).ok(),
    }
}

/// The value of one wire field.
#[derive(Debug, Clone, Copy)]
pub(crate) enum WireValue<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32,
    Bytes(&'a [u8]),
}

/// One field: its number and value.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field<'a> {
    pub number: u32,
    pub value: WireValue<'a>,
}

impl<'a> Field<'a> {
    pub fn bytes(&self) -> Option<&'a [u8]> {
        match self.value {
            WireValue::Bytes(b) => Some(b),
            _ => None,
        }
    }
    fn str(&self) -> Option<&'a str> {
        utf8(self.bytes()?)
    }
}

/// A cursor over the fields of one message.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    #[inline]
    fn varint(&mut self) -> Option<u64> {
        // One-byte fast path: tags and most lengths.
        let first = *self.buf.get(self.pos)?;
        if first < 0x80 {
            self.pos += 1;
            return Some(u64::from(first));
        }
        self.varint_slow()
    }

    /// A length-delimited payload (the length varint, then the bytes).
    #[inline]
    fn len_delimited(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.varint()?).ok()?;
        let end = self.pos.checked_add(len)?;
        let bytes = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(bytes)
    }

    fn varint_slow(&mut self) -> Option<u64> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let b = *self.buf.get(self.pos)?;
            self.pos += 1;
            if i == 9 && b > 1 {
                return None;
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Some(value);
            }
        }
        None
    }

    /// The next field; `Err` on malformed or unsupported (group) encoding.
    #[inline]
    pub fn next_field(&mut self) -> Result<Option<Field<'a>>, ()> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint().ok_or(())?;
        // prost rejects keys that do not fit in 32 bits.
        let key = u32::try_from(key).map_err(|_| ())?;
        let number = key >> 3;
        if number == 0 {
            return Err(());
        }
        let value = match key & 7 {
            0 => WireValue::Varint(self.varint().ok_or(())?),
            1 => {
                let bytes = self.buf.get(self.pos..self.pos + 8).ok_or(())?;
                self.pos += 8;
                WireValue::Fixed64(u64::from_le_bytes(bytes.try_into().map_err(|_| ())?))
            }
            2 => {
                let len = usize::try_from(self.varint().ok_or(())?).map_err(|_| ())?;
                let end = self.pos.checked_add(len).ok_or(())?;
                let bytes = self.buf.get(self.pos..end).ok_or(())?;
                self.pos = end;
                WireValue::Bytes(bytes)
            }
            5 => {
                self.buf.get(self.pos..self.pos + 4).ok_or(())?;
                self.pos += 4;
                WireValue::Fixed32
            }
            _ => return Err(()),
        };
        Ok(Some(Field { number, value }))
    }

    /// Iterates fields of already validated bytes (stops at the first error).
    pub fn fields(mut self) -> impl Iterator<Item = Field<'a>> {
        std::iter::from_fn(move || self.next_field().ok().flatten())
    }
}

/// Loops over a message's fields with `f`; any `None` from `f` or malformed
/// bytes abort the scan.
#[inline]
fn each_field<'a>(buf: &'a [u8], mut f: impl FnMut(Field<'a>) -> Option<()>) -> Option<()> {
    let mut r = Reader::new(buf);
    while let Some(field) = r.next_field().ok()? {
        f(field)?;
    }
    Some(())
}

/// A string field, validated.
fn string<'a>(f: &Field<'a>) -> Option<&'a str> {
    f.str()
}

/// Validates and views one `AnyValue`.
pub(crate) fn any_value(buf: &[u8]) -> Result<ValueRef<'_>, ()> {
    any_value_at(buf, 0).ok_or(())
}

fn any_value_at(buf: &[u8], depth: usize) -> Option<ValueRef<'_>> {
    if depth > MAX_DEPTH {
        return None;
    }
    let mut value = ValueRef::Empty;
    let mut set = false;
    let mut r = Reader::new(buf);
    while r.pos < buf.len() {
        // Fast paths: the one-byte tags of the scalar cases exporters write.
        let v = match buf[r.pos] {
            TAG_1_BYTES => {
                r.pos += 1;
                ValueRef::Str(utf8(r.len_delimited()?)?)
            }
            TAG_2_VARINT => {
                r.pos += 1;
                ValueRef::Bool(r.varint()? != 0)
            }
            TAG_3_VARINT => {
                r.pos += 1;
                ValueRef::Int(r.varint()? as i64)
            }
            _ => match any_value_field(r.next_field().ok()??, depth)? {
                Some(v) => v,
                None => continue,
            },
        };
        if set {
            // A oneof given twice: prost's merge rules decide.
            return None;
        }
        set = true;
        value = v;
    }
    Some(value)
}

/// One field of an `AnyValue` by the general path: `Some(None)` for an
/// unknown field (skipped), `None` when prost must decide.
fn any_value_field(f: Field<'_>, depth: usize) -> Option<Option<ValueRef<'_>>> {
    let v = match (f.number, f.value) {
        (1, WireValue::Bytes(_)) => ValueRef::Str(string(&f)?),
        (2, WireValue::Varint(b)) => ValueRef::Bool(b != 0),
        (3, WireValue::Varint(i)) => ValueRef::Int(i as i64),
        (4, WireValue::Fixed64(d)) => ValueRef::Double(f64::from_bits(d)),
        (5, WireValue::Bytes(b)) => {
            each_field(b, |e| match (e.number, e.value) {
                (1, WireValue::Bytes(x)) => any_value_at(x, depth + 1).map(|_| ()),
                (1, _) => None,
                _ => Some(()),
            })?;
            ValueRef::Array(ListRef::Wire(b))
        }
        (6, WireValue::Bytes(b)) => {
            each_field(b, |e| match (e.number, e.value) {
                (1, WireValue::Bytes(x)) => key_value_at(x, depth + 1).map(|_| ()),
                (1, _) => None,
                _ => Some(()),
            })?;
            ValueRef::Kvlist(KvListRef::Wire(b))
        }
        (7, WireValue::Bytes(b)) => ValueRef::Bytes(b),
        // string_value_strindex (profiles only), or a known field with the wrong wire type.
        (1..=8, _) => return None,
        _ => return Some(None),
    };
    Some(Some(v))
}

/// Validates and views one `KeyValue`.
pub(crate) fn key_value(buf: &[u8]) -> Result<KeyValueRef<'_>, ()> {
    key_value_at(buf, 0).ok_or(())
}

/// The canonical encoding of a string attribute, all lengths under 128:
/// `0a klen key 12 vlen 0a slen text` and nothing else. The bytes from the key
/// to the end are then checked as one UTF-8 run (the four tag and length bytes
/// between key and text are ASCII, so the run is valid exactly when both
/// strings are). `None` sends the pair to the general path.
#[inline]
fn string_pair(buf: &[u8]) -> Option<KeyValueRef<'_>> {
    let [TAG_1_BYTES, klen @ 0..=0x7f, ..] = *buf else {
        return None;
    };
    let key_end = 2 + usize::from(klen);
    let [TAG_2_BYTES, vlen @ 0..=0x7f, TAG_1_BYTES, slen @ 0..=0x7f, ..] = *buf.get(key_end..)?
    else {
        return None;
    };
    if usize::from(vlen) != usize::from(slen) + 2 || buf.len() != key_end + 4 + usize::from(slen) {
        return None;
    }
    let run = utf8(buf.get(2..)?)?;
    Some(KeyValueRef {
        key: run.get(..key_end - 2)?,
        value: ValueRef::Str(run.get(key_end + 2..)?),
    })
}

fn key_value_at(buf: &[u8], depth: usize) -> Option<KeyValueRef<'_>> {
    if let Some(pair) = string_pair(buf) {
        return Some(pair);
    }
    let mut key = "";
    let mut value = None;
    let mut r = Reader::new(buf);
    while r.pos < buf.len() {
        // Fast paths: the one-byte tags of `key` and `value`.
        let (number, bytes) = match buf[r.pos] {
            TAG_1_BYTES => {
                r.pos += 1;
                (1, r.len_delimited()?)
            }
            TAG_2_BYTES => {
                r.pos += 1;
                (2, r.len_delimited()?)
            }
            _ => match r.next_field().ok()?? {
                Field {
                    number: n @ (1 | 2),
                    value: WireValue::Bytes(b),
                } => (n, b),
                Field { number: 1..=3, .. } => return None,
                _ => continue,
            },
        };
        if number == 1 {
            key = utf8(bytes)?;
        } else {
            if value.is_some() {
                return None;
            }
            value = Some(any_value_at(bytes, depth)?);
        }
    }
    Some(KeyValueRef {
        key,
        value: value.unwrap_or(ValueRef::Empty),
    })
}

/// Scans a protobuf `ExportTraceServiceRequest`; `None` when prost must decide.
pub fn scan_traces(buf: &[u8]) -> Option<TraceBatch<'_>> {
    // Pre-size from the body: an attribute takes at least ~24 bytes on the
    // wire and a span ~160 (estimates; the vectors still grow if needed).
    let mut b = TraceBatch {
        spans: Vec::with_capacity(buf.len() / 160 + 1),
        attributes: Vec::with_capacity(buf.len() / 24 + 1),
        ..TraceBatch::default()
    };
    each_field(buf, |f| match (f.number, f.value) {
        (1, WireValue::Bytes(rs)) => resource_spans(rs, &mut b),
        (1, _) => None,
        _ => Some(()),
    })?;
    Some(b)
}

fn attributes_into<'a>(f: &Field<'a>, b: &mut TraceBatch<'a>) -> Option<()> {
    b.attributes.push(key_value_at(f.bytes()?, 0)?);
    Some(())
}

fn resource_spans<'a>(buf: &'a [u8], b: &mut TraceBatch<'a>) -> Option<()> {
    // The resource may follow the scope spans on the wire: find it first.
    let mut resource: Option<&'a [u8]> = None;
    each_field(buf, |f| match (f.number, f.value) {
        (1, WireValue::Bytes(r)) => {
            if resource.replace(r).is_some() {
                return None;
            }
            Some(())
        }
        (1..=3, WireValue::Bytes(_)) => Some(()),
        (1..=3, _) => None,
        _ => Some(()),
    })?;
    let start = b.attributes.len();
    if let Some(r) = resource {
        each_field(r, |f| match (f.number, f.value) {
            (1, WireValue::Bytes(_)) => attributes_into(&f, b),
            (2, WireValue::Varint(_)) => Some(()),
            // entity_refs and wrong wire types: let prost decide.
            (1..=3, _) => None,
            _ => Some(()),
        })?;
    }
    b.resources.push(ResourceRef {
        attributes: start..b.attributes.len(),
    });
    let resource = b.resources.len() - 1;
    each_field(buf, |f| match f.number {
        2 => scope_spans(f.bytes()?, resource, b),
        3 => string(&f).map(|_| ()),
        _ => Some(()),
    })
}

fn scope_spans<'a>(buf: &'a [u8], resource: usize, b: &mut TraceBatch<'a>) -> Option<()> {
    let mut scope: Option<&'a [u8]> = None;
    each_field(buf, |f| match (f.number, f.value) {
        (1, WireValue::Bytes(s)) => {
            if scope.replace(s).is_some() {
                return None;
            }
            Some(())
        }
        (2, WireValue::Bytes(_)) => Some(()),
        (3, WireValue::Bytes(_)) => string(&f).map(|_| ()),
        (1..=3, _) => None,
        _ => Some(()),
    })?;
    let (mut name, mut version) = ("", "");
    if let Some(s) = scope {
        // Scope attributes are validated but not kept.
        let mut scratch = TraceBatch::default();
        each_field(s, |f| match (f.number, f.value) {
            (1, WireValue::Bytes(_)) => string(&f).map(|v| name = v),
            (2, WireValue::Bytes(_)) => string(&f).map(|v| version = v),
            (3, WireValue::Bytes(_)) => attributes_into(&f, &mut scratch),
            (4, WireValue::Varint(_)) => Some(()),
            (1..=4, _) => None,
            _ => Some(()),
        })?;
    }
    b.scopes.push(ScopeRef {
        resource,
        name,
        version,
    });
    let scope = b.scopes.len() - 1;
    each_field(buf, |f| match f.number {
        2 => span(f.bytes()?, scope, b),
        _ => Some(()),
    })
}

fn span<'a>(buf: &'a [u8], scope: usize, b: &mut TraceBatch<'a>) -> Option<()> {
    let mut s = SpanRef {
        scope,
        ..SpanRef::default()
    };
    let attr_start = b.attributes.len();
    let mut status: Option<&'a [u8]> = None;
    let mut status_repeated = false;
    let mut events: Vec<&'a [u8]> = Vec::new();
    each_field(buf, |f| {
        match (f.number, f.value) {
            (1, WireValue::Bytes(x)) => s.trace_id = x,
            (2, WireValue::Bytes(x)) => s.span_id = x,
            (3, WireValue::Bytes(_)) => {
                string(&f)?;
            }
            (4, WireValue::Bytes(x)) => s.parent_span_id = x,
            (5, WireValue::Bytes(_)) => s.name = string(&f)?,
            (6, WireValue::Varint(k)) => s.kind = k as i32,
            (7, WireValue::Fixed64(t)) => s.start_time_unix_nano = t,
            (8, WireValue::Fixed64(t)) => s.end_time_unix_nano = t,
            (9, WireValue::Bytes(_)) => attributes_into(&f, b)?,
            (10 | 12 | 14, WireValue::Varint(_)) => {}
            (11, WireValue::Bytes(e)) => events.push(e),
            (13, WireValue::Bytes(l)) => link(l)?,
            // A second status would be merged by prost: noted, and deferred below.
            (15, WireValue::Bytes(st)) => status_repeated |= status.replace(st).is_some(),
            (16, WireValue::Fixed32) => {}
            (1..=16, _) => return None,
            _ => {}
        }
        Some(())
    })?;
    if status_repeated {
        return None;
    }
    s.attributes = attr_start..b.attributes.len();
    let ev_start = b.events.len();
    for e in events {
        let mut ev = EventRef::default();
        let a = b.attributes.len();
        each_field(e, |f| {
            match (f.number, f.value) {
                (1, WireValue::Fixed64(_)) | (4, WireValue::Varint(_)) => {}
                (2, WireValue::Bytes(_)) => ev.name = string(&f)?,
                (3, WireValue::Bytes(_)) => attributes_into(&f, b)?,
                (1..=4, _) => return None,
                _ => {}
            }
            Some(())
        })?;
        ev.attributes = a..b.attributes.len();
        b.events.push(ev);
    }
    s.events = ev_start..b.events.len();
    if let Some(st) = status {
        each_field(st, |f| {
            match (f.number, f.value) {
                (2, WireValue::Bytes(_)) => s.status_message = string(&f)?,
                (3, WireValue::Varint(c)) => s.status_code = c as i32,
                (2 | 3, _) => return None,
                _ => {}
            }
            Some(())
        })?;
    }
    b.spans.push(s);
    Some(())
}

fn link(buf: &[u8]) -> Option<()> {
    let mut scratch = TraceBatch::default();
    each_field(buf, |f| match (f.number, f.value) {
        (1 | 2, WireValue::Bytes(_)) | (5, WireValue::Varint(_)) | (6, WireValue::Fixed32) => {
            Some(())
        }
        (3, WireValue::Bytes(_)) => string(&f).map(|_| ()),
        (4, WireValue::Bytes(_)) => attributes_into(&f, &mut scratch),
        (1..=6, _) => None,
        _ => Some(()),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::proto::common::v1::{any_value::Value as V, AnyValue, ArrayValue, KeyValue};
    use crate::proto::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};
    use crate::ExportTraceServiceRequest;
    use prost::Message;

    fn kv(k: &str, v: V) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            key_strindex: 0,
        }
    }

    fn sample() -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(crate::proto::resource::v1::Resource {
                    attributes: vec![kv("service.name", V::StringValue("svc".into()))],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(crate::proto::common::v1::InstrumentationScope {
                        name: "s".into(),
                        version: "1".into(),
                        ..Default::default()
                    }),
                    spans: vec![Span {
                        trace_id: vec![1; 16],
                        span_id: vec![2; 8],
                        name: "chat".into(),
                        kind: 3,
                        start_time_unix_nano: 5,
                        end_time_unix_nano: 9,
                        attributes: vec![
                            kv("i", V::IntValue(-7)),
                            kv("d", V::DoubleValue(0.25)),
                            kv("b", V::BoolValue(true)),
                            kv(
                                "a",
                                V::ArrayValue(ArrayValue {
                                    values: vec![AnyValue {
                                        value: Some(V::StringValue("x".into())),
                                    }],
                                }),
                            ),
                        ],
                        events: vec![span::Event {
                            name: "exception".into(),
                            ..Default::default()
                        }],
                        status: Some(Status {
                            code: 2,
                            message: "boom".into(),
                        }),
                        ..Default::default()
                    }],
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }

    #[test]
    fn scanner_view_equals_the_prost_view() {
        let req = sample();
        let bytes = req.encode_to_vec();
        let fast = scan_traces(&bytes).unwrap();
        let slow = TraceBatch::from_proto(&req);
        assert_eq!(fast.spans, slow.spans);
        assert_eq!(fast.scopes, slow.scopes);
        assert_eq!(fast.events, slow.events);
        let render = |b: &TraceBatch<'_>| {
            b.attributes
                .iter()
                .map(|kv| match kv.value {
                    ValueRef::Array(l) => format!("{}={:?}", kv.key, l.iter().collect::<Vec<_>>()),
                    v => format!("{}={v:?}", kv.key),
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(render(&fast), render(&slow));
    }

    /// `KeyValue { key, value: string }` encoded by prost, with raw bytes.
    fn string_kv_bytes(key: &[u8], text: &[u8]) -> Vec<u8> {
        let value = [&[0x0a, text.len() as u8][..], text].concat();
        [
            &[0x0a, key.len() as u8][..],
            key,
            &[0x12, value.len() as u8],
            &value,
        ]
        .concat()
    }

    #[test]
    fn string_pairs_read_as_prost_reads_them() {
        let cases: [(&[u8], &[u8]); 6] = [
            (b"gen_ai.system", b"anthropic"),
            (b"", b""),
            ("clé".as_bytes(), "valeur é ✓".as_bytes()),
            (b"k", &[b'a'; 127]),
            (b"bad", &[0xc3]),
            (&[0xc3], b"split across the tags"),
        ];
        for (key, text) in cases {
            let bytes = if text.len() + 2 < 128 {
                string_kv_bytes(key, text)
            } else {
                kv(
                    std::str::from_utf8(key).unwrap(),
                    V::StringValue(std::str::from_utf8(text).unwrap().into()),
                )
                .encode_to_vec()
            };
            let prost = KeyValue::decode(&bytes[..]).ok();
            let fast = key_value(&bytes).ok();
            match (prost, fast) {
                (None, None) => {}
                (Some(p), Some(f)) => {
                    assert_eq!(f.key, p.key);
                    let Some(AnyValue {
                        value: Some(V::StringValue(s)),
                    }) = p.value
                    else {
                        panic!()
                    };
                    assert_eq!(f.value, ValueRef::Str(&s));
                }
                (p, f) => panic!("{key:?}={text:?}: prost {p:?}, scanner {f:?}"),
            }
        }
        // A field after the value leaves the fast path; the general one skips it.
        let mut extra = string_kv_bytes(b"k", b"v");
        extra.extend_from_slice(&[0x20, 0x01]);
        assert!(string_pair(&extra).is_none());
        let kv = key_value(&extra).unwrap();
        assert_eq!((kv.key, kv.value), ("k", ValueRef::Str("v")));
    }

    proptest::proptest! {
        #[test]
        fn utf8_answers_as_std_does(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
            text in "\\PC{0,40}",
        ) {
            proptest::prop_assert_eq!(utf8(&bytes), std::str::from_utf8(&bytes).ok());
            proptest::prop_assert_eq!(utf8(text.as_bytes()), Some(text.as_str()));
        }
    }

    #[test]
    fn irregular_or_invalid_input_defers_to_prost() {
        assert!(scan_traces(&[0x0a, 100, 1]).is_none(), "truncated");
        assert!(scan_traces(&[0x0b]).is_none(), "group");
        // Found by fuzzing: a key over 32 bits, which prost rejects.
        let big_key = [
            0x90, 0x91, 0x41, 0x8f, 0x3d, 0x90, 0x8b, 0x90, 0xc6, 0x2e, 0x90, 0xfc, 0xc6, 0x90,
            0x60,
        ];
        assert!(scan_traces(&big_key).is_none(), "key over 32 bits");
        let mut two_status = sample();
        two_status.resource_spans[0].scope_spans[0].spans[0].name = "n".into();
        let mut bytes = two_status.encode_to_vec();
        // Append a second span-level status to the only span is hard to splice; a
        // duplicated resource at the top level is easy: field 1 of ResourceSpans twice.
        let rs = ResourceSpans {
            resource: Some(Default::default()),
            ..Default::default()
        }
        .encode_to_vec();
        let mut doubled = rs.clone();
        doubled.extend_from_slice(&rs[..]);
        bytes.push(0x0a);
        bytes.push(doubled.len() as u8);
        bytes.extend_from_slice(&doubled);
        assert!(
            scan_traces(&bytes).is_none(),
            "a singular message field given twice"
        );
    }
}
