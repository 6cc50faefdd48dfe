//! Deterministic cost per span, for ratios that wall-clock noise on a shared VM
//! cannot blur: run under `valgrind --tool=callgrind` (see `make bench-instructions`)
//! once per mode and compare instruction counts.
//!
//! Modes: `prost` (decode only), `scan` (zero-copy decode only), `enrich`
//! (zero-copy decode + normalise + enrich + merge), `prost-enrich`, `window`
//! (serve's path: extract a request, admit it to a merge window, seal),
//! `none` (setup only).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use claudewatch_enrich::window::{extract_request, MergeWindow, WindowLimits};
use claudewatch_enrich::{AttributeLimits, EnrichConfig, Enricher};
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
    // One body per round: distinct ids, so a window sees no late duplicates.
    let bodies: Vec<Vec<u8>> = (0..ROUNDS)
        .map(|r| synth::batch(SPANS, 7 + r as u64).encode_to_vec())
        .collect();
    let config = EnrichConfig::default();
    let mut window = MergeWindow::new(
        config.clone(),
        WindowLimits {
            max_age_ns: 1,
            max_observations: 1 << 20,
            max_sealed_ids: 1 << 22,
        },
    );
    for (round, body) in bodies.iter().enumerate() {
        let body = &body[..];
        match mode.as_str() {
            "prost" => drop(black_box(
                decode(Signal::Traces, Encoding::Protobuf, body).unwrap(),
            )),
            "scan" => drop(black_box(scan_traces(body).unwrap())),
            "enrich" => {
                let mut e = Enricher::new(config.clone());
                e.push_traces_protobuf(body).unwrap();
                assert_eq!(black_box(e.finish()).len(), SPANS);
            }
            "prost-enrich" => {
                let req = decode(Signal::Traces, Encoding::Protobuf, body).unwrap();
                let mut e = Enricher::new(config.clone());
                e.push(&req);
                assert_eq!(black_box(e.finish()).len(), SPANS);
            }
            "window" => {
                let now = round as u64 + 1;
                let x = extract_request(
                    Signal::Traces,
                    Encoding::Protobuf,
                    body,
                    &AttributeLimits::default(),
                )
                .unwrap();
                window.admit_extracted(x, round as u64, now);
                assert_eq!(black_box(window.seal(now, true)).records.len(), SPANS);
            }
            "none" | "--bench" => {}
            other => panic!("unknown mode {other}"),
        }
    }
}
