//! The merge window of a stream: observations of one call that arrive in
//! different requests (an SDK span and its wrapper exported in separate
//! batches, a span and a log, a client's resend) still become one record.
//!
//! Observations wait until no observation of their call has arrived for
//! `max_age`; then the call is sealed into a record. When more than
//! `max_observations` wait, the oldest calls are sealed early (down to half
//! the cap), so memory stays bounded. Each sealed call leaves its ids behind
//! for `max_age × 10`, and at most `max_sealed_ids` of them (the oldest are
//! forgotten first): an observation arriving later that shares an id with a
//! sealed call still held, and no other request id than that call's, is a
//! late duplicate, counted and dropped instead of becoming a second record;
//! its own ids join the sealed call's, so what links only to it (a child
//! span of a late wrapper, even one exported ahead of it) is late too.
//! One arriving after its call's ids were forgotten (at a high rate, a piece
//! whose request was refused and retried seconds later) becomes a record of
//! its own.
//!
//! Every observation carries its [`Origin`] (the spool entry it came from and
//! its ordinal there), so a crash-recovery replay can skip exactly the
//! observations already stored. Time is passed in, never read: the window is
//! pure and deterministic.

use std::collections::VecDeque;
use std::num::NonZeroU64;

use hashbrown::hash_table::Entry;
use hashbrown::HashTable;
use smallvec::SmallVec;

use claudewatch_otlp::{decode, DecodeError, Encoding, ExportRequest, Signal};

use crate::links::{IdKeys, IdKind, Links};
use crate::merge::Grouper;
use crate::{
    extract, records_of_groups_into, AttributeLimits, CallRecord, EnrichConfig, ExtractStats,
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
    /// Ids of sealed calls kept at most, for recognising late duplicates
    /// (about 30 bytes each; the oldest are forgotten first). At a given rate
    /// of ids, this is how far back a late piece is still recognised.
    pub max_sealed_ids: usize,
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

/// The ids of recently sealed calls, bounded by age and count.
///
/// Every id is kept as its 64-bit key (see [`crate::links`]) with its call's
/// request fingerprint, 10 bytes in the table: about 30 bytes per id with
/// the expiry order, instead of the ids themselves. A false match (dropping a
/// call as a late duplicate) would take a 2^-64 collision that a client
/// cannot aim for.
#[derive(Debug, Default)]
struct SealedIds {
    /// The keyed hash of this window's ids (its observations' links too).
    ids: IdKeys,
    /// Each held key, found by the key itself (already a keyed hash).
    held: HashTable<HeldId>,
    /// Keys in the order they were added, oldest first.
    order: VecDeque<NonZeroU64>,
    /// Per seal that added keys, oldest first: when, and how many keys.
    seals: VecDeque<(u64, usize)>,
}

/// One id of a sealed call, packed in 10 bytes (alignment 1, no padding):
/// its key, and a fingerprint of its call's request id ([`NO_REQUEST`] when
/// it had none).
#[derive(Debug, Clone, Copy)]
struct HeldId {
    key: [u8; 8],
    request: [u8; 2],
}

const _: () = assert!(std::mem::size_of::<HeldId>() == 10);

/// The request fingerprint of a call without a request id.
const NO_REQUEST: u16 = 0;

impl HeldId {
    fn new(key: u64, request: u16) -> Self {
        Self {
            key: key.to_le_bytes(),
            request: request.to_le_bytes(),
        }
    }

    fn key(&self) -> u64 {
        u64::from_le_bytes(self.key)
    }

    fn request(&self) -> u16 {
        u16::from_le_bytes(self.request)
    }
}

/// A request id's key reduced to 16 bits, never [`NO_REQUEST`]. Two different
/// requests share one with probability 2^-16; that only makes a late piece
/// of another call that also shares an id with it pass for a duplicate
/// again, as before requests were compared.
fn request_fingerprint(request: Option<NonZeroU64>) -> u16 {
    request.map_or(NO_REQUEST, |k| ((k.get() >> 48) as u16).max(1))
}

impl SealedIds {
    fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The request fingerprint of the sealed call holding `key`, if any does.
    fn held(&self, key: NonZeroU64) -> Option<u16> {
        let key = key.get();
        self.held.find(key, |h| h.key() == key).map(HeldId::request)
    }

    /// Whether `o` (whose links are `l`) is a late piece of a sealed call
    /// (then `Some`): it shares an id with one (its request, response or span
    /// id; its parent is a sealed span, a late HTTP attempt; or its span is a
    /// sealed call-level span's parent, a late wrapper), and their request ids do
    /// not differ. Two request ids are two calls, as in grouping: when a
    /// compatible but wrong pairing sealed a piece of this call with another
    /// call's request, the rest of this call is still a record of its own.
    ///
    /// The value is the request fingerprint the call has from then on: the
    /// sealed call's, or the piece's own when the sealed call had none.
    fn late_call(&self, o: &Observation, l: &Links) -> Option<u16> {
        let request = request_fingerprint(l.request);
        let joins = |key: Option<NonZeroU64>| {
            key.and_then(|k| self.held(k))
                .filter(|&sealed| {
                    sealed == NO_REQUEST || request == NO_REQUEST || sealed == request
                })
                .map(|sealed| {
                    if sealed == NO_REQUEST {
                        request
                    } else {
                        sealed
                    }
                })
        };
        joins(l.request)
            .or_else(|| joins(l.response))
            .or_else(|| joins(l.span))
            .or_else(|| joins(l.parent))
            .or_else(|| {
                joins(
                    o.trace_id
                        .zip(o.span_id)
                        .map(|(t, s)| self.ids.span(IdKind::Parent, &t, &s)),
                )
            })
    }

    /// Holds the ids of `o` (links `l`), an observation of a call sealed at
    /// `now_ns` (or a late piece of one) whose request fingerprint is
    /// `request`.
    fn remember(&mut self, o: &Observation, l: &Links, request: u16, now_ns: u64) {
        let mut new_keys: SmallVec<[NonZeroU64; 4]> = SmallVec::new();
        new_keys.extend([l.request, l.response, l.span].into_iter().flatten());
        if let (Some(t), Some(p), true) = (o.trace_id, o.parent_span_id, l.kind.is_call_level()) {
            new_keys.push(self.ids.span(IdKind::Parent, &t, &p));
        }
        let mut added = 0;
        for key in new_keys {
            let k = key.get();
            // One probe: a key already held keeps its first call's request.
            if let Entry::Vacant(slot) = self.held.entry(k, |h| h.key() == k, HeldId::key) {
                slot.insert(HeldId::new(k, request));
                self.order.push_back(key);
                added += 1;
            }
        }
        if added == 0 {
            return;
        }
        match self.seals.back_mut() {
            Some((at, n)) if *at == now_ns => *n += added,
            _ => self.seals.push_back((now_ns, added)),
        }
    }

    /// Forgets ids sealed before `horizon`, and the oldest beyond `cap`.
    fn expire(&mut self, horizon: u64, cap: usize) {
        while let Some(&(at, n)) = self.seals.front() {
            let excess = self.order.len().saturating_sub(cap);
            let drop = if at <= horizon { n } else { excess.min(n) };
            if drop == 0 {
                break;
            }
            for key in self.order.drain(..drop) {
                let k = key.get();
                if let Ok(entry) = self.held.find_entry(k, |h| h.key() == k) {
                    entry.remove();
                }
            }
            if drop == n {
                self.seals.pop_front();
            } else if let Some(front) = self.seals.front_mut() {
                front.1 -= drop;
            }
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
    /// Per pending observation: when it arrived and where from.
    waiting: Vec<Waiting>,
    /// Per pending observation: its links (grouping reads only these).
    links: Vec<Links>,
    /// Groups the window at each seal, its working memory kept between seals.
    grouper: Grouper,
    sealed: SealedIds,
    late: Vec<Origin>,
    stats: WindowStats,
    /// When the calls the last seal left become due, as long as nothing was
    /// admitted since (their grouping cannot have changed, so this is exact).
    settled_due_ns: Option<u64>,
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
            links: Vec::new(),
            grouper: Grouper::default(),
            sealed: SealedIds::default(),
            late: Vec::new(),
            stats: WindowStats::default(),
            settled_due_ns: None,
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

    /// Ids of sealed calls held for recognising late duplicates.
    pub fn sealed_ids(&self) -> usize {
        self.sealed.order.len()
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
        self.settled_due_ns = None;
        self.pending.truncate(mark.pending);
        self.waiting.truncate(mark.pending);
        self.links.truncate(mark.pending);
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

    /// Adds the observations of a request extracted elsewhere
    /// ([`extract_request`]), as spool entry `entry` arriving at `now_ns`;
    /// returns how many there were (their ordinals are `0..n`).
    pub fn admit_extracted(&mut self, x: Extracted, entry: u64, now_ns: u64) -> u32 {
        let from = self.pending.len();
        let mut observations = x.observations;
        for o in &mut observations {
            o.seq = self.seq;
            self.seq += 1;
        }
        self.pending.append(&mut observations);
        self.admit_capped(from, entry, now_ns)
    }

    /// Drops the observations pushed since `mark` whose ordinal `skip` names
    /// (a replay skipping what was stored before a crash).
    pub fn skip_since(&mut self, mark: Mark, skip: impl Fn(Origin) -> bool) {
        self.settled_due_ns = None;
        let mut i = mark.pending;
        while i < self.pending.len() {
            if skip(self.waiting[i].origin) {
                self.pending.remove(i);
                self.waiting.remove(i);
                self.links.remove(i);
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
        let mut any_late = false;
        for i in from..self.pending.len() {
            let origin = Origin { entry, ordinal };
            ordinal = ordinal.saturating_add(1);
            let links = self.sealed.ids.links(&self.pending[i]);
            if self.drop_if_late(i, &links, origin, now_ns) {
                any_late = true;
                continue;
            }
            if keep != i {
                self.pending.swap(keep, i);
            }
            self.waiting.push(Waiting {
                arrived_ns: now_ns,
                origin,
            });
            self.links.push(links);
            keep += 1;
        }
        self.pending.truncate(keep);
        if any_late {
            self.drop_late_since(from, now_ns);
        }
        if self.pending.len() > from {
            self.settled_due_ns = None;
        }
        debug_assert_eq!(self.pending.len(), self.waiting.len());
        debug_assert_eq!(self.pending.len(), self.links.len());
        ordinal
    }

    /// Whether the observation at `i` (links `l`) is a late piece of a sealed
    /// call; if so it is counted and its origin consumed, and its own ids are
    /// held with that call's, so that what links to the late piece alone (an
    /// HTTP attempt under a late wrapper, whose call was sealed from a log)
    /// is recognised too, instead of becoming a record of its own.
    fn drop_if_late(&mut self, i: usize, l: &Links, origin: Origin, now_ns: u64) -> bool {
        if self.sealed.is_empty() {
            return false;
        }
        let Some(request) = self.sealed.late_call(&self.pending[i], l) else {
            return false;
        };
        self.sealed.remember(&self.pending[i], l, request, now_ns);
        self.stats.late_duplicates += 1;
        self.late.push(origin);
        true
    }

    /// After late pieces were found among the observations admitted from
    /// `from` on: drops those admitted before a late piece they link to (a
    /// child exported ahead of its parent), until none is left. Observations
    /// of earlier requests still waiting are not checked again (that would
    /// scan the window per late piece): a child exported in an earlier
    /// request than its late parent stays a record of its own.
    fn drop_late_since(&mut self, from: usize, now_ns: u64) {
        loop {
            let mut dropped = false;
            let mut i = from;
            while i < self.pending.len() {
                let links = self.links[i];
                let origin = self.waiting[i].origin;
                if self.drop_if_late(i, &links, origin, now_ns) {
                    self.pending.remove(i);
                    self.waiting.remove(i);
                    self.links.remove(i);
                    dropped = true;
                } else {
                    i += 1;
                }
            }
            if !dropped {
                return;
            }
        }
    }

    /// Arrival time of the oldest observation waiting.
    pub fn oldest_arrival_ns(&self) -> Option<u64> {
        self.waiting.first().map(|w| w.arrived_ns)
    }

    /// When the next call becomes due, known exactly when nothing was
    /// admitted since the last seal (`None` otherwise, or when nothing waits):
    /// a quiet window can be sealed right then without grouping it in vain.
    pub fn settled_due_ns(&self) -> Option<u64> {
        self.settled_due_ns
    }

    /// Seals every call whose newest observation is at least `max_age` old at
    /// `now_ns` (all of them when `all`), and, when more than
    /// `max_observations` wait, the oldest calls until at most half that many do.
    pub fn seal(&mut self, now_ns: u64, all: bool) -> Sealed {
        let mut out = Sealed::default();
        self.seal_into(now_ns, all, &mut out);
        out
    }

    /// [`Self::seal`], appending to `out`: a caller that hands back the
    /// vectors of its last seal (cleared) spares the allocator a fresh
    /// megabytes-large record vector, and the kernel its page faults, per seal.
    pub fn seal_into(&mut self, now_ns: u64, all: bool, out: &mut Sealed) {
        out.origins.append(&mut self.late);
        self.settled_due_ns = None;
        if self.pending.is_empty() {
            return;
        }
        let grouping = self.grouper.group(&self.pending, &self.links);
        // A full window is brought down to half its cap, so that under a
        // sustained rate the early seals (each a grouping of the whole
        // window) come once per half a window, not once per request.
        let overflow = if self.pending.len() > self.limits.max_observations {
            self.pending.len() - self.limits.max_observations / 2
        } else {
            0
        };
        // Pending is in arrival order: everything that arrived no later than
        // the `overflow`-th observation must go to bring the window under its cap.
        let early_cutoff = (overflow > 0).then(|| self.waiting[overflow - 1].arrived_ns);
        let age_cutoff = now_ns.saturating_sub(self.limits.max_age_ns);
        let mut sealed_groups: Vec<&[usize]> = Vec::new();
        let mut next_due_ns: Option<u64> = None;
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
            } else {
                let due = newest.saturating_add(self.limits.max_age_ns);
                next_due_ns = Some(next_due_ns.map_or(due, |d| d.min(due)));
            }
        }
        self.settled_due_ns = next_due_ns;
        if sealed_groups.is_empty() {
            return;
        }
        let mut consumed = vec![false; self.pending.len()];
        for g in &sealed_groups {
            // Grouping never joins two request ids: the call has one at most.
            let call_request = request_fingerprint(g.iter().find_map(|&i| self.links[i].request));
            for &i in g.iter() {
                consumed[i] = true;
                out.origins.push(self.waiting[i].origin);
                self.sealed
                    .remember(&self.pending[i], &self.links[i], call_request, now_ns);
            }
        }
        let before = out.records.len();
        records_of_groups_into(
            &mut self.pending,
            &sealed_groups,
            &self.config,
            &mut out.records,
        );
        let calls = out.records.len() - before;
        self.stats.calls += calls as u64;
        let observations: usize = sealed_groups.iter().map(|g| g.len()).sum();
        self.stats.merged += (observations - calls) as u64;
        keep_unconsumed(&mut self.pending, &consumed);
        keep_unconsumed(&mut self.waiting, &consumed);
        keep_unconsumed(&mut self.links, &consumed);
        self.expire_keys(now_ns);
    }

    /// Forgets sealed ids older than ten window ages, and the oldest beyond
    /// `max_sealed_ids`.
    fn expire_keys(&mut self, now_ns: u64) {
        let horizon = now_ns.saturating_sub(self.limits.max_age_ns.saturating_mul(10));
        self.sealed.expire(horizon, self.limits.max_sealed_ids);
    }
}

/// Drops the items of one of the window's parallel vectors whose index
/// `consumed` marks, keeping the order of the rest.
fn keep_unconsumed<T>(items: &mut Vec<T>, consumed: &[bool]) {
    let mut i = 0;
    items.retain(|_| {
        i += 1;
        !consumed[i - 1]
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observation::EvidenceKind;

    fn call(n: u8) -> Observation {
        Observation {
            kind: Some(EvidenceKind::SdkSpan),
            request_id: Some(format!("req_{n}").into()),
            response_id: Some(format!("msg_{n}").into()),
            trace_id: Some([n; 16]),
            span_id: Some([n; 8]),
            parent_span_id: Some([n.wrapping_add(100); 8]),
            ..Observation::default()
        }
    }

    impl SealedIds {
        fn matches_call(&self, o: &Observation) -> bool {
            self.late_call(o, &self.ids.links(o)).is_some()
        }
        fn remember_call(&mut self, o: &Observation, now_ns: u64) {
            let links = self.ids.links(o);
            self.remember(o, &links, request_fingerprint(links.request), now_ns);
        }
    }

    #[test]
    fn sealed_ids_match_each_id_of_the_right_kind_only() {
        let mut ids = SealedIds::default();
        ids.remember_call(&call(1), 10);
        assert!(ids.matches_call(&call(1)));
        let by = |f: &dyn Fn(&mut Observation)| {
            let mut o = Observation {
                kind: Some(EvidenceKind::InstrumentationSpan),
                ..Observation::default()
            };
            f(&mut o);
            ids.matches_call(&o)
        };
        assert!(by(&|o| o.request_id = Some("req_1".into())));
        assert!(by(&|o| o.response_id = Some("msg_1".into())));
        // A request id is not a response id.
        assert!(!by(&|o| o.response_id = Some("req_1".into())));
        // The late wrapper span: its own span is the sealed span's parent.
        assert!(by(&|o| {
            o.trace_id = Some([1; 16]);
            o.span_id = Some([101; 8]);
        }));
        // A late child (an HTTP attempt) under the sealed span.
        assert!(by(&|o| {
            o.trace_id = Some([1; 16]);
            o.span_id = Some([7; 8]);
            o.parent_span_id = Some([1; 8]);
        }));
        // A sibling under the same parent is another call.
        assert!(!by(&|o| {
            o.trace_id = Some([1; 16]);
            o.span_id = Some([7; 8]);
            o.parent_span_id = Some([101; 8]);
        }));
        assert!(!ids.matches_call(&call(2)));
    }

    #[test]
    fn a_late_piece_with_another_request_id_is_a_call_of_its_own() {
        let mut ids = SealedIds::default();
        ids.remember_call(&call(1), 10);
        let piece = |request: Option<&str>| Observation {
            kind: Some(EvidenceKind::SdkSpan),
            request_id: request.map(Into::into),
            response_id: Some("msg_1".into()),
            ..Observation::default()
        };
        assert!(ids.matches_call(&piece(Some("req_1"))));
        assert!(ids.matches_call(&piece(None)), "no request id: no conflict");
        assert!(!ids.matches_call(&piece(Some("req_2"))));
    }

    /// An observation of `kind` in trace `trace` (span `span`), of one
    /// service and model, from `start` to `end`, answered with `status`.
    fn span(kind: EvidenceKind, trace: u8, span: u8, (start, end): (u64, u64)) -> Observation {
        Observation {
            kind: Some(kind),
            convention: Some(crate::observation::Convention::OpenLlmetry),
            trace_id: Some([trace; 16]),
            span_id: Some([span; 8]),
            service: Some("svc".into()),
            request_model: Some("claude-sonnet-4-5".into()),
            start_unix_nano: start,
            end_unix_nano: end,
            http_status: Some(529),
            ..Observation::default()
        }
    }

    fn admit(w: &mut MergeWindow, observations: Vec<Observation>, entry: u64, now_ns: u64) {
        let x = Extracted {
            observations,
            stats: ExtractStats::default(),
        };
        w.admit_extracted(x, entry, now_ns);
    }

    /// A window whose calls are due 1,000 ns after their last piece.
    fn window_of_age_1000() -> MergeWindow {
        let limits = WindowLimits {
            max_age_ns: 1_000,
            max_observations: 1_000,
            max_sealed_ids: 1_000,
        };
        MergeWindow::new(EnrichConfig::default(), limits)
    }

    #[test]
    fn what_links_only_to_a_late_piece_is_late_too() {
        // OpenLIT exports a call's log (response id, no span) a second before
        // its spans; when the gap exceeds the window, the call is sealed from
        // the log. Its wrapper span then comes with its HTTP attempt span,
        // the child exported first: the wrapper is late by its response id,
        // and the child, linked to the wrapper alone, is late with it, in
        // that request and in a later one, never a second record.
        let mut w = window_of_age_1000();
        let t0 = 1_000_000_000_000;
        let mut log = span(EvidenceKind::InstrumentationLog, 1, 0, (t0, t0));
        log.span_id = None;
        log.response_id = Some("msg_1".into());
        log.http_status = None;
        admit(&mut w, vec![log], 0, 0);
        assert_eq!(w.seal(1_000, false).records.len(), 1, "sealed from the log");

        let http_attempt = |span_id: u8| {
            let mut attempt = span(
                EvidenceKind::HttpSpan,
                1,
                span_id,
                (t0 - 40_000_000, t0 - 1_000_000),
            );
            attempt.parent_span_id = Some([7; 8]);
            attempt.http_status = Some(200);
            attempt
        };
        let mut wrapper = span(
            EvidenceKind::InstrumentationSpan,
            1,
            7,
            (t0 - 50_000_000, t0),
        );
        wrapper.response_id = Some("msg_1".into());
        wrapper.http_status = Some(200);
        admit(&mut w, vec![http_attempt(8), wrapper, call(9)], 1, 2_000);
        assert_eq!(w.stats().late_duplicates, 2, "the wrapper and its child");
        assert_eq!(w.len(), 1, "only the unrelated call waits");

        admit(&mut w, vec![http_attempt(9)], 2, 2_500);
        assert_eq!(w.stats().late_duplicates, 3, "a later child of the wrapper");
        let sealed = w.seal(10_000, true);
        assert_eq!(sealed.records.len(), 1);
        assert_eq!(sealed.records[0].request_id.as_deref(), Some("req_9"));
        assert_eq!(sealed.origins.len(), 4, "every origin consumed once");
    }

    #[test]
    fn a_wrong_twin_pairing_does_not_swallow_the_rest_of_the_call() {
        // Two calls overloaded (529) at the same time, same service and model,
        // each an SDK span and an unlinked wrapper. A's wrapper and B's SDK
        // span arrive first and, as unlinked twins, pass for one call. A's SDK
        // span (a child of A's wrapper) comes after that call was sealed: it
        // has another request id, so it is A's record, not a late duplicate.
        let mut w = window_of_age_1000();
        let t0 = 1_000_000_000_000;
        let wrapper_a = span(
            EvidenceKind::InstrumentationSpan,
            1,
            1,
            (t0, t0 + 50_000_000),
        );
        let mut sdk_b = span(
            EvidenceKind::SdkSpan,
            2,
            2,
            (t0 + 1_000_000, t0 + 40_000_000),
        );
        sdk_b.request_id = Some("req_b".into());
        admit(&mut w, vec![wrapper_a, sdk_b.clone()], 0, 0);
        assert_eq!(w.seal(1_000, false).records.len(), 1, "paired as twins");

        let mut sdk_a = span(
            EvidenceKind::SdkSpan,
            1,
            3,
            (t0 + 2_000_000, t0 + 45_000_000),
        );
        sdk_a.parent_span_id = Some([1; 8]);
        sdk_a.request_id = Some("req_a".into());
        let mut resent_b = sdk_b;
        resent_b.service = Some("another".into());
        admit(&mut w, vec![sdk_a.clone(), resent_b], 1, 2_000);
        assert_eq!(w.stats().late_duplicates, 1, "B's resend is late");
        let sealed = w.seal(3_000, false);
        assert_eq!(sealed.records.len(), 1);
        assert_eq!(sealed.records[0].request_id.as_deref(), Some("req_a"));

        // A piece without a request id under A's wrapper still joins the
        // call that wrapper was sealed with.
        let mut attempt = span(
            EvidenceKind::HttpSpan,
            1,
            4,
            (t0 + 2_000_000, t0 + 44_000_000),
        );
        attempt.parent_span_id = Some([1; 8]);
        admit(&mut w, vec![attempt], 2, 4_000);
        assert_eq!(w.stats().late_duplicates, 2);
    }

    #[test]
    fn sealed_ids_expire_by_age_then_by_count_oldest_first() {
        let mut ids = SealedIds::default();
        for n in 0..10 {
            ids.remember_call(&call(n), u64::from(n / 2)); // seals at 0, 1, 2, 3, 4
        }
        assert_eq!(ids.order.len(), 40);
        ids.expire(0, usize::MAX); // the seal at 0: calls 0 and 1
        assert!(!ids.matches_call(&call(1)) && ids.matches_call(&call(2)));
        assert_eq!(ids.order.len(), 32);
        ids.expire(0, 30); // two keys over: the oldest two of call 2
        assert_eq!((ids.order.len(), ids.held.len()), (30, 30));
        assert!(ids.matches_call(&call(2)), "call 2's span keys remain");
        ids.expire(0, 0);
        assert!(ids.is_empty() && ids.held.is_empty() && ids.seals.is_empty());
        assert!(!ids.matches_call(&call(9)));
    }
}
