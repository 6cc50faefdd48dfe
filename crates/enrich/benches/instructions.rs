//! Deterministic cost per span, for ratios that wall-clock noise on a shared VM
//! cannot blur: run under `valgrind --tool=callgrind` (see `make bench-instructions`)
//! once per mode and compare instruction counts.
//!
//! Modes: `prost` (decode only), `scan` (zero-copy decode only), `enrich`
//! (zero-copy decode + normalise + enrich + merge), `prost-enrich`, `none` (setup only).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use claudewatch_enrich::{EnrichConfig, Enricher};
use claudewatch_otlp::{decode, scan_traces, Encoding, Signal};
use prost::Message;
use std::hint::black_box;

mod synth;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SPANS: usize = 1000;
const ROUNDS: usize = 20;

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "none".into());
    let body = synth::batch(SPANS, 7).encode_to_vec();
    let config = EnrichConfig::default();
    for _ in 0..ROUNDS {
        match mode.as_str() {
            "prost" => drop(black_box(
                decode(Signal::Traces, Encoding::Protobuf, &body).unwrap(),
            )),
            "scan" => drop(black_box(scan_traces(&body).unwrap())),
            "enrich" => {
                let mut e = Enricher::new(config.clone());
                e.push_traces_protobuf(&body).unwrap();
                assert_eq!(black_box(e.finish()).len(), SPANS);
            }
            "prost-enrich" => {
                let req = decode(Signal::Traces, Encoding::Protobuf, &body).unwrap();
                let mut e = Enricher::new(config.clone());
                e.push(&req);
                assert_eq!(black_box(e.finish()).len(), SPANS);
            }
            "none" | "--bench" => {}
            other => panic!("unknown mode {other}"),
        }
    }
}
