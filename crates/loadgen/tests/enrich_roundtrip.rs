//! The generated traffic, judged by the enricher: exactly one record per
//! generated call, with the outcome, tokens and pricing the mix intended.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
use std::collections::{BTreeMap, HashSet};

use claudewatch_enrich::{CallRecord, EnrichConfig, Enricher};
use claudewatch_loadgen::{expected, request_bodies, Expected, Format};
use claudewatch_otlp::{decode, Encoding, ExportRequest, Signal};

const BASE: u64 = 1_800_000_000_000_000_000;

fn spans_in(bodies: &[Vec<u8>]) -> u64 {
    bodies
        .iter()
        .map(|b| match decode(Signal::Traces, Encoding::Protobuf, b) {
            Ok(ExportRequest::Traces(t)) => t
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .map(|s| s.spans.len() as u64)
                .sum::<u64>(),
            other => panic!("not a traces request: {other:?}"),
        })
        .sum()
}

fn outcome(r: &CallRecord) -> String {
    serde_json::to_value(r.outcome)
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned()
}

fn check(records: &[CallRecord], exp: &Expected) {
    assert_eq!(records.len() as u64, exp.calls, "one record per call");
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    for r in records {
        *outcomes.entry(outcome(r)).or_default() += 1;
    }
    let want: BTreeMap<String, u64> = exp
        .outcomes
        .iter()
        .map(|(k, v)| ((*k).to_owned(), *v))
        .collect();
    assert_eq!(outcomes, want, "outcome counts");

    let mut req_ids = HashSet::new();
    let mut resp_ids = HashSet::new();
    for r in records {
        if let Some(id) = &r.request_id {
            assert!(id.starts_with("req_011CW"), "{id}");
            assert!(req_ids.insert(id.clone()), "request id {id} on two records");
        }
        if let Some(id) = &r.response_id {
            assert!(
                resp_ids.insert(id.clone()),
                "response id {id} on two records"
            );
        }
    }
    // Every call but the GenAI-semconv-only ones carries its request id
    // somewhere (SDK span, or the error text the instrumentation quotes);
    // OpenLIT successes carry only the response id.
    assert!(
        req_ids.len() as u64 >= exp.calls / 2,
        "{} request ids",
        req_ids.len()
    );

    let unpriced = records.iter().filter(|r| r.unpriced).count() as u64;
    assert_eq!(unpriced, exp.unpriced, "unpriced records");

    let mut tokens = (0, 0, 0, 0);
    for r in records.iter().filter(|r| outcome(r) == "success") {
        tokens.0 += r.input_tokens.expect("input tokens");
        tokens.1 += r.cache_read_tokens.expect("cache read");
        tokens.2 += r.cache_write_tokens.expect("cache write");
        tokens.3 += r.output_tokens.expect("output tokens");
        assert!(r.unpriced || r.cost_usd.is_some(), "{r:?}");
    }
    assert_eq!(tokens, exp.success_tokens, "token sums of successful calls");

    for r in records {
        let name = outcome(r);
        if name == "stream_error" {
            assert_eq!(r.output_tokens, None, "lost output of a dead stream");
            assert!(r.overload);
        }
        if name == "overloaded" {
            assert_eq!(r.http_status, Some(529));
        }
        if name == "rate_limited" {
            assert_eq!(r.http_status, Some(429));
        }
    }
}

#[test]
fn protobuf_mix_gives_one_record_per_call() {
    let n = 3000;
    let bodies = request_bodies(7, n, 50, Format::Protobuf, BASE);
    let exp = expected(7, n, 50);
    assert!(exp.twins > 100 && exp.split_twins > 10, "{exp:?}");
    assert!(exp.conventions.len() == 5);
    let mut e = Enricher::new(EnrichConfig::default());
    for b in &bodies {
        e.push_traces_protobuf(b).expect("decodes");
    }
    let records = e.finish();
    check(&records, &exp);
    let stats = e.stats();
    assert_eq!(stats.extract.rejected_total(), 0, "{stats:?}");
    // Every span was read as an observation of some call, and all but one
    // per call were folded into it: twins merged, attempts merged.
    assert_eq!(stats.merged, spans_in(&bodies) - n, "{stats:?}");
}

#[test]
fn json_mix_decodes_to_the_same_records() {
    let n = 800;
    let pb = request_bodies(99, n, 64, Format::Protobuf, BASE);
    let js = request_bodies(99, n, 64, Format::Json, BASE);
    assert_eq!(pb.len(), js.len());
    let mut a = Enricher::new(EnrichConfig::default());
    for b in &pb {
        a.push(&decode(Signal::Traces, Encoding::Protobuf, b).unwrap());
    }
    let mut b = Enricher::new(EnrichConfig::default());
    for body in &js {
        b.push(&decode(Signal::Traces, Encoding::Json, body).unwrap());
    }
    let (ra, rb) = (a.finish(), b.finish());
    check(&rb, &expected(99, n, 64));
    assert_eq!(
        serde_json::to_string(&ra).unwrap(),
        serde_json::to_string(&rb).unwrap()
    );
}

#[test]
fn seeds_are_deterministic_and_distinct() {
    let a = request_bodies(5, 200, 30, Format::Protobuf, BASE);
    let b = request_bodies(5, 200, 30, Format::Protobuf, BASE);
    let c = request_bodies(6, 200, 30, Format::Protobuf, BASE);
    assert_eq!(a, b);
    assert_ne!(a, c);
    // Two seeds never share a call: their records do not merge.
    let mut e = Enricher::new(EnrichConfig::default());
    for body in a.iter().chain(&c) {
        e.push_traces_protobuf(body).unwrap();
    }
    assert_eq!(e.finish().len(), 400);
}

#[test]
fn overload_burst_on_one_organization_is_what_the_records_show() {
    let n = 2000;
    let mix = claudewatch_loadgen::Mix {
        seed: 5,
        overloaded_percent: 60,
        organizations: 1,
    };
    let bodies = request_bodies(mix, n, 50, Format::Protobuf, BASE);
    let exp = expected(mix, n, 50);
    let overloaded = exp.outcomes.get("overloaded").copied().unwrap_or(0);
    assert!(
        overloaded > n / 2,
        "60 % overloaded on top of the mix: {exp:?}"
    );
    let mut e = Enricher::new(EnrichConfig::default());
    for b in &bodies {
        e.push_traces_protobuf(b).expect("decodes");
    }
    let records = e.finish();
    check(&records, &exp);
    let orgs: HashSet<&str> = records
        .iter()
        .filter_map(|r| r.organization_id.as_deref())
        .collect();
    assert_eq!(orgs.len(), 1, "one organisation: {orgs:?}");
    let default_orgs: HashSet<String> = {
        let mut e = Enricher::new(EnrichConfig::default());
        for b in &request_bodies(5, n, 50, Format::Protobuf, BASE) {
            e.push_traces_protobuf(b).expect("decodes");
        }
        e.finish()
            .into_iter()
            .filter_map(|r| r.organization_id)
            .collect()
    };
    assert_eq!(default_orgs.len(), 4, "the default mix spreads over four");
}
