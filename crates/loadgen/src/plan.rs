//! Which calls and spans go in which export request.
//!
//! Request `r` carries the calls `r*K .. (r+1)*K` (K = calls per request),
//! except the wrapper spans of split twins, which go in request `r+1` (as a
//! batch span processor exports a parent that ends after its child). Every
//! request is a pure function of its index, so workers build requests in
//! parallel; a request that finally fails names exactly the calls it held.

use std::ops::Range;

use crate::ids::IdKeys;
use crate::mix::{CallSpec, Mix};
use crate::spans::{build_call, SpanOut};

/// The request plan of a run.
#[derive(Debug, Clone)]
pub struct Plan {
    mix: Mix,
    keys: IdKeys,
    calls_per_request: u64,
    limit: Option<u64>,
}

/// One request to build: its index, whether it is the tail (only the
/// deferred spans of the request before, no new calls), and the wall-clock
/// time its calls end at (and the one of the request before).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    /// Request index.
    pub index: u64,
    /// Tail request of a run stopped by time.
    pub tail: bool,
    /// Calls of this request end around this time (ns since the epoch).
    pub base_unix_nano: u64,
    /// The same for request `index - 1`.
    pub prev_base_unix_nano: u64,
}

/// What a built request holds.
#[derive(Debug, Default)]
pub struct Built {
    /// The spans, in export order.
    pub spans: Vec<SpanOut>,
    /// Calls that are first seen in this request (counted once per run).
    pub new_calls: u64,
    /// Calls whose last span is in this request.
    pub completed_calls: u64,
}

impl Plan {
    /// A plan: `spans_per_request` is the target batch size, `limit` the
    /// number of calls (None: until stopped).
    pub fn new(mix: impl Into<Mix>, spans_per_request: usize, limit: Option<u64>) -> Plan {
        let mix = mix.into();
        // Mean spans per call of this mix, measured on the seed's own calls.
        let sample = 4096u64;
        let spans: usize = (0..sample).map(|i| mix.call(i).span_count()).sum();
        let mean = spans as f64 / sample as f64;
        let k = ((spans_per_request.max(1) as f64) / mean).round().max(1.0) as u64;
        Plan {
            mix,
            keys: IdKeys::new(mix.seed),
            calls_per_request: k,
            limit,
        }
    }

    /// Calls per request.
    pub fn calls_per_request(&self) -> u64 {
        self.calls_per_request
    }

    /// The identifier keys of the run.
    pub fn keys(&self) -> &IdKeys {
        &self.keys
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.mix.seed
    }

    /// Call `index` of the run.
    pub fn call(&self, index: u64) -> CallSpec {
        self.mix.call(index)
    }

    /// Number of requests of a count-limited run.
    pub fn request_count(&self) -> Option<u64> {
        self.limit.map(|n| n.div_ceil(self.calls_per_request))
    }

    /// The calls first carried by request `r`.
    pub fn calls_in(&self, r: u64) -> Range<u64> {
        let start = r.saturating_mul(self.calls_per_request);
        let end = start.saturating_add(self.calls_per_request);
        match self.limit {
            Some(n) => start.min(n)..end.min(n),
            None => start..end,
        }
    }

    /// True when `spec`'s wrapper span really goes in the next request (never
    /// past the last request of a count-limited run).
    fn split(&self, spec: &CallSpec, r: u64) -> bool {
        spec.split && self.request_count().is_none_or(|n| r + 1 < n)
    }

    /// Builds request `t` into `out` (cleared first).
    pub fn build(&self, t: Ticket, out: &mut Built) {
        out.spans.clear();
        out.new_calls = 0;
        out.completed_calls = 0;
        if t.index > 0 {
            // Wrapper spans deferred from the request before.
            for c in self.calls_in(t.index - 1) {
                let spec = self.mix.call(c);
                if !self.split(&spec, t.index - 1) {
                    continue;
                }
                let from = out.spans.len();
                build_call(
                    &spec,
                    &self.keys,
                    end_of(t.prev_base_unix_nano, c),
                    &mut out.spans,
                );
                let mut k = 0;
                out.spans.retain(|s| {
                    let keep = k < from || s.deferred;
                    k += 1;
                    keep
                });
                out.completed_calls += 1;
            }
        }
        if t.tail {
            return;
        }
        for c in self.calls_in(t.index) {
            let spec = self.mix.call(c);
            let split = self.split(&spec, t.index);
            let from = out.spans.len();
            build_call(
                &spec,
                &self.keys,
                end_of(t.base_unix_nano, c),
                &mut out.spans,
            );
            if split {
                let mut k = 0;
                out.spans.retain(|s| {
                    let keep = k < from || !s.deferred;
                    k += 1;
                    keep
                });
            } else {
                out.completed_calls += 1;
                for s in &mut out.spans[from..] {
                    s.deferred = false;
                }
            }
            out.new_calls += 1;
        }
    }

    /// Every call request `t` carries spans of (for a request that failed).
    pub fn touched(&self, t: Ticket) -> Vec<u64> {
        let mut v = Vec::new();
        if t.index > 0 {
            v.extend(
                self.calls_in(t.index - 1)
                    .filter(|&c| self.split(&self.mix.call(c), t.index - 1)),
            );
        }
        if !t.tail {
            v.extend(self.calls_in(t.index));
        }
        v
    }
}

/// End time of call `c` in a request whose calls end around `base`.
fn end_of(base: u64, c: u64) -> u64 {
    base.saturating_sub((c % 1024) * 20_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn ticket(index: u64, tail: bool) -> Ticket {
        Ticket {
            index,
            tail,
            base_unix_nano: 1_800_000_000_000_000_000 + index * 1_000_000,
            prev_base_unix_nano: 1_800_000_000_000_000_000 + index.saturating_sub(1) * 1_000_000,
        }
    }

    #[test]
    fn every_span_of_every_call_is_sent_exactly_once() {
        let plan = Plan::new(11, 50, Some(1000));
        let n = plan.request_count().unwrap();
        let mut per_call: HashMap<u64, usize> = HashMap::new();
        let (mut new, mut done) = (0, 0);
        let mut b = Built::default();
        for r in 0..n {
            plan.build(ticket(r, false), &mut b);
            new += b.new_calls;
            done += b.completed_calls;
            for s in &b.spans {
                *per_call.entry(s.call).or_default() += 1;
            }
        }
        assert_eq!((new, done), (1000, 1000));
        for c in 0..1000 {
            assert_eq!(
                per_call[&c],
                CallSpec::generate(11, c).span_count(),
                "call {c}"
            );
        }
    }

    #[test]
    fn tail_request_flushes_deferred_wrappers() {
        let plan = Plan::new(5, 40, None);
        let mut b = Built::default();
        let mut split_any = false;
        for r in 0..20 {
            plan.build(ticket(r, false), &mut b);
            let deferred = plan
                .calls_in(r)
                .filter(|&c| CallSpec::generate(5, c).split)
                .count() as u64;
            plan.build(ticket(r + 1, true), &mut b);
            assert_eq!(b.completed_calls, deferred);
            assert_eq!(b.spans.len() as u64, deferred);
            assert!(b.spans.iter().all(|s| s.deferred));
            split_any |= deferred > 0;
            assert_eq!(plan.touched(ticket(r + 1, true)).len() as u64, deferred);
        }
        assert!(split_any);
    }
}
