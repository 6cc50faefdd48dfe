//! Live heap per observation in the merge window, on the load generator's
//! traffic (not a test; `cargo bench -p claudewatch-loadgen --bench window_memory`).
//!
//! Serve's memory at a steady rate is mostly the merge window: at R spans/s
//! and a 2 s window sealed every 1 s, about 2.5·R observations wait, and the
//! ids of the calls sealed in the last 20 s are kept to catch late duplicates.
//! This measures both with a counting allocator (live bytes: allocated minus
//! freed), so a change to the observation's layout shows as a number.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use claudewatch_enrich::{extract_request, EnrichConfig, MergeWindow, WindowLimits};
use claudewatch_loadgen::Format;
use claudewatch_otlp::{Encoding, Signal};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

fn live(r: &Region<'_, std::alloc::System>) -> i64 {
    let c = r.change();
    c.bytes_allocated as i64 - c.bytes_deallocated as i64
}

fn main() {
    const CALLS: u64 = 50_000;
    let base = 1_700_000_000_000_000_000u64;
    let bodies = claudewatch_loadgen::request_bodies(7u64, CALLS, 100, Format::Protobuf, base);
    let body_bytes: usize = bodies.iter().map(Vec::len).sum();
    let config = EnrichConfig::default();
    let limits = config.attribute_limits;
    let mut window = MergeWindow::new(
        config,
        WindowLimits {
            max_age_ns: 2_000_000_000,
            max_observations: usize::MAX,
            max_sealed_ids: usize::MAX,
        },
    );

    let region = Region::new(GLOBAL);
    let extracted: Vec<_> = bodies
        .iter()
        .map(|b| extract_request(Signal::Traces, Encoding::Protobuf, b, &limits).unwrap())
        .collect();
    let n: usize = extracted.iter().map(|x| x.len()).sum();
    println!(
        "extracted alone: {:.0} bytes per observation",
        live(&region) as f64 / n as f64
    );
    drop(extracted);

    let region = Region::new(GLOBAL);
    for (entry, body) in bodies.iter().enumerate() {
        let x = extract_request(Signal::Traces, Encoding::Protobuf, body, &limits).unwrap();
        window.admit_extracted(x, entry as u64, 1);
    }
    let waiting = window.len();
    let held = live(&region);

    let region = Region::new(GLOBAL);
    let sealed = window.seal(u64::MAX / 2, true);
    let records = sealed.records.len();
    let record_bytes = live(&region);
    drop(sealed);
    let after_drop = live(&region);

    println!(
        "{CALLS} calls, {} request bodies ({:.0} bytes per observation on the wire)",
        bodies.len(),
        body_bytes as f64 / waiting as f64
    );
    println!(
        "window: {waiting} observations waiting, {:.0} live heap bytes each (plus {} bytes inline each)",
        held as f64 / waiting as f64 - std::mem::size_of::<claudewatch_enrich::Observation>() as f64,
        std::mem::size_of::<claudewatch_enrich::Observation>()
    );
    println!(
        "window total: {:.0} bytes per observation waiting",
        held as f64 / waiting as f64
    );
    println!(
        "sealed: {records} records, {:.0} bytes each while held (net of the observations freed)",
        record_bytes as f64 / records as f64
    );
    println!(
        "after the records are written: {:.0} bytes per sealed call remain (its late-duplicate ids, and the window's spare capacity)",
        (held + after_drop) as f64 / records as f64
    );
}
