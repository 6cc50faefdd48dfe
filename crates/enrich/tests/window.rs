//! The merge window gives, request by request, what the batch enricher gives
//! over all requests at once; it seals only aged calls, drops late duplicates,
//! stays under its cap, and undoes pushes on rollback.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use claudewatch_enrich::{
    extract_request, CallRecord, EnrichConfig, Enricher, MergeWindow, Origin, WindowLimits,
};
use claudewatch_otlp::{decode, Encoding, ExportRequest, Signal};

const MS: u64 = 1_000_000;
const AGE: u64 = 2_000 * MS;

fn shared() -> std::path::PathBuf {
    std::env::var("CLAUDEWATCH_SHARED")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared")
        })
}

/// The request bodies of one fixture client, in capture order.
fn bodies(client: &str) -> Vec<(Signal, Encoding, Vec<u8>)> {
    let dir = shared().join("fixtures").join(client);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            name.starts_with(|c: char| c.is_ascii_digit())
                && (name.ends_with(".pb") || name.ends_with(".json"))
        })
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            let signal = if name.contains("traces") {
                Signal::Traces
            } else if name.contains("logs") {
                Signal::Logs
            } else {
                Signal::Metrics
            };
            let encoding = if name.ends_with(".pb") {
                Encoding::Protobuf
            } else {
                Encoding::Json
            };
            (signal, encoding, std::fs::read(p).unwrap())
        })
        .collect()
}

/// The requests of one fixture client, in capture order.
fn requests(client: &str) -> Vec<ExportRequest> {
    bodies(client)
        .iter()
        .map(|(signal, encoding, body)| decode(*signal, *encoding, body).unwrap())
        .collect()
}

fn limits() -> WindowLimits {
    WindowLimits {
        max_age_ns: AGE,
        max_observations: 100_000,
        max_sealed_ids: 400_000,
    }
}

fn json(records: &[CallRecord]) -> Vec<String> {
    records
        .iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect()
}

fn batch(reqs: &[ExportRequest]) -> Vec<CallRecord> {
    let mut e = Enricher::new(EnrichConfig::default());
    for r in reqs {
        e.push(r);
    }
    e.finish()
}

#[test]
fn request_by_request_equals_all_at_once_for_every_client() {
    for client in [
        "anthropic-native",
        "traceloop",
        "openlit",
        "claude-code-json",
    ] {
        let reqs = requests(client);
        let mut w = MergeWindow::new(EnrichConfig::default(), limits());
        let mut records = Vec::new();
        let mut now = 1_000_000 * MS;
        for (i, r) in reqs.iter().enumerate() {
            w.push(r, i as u64, now);
            // Requests arrive 100 ms apart: nothing is old enough to seal yet.
            records.extend(w.seal(now, false).records);
            now += 100 * MS;
        }
        assert!(
            records.is_empty(),
            "{client}: sealed before the window aged"
        );
        let sealed = w.seal(now + AGE, false);
        assert!(w.is_empty(), "{client}: everything aged out");
        assert_eq!(
            json(&sealed.records),
            json(&batch(&reqs)),
            "{client}: the window's records differ from the batch enricher's"
        );
        let observations = w.stats().calls + w.stats().merged;
        assert_eq!(sealed.origins.len() as u64, observations, "{client}");
    }
}

#[test]
fn extracted_elsewhere_then_admitted_equals_pushed_for_every_client() {
    for client in [
        "anthropic-native",
        "traceloop",
        "openlit",
        "claude-code-json",
    ] {
        let config = EnrichConfig::default();
        let mut w = MergeWindow::new(config.clone(), limits());
        let mut now = 1_000_000 * MS;
        let mut observations = 0;
        for (i, (signal, encoding, body)) in bodies(client).iter().enumerate() {
            let x = extract_request(*signal, *encoding, body, &config.attribute_limits).unwrap();
            observations += x.len() as u32;
            assert_eq!(x.stats.rejected_total(), 0, "{client}");
            w.admit_extracted(x, i as u64, now);
            now += 100 * MS;
        }
        assert_eq!(
            w.len() as u32,
            observations,
            "{client}: every observation admitted"
        );
        let sealed = w.seal(now + AGE, false);
        assert_eq!(
            json(&sealed.records),
            json(&batch(&requests(client))),
            "{client}: extraction on its own differs from the window's"
        );
    }
}

#[test]
fn a_call_keeps_waiting_while_its_observations_keep_arriving() {
    // OpenLIT exports the httpx child span and the call span in separate
    // requests; seals between them (every half window) must not split a call
    // whose observations keep arriving within the window.
    let reqs = requests("openlit");
    let mut w = MergeWindow::new(EnrichConfig::default(), limits());
    let mut now = 5_000_000 * MS;
    let mut records = Vec::new();
    for (i, r) in reqs.iter().enumerate() {
        w.push(r, i as u64, now);
        now += AGE / 2;
        records.extend(w.seal(now, false).records);
    }
    records.extend(w.seal(now + AGE, false).records);
    assert_eq!(json(&records), json(&batch(&reqs)));
}

#[test]
fn a_quiet_window_knows_exactly_when_its_next_call_is_due() {
    let (early, late) = (requests("anthropic-native"), requests("openlit"));
    let mut w = MergeWindow::new(EnrichConfig::default(), limits());
    assert_eq!(w.settled_due_ns(), None);
    for (i, r) in early.iter().enumerate() {
        w.push(r, i as u64, 0);
    }
    for (i, r) in late.iter().enumerate() {
        w.push(r, 100 + i as u64, AGE / 2);
    }
    assert_eq!(w.settled_due_ns(), None, "not known before a seal");
    let first = w.seal(AGE, false);
    assert_eq!(first.records.len(), batch(&early).len());
    assert_eq!(
        w.settled_due_ns(),
        Some(AGE / 2 + AGE),
        "the calls left are due one age after they arrived"
    );
    // Something new: the grouping may change, so the time is no longer known.
    w.push(&late[0], 200, AGE + MS);
    assert_eq!(w.settled_due_ns(), None);
    let rest = w.seal(AGE * 3, false);
    assert_eq!(rest.records.len(), batch(&late).len());
    assert!(w.is_empty());
    assert_eq!(w.settled_due_ns(), None, "nothing left");
}

#[test]
fn a_resend_after_sealing_is_a_late_duplicate_not_a_second_record() {
    let reqs = requests("anthropic-native");
    let mut w = MergeWindow::new(EnrichConfig::default(), limits());
    for (i, r) in reqs.iter().enumerate() {
        w.push(r, i as u64, 0);
    }
    let first = w.seal(AGE, false);
    assert_eq!(first.records.len(), batch(&reqs).len());
    let observations = first.origins.len() as u64;
    // The client retries every request (its acknowledgements were lost).
    for (i, r) in reqs.iter().enumerate() {
        w.push(r, 100 + i as u64, AGE + MS);
    }
    assert!(w.is_empty(), "every resent observation was recognised");
    let second = w.seal(AGE * 3, false);
    assert!(second.records.is_empty());
    assert_eq!(w.stats().late_duplicates, observations);
    assert_eq!(second.origins.len() as u64, observations);
    assert!(second.origins.iter().all(|o| o.entry >= 100));
}

#[test]
fn a_resend_is_recognised_while_its_ids_are_held_and_only_then() {
    // Seal every call, then resend every request: with room for all the
    // sealed ids, each resent observation is a late duplicate; with none,
    // each call is written again (the limit `max_sealed_ids` documents).
    let reqs = requests("anthropic-native");
    let calls = batch(&reqs).len();
    let run = |max_sealed_ids: usize| {
        let mut w = MergeWindow::new(
            EnrichConfig::default(),
            WindowLimits {
                max_sealed_ids,
                ..limits()
            },
        );
        for (i, r) in reqs.iter().enumerate() {
            w.push(r, i as u64, 0);
        }
        assert_eq!(w.seal(AGE, false).records.len(), calls);
        let held = w.sealed_ids();
        for (i, r) in reqs.iter().enumerate() {
            w.push(r, 100 + i as u64, AGE + MS);
        }
        let again = w.seal(AGE * 3, false).records.len();
        (held, again, w.stats().late_duplicates)
    };
    let (all_ids, again, late) = run(1 << 20);
    assert!(all_ids >= calls, "each call leaves at least one id");
    assert_eq!((again, late > 0), (0, true));
    assert_eq!(run(all_ids), (all_ids, 0, late));
    let (held, again, late) = run(0);
    assert_eq!((held, again, late), (0, calls, 0));
}

#[test]
fn seal_into_appends_after_what_the_buffer_already_holds() {
    let reqs = requests("anthropic-native");
    let expected = batch(&reqs);
    let mut w = MergeWindow::new(EnrichConfig::default(), limits());
    for (i, r) in reqs.iter().enumerate() {
        w.push(r, i as u64, 0);
    }
    // A reused buffer: its earlier content stays first, the seal follows it.
    let mut out = w.seal(0, false);
    assert!(out.records.is_empty());
    out.records.push(expected[0].clone());
    out.origins.push(Origin {
        entry: 99,
        ordinal: 7,
    });
    w.seal_into(AGE, false, &mut out);
    assert_eq!(out.records.len(), expected.len() + 1);
    assert_eq!(out.records[0], expected[0]);
    assert_eq!(
        out.origins[0],
        Origin {
            entry: 99,
            ordinal: 7
        }
    );
    assert!(out.origins[1..].iter().all(|o| o.entry < reqs.len() as u64));
    assert_eq!(
        w.stats().calls,
        expected.len() as u64,
        "only this seal's calls count"
    );
    assert!(w.is_empty());
}

#[test]
fn a_full_window_seals_its_oldest_calls_early() {
    let reqs = requests("anthropic-native");
    let total_obs = {
        let mut w = MergeWindow::new(EnrichConfig::default(), limits());
        for (i, r) in reqs.iter().enumerate() {
            w.push(r, i as u64, 0);
        }
        w.len()
    };
    assert!(total_obs > 4);
    let cap = total_obs / 2;
    let mut w = MergeWindow::new(
        EnrichConfig::default(),
        WindowLimits {
            max_age_ns: AGE,
            max_observations: cap,
            max_sealed_ids: (cap * 4).max(1024),
        },
    );
    let mut records = Vec::new();
    for (i, r) in reqs.iter().enumerate() {
        w.push(r, i as u64, i as u64 * MS);
        records.extend(w.seal(i as u64 * MS, false).records);
        assert!(w.len() <= cap, "window over its cap: {} > {cap}", w.len());
    }
    assert!(w.stats().sealed_early > 0);
    records.extend(w.seal(u64::MAX / 2, false).records);
    assert_eq!(records.len(), batch(&reqs).len());
}

#[test]
fn rollback_forgets_the_pushes_and_skip_drops_stored_observations() {
    let reqs = requests("traceloop");
    let mut w = MergeWindow::new(EnrichConfig::default(), limits());
    w.push(&reqs[0], 0, 0);
    let before = w.len();
    let mark = w.mark();
    for (i, r) in reqs.iter().enumerate().skip(1) {
        w.push(r, i as u64, 0);
    }
    assert!(w.len() > before);
    w.rollback(mark);
    assert_eq!(w.len(), before);

    // Replay skipping the observations of entry 0 leaves none of them.
    let mut replay = MergeWindow::new(EnrichConfig::default(), limits());
    let mark = replay.mark();
    replay.push(&reqs[0], 0, 0);
    replay.skip_since(mark, |o: Origin| o.entry == 0);
    assert!(replay.is_empty());
}

#[test]
fn attribute_caps_cut_and_count() {
    let reqs = requests("anthropic-native");
    let full = batch(&reqs);
    let most = full.iter().map(|r| r.attributes.len()).max().unwrap();
    assert!(most >= 2, "the fixture has unmapped attributes to cut");
    let config = EnrichConfig {
        attribute_limits: claudewatch_enrich::AttributeLimits {
            max_count: 1,
            max_value_bytes: 4,
        },
        ..EnrichConfig::default()
    };
    let mut e = Enricher::new(config.clone());
    let mut w = MergeWindow::new(config, limits());
    for (i, r) in reqs.iter().enumerate() {
        e.push(r);
        w.push(r, i as u64, 0);
    }
    for records in [e.finish(), w.seal(0, true).records] {
        assert_eq!(records.len(), full.len());
        for r in &records {
            assert!(r.attributes.len() <= 1);
            assert!(r.attributes.values().all(|v| v.len() <= 4));
        }
    }
    assert!(e.stats().extract.dropped_attributes > 0);
    assert!(e.stats().extract.truncated_values > 0);
    assert_eq!(e.stats().extract, w.stats().extract);
}
