//! The merge window of a stream: observations of one call that arrive in
//! different requests (an SDK span and its wrapper exported in separate
//! batches, a span and a log, a client's resend) still become one record.
//!
//! Observations wait until no observation of their call has arrived for
//! `max_age`; then the call is sealed into a record. When more than
//! `max_observations` wait, the oldest calls are sealed early, so memory stays
//! bounded. Each sealed call leaves its ids behind for `max_age × 10` (bounded
//! too): an observation arriving later that shares an id with a sealed call is
//! a late duplicate, counted and dropped instead of becoming a second record.
//!
//! Every observation carries its [`Origin`] (the spool entry it came from and
//! its ordinal there), so a crash-recovery replay can skip exactly the
//! observations already stored. Time is passed in, never read: the window is
//! pure and deterministic.

use std::collections::VecDeque;

use rustc_hash::FxHashMap as HashMap;

use claudewatch_otlp::{decode, DecodeError, Encoding, ExportRequest, Signal};

use crate::{
    extract, records_of_groups, AttributeLimits, CallRecord, EnrichConfig, ExtractStats,
    Observation,
};

/// The observations of one request, extracted (attribute caps applied) but
/// not yet in a window: extraction can run on another thread than the
/// window's, and what could not be made durable is simply dropped.
#[derive(Debug, Default)]
pub struct Extracted {
    observations: Vec<Observation>,
    /// What the extraction counted: items, rejections, attribute caps.
    pub stats: ExtractStats,
}

impl Extracted {
    /// Observations extracted.
    pub fn len(&self) -> usize {
        self.observations.len()
    }

    /// True when the request held nothing about a Claude call.
    pub fn is_empty(&self) -> bool {
        self.observations.is_empty()
    }
}

/// Decodes and extracts one request (protobuf traces zero-copy when
/// canonical), applying `limits` to the attributes kept.
pub fn extract_request(
    signal: Signal,
    encoding: Encoding,
    body: &[u8],
    limits: &AttributeLimits,
) -> Result<Extracted, DecodeError> {
    let mut x = Extracted::default();
    let mut seq = 0;
    match (signal, encoding) {
        (Signal::Traces, Encoding::Protobuf) => {
            let mut holder = None;
            let batch = claudewatch_otlp::trace_batch_protobuf(body, &mut holder)?;
            extract::extract_traces(&batch, &mut seq, &mut x.stats, &mut x.observations);
        }
        _ => {
            let req = decode(signal, encoding, body)?;
            extract::extract(&req, &mut seq, &mut x.stats, &mut x.observations);
        }
    }
    limits.apply(&mut x.observations, &mut x.stats);
    Ok(x)
}

/// Where an observation came from: a spool entry and its position there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin {
    /// The spool entry (request) sequence number.
    pub entry: u64,
    /// The observation's ordinal among the entry's observations.
    pub ordinal: u32,
}

/// Limits of a [`MergeWindow`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowLimits {
    /// A call is sealed once none of its observations arrived for this long (ns).
    pub max_age_ns: u64,
    /// More observations than this seal the oldest calls early.
    pub max_observations: usize,
}

/// Counters of a window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WindowStats {
    /// What extraction saw.
    pub extract: ExtractStats,
    /// Records sealed.
    pub calls: u64,
    /// Observations folded into another observation's record.
    pub merged: u64,
    /// Observations that arrived after their call was sealed, dropped.
    pub late_duplicates: u64,
    /// Calls sealed before their age because the window was full.
    pub sealed_early: u64,
}

/// What [`MergeWindow::seal`] produced.
#[derive(Debug, Default)]
pub struct Sealed {
    /// One record per sealed call, in order of first arrival.
    pub records: Vec<CallRecord>,
    /// The origins of every observation consumed (records and late duplicates alike).
    pub origins: Vec<Origin>,
}

#[derive(Debug, Clone, Copy)]
struct Waiting {
    arrived_ns: u64,
    origin: Origin,
}

/// An id a sealed call leaves behind. Request and response ids are kept as
/// 64-bit keyed hashes (SipHash with this process's random keys): no
/// allocation per id, and a false match, dropping a call as a late duplicate,
/// would take a 2^-64 collision that a client cannot aim for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum SealedKey {
    Request(u64),
    Response(u64),
    /// A sealed observation's own span.
    Span([u8; 16], [u8; 8]),
    /// A sealed observation's parent span (a late wrapper span has this id).
    Parent([u8; 16], [u8; 8]),
}

/// The ids of recently sealed calls, bounded by age and count.
#[derive(Debug, Default)]
struct SealedIds {
    hasher: std::collections::hash_map::RandomState,
    requests: HashMap<u64, u64>,
    responses: HashMap<u64, u64>,
    spans: HashMap<([u8; 16], [u8; 8]), u64>,
    parents: HashMap<([u8; 16], [u8; 8]), u64>,
    order: VecDeque<(u64, SealedKey)>,
}

impl SealedIds {
    fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Whether `o` shares an id with a sealed call.
    fn matches(&self, o: &Observation) -> bool {
        o.request_id
            .as_deref()
            .is_some_and(|r| self.requests.contains_key(&self.id_hash(r)))
            || o.response_id
                .as_deref()
                .is_some_and(|r| self.responses.contains_key(&self.id_hash(r)))
            || o.trace_id.is_some_and(|t| {
                o.span_id.is_some_and(|s| {
                    self.spans.contains_key(&(t, s)) || self.parents.contains_key(&(t, s))
                }) || o
                    .parent_span_id
                    .is_some_and(|p| self.spans.contains_key(&(t, p)))
            })
    }

    fn id_hash(&self, id: &str) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(id)
    }

    fn remember(&mut self, o: &Observation, now_ns: u64) {
        let request = o.request_id.as_deref().map(|r| self.id_hash(r));
        let response = o.response_id.as_deref().map(|r| self.id_hash(r));
        let mut add = |key: SealedKey| {
            let fresh = match &key {
                SealedKey::Request(r) => self.requests.insert(*r, now_ns).is_none(),
                SealedKey::Response(r) => self.responses.insert(*r, now_ns).is_none(),
                SealedKey::Span(t, s) => self.spans.insert((*t, *s), now_ns).is_none(),
                SealedKey::Parent(t, p) => self.parents.insert((*t, *p), now_ns).is_none(),
            };
            if fresh {
                self.order.push_back((now_ns, key));
            }
        };
        if let Some(r) = request {
            add(SealedKey::Request(r));
        }
        if let Some(r) = response {
            add(SealedKey::Response(r));
        }
        if let Some(t) = o.trace_id {
            if let Some(s) = o.span_id {
                add(SealedKey::Span(t, s));
            }
            if let (Some(p), true) = (o.parent_span_id, o.kind().is_call_level()) {
                add(SealedKey::Parent(t, p));
            }
        }
    }

    /// Forgets ids sealed before `horizon`, and the oldest beyond `cap`.
    fn expire(&mut self, horizon: u64, cap: usize) {
        while let Some((at, _)) = self.order.front() {
            if *at > horizon && self.order.len() <= cap {
                break;
            }
            let Some((_, key)) = self.order.pop_front() else {
                break;
            };
            match key {
                SealedKey::Request(r) => self.requests.remove(&r),
                SealedKey::Response(r) => self.responses.remove(&r),
                SealedKey::Span(t, s) => self.spans.remove(&(t, s)),
                SealedKey::Parent(t, p) => self.parents.remove(&(t, p)),
            };
        }
    }
}

/// The window of one tenant.
#[derive(Debug)]
pub struct MergeWindow {
    config: EnrichConfig,
    limits: WindowLimits,
    seq: u64,
    pending: Vec<Observation>,
    waiting: Vec<Waiting>,
    sealed: SealedIds,
    late: Vec<Origin>,
    stats: WindowStats,
}

/// A position to roll a window back to, from [`MergeWindow::mark`].
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    pending: usize,
    late: usize,
    seq: u64,
    stats_late: u64,
}

impl MergeWindow {
    /// An empty window.
    pub fn new(config: EnrichConfig, limits: WindowLimits) -> MergeWindow {
        MergeWindow {
            config,
            limits,
            seq: 0,
            pending: Vec::new(),
            waiting: Vec::new(),
            sealed: SealedIds::default(),
            late: Vec::new(),
            stats: WindowStats::default(),
        }
    }

    /// Observations waiting.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Counters so far.
    pub fn stats(&self) -> &WindowStats {
        &self.stats
    }

    /// The current position, to undo pushes that could not be made durable.
    pub fn mark(&self) -> Mark {
        Mark {
            pending: self.pending.len(),
            late: self.late.len(),
            seq: self.seq,
            stats_late: self.stats.late_duplicates,
        }
    }

    /// Forgets everything pushed since `mark` (extraction counters stay).
    pub fn rollback(&mut self, mark: Mark) {
        self.pending.truncate(mark.pending);
        self.waiting.truncate(mark.pending);
        self.late.truncate(mark.late);
        self.seq = mark.seq;
        self.stats.late_duplicates = mark.stats_late;
    }

    /// Extracts a decoded request (spool entry `entry`) arriving at `now_ns`;
    /// returns how many observations it held (their ordinals are `0..n`).
    pub fn push(&mut self, req: &ExportRequest, entry: u64, now_ns: u64) -> u32 {
        let from = self.pending.len();
        extract::extract(
            req,
            &mut self.seq,
            &mut self.stats.extract,
            &mut self.pending,
        );
        self.admit(from, entry, now_ns)
    }

    /// Decodes and extracts a protobuf traces request (zero-copy when canonical).
    pub fn push_traces_protobuf(
        &mut self,
        bytes: &[u8],
        entry: u64,
        now_ns: u64,
    ) -> Result<u32, claudewatch_otlp::DecodeError> {
        let mut holder = None;
        let batch = claudewatch_otlp::trace_batch_protobuf(bytes, &mut holder)?;
        let from = self.pending.len();
        extract::extract_traces(
            &batch,
            &mut self.seq,
            &mut self.stats.extract,
            &mut self.pending,
        );
        Ok(self.admit(from, entry, now_ns))
    }

    /// Adds the observations of a request extracted elsewhere
    /// ([`extract_request`]), as spool entry `entry` arriving at `now_ns`;
    /// returns how many there were (their ordinals are `0..n`).
    pub fn admit_extracted(&mut self, x: Extracted, entry: u64, now_ns: u64) -> u32 {
        let from = self.pending.len();
        for mut o in x.observations {
            o.seq = self.seq;
            self.seq += 1;
            self.pending.push(o);
        }
        self.admit_capped(from, entry, now_ns)
    }

    /// Drops the observations pushed since `mark` whose ordinal `skip` names
    /// (a replay skipping what was stored before a crash).
    pub fn skip_since(&mut self, mark: Mark, skip: impl Fn(Origin) -> bool) {
        let mut i = mark.pending;
        while i < self.pending.len() {
            if skip(self.waiting[i].origin) {
                self.pending.remove(i);
                self.waiting.remove(i);
            } else {
                i += 1;
            }
        }
    }

    /// Tags new observations with their origin and drops late duplicates;
    /// returns how many there were.
    fn admit(&mut self, from: usize, entry: u64, now_ns: u64) -> u32 {
        self.config
            .attribute_limits
            .apply(&mut self.pending[from..], &mut self.stats.extract);
        self.admit_capped(from, entry, now_ns)
    }

    /// [`Self::admit`] for observations whose attributes are already capped.
    fn admit_capped(&mut self, from: usize, entry: u64, now_ns: u64) -> u32 {
        let mut ordinal = 0u32;
        let mut keep = from;
        for i in from..self.pending.len() {
            let origin = Origin { entry, ordinal };
            ordinal = ordinal.saturating_add(1);
            if self.is_late(&self.pending[i]) {
                self.stats.late_duplicates += 1;
                self.late.push(origin);
                continue;
            }
            self.pending.swap(keep, i);
            self.waiting.push(Waiting {
                arrived_ns: now_ns,
                origin,
            });
            keep += 1;
        }
        self.pending.truncate(keep);
        debug_assert_eq!(self.pending.len(), self.waiting.len());
        ordinal
    }

    /// Arrival time of the oldest observation waiting.
    pub fn oldest_arrival_ns(&self) -> Option<u64> {
        self.waiting.first().map(|w| w.arrived_ns)
    }

    fn is_late(&self, o: &Observation) -> bool {
        !self.sealed.is_empty() && self.sealed.matches(o)
    }

    /// Seals every call whose newest observation is at least `max_age` old at
    /// `now_ns` (all of them when `all`), and the oldest calls while more than
    /// `max_observations` wait.
    pub fn seal(&mut self, now_ns: u64, all: bool) -> Sealed {
        let mut out = Sealed {
            records: Vec::new(),
            origins: std::mem::take(&mut self.late),
        };
        if self.pending.is_empty() {
            return out;
        }
        let grouping = crate::merge::group(&self.pending);
        let overflow = self
            .pending
            .len()
            .saturating_sub(self.limits.max_observations);
        // Pending is in arrival order: everything that arrived no later than
        // the `overflow`-th observation must go to bring the window under its cap.
        let early_cutoff = (overflow > 0).then(|| self.waiting[overflow - 1].arrived_ns);
        let age_cutoff = now_ns.saturating_sub(self.limits.max_age_ns);
        let mut sealed_groups: Vec<&[usize]> = Vec::new();
        for g in grouping.iter() {
            let newest = g
                .iter()
                .map(|&i| self.waiting[i].arrived_ns)
                .max()
                .unwrap_or(0);
            let oldest = g
                .iter()
                .map(|&i| self.waiting[i].arrived_ns)
                .min()
                .unwrap_or(0);
            let aged = now_ns >= self.limits.max_age_ns && newest <= age_cutoff;
            let early = early_cutoff.is_some_and(|c| oldest <= c);
            if all || aged || early {
                if early && !aged && !all {
                    self.stats.sealed_early += 1;
                }
                sealed_groups.push(g);
            }
        }
        if sealed_groups.is_empty() {
            return out;
        }
        let mut consumed = vec![false; self.pending.len()];
        for g in &sealed_groups {
            for &i in g.iter() {
                consumed[i] = true;
                out.origins.push(self.waiting[i].origin);
                self.sealed.remember(&self.pending[i], now_ns);
            }
        }
        out.records = records_of_groups(&mut self.pending, &sealed_groups, &self.config);
        self.stats.calls += out.records.len() as u64;
        let observations: usize = sealed_groups.iter().map(|g| g.len()).sum();
        self.stats.merged += (observations - out.records.len()) as u64;
        let mut i = 0;
        self.pending.retain(|_| {
            i += 1;
            !consumed[i - 1]
        });
        let mut i = 0;
        self.waiting.retain(|_| {
            i += 1;
            !consumed[i - 1]
        });
        self.expire_keys(now_ns);
        out
    }

    /// Forgets sealed ids older than ten window ages, and the oldest beyond
    /// four keys per observation the window may hold.
    fn expire_keys(&mut self, now_ns: u64) {
        let horizon = now_ns.saturating_sub(self.limits.max_age_ns.saturating_mul(10));
        let cap = self.limits.max_observations.saturating_mul(4).max(1024);
        self.sealed.expire(horizon, cap);
    }
}
