//! The zero-copy traces path and the prost path agree on every input:
//! same records, same counters, an error exactly when prost errors.
#![no_main]
use claudewatch_enrich::{EnrichConfig, Enricher};
use claudewatch_otlp::{decode, Encoding, Signal};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut fast = Enricher::new(EnrichConfig::default());
    let fast_ok = fast.push_traces_protobuf(data).map_err(|e| e.to_string());
    let mut slow = Enricher::new(EnrichConfig::default());
    let slow_ok = decode(Signal::Traces, Encoding::Protobuf, data).map(|r| slow.push(&r)).map_err(|e| e.to_string());
    assert_eq!(fast_ok, slow_ok);
    assert_eq!(fast.finish(), slow.finish());
    assert_eq!(fast.stats(), slow.stats());
});
