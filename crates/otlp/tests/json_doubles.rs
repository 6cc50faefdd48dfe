//! OTLP/JSON doubles decode to exactly the value the sender formatted: a
//! `doubleValue` (a TTFT in seconds, a cost) must not come out one ULP away
//! from the same value sent as protobuf.

#![allow(clippy::unwrap_used, missing_docs)]

use claudewatch_otlp::proto::common::v1::any_value::Value as V;
use claudewatch_otlp::{decode, Encoding, ExportRequest, Signal};

fn decoded_double(text: &str) -> f64 {
    let body = format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"s","attributes":[{{"key":"x","value":{{"doubleValue":{text}}}}}]}}]}}]}}]}}"#
    );
    let ExportRequest::Traces(t) = decode(Signal::Traces, Encoding::Json, body.as_bytes()).unwrap()
    else {
        panic!("not traces")
    };
    let value = t.resource_spans[0].scope_spans[0].spans[0].attributes[0]
        .value
        .clone()
        .unwrap()
        .value
        .unwrap();
    match value {
        V::DoubleValue(d) => d,
        other => panic!("{other:?}"),
    }
}

proptest::proptest! {
    #[test]
    fn shortest_and_long_spellings_round_trip(bits in proptest::num::u64::ANY) {
        let x = f64::from_bits(bits);
        proptest::prop_assume!(x.is_finite());
        // Rust's Display is the shortest round-trip spelling; {:e} with 17
        // digits is what many other encoders write.
        for text in [format!("{x}"), format!("{x:.16e}")] {
            let back = decoded_double(&text);
            proptest::prop_assert_eq!(back.to_bits(), x.to_bits(), "{}", text);
        }
    }
}
