//! Bad input to `claudewatch enrich`: every case gives a clear error naming
//! the file and what is wrong, the other files are still processed, the exit
//! status is 1, and nothing panics.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn shared_dir() -> PathBuf {
    match std::env::var("CLAUDEWATCH_SHARED") {
        Ok(dir) => PathBuf::from(dir),
        Err(_) => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    }
}

fn good_file() -> PathBuf {
    shared_dir().join("fixtures/anthropic-native/001-traces.pb")
}

struct Run {
    code: i32,
    stdout_lines: usize,
    stderr: String,
}

fn enrich(args: &[&Path]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_claudewatch"))
        .arg("enrich")
        .args(args)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout_lines: String::from_utf8_lossy(&out.stdout).lines().count(),
        stderr,
    }
}

fn temp(name: &str, bytes: &[u8]) -> (tempdir::TempDir, PathBuf) {
    let dir = tempdir::TempDir::new();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).expect("write temp file");
    (dir, path)
}

/// Minimal temp-dir helper (no extra dependency).
mod tempdir {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU32, Ordering};

    pub struct TempDir(PathBuf);
    static N: AtomicU32 = AtomicU32::new(0);

    impl TempDir {
        pub fn new() -> TempDir {
            let p = std::env::temp_dir().join(format!(
                "claudewatch-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&p).expect("temp dir");
            TempDir(p)
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Asserts the bad file is rejected with `needle` in the message while the good file still yields its record.
fn assert_rejected(name: &str, bytes: &[u8], needle: &str) {
    let (_dir, bad) = temp(name, bytes);
    let run = enrich(&[&bad, &good_file()]);
    assert_eq!(run.code, 1, "exit status for {name}: {}", run.stderr);
    assert_eq!(
        run.stdout_lines, 1,
        "the good file is still processed ({name}): {}",
        run.stderr
    );
    let line = run
        .stderr
        .lines()
        .find(|l| l.contains("rejected") && l.contains(name))
        .unwrap_or_else(|| panic!("no rejection line naming {name}: {}", run.stderr));
    assert!(
        line.contains(needle),
        "{name}: expected {needle:?} in {line:?}"
    );
}

#[test]
fn truncated_protobuf() {
    let good = std::fs::read(good_file()).expect("fixture");
    assert_rejected(
        "cut-traces.pb",
        &good[..good.len() / 2],
        "invalid protobuf traces request",
    );
}

#[test]
fn corrupt_protobuf() {
    assert_rejected(
        "garbage-traces.pb",
        &[0xff, 0xff, 0xff, 0xff, 0x0f, 0x01, 0x02],
        "invalid protobuf",
    );
}

#[test]
fn invalid_json() {
    assert_rejected(
        "broken-traces.json",
        b"{\"resourceSpans\": [",
        "invalid JSON",
    );
}

#[test]
fn json_of_the_wrong_signal() {
    assert_rejected(
        "mislabelled-traces.json",
        br#"{"resourceLogs":[]}"#,
        "this is a logs request, not traces",
    );
}

#[test]
fn protobuf_of_the_wrong_signal() {
    let logs = std::fs::read(shared_dir().join("fixtures/openlit/003-logs.pb")).expect("fixture");
    assert_rejected("renamed-traces.pb", &logs, "it decodes as a logs request");
}

#[test]
fn empty_file() {
    assert_rejected("empty-traces.pb", b"", "file is empty");
}

#[test]
fn non_utf8_string() {
    // ExportTraceServiceRequest{resource_spans[0].scope_spans[0].spans[0].name = b"\xff\xfe"}
    let span = [&[0x2a, 0x02][..], &[0xff, 0xfe]].concat();
    let scope_spans = [&[0x12, span.len() as u8][..], &span].concat();
    let resource_spans = [&[0x12, scope_spans.len() as u8][..], &scope_spans].concat();
    let req = [&[0x0a, resource_spans.len() as u8][..], &resource_spans].concat();
    assert_rejected("latin1-traces.pb", &req, "UTF-8");
}

#[test]
fn deeply_nested_values() {
    let mut v = String::from(r#"{"stringValue":"x"}"#);
    for _ in 0..200 {
        v = format!(r#"{{"arrayValue":{{"values":[{v}]}}}}"#);
    }
    let doc = format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"attributes":[{{"key":"k","value":{v}}}]}}]}}]}}]}}"#
    );
    assert_rejected("deep-traces.json", doc.as_bytes(), "invalid");
}

#[test]
fn bad_trace_id_in_json_names_the_path() {
    assert_rejected(
        "badid-traces.json",
        br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz","name":"x"}]}]}]}"#,
        "resourceSpans[0].scopeSpans[0].spans[0].traceId",
    );
}

#[test]
fn unknown_signal_in_file_name() {
    assert_rejected("body.bin", b"\x0a\x00", "cannot tell the signal");
}

#[test]
fn absurdly_long_attribute_is_truncated_not_fatal() {
    let long = "x".repeat(2_000_000);
    let doc = format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"scope":{{"name":"com.anthropic.sdk.python"}},"spans":[{{
            "traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"b7ad6b7169203331","name":"anthropic.messages.create",
            "startTimeUnixNano":"1","endTimeUnixNano":"2",
            "attributes":[{{"key":"gen_ai.request.model","value":{{"stringValue":"claude-sonnet-4-5"}}}},
                          {{"key":"http.response.status_code","value":{{"intValue":200}}}},
                          {{"key":"custom.note","value":{{"stringValue":"{long}"}}}},
                          {{"key":"gen_ai.response.id","value":{{"stringValue":"{long}"}}}}]}}]}}]}}]}}"#
    );
    let (_dir, path) = temp("long-traces.json", doc.as_bytes());
    let out = Command::new(env!("CARGO_BIN_EXE_claudewatch"))
        .arg("enrich")
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf8");
    assert!(
        stdout.len() < 4096,
        "record stays bounded: {} bytes",
        stdout.len()
    );
    let rec: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one record");
    assert_eq!(
        rec["attributes"]["custom.note"].as_str().map(str::len),
        Some(256)
    );
    assert!(rec["response_id"].is_null(), "an absurd id is not mapped");
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 attribute values truncated"));
}

#[test]
fn missing_file_is_reported_and_others_processed() {
    let run = enrich(&[Path::new("/nonexistent/999-traces.pb"), &good_file()]);
    assert_eq!(run.code, 1);
    assert_eq!(run.stdout_lines, 1);
    assert!(
        run.stderr.contains("999-traces.pb") && run.stderr.contains("cannot read the file"),
        "{}",
        run.stderr
    );
}

#[test]
fn bad_price_table_is_a_usage_error() {
    let (_dir, prices) = temp("prices.toml", b"[multipliers]\ncache_read = 'lots'\n");
    let out = Command::new(env!("CARGO_BIN_EXE_claudewatch"))
        .arg("enrich")
        .arg("--prices")
        .arg(&prices)
        .arg(good_file())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("prices.toml"));
}
