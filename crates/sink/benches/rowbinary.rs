//! Encoding call records into `llm_calls` RowBinary rows (what `flush`
//! journals), rows per second on one core: `make bench` pins it, or
//! `taskset -c 0 cargo bench -p claudewatch-sink --bench rowbinary`.
//! The inserter sends those bytes as they are; it only finds the rows'
//! boundaries (`row_ends`) to isolate a refused row, and decodes (`decode`)
//! the refused ones for the dead-letter file.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use claudewatch_sink::clickhouse::row;
use common::records;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn bench(c: &mut Criterion) {
    const N: u64 = 10_000;
    let rs = records(N);
    let mut g = c.benchmark_group("rowbinary");
    g.throughput(Throughput::Elements(N));
    let mut buf = Vec::with_capacity(8 << 20);
    g.bench_function("encode", |b| {
        b.iter(|| {
            buf.clear();
            for r in &rs {
                row::encode(r, &mut buf).unwrap();
            }
            buf.len()
        })
    });
    buf.clear();
    for r in &rs {
        row::encode(r, &mut buf).unwrap();
    }
    eprintln!("{} bytes per row", buf.len() as u64 / N);
    g.bench_function("row_ends", |b| {
        b.iter(|| row::row_ends(&buf).unwrap().len())
    });
    let mut rows = Vec::with_capacity(N as usize);
    g.bench_function("decode", |b| {
        b.iter(|| {
            rows.clear();
            row::decode(&buf, &mut rows).unwrap();
            rows.len()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
