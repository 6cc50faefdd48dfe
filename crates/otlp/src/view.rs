//! Borrowed views of OTLP trace data: what the enricher reads, whichever
//! decoder produced it.
//!
//! A [`TraceBatch`] borrows every string from its source: either the raw
//! protobuf bytes ([`crate::wire`], zero-copy) or an already decoded
//! `opentelemetry-proto` request ([`TraceBatch::from_proto`], for OTLP/JSON).
//! Spans, scopes, resources and attributes live in flat vectors indexed by
//! ranges, so a request of any size costs a handful of allocations.

use std::ops::Range;

use crate::proto::common::v1::{any_value, AnyValue, KeyValue};
use crate::wire::Reader;
use crate::ExportTraceServiceRequest;

/// An attribute value, borrowed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueRef<'a> {
    /// No value set.
    Empty,
    /// `string_value`.
    Str(&'a str),
    /// `bool_value`.
    Bool(bool),
    /// `int_value`.
    Int(i64),
    /// `double_value`.
    Double(f64),
    /// `bytes_value`.
    Bytes(&'a [u8]),
    /// `array_value`.
    Array(ListRef<'a>),
    /// `kvlist_value`.
    Kvlist(KvListRef<'a>),
}

/// The elements of an array value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ListRef<'a> {
    /// Encoded `ArrayValue` bytes, already validated.
    Wire(&'a [u8]),
    /// Decoded values.
    Proto(&'a [AnyValue]),
}

/// The entries of a key-value list value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KvListRef<'a> {
    /// Encoded `KeyValueList` bytes, already validated.
    Wire(&'a [u8]),
    /// Decoded entries.
    Proto(&'a [KeyValue]),
}

/// A key and its value, borrowed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KeyValueRef<'a> {
    /// The attribute key.
    pub key: &'a str,
    /// The value.
    pub value: ValueRef<'a>,
}

impl<'a> ValueRef<'a> {
    /// A view of a decoded value.
    pub fn from_proto(v: &'a AnyValue) -> ValueRef<'a> {
        use any_value::Value as V;
        match &v.value {
            None => ValueRef::Empty,
            Some(V::StringValue(s)) => ValueRef::Str(s),
            Some(V::BoolValue(b)) => ValueRef::Bool(*b),
            Some(V::IntValue(i)) => ValueRef::Int(*i),
            Some(V::DoubleValue(d)) => ValueRef::Double(*d),
            Some(V::BytesValue(b)) => ValueRef::Bytes(b),
            Some(V::ArrayValue(a)) => ValueRef::Array(ListRef::Proto(&a.values)),
            Some(V::KvlistValue(kv)) => ValueRef::Kvlist(KvListRef::Proto(&kv.values)),
            Some(V::StringValueStrindex(_)) => ValueRef::Empty,
        }
    }
}

impl<'a> KeyValueRef<'a> {
    /// A view of a decoded key-value.
    pub fn from_proto(kv: &'a KeyValue) -> KeyValueRef<'a> {
        KeyValueRef {
            key: &kv.key,
            value: kv
                .value
                .as_ref()
                .map(ValueRef::from_proto)
                .unwrap_or(ValueRef::Empty),
        }
    }
}

impl<'a> ListRef<'a> {
    /// The elements, in order.
    pub fn iter(self) -> impl Iterator<Item = ValueRef<'a>> {
        let (wire, proto) = match self {
            ListRef::Wire(b) => (Some(b), None),
            ListRef::Proto(p) => (None, Some(p)),
        };
        let from_wire = wire.into_iter().flat_map(|b| {
            Reader::new(b)
                .fields()
                .filter(|f| f.number == 1)
                .filter_map(|f| crate::wire::any_value(f.bytes()?).ok())
        });
        from_wire.chain(proto.into_iter().flatten().map(ValueRef::from_proto))
    }

    /// The first element.
    pub fn first(self) -> Option<ValueRef<'a>> {
        self.iter().next()
    }
}

impl<'a> KvListRef<'a> {
    /// The entries, in order.
    pub fn iter(self) -> impl Iterator<Item = KeyValueRef<'a>> {
        let (wire, proto) = match self {
            KvListRef::Wire(b) => (Some(b), None),
            KvListRef::Proto(p) => (None, Some(p)),
        };
        let from_wire = wire.into_iter().flat_map(|b| {
            Reader::new(b)
                .fields()
                .filter(|f| f.number == 1)
                .filter_map(|f| crate::wire::key_value(f.bytes()?).ok())
        });
        from_wire.chain(proto.into_iter().flatten().map(KeyValueRef::from_proto))
    }
}

/// A resource: its attributes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourceRef {
    /// Range into [`TraceBatch::attributes`].
    pub attributes: Range<usize>,
}

/// An instrumentation scope and the resource it belongs to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScopeRef<'a> {
    /// Index into [`TraceBatch::resources`].
    pub resource: usize,
    /// Scope name.
    pub name: &'a str,
    /// Scope version.
    pub version: &'a str,
}

/// A span event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventRef<'a> {
    /// Event name.
    pub name: &'a str,
    /// Range into [`TraceBatch::attributes`].
    pub attributes: Range<usize>,
}

/// A span.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpanRef<'a> {
    /// Index into [`TraceBatch::scopes`].
    pub scope: usize,
    /// Trace id bytes.
    pub trace_id: &'a [u8],
    /// Span id bytes.
    pub span_id: &'a [u8],
    /// Parent span id bytes.
    pub parent_span_id: &'a [u8],
    /// Span name.
    pub name: &'a str,
    /// Span kind.
    pub kind: i32,
    /// Start, ns since the epoch.
    pub start_time_unix_nano: u64,
    /// End, ns since the epoch.
    pub end_time_unix_nano: u64,
    /// Range into [`TraceBatch::attributes`].
    pub attributes: Range<usize>,
    /// Range into [`TraceBatch::events`].
    pub events: Range<usize>,
    /// Status code (0 unset, 1 ok, 2 error).
    pub status_code: i32,
    /// Status message.
    pub status_message: &'a str,
}

/// All spans of one traces request, borrowed from its source.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TraceBatch<'a> {
    /// Resources.
    pub resources: Vec<ResourceRef>,
    /// Scopes.
    pub scopes: Vec<ScopeRef<'a>>,
    /// Spans, in request order.
    pub spans: Vec<SpanRef<'a>>,
    /// Span events.
    pub events: Vec<EventRef<'a>>,
    /// Attributes of resources, spans and events.
    pub attributes: Vec<KeyValueRef<'a>>,
}

impl<'a> TraceBatch<'a> {
    /// A view of a decoded request.
    pub fn from_proto(req: &'a ExportTraceServiceRequest) -> TraceBatch<'a> {
        let mut b = TraceBatch::default();
        for rs in &req.resource_spans {
            let start = b.attributes.len();
            if let Some(r) = &rs.resource {
                b.attributes
                    .extend(r.attributes.iter().map(KeyValueRef::from_proto));
            }
            b.resources.push(ResourceRef {
                attributes: start..b.attributes.len(),
            });
            let resource = b.resources.len() - 1;
            for ss in &rs.scope_spans {
                let (name, version) = ss
                    .scope
                    .as_ref()
                    .map(|s| (s.name.as_str(), s.version.as_str()))
                    .unwrap_or(("", ""));
                b.scopes.push(ScopeRef {
                    resource,
                    name,
                    version,
                });
                let scope = b.scopes.len() - 1;
                for s in &ss.spans {
                    let attr_start = b.attributes.len();
                    b.attributes
                        .extend(s.attributes.iter().map(KeyValueRef::from_proto));
                    let attributes = attr_start..b.attributes.len();
                    let ev_start = b.events.len();
                    for e in &s.events {
                        let a = b.attributes.len();
                        b.attributes
                            .extend(e.attributes.iter().map(KeyValueRef::from_proto));
                        b.events.push(EventRef {
                            name: &e.name,
                            attributes: a..b.attributes.len(),
                        });
                    }
                    let (status_code, status_message) = s
                        .status
                        .as_ref()
                        .map(|st| (st.code, st.message.as_str()))
                        .unwrap_or((0, ""));
                    b.spans.push(SpanRef {
                        scope,
                        trace_id: &s.trace_id,
                        span_id: &s.span_id,
                        parent_span_id: &s.parent_span_id,
                        name: &s.name,
                        kind: s.kind,
                        start_time_unix_nano: s.start_time_unix_nano,
                        end_time_unix_nano: s.end_time_unix_nano,
                        attributes,
                        events: ev_start..b.events.len(),
                        status_code,
                        status_message,
                    });
                }
            }
        }
        b
    }

    /// The attributes in `range`.
    pub fn attrs(&self, range: &Range<usize>) -> &[KeyValueRef<'a>] {
        self.attributes.get(range.clone()).unwrap_or(&[])
    }
}
