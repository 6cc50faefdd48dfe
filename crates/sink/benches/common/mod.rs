//! The records both sink benchmarks encode: the test record, varied per row.

use claudewatch_model::CallRecord;

/// `n` copies of `testdata/record.json`, each with its own time, request id,
/// token count, cost and (every other one) TTFT.
pub fn records(n: u64) -> Vec<CallRecord> {
    let template: CallRecord =
        serde_json::from_str(include_str!("../../testdata/record.json")).unwrap();
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
