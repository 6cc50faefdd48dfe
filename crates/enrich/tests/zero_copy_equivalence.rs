//! The zero-copy protobuf path (`Enricher::push_traces_protobuf`) gives exactly
//! what the prost path (`decode` then `push`) gives: the same records, the
//! same counters, and an error exactly when prost errors.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use claudewatch_enrich::{CallRecord, EnrichConfig, EnrichStats, Enricher};
use claudewatch_otlp::{decode, Encoding, Signal};
use proptest::prelude::*;

fn shared() -> std::path::PathBuf {
    std::env::var("CLAUDEWATCH_SHARED")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared")
        })
}

type Outcome = (Result<(), String>, Vec<CallRecord>, EnrichStats);

fn fast(bodies: &[Vec<u8>]) -> Outcome {
    let mut e = Enricher::new(EnrichConfig::default());
    let mut result = Ok(());
    for b in bodies {
        if let Err(err) = e.push_traces_protobuf(b) {
            result = Err(err.to_string());
        }
    }
    let records = e.finish();
    (result, records, e.stats().clone())
}

fn slow(bodies: &[Vec<u8>]) -> Outcome {
    let mut e = Enricher::new(EnrichConfig::default());
    let mut result = Ok(());
    for b in bodies {
        match decode(Signal::Traces, Encoding::Protobuf, b) {
            Ok(req) => e.push(&req),
            Err(err) => result = Err(err.to_string()),
        }
    }
    let records = e.finish();
    (result, records, e.stats().clone())
}

fn trace_fixtures() -> Vec<Vec<u8>> {
    let mut files: Vec<_> = std::fs::read_dir(shared().join("fixtures"))
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).into_iter().flatten())
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with("-traces.pb"))
        .collect();
    files.sort();
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

#[test]
fn every_fixture_gives_the_same_records_both_ways() {
    let bodies = trace_fixtures();
    assert!(
        bodies.len() >= 40,
        "expected the fixture traces, found {}",
        bodies.len()
    );
    let (a, b) = (fast(&bodies), slow(&bodies));
    assert_eq!(a.0, b.0);
    assert_eq!(a.1, b.1);
    assert_eq!(a.2, b.2);
    assert!(a.1.len() > 30);
}

#[test]
fn fixtures_take_the_zero_copy_path() {
    for body in trace_fixtures() {
        assert!(
            claudewatch_otlp::scan_traces(&body).is_some(),
            "a canonical exporter body fell back to prost"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn mutated_bodies_agree(index in 0usize..64, flips in proptest::collection::vec((0usize..8192, 1u8..=255), 0..6), cut in 1usize..8192) {
        let all = trace_fixtures();
        let mut body = all[index % all.len()].clone();
        for (pos, x) in flips {
            let i = pos % body.len();
            body[i] ^= x;
        }
        body.truncate(cut.min(body.len()));
        let bodies = vec![body];
        let (a, b) = (fast(&bodies), slow(&bodies));
        prop_assert_eq!(a.0, b.0);
        prop_assert_eq!(a.1, b.1);
        prop_assert_eq!(a.2, b.2);
    }
}
