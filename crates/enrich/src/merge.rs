//! One record per call: groups the observations that describe the same call
//! and picks each field from the most trustworthy of them.
//!
//! Grouping rules, in order (each a union of groups, refused when the two
//! groups carry different request ids or different response ids):
//! 1. same request id; 2. same response id;
//! 3. an HTTP attempt span under its call's span; a call-level span under a
//!    call-level parent that has no other call-level child (an instrumentation
//!    wrapping the SDK span);
//! 4. HTTP attempt spans that are siblings under a parent we never saw, chained
//!    while the previous attempt failed retryably (the SDK's retries);
//! 5. unlinked twins: an SDK span and an instrumentation span of the same
//!    service and model, in different traces, the SDK span inside the
//!    instrumentation span's time range, and not contradicting each other
//!    (an error answer on one side, a message on the other).

use std::num::NonZeroU64;

use rustc_hash::FxHashMap as HashMap;

use claudewatch_model::{Attributes, CallRecord, Provider, ATTRIBUTES_MAX_COUNT};
use smallvec::SmallVec;

use crate::links::{IdKeys, Links};
use crate::observation::{EvidenceKind, Observation, Ttft};

/// Slack allowed when testing that one span lies within another (clock
/// granularity and export timing).
const TWIN_SLACK_NS: u64 = 10_000_000;

/// Longest an instrumentation span may start before the SDK span it wraps
/// (the instrumentation's own work before calling the SDK).
const MAX_TWIN_LEAD_NS: u64 = 1_000_000_000;

/// Instrumentation spans examined per SDK span when looking for its twin:
/// bounds the work on hostile or pathological input.
const MAX_TWIN_CANDIDATES: usize = 64;

/// Longest wait between a failed HTTP attempt and its retry (the SDKs back off
/// for seconds; Claude Code honours retry-after up to about a minute).
const MAX_RETRY_GAP_NS: u64 = 120_000_000_000;

/// Union-find over observation indices, with per root the ids (as keys) that
/// must not conflict.
#[derive(Debug, Default)]
struct Groups {
    parent: Vec<usize>,
    request_id: Vec<Option<NonZeroU64>>,
    response_id: Vec<Option<NonZeroU64>>,
}

impl Groups {
    /// Every observation of `links` in a group of its own.
    fn reset(&mut self, links: &[Links]) {
        self.parent.clear();
        self.parent.extend(0..links.len());
        self.request_id.clear();
        self.request_id.extend(links.iter().map(|l| l.request));
        self.response_id.clear();
        self.response_id.extend(links.iter().map(|l| l.response));
    }

    fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            self.parent[x] = self.parent[self.parent[x]];
            x = self.parent[x];
        }
        x
    }

    fn union(&mut self, a: usize, b: usize) -> bool {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return true;
        }
        let conflict = |x: Option<NonZeroU64>, y: Option<NonZeroU64>| matches!((x, y), (Some(x), Some(y)) if x != y);
        if conflict(self.request_id[ra], self.request_id[rb])
            || conflict(self.response_id[ra], self.response_id[rb])
        {
            return false;
        }
        self.parent[rb] = ra;
        self.request_id[ra] = self.request_id[ra].or(self.request_id[rb]);
        self.response_id[ra] = self.response_id[ra].or(self.response_id[rb]);
        true
    }
}

/// Partitions observations into calls (indices into `obs`).
pub fn group(obs: &[Observation]) -> Grouping {
    let keys = IdKeys::default();
    let links: Vec<Links> = obs.iter().map(|o| keys.links(o)).collect();
    let mut grouper = Grouper::default();
    grouper.group(obs, &links);
    std::mem::take(&mut grouper.grouping)
}

/// Groups observations into calls, keeping its working memory (maps and
/// vectors the size of the input) from one call to the next: a stream's
/// window is grouped at every seal, and allocating that memory afresh cost
/// page faults and rehashing each time.
#[derive(Debug, Default)]
pub struct Grouper {
    groups: Groups,
    by_request: HashMap<NonZeroU64, usize>,
    by_response: HashMap<NonZeroU64, usize>,
    by_span: HashMap<NonZeroU64, usize>,
    call_children: HashMap<usize, u32>,
    /// Per root: its first SDK span and its first instrumentation span.
    twin_firsts: Vec<(usize, usize)>,
    /// Per observation: its group's root; then per root: its call's number.
    roots: Vec<usize>,
    number: Vec<usize>,
    next: Vec<usize>,
    grouping: Grouping,
}

impl Grouper {
    /// [`group`], given each observation's [`Links`] (`links[i]` of `obs[i]`,
    /// all from one [`IdKeys`]). The id rules read only `links`; the rarer
    /// retry and twin rules read the observations too.
    pub fn group(&mut self, obs: &[Observation], links: &[Links]) -> &Grouping {
        debug_assert_eq!(obs.len(), links.len());
        let g = &mut self.groups;
        g.reset(links);

        // 1 and 2: shared ids.
        let (by_request, by_response) = (&mut self.by_request, &mut self.by_response);
        by_request.clear();
        by_response.clear();
        for (i, l) in links.iter().enumerate() {
            union_by_key(by_request, l.request, i, g);
            union_by_key(by_response, l.response, i, g);
        }

        // 3: parent links within a trace.
        let by_span = &mut self.by_span;
        by_span.clear();
        for (i, l) in links.iter().enumerate() {
            if let Some(s) = l.span {
                by_span.entry(s).or_insert(i);
            }
        }
        let call_children = &mut self.call_children;
        call_children.clear();
        for l in links {
            if let (Some(p), true) = (l.parent, l.kind.is_call_level()) {
                if let Some(&j) = by_span.get(&p) {
                    if links[j].kind.is_call_level() {
                        *call_children.entry(j).or_default() += 1;
                    }
                }
            }
        }
        // Attempts under a parent never seen, per parent in order of first sight.
        let mut orphan_parents: HashMap<NonZeroU64, usize> = HashMap::default();
        let mut orphan_attempts: Vec<Vec<usize>> = Vec::new();
        for (i, l) in links.iter().enumerate() {
            let Some(p) = l.parent else {
                continue;
            };
            match by_span.get(&p) {
                Some(&j) if l.kind == EvidenceKind::HttpSpan => {
                    g.union(j, i);
                }
                Some(&j) if links[j].kind.is_call_level() && call_children.get(&j) == Some(&1) => {
                    g.union(j, i);
                }
                None if l.kind == EvidenceKind::HttpSpan => {
                    let next = orphan_attempts.len();
                    let k = *orphan_parents.entry(p).or_insert(next);
                    if k == next {
                        orphan_attempts.push(Vec::new());
                    }
                    orphan_attempts[k].push(i);
                }
                _ => {}
            }
        }

        // 4: retry chains of HTTP attempts whose parent was never exported.
        for attempts in &mut orphan_attempts {
            attempts.sort_by_key(|&i| (obs[i].start_unix_nano, obs[i].seq));
            for w in attempts.windows(2) {
                let (prev, next) = (&obs[w[0]], &obs[w[1]]);
                // A retry starts after the failed attempt ended, within the SDKs'
                // backoff horizon, and goes to the same model (when the URL names one).
                let in_sequence = next.start_unix_nano >= prev.end_unix_nano
                    && next.start_unix_nano - prev.end_unix_nano <= MAX_RETRY_GAP_NS
                    && prev.request_model == next.request_model;
                if in_sequence && prev.http_status.is_some_and(is_retried_status) {
                    g.union(w[0], w[1]);
                }
            }
        }

        // 5: unlinked twins.
        join_twins(obs, links, g, &mut self.twin_firsts);

        self.place();
        &self.grouping
    }

    /// Each call's members as one contiguous run, calls in order of their
    /// first member, members in arrival order: a counting placement, no sort.
    fn place(&mut self) {
        let n = self.groups.parent.len();
        let g = &mut self.groups;
        self.roots.clear();
        self.roots.extend((0..n).map(|i| g.find(i)));
        self.number.clear();
        self.number.resize(n, usize::MAX);
        // `next` counts each call's members first, then is its next free slot.
        self.next.clear();
        for &r in &self.roots {
            if self.number[r] == usize::MAX {
                self.number[r] = self.next.len();
                self.next.push(0);
            }
            self.next[self.number[r]] += 1;
        }
        let Grouping { order, ranges } = &mut self.grouping;
        ranges.clear();
        let mut at = 0;
        for slot in &mut self.next {
            let size = *slot;
            ranges.push(at..at + size);
            *slot = at;
            at += size;
        }
        order.clear();
        order.resize(n, 0);
        for (i, &r) in self.roots.iter().enumerate() {
            let slot = &mut self.next[self.number[r]];
            order[*slot] = i;
            *slot += 1;
        }
    }
}

/// Observations partitioned into calls, in order of each call's first arrival.
#[derive(Debug, Clone, Default)]
pub struct Grouping {
    order: Vec<usize>,
    ranges: Vec<std::ops::Range<usize>>,
}

impl Grouping {
    /// Each call's observation indices.
    pub fn iter(&self) -> impl Iterator<Item = &[usize]> {
        self.ranges.iter().map(|r| &self.order[r.clone()])
    }

    /// Number of calls.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// True when there are no calls.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

/// Unions observation `i` with the first one seen with the same `key`.
fn union_by_key(
    seen: &mut HashMap<NonZeroU64, usize>,
    key: Option<NonZeroU64>,
    i: usize,
    g: &mut Groups,
) {
    let Some(key) = key else { return };
    match seen.entry(key) {
        std::collections::hash_map::Entry::Occupied(first) => {
            g.union(*first.get(), i);
        }
        std::collections::hash_map::Entry::Vacant(slot) => {
            slot.insert(i);
        }
    }
}

/// Statuses the Anthropic SDKs retry.
fn is_retried_status(s: u16) -> bool {
    matches!(s, 408 | 409 | 429) || s >= 500
}

fn join_twins(
    obs: &[Observation],
    links: &[Links],
    g: &mut Groups,
    firsts: &mut Vec<(usize, usize)>,
) {
    // Per group (indexed by its root): its first SDK span and its first
    // instrumentation span.
    const NONE: usize = usize::MAX;
    firsts.clear();
    firsts.resize(obs.len(), (NONE, NONE));
    for (i, l) in links.iter().enumerate() {
        let slot = match l.kind {
            EvidenceKind::SdkSpan => 0,
            EvidenceKind::InstrumentationSpan => 1,
            _ => continue,
        };
        let f = &mut firsts[g.find(i)];
        let first = if slot == 0 { &mut f.0 } else { &mut f.1 };
        if *first == NONE {
            *first = i;
        }
    }
    let mut sdk_only: Vec<usize> = Vec::new();
    let mut instr_only: Vec<usize> = Vec::new();
    for &(sdk, instr) in firsts.iter() {
        match (sdk, instr) {
            (i, NONE) if i != NONE => sdk_only.push(i),
            (NONE, i) if i != NONE => instr_only.push(i),
            _ => {}
        }
    }
    if sdk_only.is_empty() || instr_only.is_empty() {
        return;
    }
    // Model families, normalised once per distinct model string.
    let mut families: HashMap<&str, Option<String>> = HashMap::default();
    for &i in sdk_only.iter().chain(&instr_only) {
        if let Some(m) = obs[i].request_model.as_deref() {
            families
                .entry(m)
                .or_insert_with(|| crate::model_id::normalize(m).map(|id| id.family));
        }
    }
    let family = |o: &'_ Observation| -> Option<&str> {
        families.get(o.request_model.as_deref()?)?.as_deref()
    };
    // Candidates by (service, model family), each bucket sorted by start, so
    // an SDK span looks only at instrumentation spans that started just
    // before it: never every pair (the stream's window can hold 100k spans).
    let mut buckets: HashMap<(Option<&str>, Option<&str>), Vec<usize>> = HashMap::default();
    for &c in &instr_only {
        let co = &obs[c];
        buckets
            .entry((co.service.as_deref(), family(co)))
            .or_default()
            .push(c);
    }
    for b in buckets.values_mut() {
        b.sort_by_key(|&i| (obs[i].start_unix_nano, i));
    }
    sdk_only.sort_by_key(|&i| (obs[i].start_unix_nano, i));
    let mut used: rustc_hash::FxHashSet<usize> = rustc_hash::FxHashSet::default();
    for &s in &sdk_only {
        let so = &obs[s];
        let Some(bucket) = buckets.get(&(so.service.as_deref(), family(so))) else {
            continue;
        };
        // Candidates start in [so.start - MAX_TWIN_LEAD_NS, so.start + slack];
        // walk them from the latest start backwards (closest first).
        let hi = bucket.partition_point(|&c| {
            obs[c].start_unix_nano <= so.start_unix_nano.saturating_add(TWIN_SLACK_NS)
        });
        let lo_start = so.start_unix_nano.saturating_sub(MAX_TWIN_LEAD_NS);
        let mut best: Option<(u64, usize)> = None;
        for &c in bucket[..hi].iter().rev().take(MAX_TWIN_CANDIDATES) {
            let co = &obs[c];
            if co.start_unix_nano < lo_start {
                break;
            }
            if used.contains(&c)
                || co.trace_id == so.trace_id && co.trace_id.is_some()
                || contradict(so, co)
            {
                continue;
            }
            let inside = so.end_unix_nano <= co.end_unix_nano.saturating_add(TWIN_SLACK_NS);
            if !inside {
                continue;
            }
            let gap = so.start_unix_nano.abs_diff(co.start_unix_nano);
            if best.is_none_or(|(b, _)| gap < b) {
                best = Some((gap, c));
            }
        }
        if let Some((_, c)) = best {
            if g.union(c, s) {
                used.insert(c);
            }
        }
    }
}

/// Whether two spans cannot describe the same call: one is an error answer
/// (an HTTP status of 400 or more, and no message of its own), the other
/// holds a message (a response id or output tokens). In a stream, a wrapper
/// whose own SDK span has not arrived yet must not pass for the unlinked twin
/// of another call's failed SDK span.
fn contradict(a: &Observation, b: &Observation) -> bool {
    let made_message =
        |o: &Observation| o.response_id.is_some() || o.usage.output.is_some_and(|n| n > 0);
    let error_answer =
        |o: &Observation| o.http_status.is_some_and(|s| s >= 400) && !made_message(o);
    error_answer(a) && made_message(b) || error_answer(b) && made_message(a)
}

/// The fields of one call, picked from its observations by trust.
pub struct Merged<'a> {
    /// Observations of the call, most trusted first.
    pub members: SmallVec<[&'a Observation; 4]>,
    /// The HTTP attempt spans, in start order.
    pub attempts: SmallVec<[&'a Observation; 4]>,
    /// Indices of all observations in the order fields are picked:
    /// members by trust, then attempts from the last.
    pub order: SmallVec<[usize; 8]>,
}

impl<'a> Merged<'a> {
    /// Orders a group's observations by trust.
    pub fn new(obs: &'a [Observation], group: &[usize]) -> Merged<'a> {
        let mut members: SmallVec<[usize; 4]> = group
            .iter()
            .copied()
            .filter(|&i| obs[i].kind().is_call_level())
            .collect();
        members.sort_by_key(|&i| (std::cmp::Reverse(obs[i].kind().rank()), obs[i].seq));
        let mut attempts: SmallVec<[usize; 4]> = group
            .iter()
            .copied()
            .filter(|&i| !obs[i].kind().is_call_level())
            .collect();
        attempts.sort_by_key(|&i| (obs[i].start_unix_nano, obs[i].seq));
        let order = members
            .iter()
            .chain(attempts.iter().rev())
            .copied()
            .collect();
        Merged {
            members: members.iter().map(|&i| &obs[i]).collect(),
            attempts: attempts.iter().map(|&i| &obs[i]).collect(),
            order,
        }
    }

    /// The first value in trust order, call-level evidence before HTTP attempts.
    pub fn pick<T>(&self, f: impl Fn(&'a Observation) -> Option<T>) -> Option<T> {
        self.members
            .iter()
            .copied()
            .find_map(&f)
            .or_else(|| self.attempts.iter().rev().copied().find_map(&f))
    }

    /// The most trusted observation (`None` only for an empty group).
    pub fn primary(&self) -> Option<&'a Observation> {
        self.members.first().or(self.attempts.last()).copied()
    }

    /// HTTP status of the final attempt: the SDK's own, else the last HTTP
    /// attempt span's, else any call-level statement.
    pub fn http_status(&self) -> Option<u16> {
        let sdk = self
            .members
            .iter()
            .find(|o| o.kind() == EvidenceKind::SdkSpan)
            .and_then(|o| o.http_status);
        sdk.or_else(|| self.attempts.last().and_then(|o| o.http_status))
            .or_else(|| self.members.iter().find_map(|o| o.http_status))
    }

    /// Whether the call failed according to its call-level evidence (or, with
    /// none, its last attempt).
    pub fn failed(&self) -> bool {
        if self.members.is_empty() {
            self.attempts.last().is_some_and(|o| o.failed)
        } else {
            self.members.iter().any(|o| o.failed)
        }
    }

    /// Retries before the final attempt.
    pub fn retry_attempt(&self) -> Option<u32> {
        self.members
            .iter()
            .find_map(|o| o.retry_attempt)
            .or_else(|| {
                (!self.attempts.is_empty())
                    .then(|| u32::try_from(self.attempts.len() - 1).unwrap_or(u32::MAX))
            })
    }

    /// TTFT from the source that measures closest to the first content token.
    pub fn ttft(&self) -> Option<Ttft> {
        self.members
            .iter()
            .filter_map(|o| o.ttft)
            .fold(None, |best: Option<Ttft>, t| match best {
                Some(b) if b.quality >= t.quality => Some(b),
                _ => Some(t),
            })
    }

    /// Streaming flag: true if any source says so (some omit it on streams).
    pub fn stream(&self) -> Option<bool> {
        let all = self
            .members
            .iter()
            .chain(self.attempts.iter())
            .filter_map(|o| o.stream);
        all.fold(None, |acc, s| Some(acc.unwrap_or(false) || s))
    }

    /// Call start: the earliest start among the evidence.
    pub fn start_unix_nano(&self) -> u64 {
        let starts =
            |v: &[&Observation]| v.iter().map(|o| o.start_unix_nano).filter(|t| *t > 0).min();
        starts(&self.members)
            .or_else(|| starts(&self.attempts))
            .unwrap_or(0)
    }

    /// Duration: the SDK span's (it covers retries), else the primary's.
    pub fn duration_ms(&self) -> Option<f64> {
        self.members
            .iter()
            .find(|o| o.kind() == EvidenceKind::SdkSpan)
            .and_then(|o| o.duration_ms)
            .or_else(|| self.pick(|o| o.duration_ms))
    }

    /// The API surface, when any source says.
    pub fn provider(&self) -> Option<Provider> {
        self.pick(|o| o.provider)
    }

    /// `conv@version+conv@version`, most trusted first, each once.
    pub fn source(&self) -> String {
        let mut out = String::with_capacity(48);
        let mut seen: SmallVec<[(crate::observation::Convention, Option<&str>); 4]> =
            SmallVec::new();
        for o in self.members.iter().chain(self.attempts.iter()) {
            let key = (o.convention(), o.convention_version.as_deref());
            if seen.contains(&key) {
                continue;
            }
            seen.push(key);
            if !out.is_empty() {
                out.push('+');
            }
            out.push_str(key.0.name());
            if let Some(v) = key.1 {
                out.push('@');
                out.push_str(v);
            }
        }
        out
    }
}

/// Takes the first value present, in the call's trust order.
pub fn take_first<T>(
    obs: &mut [Observation],
    order: &[usize],
    field: impl Fn(&mut Observation) -> &mut Option<T>,
) -> Option<T> {
    order.iter().find_map(|&i| field(&mut obs[i]).take())
}

/// The first shared text present, in the call's trust order, as the record's own string.
pub fn first_text(
    obs: &[Observation],
    order: &[usize],
    field: impl Fn(&Observation) -> &Option<std::sync::Arc<str>>,
) -> Option<String> {
    order
        .iter()
        .find_map(|&i| field(&obs[i]).as_deref())
        .map(str::to_owned)
}

/// Moves the identity fields of a call's observations into its record
/// (the observations are spent afterwards).
pub fn take_identity(obs: &mut [Observation], order: &[usize], r: &mut CallRecord) {
    r.service = first_text(obs, order, |o| &o.service);
    r.environment = first_text(obs, order, |o| &o.environment);
    r.organization_id = first_text(obs, order, |o| &o.organization_id);
    r.request_id = take_first(obs, order, |o| &mut o.request_id).map(String::from);
    r.response_id = take_first(obs, order, |o| &mut o.response_id).map(String::from);
    r.stop_reason = first_text(obs, order, |o| &o.stop_reason);
    r.attributes = merged_attributes(obs, order);
}

/// The unmapped attributes of a call: the first observation (in `order`) to
/// carry a key gives its value, and the first [`ATTRIBUTES_MAX_COUNT`]
/// distinct keys met are kept; then sorted, so the packed attributes are
/// written in one pass. At most 32 kept keys make the linear lookup cheap.
fn merged_attributes(obs: &[Observation], order: &[usize]) -> Attributes {
    let mut pairs: SmallVec<[(&str, &str); 32]> = SmallVec::new();
    'observations: for &i in order {
        for (k, v) in obs[i].unmapped.iter() {
            if pairs.len() >= ATTRIBUTES_MAX_COUNT {
                break 'observations;
            }
            if !pairs.iter().any(|(seen, _)| *seen == k) {
                pairs.push((k, v));
            }
        }
    }
    pairs.sort_unstable_by(|a, b| a.0.cmp(b.0));
    Attributes::from_sorted_unique(&pairs)
}

/// Lower-case hex of an id, in one allocation.
pub fn hex_id(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 64];
    let n = bytes.len().min(32);
    for (k, b) in bytes[..n].iter().enumerate() {
        buf[2 * k] = HEX[(b >> 4) as usize];
        buf[2 * k + 1] = HEX[(b & 15) as usize];
    }
    // Only ASCII hex digits were written.
    std::str::from_utf8(&buf[..2 * n])
        .map(str::to_owned)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observation::{Convention, EvidenceKind};

    fn span(kind: EvidenceKind, trace: u128, start: u64, end: u64) -> Observation {
        Observation {
            kind: Some(kind),
            convention: Some(Convention::OpenLlmetry),
            trace_id: Some(trace.to_be_bytes()),
            span_id: Some((trace as u64).to_be_bytes()),
            service: Some("svc".into()),
            request_model: Some("claude-sonnet-4-5".into()),
            start_unix_nano: start,
            end_unix_nano: end,
            ..Observation::default()
        }
    }

    #[test]
    fn merged_attributes_keep_the_first_value_and_the_first_keys_up_to_the_cap() {
        let mut first = span(EvidenceKind::InstrumentationSpan, 1, 0, 10);
        let mut second = span(EvidenceKind::SdkSpan, 1, 0, 10);
        // 20 keys each, 4 of them shared: 36 distinct, over the cap of 32.
        for i in 0..20 {
            first.unmapped.push(&format!("k{:02}", 39 - i), "first");
            second.unmapped.push(&format!("k{:02}", 23 - i), "second");
        }
        let attributes = merged_attributes(&[first, second], &[0, 1]);
        assert_eq!(attributes.len(), ATTRIBUTES_MAX_COUNT);
        // The first observation's keys k20..k39 all stay, with its values.
        for i in 20..40 {
            assert_eq!(attributes.get(&format!("k{i:02}")), Some("first"), "k{i}");
        }
        // The second brings k19 down to k08 (12 more), not k07..k04.
        for i in 8..20 {
            assert_eq!(attributes.get(&format!("k{i:02}")), Some("second"), "k{i}");
        }
        assert!((4..8).all(|i| !attributes.contains_key(&format!("k{i:02}"))));
    }

    /// Call `i` as unlinked twins starting at `t0`: the instrumentation span
    /// (trace `2i + 1`) lasting `outer` ns, and the SDK span inside it (trace
    /// `2i + 2`) from `t0 + sdk.0` to `t0 + sdk.1`.
    fn twins(i: u64, t0: u64, outer: u64, sdk: (u64, u64)) -> [Observation; 2] {
        [
            span(
                EvidenceKind::InstrumentationSpan,
                u128::from(i) * 2 + 1,
                t0,
                t0 + outer,
            ),
            span(
                EvidenceKind::SdkSpan,
                u128::from(i) * 2 + 2,
                t0 + sdk.0,
                t0 + sdk.1,
            ),
        ]
    }

    fn members(g: &Grouping) -> Vec<Vec<usize>> {
        g.iter().map(<[usize]>::to_vec).collect()
    }

    #[test]
    fn a_reused_grouper_forgets_the_previous_input() {
        // A larger input first: twins, a parent with its HTTP attempt, shared ids.
        let mut big = Vec::new();
        for i in 0..50u64 {
            let t0 = 1_000_000_000_000 + i * 1_000_000;
            big.extend(twins(i, t0, 50, (2, 40)));
            let mut attempt = span(
                EvidenceKind::HttpSpan,
                u128::from(i) * 2 + 2,
                t0 + 3,
                t0 + 30,
            );
            attempt.span_id = Some([9; 8]);
            attempt.parent_span_id = big.last().and_then(|o| o.span_id);
            attempt.request_id = Some(format!("req_{}", i % 7).into());
            big.push(attempt);
        }
        // Then a smaller one whose indices the first one's state would mislead.
        let mut small: Vec<Observation> = big[..40].to_vec();
        small.reverse();
        for o in &mut small {
            o.request_id = None;
        }
        let keys = IdKeys::default();
        let links = |obs: &[Observation]| obs.iter().map(|o| keys.links(o)).collect::<Vec<_>>();
        let mut grouper = Grouper::default();
        let first = members(grouper.group(&big, &links(&big)));
        assert_eq!(first, members(&group(&big)));
        assert!(first.len() < big.len(), "the big input merged something");
        let second = members(grouper.group(&small, &links(&small)));
        assert_eq!(second, members(&group(&small)));
        assert_eq!(second.iter().map(Vec::len).sum::<usize>(), small.len());
        assert!(second.iter().flatten().all(|&i| i < small.len()));
    }

    #[test]
    fn a_wrapper_with_a_message_is_not_the_twin_of_a_failed_sdk_span() {
        // Seen in a stream under load: call A's wrapper (a message, its own SDK
        // span not arrived yet) and call B's failed SDK span (a 500, its
        // unlinked wrapper not arrived yet) overlap in time, same service and
        // model. They are not twins; a later wrapper of B still pairs with B.
        let t0 = 1_000_000_000_000;
        let [mut wrapper_a, mut failed_b] = twins(0, t0, 50_000_000, (1_000_000, 40_000_000));
        wrapper_a.response_id = Some("msg_a".into());
        wrapper_a.usage.output = Some(395);
        failed_b.http_status = Some(500);
        failed_b.request_id = Some("req_b".into());
        let obs = vec![wrapper_a.clone(), failed_b.clone()];
        assert_eq!(members(&group(&obs)), vec![vec![0], vec![1]]);

        let [mut wrapper_b, _] = twins(1, t0, 50_000_000, (0, 0));
        wrapper_b.exception_type = Some("InternalServerError".into());
        let obs = vec![wrapper_a, failed_b, wrapper_b];
        assert_eq!(members(&group(&obs)), vec![vec![0], vec![1, 2]]);

        // A message on both sides (a stream cut mid-way: an error status, a
        // message started) is no contradiction.
        let [mut wrapper, mut cut] = twins(2, t0, 50_000_000, (1_000_000, 40_000_000));
        wrapper.usage.output = Some(12);
        cut.http_status = Some(529);
        cut.response_id = Some("msg_c".into());
        assert_eq!(group(&[wrapper, cut]).len(), 1);
    }

    #[test]
    fn many_unlinked_twins_pair_one_to_one_by_time() {
        // 20,000 calls, each an instrumentation span in one trace and the SDK
        // span inside it in another, 1 ms apart and overlapping their
        // neighbours: every SDK span must pair with its own wrapper.
        let n: u64 = 20_000;
        let mut obs = Vec::new();
        for i in 0..n {
            let t0 = 1_000_000_000_000 + i * 1_000_000;
            obs.extend(twins(i, t0, 50_000_000, (200_000, 49_000_000)));
        }
        let g = group(&obs);
        assert_eq!(g.len() as u64, n);
        for members in g.iter() {
            assert_eq!(members.len(), 2);
            let (a, b) = (&obs[members[0]], &obs[members[1]]);
            assert_eq!(
                a.start_unix_nano + 200_000,
                b.start_unix_nano,
                "paired with its own wrapper"
            );
        }
    }
}
