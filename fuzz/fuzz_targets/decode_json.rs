//! OTLP/JSON decoding of every signal never panics.
#![no_main]
use claudewatch_otlp::{decode, Encoding, Signal};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for s in [Signal::Traces, Signal::Logs, Signal::Metrics] {
        let _ = decode(s, Encoding::Json, data);
    }
});
