//! Criterion benchmarks on one core (run with `make bench`, which pins to CPU 0):
//! (a) protobuf decode alone (prost, and the zero-copy scanner), (b) decode +
//! normalise + enrich (zero-copy path, and via prost), over a batch of
//! 1000 realistic ~1 KB Anthropic SDK spans.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use claudewatch_enrich::{EnrichConfig, Enricher};
use claudewatch_otlp::{decode, Encoding, Signal};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use prost::Message;

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
    let mut g = c.benchmark_group("otlp_1000_spans");
    g.throughput(Throughput::Elements(SPANS as u64));
    g.bench_function("a_decode", |b| {
        b.iter(|| {
            decode(
                Signal::Traces,
                Encoding::Protobuf,
                std::hint::black_box(&body),
            )
            .expect("decodes")
        })
    });
    let config = EnrichConfig::default();
    g.bench_function("b_decode_enrich", |b| {
        b.iter(|| {
            let req = decode(
                Signal::Traces,
                Encoding::Protobuf,
                std::hint::black_box(&body),
            )
            .expect("decodes");
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
