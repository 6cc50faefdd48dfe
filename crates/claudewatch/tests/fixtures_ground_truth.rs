//! Acceptance: `claudewatch enrich` over every real-client capture in
//! `../shared/fixtures` yields exactly one record per SDK call, equal to the
//! ground truth field by field.
//!
//! Ground truth has one line per HTTP call; a scenario (one SDK call, retries
//! included) is one record whose values are those of its last attempt.
//! Where a client loses information (its MANIFEST.md says so), the loss is
//! listed in `common::ground_truth::known_losses` with the value we produce
//! instead, and asserted: nothing is skipped. The comparison is shared with
//! `realclients.rs` (the same clients live, through `claudewatch serve`).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::ground_truth::{assert_matches_ground_truth, load_expected, shared_dir};
use serde_json::Value;

fn run_enrich(dir: &Path) -> (Vec<Value>, String, i32) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("fixture dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.chars().next().is_some_and(|c| c.is_ascii_digit())
                && (name.ends_with(".pb") || name.ends_with(".json"))
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixture bodies in {}", dir.display());
    let out = Command::new(env!("CARGO_BIN_EXE_claudewatch"))
        .arg("enrich")
        .args(&files)
        .output()
        .expect("run claudewatch");
    let stdout = String::from_utf8(out.stdout).expect("utf8 stdout");
    let records = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("record JSON"))
        .collect();
    (
        records,
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code().unwrap_or(-1),
    )
}

fn check_client(client: &str) {
    let dir = shared_dir().join("fixtures").join(client);
    let expected = load_expected(&dir.join("ground_truth.jsonl"));
    let (records, stderr, code) = run_enrich(&dir);
    assert_eq!(code, 0, "{client}: enrich exited {code}; stderr:\n{stderr}");
    assert_matches_ground_truth(client, client, &[], &expected, &records);
}

#[test]
fn anthropic_native_matches_ground_truth() {
    check_client("anthropic-native");
}

#[test]
fn traceloop_matches_ground_truth() {
    check_client("traceloop");
}

#[test]
fn openlit_matches_ground_truth() {
    check_client("openlit");
}

#[test]
fn claude_code_json_matches_ground_truth() {
    check_client("claude-code-json");
}

#[test]
fn every_fixture_client_is_covered() {
    let covered = [
        "anthropic-native",
        "traceloop",
        "openlit",
        "claude-code-json",
    ];
    let mut present: Vec<String> = std::fs::read_dir(shared_dir().join("fixtures"))
        .expect("fixtures dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("ground_truth.jsonl").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    present.sort();
    let missing: Vec<&String> = present
        .iter()
        .filter(|p| !covered.contains(&p.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "fixture clients without a ground-truth test: {missing:?}"
    );
}
