//! `claudewatch serve` as a real process: fixture clients over OTLP/HTTP give
//! the same records as `enrich`; SIGTERM under load drains, exits 0, and every
//! acknowledged request's records are on disk exactly once.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::load::{load_until_gone, metric, post, unique_batch};

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

fn shared() -> PathBuf {
    std::env::var("CLAUDEWATCH_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

struct Server {
    child: Child,
    base: String,
    out: PathBuf,
    spool: PathBuf,
}

impl Server {
    /// Starts a fresh server: empty sink file, empty spool.
    fn start(name: &str, extra: &[&str]) -> Server {
        let (out, spool) = fresh_files(name);
        Server::launch(out, spool, extra)
    }

    /// Starts a fresh server with the default merge window (the others use a
    /// short one to keep the tests quick).
    fn start_with_default_window(name: &str) -> Server {
        let (out, spool) = fresh_files(name);
        Server::spawn(out, spool, &[], &[])
    }

    /// Starts a server on an existing sink file and spool (a restart).
    fn launch(out: PathBuf, spool: PathBuf, extra: &[&str]) -> Server {
        // A short merge window keeps the tests quick, unless a test sets its own.
        let window: &[&str] = if extra.contains(&"--merge-window-ms") {
            &[]
        } else {
            &["--merge-window-ms", "300"]
        };
        Server::spawn(out, spool, window, extra)
    }

    fn spawn(out: PathBuf, spool: PathBuf, window: &[&str], extra: &[&str]) -> Server {
        let (child, base) = common::process::spawn_serve(
            Command::new(env!("CARGO_BIN_EXE_claudewatch"))
                .args(["serve", "--http-listen", "127.0.0.1:0"])
                .args(["--grpc-listen", "127.0.0.1:0"])
                .args(window)
                .arg("--jsonl")
                .arg(&out)
                .arg("--spool-dir")
                .arg(&spool)
                .args(extra),
        );
        Server {
            child,
            base,
            out,
            spool,
        }
    }

    fn post(&self, path: &str, content_type: &str, body: &[u8]) -> u16 {
        post(&self.base, path, content_type, body)
    }

    fn stop(mut self) -> (i32, Vec<serde_json::Value>) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let code = self.child.wait().unwrap().code().unwrap_or(-1);
        let records = read_records(&self.out);
        let _ = std::fs::remove_file(&self.out);
        let _ = std::fs::remove_dir_all(&self.spool);
        (code, records)
    }

    /// SIGKILL: no drain, no flush; returns the sink file and spool to restart on.
    fn kill(mut self) -> (PathBuf, PathBuf) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        (self.out.clone(), self.spool.clone())
    }
}

/// A test's sink file and spool directory, both removed if left over.
fn fresh_files(name: &str) -> (PathBuf, PathBuf) {
    let out = std::env::temp_dir().join(format!("cw-serve-{}-{name}.jsonl", std::process::id()));
    let spool = out.with_extension("spool");
    let _ = std::fs::remove_file(&out);
    let _ = std::fs::remove_dir_all(&spool);
    (out, spool)
}

impl Drop for Server {
    /// A failed test must not leave its server running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_records(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn bodies(client: &str) -> Vec<(PathBuf, &'static str, &'static str)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(shared().join("fixtures").join(client))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(|c: char| c.is_ascii_digit())
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.to_string_lossy().into_owned();
            let path = if name.contains("traces") {
                "/v1/traces"
            } else if name.contains("logs") {
                "/v1/logs"
            } else {
                "/v1/metrics"
            };
            let ct = if name.ends_with(".json") {
                "application/json"
            } else {
                "application/x-protobuf"
            };
            (p, path, ct)
        })
        .collect()
}

fn enrich_cli(client: &str) -> Vec<serde_json::Value> {
    let files: Vec<PathBuf> = bodies(client).into_iter().map(|(p, _, _)| p).collect();
    let out = Command::new(env!("CARGO_BIN_EXE_claudewatch"))
        .arg("enrich")
        .args(&files)
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn fixture_clients_over_http_equal_the_enrich_command() {
    // Clients whose every call is described within one export body.
    for client in ["anthropic-native", "traceloop", "claude-code-json"] {
        let server = Server::start(client, &[]);
        for (file, path, ct) in bodies(client) {
            let status = server.post(path, ct, &std::fs::read(&file).unwrap());
            // traceloop's metrics body is posted to /v1/metrics; every body is valid.
            assert_eq!(status, 200, "{client}: {}", file.display());
        }
        let (code, records) = server.stop();
        assert_eq!(code, 0, "{client}: serve exits 0 on SIGTERM");
        assert_eq!(
            records,
            enrich_cli(client),
            "{client}: serve and enrich disagree"
        );
    }
}

#[test]
fn openlit_pieces_in_separate_requests_merge_in_the_window() {
    // OpenLIT exports a call's retry attempts and its log in separate bodies:
    // the merge window joins them as `enrich` does over all files at once.
    let server = Server::start("openlit", &[]);
    for (file, path, ct) in bodies("openlit") {
        assert_eq!(server.post(path, ct, &std::fs::read(&file).unwrap()), 200);
    }
    let (code, records) = server.stop();
    assert_eq!(code, 0);
    let cli = enrich_cli("openlit");
    assert_eq!(cli.len(), 13);
    assert_eq!(records, cli);
}

#[test]
fn spans_arriving_after_their_logs_call_was_written_are_not_second_records() {
    // OpenTelemetry SDKs export logs every second and spans every 5 s by
    // default (OTEL_BLRP_SCHEDULE_DELAY, OTEL_BSP_SCHEDULE_DELAY), so
    // OpenLIT's log of a call can reach serve seconds before the call's
    // spans, later than the default merge window: the call is written from
    // the log. Its OpenLIT span is then a late duplicate by its response id,
    // and its HTTP client span, linked only to that span (exported ahead of
    // it in the same request), must be one too, not a second call.
    let fixture = |name: &str| std::fs::read(shared().join("fixtures/openlit").join(name)).unwrap();
    let server = Server::start_with_default_window("late-spans");
    assert_eq!(
        server.post(
            "/v1/logs",
            "application/x-protobuf",
            &fixture("003-logs.pb")
        ),
        200
    );
    std::thread::sleep(Duration::from_secs(4));
    for traces in ["001-traces.pb", "002-traces.pb"] {
        assert_eq!(
            server.post("/v1/traces", "application/x-protobuf", &fixture(traces)),
            200
        );
    }
    // Late pieces are counted as the worker admits them.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let late = loop {
        let late = metric(&server.base, "claudewatch_late_duplicates_total");
        if late >= 4.0 || std::time::Instant::now() >= deadline {
            break late;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (code, records) = server.stop();
    assert_eq!(code, 0);
    assert_eq!(records.len(), 2, "one record per call: {records:#?}");
    for r in &records {
        assert_eq!(r["source"], "openlit", "written from the log: {r}");
        assert!(r["cost_usd"].is_string(), "the log's usage, priced: {r}");
    }
    assert_eq!(
        late, 4.0,
        "both calls' OpenLIT and HTTP spans were late duplicates"
    );
}

#[test]
fn sigterm_under_load_writes_every_acknowledged_call_exactly_once() {
    const SPANS: u64 = 20;
    let server = Server::start("load", &[]);
    let threads = load_until_gone(&server.base, 4, SPANS);
    std::thread::sleep(Duration::from_millis(800));
    let (code, records) = server.stop();
    assert_eq!(code, 0, "serve exits 0 after draining");
    let acked: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert!(
        acked.len() > 10,
        "the load ran ({} acknowledged requests)",
        acked.len()
    );

    assert_exactly_once(&records, &acked, SPANS);
    // Requests answered 503 during shutdown may or may not have been written; nothing else was.
    assert!(records.len() as u64 >= acked.len() as u64 * SPANS);
}

/// Asserts every call of every acknowledged batch is in `records` exactly once.
fn assert_exactly_once(records: &[serde_json::Value], acked: &[u64], spans: u64) {
    let mut ids: Vec<String> = records
        .iter()
        .map(|r| r["request_id"].as_str().unwrap().to_owned())
        .collect();
    let total = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), total, "no call written twice");
    for batch in acked {
        for i in 0..spans {
            let id = format!("req_load_{}", batch * 1_000_000 + i + 1);
            assert!(
                ids.binary_search(&id).is_ok(),
                "acknowledged call {id} is missing"
            );
        }
    }
}

#[test]
fn kill_9_under_load_then_restart_loses_nothing_and_writes_nothing_twice() {
    const SPANS: u64 = 20;
    // A long window: at the kill, most acknowledged calls are only in the spool.
    let server = Server::start("kill9", &["--merge-window-ms", "600"]);
    let threads = load_until_gone(&server.base, 4, SPANS);
    std::thread::sleep(Duration::from_millis(1500));
    let (out, spool) = server.kill();
    let acked: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert!(
        acked.len() > 10,
        "the load ran ({} acknowledged)",
        acked.len()
    );
    // The kill may cut the last line in half: count whole records only.
    let before_restart = std::fs::read_to_string(&out)
        .unwrap_or_default()
        .lines()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
        .count();
    assert!(
        before_restart < acked.len() * SPANS as usize,
        "the kill came before everything was stored ({before_restart} records), so the replay is tested"
    );

    let restarted = Server::launch(out, spool, &[]);
    let (code, records) = restarted.stop();
    assert_eq!(code, 0);
    assert_exactly_once(&records, &acked, SPANS);
}

/// POSTs a body; the status and the Retry-After header.
fn post_retry_after(base: &str, body: &[u8]) -> (u16, Option<String>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let resp = agent
        .post(format!("{base}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .send(body)
        .unwrap();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (resp.status().as_u16(), retry)
}

#[test]
fn a_full_spool_answers_503_with_retry_after_then_the_retry_succeeds() {
    const SPANS: u64 = 5;
    let first = unique_batch(0, SPANS);
    let second = unique_batch(1, SPANS);
    // Room for one request (body plus frame header): the second waits until
    // the first is stored.
    let room = (first.len().max(second.len()) + 40).to_string();
    let server = Server::start(
        "spoolfull",
        &["--merge-window-ms", "500", "--spool-max-bytes", &room],
    );
    assert_eq!(post_retry_after(&server.base, &first).0, 200);
    let (status, retry_after) = post_retry_after(&server.base, &second);
    assert_eq!(status, 503, "the spool holds the first request");
    let wait: u64 = retry_after.expect("Retry-After").parse().unwrap();
    let mut retries = 0;
    loop {
        std::thread::sleep(Duration::from_secs(wait));
        retries += 1;
        match post_retry_after(&server.base, &second).0 {
            200 => break,
            503 if retries < 10 => continue,
            other => panic!("retry answered {other}"),
        }
    }
    let (code, records) = server.stop();
    assert_eq!(code, 0);
    assert_exactly_once(&records, &[0, 1], SPANS);
    assert_eq!(records.len() as u64, 2 * SPANS);
}
