//! Allocations per span for (a) decode and (b) decode + enrich (counted with
//! stats_alloc over the system allocator; the count does not depend on the allocator).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use claudewatch_enrich::{EnrichConfig, Enricher};
use claudewatch_otlp::{decode, Encoding, Signal};
use prost::Message;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

mod synth;

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

fn main() {
    const SPANS: usize = 1000;
    let body = synth::batch(SPANS, 7).encode_to_vec();
    let config = EnrichConfig::default();

    let region = Region::new(GLOBAL);
    let req = decode(Signal::Traces, Encoding::Protobuf, &body).expect("decodes");
    let a = region.change();
    drop(req);

    let region = Region::new(GLOBAL);
    let mut e = Enricher::new(config);
    e.push_traces_protobuf(&body).expect("decodes");
    let records = e.finish();
    let b = region.change();
    assert_eq!(records.len(), SPANS);

    println!(
        "allocations per span: (a) prost decode {:.1}, (b) zero-copy decode+enrich {:.1}",
        a.allocations as f64 / SPANS as f64,
        b.allocations as f64 / SPANS as f64
    );
    println!(
        "bytes allocated per span: (a) {:.0}, (b) {:.0}",
        a.bytes_allocated as f64 / SPANS as f64,
        b.bytes_allocated as f64 / SPANS as f64
    );
}
