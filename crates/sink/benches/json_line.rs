//! Encoding call records as JSON lines (what the JSON-lines sink writes),
//! records per second on one core, with `serde_json::to_writer` on the same
//! records in the same run as the reference:
//! `taskset -c 0 cargo bench -p claudewatch-sink --bench json_line`.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use claudewatch_sink::json_line::write_record;
use common::records;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn bench(c: &mut Criterion) {
    const N: u64 = 10_000;
    let rs = records(N);
    let mut g = c.benchmark_group("json_line");
    g.throughput(Throughput::Elements(N));
    let mut buf = Vec::with_capacity(16 << 20);
    g.bench_function("write_record", |b| {
        b.iter(|| {
            buf.clear();
            for r in &rs {
                write_record(&mut buf, r).unwrap();
                buf.push(b'\n');
            }
            buf.len()
        })
    });
    g.bench_function("serde_json_to_writer", |b| {
        b.iter(|| {
            buf.clear();
            for r in &rs {
                serde_json::to_writer(&mut buf, r).unwrap();
                buf.push(b'\n');
            }
            buf.len()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
