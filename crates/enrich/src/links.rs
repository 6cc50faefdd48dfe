//! What grouping reads of an observation, made compact: its ids as 64-bit
//! keyed hashes and its kind.
//!
//! Grouping a stream's window visits every waiting observation at each seal;
//! reading 40 bytes of [`Links`] per observation instead of its ids (strings
//! on the heap, and a 432-byte [`Observation`] stride) keeps that pass in
//! cache, and a map keyed by a `u64` needs no string hashing or comparison.
//!
//! The hash is SipHash with this process's random keys, over a tag byte (the
//! id's kind) and the id's bytes: a request id never meets a response id, and
//! two different ids share a key with probability 2^-64, which a client cannot
//! aim for because it does not know the keys. The merge window keys the ids
//! of sealed calls with the same [`IdKeys`], so a late duplicate is found from
//! the links computed when it arrived.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::num::NonZeroU64;

use crate::observation::{EvidenceKind, Observation};

/// The kinds of id a key can stand for (its hash's first byte), so keys of
/// different kinds never match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum IdKind {
    /// A provider request id.
    Request = 0,
    /// A provider response (message) id.
    Response = 1,
    /// A span, by trace id and span id.
    Span = 2,
    /// The parent of a sealed call-level span, by trace id and span id (kept
    /// apart from [`IdKind::Span`]: a sibling shares the parent, not the span).
    Parent = 3,
}

/// An observation's ids, as keys of one [`IdKeys`], and its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Links {
    /// Its request id's key.
    pub request: Option<NonZeroU64>,
    /// Its response id's key.
    pub response: Option<NonZeroU64>,
    /// Its own span's key ([`IdKind::Span`] of trace and span id).
    pub span: Option<NonZeroU64>,
    /// Its parent span's key, in the same space as `span`, so a parent link is
    /// a lookup of `parent` among the `span`s.
    pub parent: Option<NonZeroU64>,
    /// What it is evidence of.
    pub kind: EvidenceKind,
}

/// The keyed hash of ids (one random key per instance).
#[derive(Debug, Default, Clone)]
pub struct IdKeys {
    hasher: RandomState,
}

impl IdKeys {
    /// The links of `o`.
    pub fn links(&self, o: &Observation) -> Links {
        Links {
            request: o
                .request_id
                .as_deref()
                .map(|r| self.text(IdKind::Request, r)),
            response: o
                .response_id
                .as_deref()
                .map(|r| self.text(IdKind::Response, r)),
            span: o
                .trace_id
                .zip(o.span_id)
                .map(|(t, s)| self.span(IdKind::Span, &t, &s)),
            parent: o
                .trace_id
                .zip(o.parent_span_id)
                .map(|(t, p)| self.span(IdKind::Span, &t, &p)),
            kind: o.kind(),
        }
    }

    /// The key of a text id: its kind's tag byte, then its bytes, hashed in
    /// one write (a tuple's `Hash` costs a write per part and a length prefix).
    pub fn text(&self, kind: IdKind, id: &str) -> NonZeroU64 {
        let mut buf = [0u8; 64];
        match buf.get_mut(1..=id.len()) {
            Some(room) => {
                room.copy_from_slice(id.as_bytes());
                self.tagged(kind, &mut buf[..=id.len()])
            }
            None => {
                let mut h = self.hasher.build_hasher();
                h.write_u8(kind as u8);
                h.write(id.as_bytes());
                nonzero(h.finish())
            }
        }
    }

    /// The key of a span id within its trace.
    pub fn span(&self, kind: IdKind, trace: &[u8; 16], span: &[u8; 8]) -> NonZeroU64 {
        let mut buf = [0u8; 25];
        buf[1..17].copy_from_slice(trace);
        buf[17..].copy_from_slice(span);
        self.tagged(kind, &mut buf)
    }

    /// Hashes `tagged` (its first byte set to `kind`'s tag) in one write.
    fn tagged(&self, kind: IdKind, tagged: &mut [u8]) -> NonZeroU64 {
        tagged[0] = kind as u8;
        let mut h = self.hasher.build_hasher();
        h.write(tagged);
        nonzero(h.finish())
    }
}

/// A key as stored: a hash of 0 counts as 1, so that an optional key takes
/// eight bytes (one more colliding value among 2^64 changes nothing).
fn nonzero(hash: u64) -> NonZeroU64 {
    NonZeroU64::new(hash).unwrap_or(NonZeroU64::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parent_link_is_the_parents_own_span_key_and_kinds_stay_apart() {
        let keys = IdKeys::default();
        let parent = Observation {
            trace_id: Some([1; 16]),
            span_id: Some([2; 8]),
            request_id: Some("abc".into()),
            ..Observation::default()
        };
        let child = Observation {
            trace_id: Some([1; 16]),
            span_id: Some([3; 8]),
            parent_span_id: Some([2; 8]),
            response_id: Some("abc".into()),
            ..Observation::default()
        };
        let (p, c) = (keys.links(&parent), keys.links(&child));
        assert_eq!(c.parent, p.span);
        assert_ne!(c.span, p.span);
        assert_eq!(p.parent, None);
        // The same text as a request id and as a response id.
        assert_ne!(p.request, c.response);
        assert_eq!(p.request, Some(keys.text(IdKind::Request, "abc")));
        // Another trace, same span id: another span.
        let elsewhere = Observation {
            trace_id: Some([9; 16]),
            span_id: Some([2; 8]),
            ..Observation::default()
        };
        assert_ne!(keys.links(&elsewhere).span, p.span);
        // Ids past the stack buffer hash the same way every time.
        let long = "x".repeat(100);
        assert_eq!(
            keys.text(IdKind::Request, &long),
            keys.text(IdKind::Request, &long)
        );
        assert_ne!(
            keys.text(IdKind::Request, &long),
            keys.text(IdKind::Response, &long)
        );
    }
}
