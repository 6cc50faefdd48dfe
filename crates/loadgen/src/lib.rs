//! `claudewatch loadgen`: realistic OTLP traffic about Claude calls, sent at a
//! target rate, with exact accounting of the calls the receiver acknowledged.
//!
//! - [`mix`]: what each call is (convention, model, stream, outcome, cache
//!   tokens, duplicate twin spans), a pure function of `(seed, index)`;
//! - [`spans`]: the spans each convention really writes for it;
//! - [`plan`]: which spans go in which export request (twins sometimes split
//!   over two requests);
//! - [`encode`]: protobuf (prost-canonical) and OTLP/JSON encoders with no
//!   intermediate message structs;
//! - [`transport`]: OTLP/HTTP (hyper) and OTLP/gRPC (tonic) senders and the
//!   retry rules of OTLP 1.x;
//! - [`run`]: workers, pacing, progress and the [`Report`].
//!
//! A call counts as sent ([`Report::calls_acked`]) only when every request
//! holding one of its spans was acknowledged, so a receiver that loses
//! nothing and doubles nothing writes exactly that many call records.

#![forbid(unsafe_code)]

pub mod encode;
pub mod ids;
pub mod mix;
pub mod plan;
pub mod run;
pub mod spans;
pub mod transport;

use std::collections::BTreeMap;

pub use encode::Format;
pub use mix::{CallSpec, Convention, Mix, Scenario};
pub use run::{run, run_blocking, Config, Latency, Report, Stop};
pub use transport::Protocol;

/// What can stop a run before it starts or while it runs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad option value.
    #[error("{0}")]
    Config(String),
    /// The async runtime could not start.
    #[error("starting the runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// Local IO (compression).
    #[error("io: {0}")]
    Io(#[source] std::io::Error),
    /// A worker task died.
    #[error("worker: {0}")]
    Worker(String),
}

/// Every export request body of a count-limited run, in request order,
/// uncompressed, with the calls' end times around `base_unix_nano`.
pub fn request_bodies(
    mix: impl Into<Mix>,
    calls: u64,
    spans_per_request: usize,
    format: Format,
    base_unix_nano: u64,
) -> Vec<Vec<u8>> {
    let plan = plan::Plan::new(mix, spans_per_request, Some(calls));
    let n = plan.request_count().unwrap_or(0);
    let mut built = plan::Built::default();
    let mut order = Vec::new();
    let mut out = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
    for r in 0..n {
        let t = plan::Ticket {
            index: r,
            tail: false,
            base_unix_nano: base_unix_nano + r * 1_000_000,
            prev_base_unix_nano: base_unix_nano + r.saturating_sub(1) * 1_000_000,
        };
        plan.build(t, &mut built);
        let mut body = Vec::new();
        encode::encode_request(&built.spans, format, &mut order, &mut body);
        out.push(body);
    }
    out
}

/// What the records of calls `0..calls` of a seed's run must show.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Expected {
    /// Records (one per call).
    pub calls: u64,
    /// Records per outcome (claudewatch's `outcome` names).
    pub outcomes: BTreeMap<&'static str, u64>,
    /// Calls per convention.
    pub conventions: BTreeMap<Convention, u64>,
    /// Calls described by two twin spans.
    pub twins: u64,
    /// Twin calls whose two spans are in different requests.
    pub split_twins: u64,
    /// Billed calls (successes, dead streams) of a model the default price
    /// table does not price.
    pub unpriced: u64,
    /// Streaming calls.
    pub streams: u64,
    /// Sums over successful calls: uncached input, cache read, cache write, output.
    pub success_tokens: (u64, u64, u64, u64),
}

/// The expected records of calls `0..calls` of the run of `mix` (a seed: the default mix).
pub fn expected(mix: impl Into<Mix>, calls: u64, spans_per_request: usize) -> Expected {
    let plan = plan::Plan::new(mix, spans_per_request, Some(calls));
    let last = plan.request_count().unwrap_or(0).saturating_sub(1);
    let mut e = Expected {
        calls,
        ..Expected::default()
    };
    for c in 0..calls {
        let s = plan.call(c);
        *e.outcomes.entry(s.scenario.expected_outcome()).or_default() += 1;
        *e.conventions.entry(s.convention).or_default() += 1;
        let twin = s.twin != mix::TwinLayout::None && s.span_count() == 2;
        e.twins += u64::from(twin);
        e.split_twins += u64::from(s.split && c / plan.calls_per_request() < last);
        // Failed requests cost nothing; a dead stream is billed for its output.
        let billed = !s.scenario.failed() || s.scenario == Scenario::MidStreamError;
        e.unpriced += u64::from(!s.model.priced && billed);
        e.streams += u64::from(s.stream);
        if let Some((i, r, w, o)) = s.expected_tokens() {
            let t = &mut e.success_tokens;
            *t = (t.0 + i, t.1 + r, t.2 + w, t.3 + o);
        }
    }
    e
}
