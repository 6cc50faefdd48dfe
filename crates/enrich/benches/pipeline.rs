//! Criterion benchmarks on one core (run with `make bench`, which pins to CPU 0),
//! over a batch of 1000 realistic ~1 KB Anthropic SDK spans:
//! (a) protobuf decode alone: prost, and the zero-copy scanner;
//! (b) decode + normalise + enrich (merge included): the zero-copy path the
//!     product uses, and the same through prost.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use claudewatch_enrich::{EnrichConfig, Enricher};
use claudewatch_otlp::{decode, scan_traces, Encoding, Signal};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use prost::Message;
use std::hint::black_box;

mod synth;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SPANS: usize = 1000;

fn pipeline(c: &mut Criterion) {
    let body = synth::batch(SPANS, 7).encode_to_vec();
    eprintln!(
        "batch: {SPANS} spans, {} bytes ({} bytes/span)",
        body.len(),
        body.len() / SPANS
    );
    let config = EnrichConfig::default();
    let mut g = c.benchmark_group("otlp_1000_spans");
    g.throughput(Throughput::Elements(SPANS as u64));
    g.bench_function("a_prost_decode", |b| {
        b.iter(|| decode(Signal::Traces, Encoding::Protobuf, black_box(&body)).expect("decodes"))
    });
    g.bench_function("a_zero_copy_decode", |b| {
        b.iter(|| scan_traces(black_box(&body)).expect("canonical"))
    });
    g.bench_function("b_decode_enrich", |b| {
        b.iter(|| {
            let mut e = Enricher::new(config.clone());
            e.push_traces_protobuf(black_box(&body)).expect("decodes");
            let records = e.finish();
            assert_eq!(records.len(), SPANS);
            records
        })
    });
    g.bench_function("b_prost_decode_enrich", |b| {
        b.iter(|| {
            let req =
                decode(Signal::Traces, Encoding::Protobuf, black_box(&body)).expect("decodes");
            let mut e = Enricher::new(config.clone());
            e.push(&req);
            let records = e.finish();
            assert_eq!(records.len(), SPANS);
            records
        })
    });
    g.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
