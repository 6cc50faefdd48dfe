//! Encoding call records into `llm_calls` RowBinary rows (what `flush`
//! journals), rows per second on one core: `make bench` pins it, or
//! `taskset -c 0 cargo bench -p claudewatch-sink --bench rowbinary`.
//! Also: decoding the journal's rows back into the `clickhouse` crate's row
//! type, which the inserter does before handing them to the crate.

#![allow(clippy::unwrap_used, missing_docs)]

use claudewatch_model::CallRecord;
use claudewatch_sink::clickhouse::row;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn records(n: u64) -> Vec<CallRecord> {
    let template: CallRecord =
        serde_json::from_str(include_str!("../testdata/record.json")).unwrap();
    (0..n)
        .map(|i| {
            let mut r = template.clone();
            r.time_unix_nano += i * 1_000_003;
            r.request_id = Some(format!("req_011CWKsdocQpLJgMF8w{i:09}"));
            r.input_tokens = Some(1000 + i % 5000);
            r.cost_usd = Some(rust_decimal::Decimal::new(i as i64 % 99_999 + 1, 6));
            r.ttft_ms = (i % 2 == 0).then_some(152.817);
            r
        })
        .collect()
}

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
    let mut rows = Vec::with_capacity(N as usize);
    g.bench_function("decode_to_crate_rows", |b| {
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
