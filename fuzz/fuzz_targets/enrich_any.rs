//! Whatever decodes, the enricher turns into records without panicking.
#![no_main]
use claudewatch_enrich::{EnrichConfig, Enricher};
use claudewatch_otlp::{decode, Encoding, Signal};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut e = Enricher::new(EnrichConfig::default());
    for enc in [Encoding::Protobuf, Encoding::Json] {
        for s in [Signal::Traces, Signal::Logs] {
            if let Ok(req) = decode(s, enc, data) {
                e.push(&req);
            }
        }
    }
    let _ = e.finish();
});
