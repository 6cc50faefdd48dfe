//! `claudewatch serve` with the ClickHouse sink as a real process, against the
//! local ClickHouse (`deploy/local`): kill -9 under load (inserts in flight,
//! records journaled but not confirmed, requests spooled but not sealed),
//! restart, and every acknowledged call is in `llm_calls` exactly once, the
//! rollups agreeing.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../../sink/tests/common/mod.rs"]
mod ch;
mod common;

use common::load::{agent, load_until_gone, metric, post, unique_batch};

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const SPANS: u64 = 20;

struct Serve {
    child: Child,
    base: String,
}

impl Serve {
    fn launch(dir: &Path, clickhouse: &str) -> Serve {
        Serve::launch_with(dir, clickhouse, &[])
    }

    fn launch_with(dir: &Path, clickhouse: &str, env: &[(&str, &str)]) -> Serve {
        let (child, base) = common::process::spawn_serve(
            Command::new(env!("CARGO_BIN_EXE_claudewatch"))
                .args([
                    "serve",
                    "--http-listen",
                    "127.0.0.1:0",
                    "--grpc-listen",
                    "127.0.0.1:0",
                ])
                .args(["--merge-window-ms", "600"])
                .arg("--spool-dir")
                .arg(dir.join("spool"))
                .env("CLAUDEWATCH_SINK__KIND", "clickhouse")
                .env("CLAUDEWATCH_SINK__CLICKHOUSE__URL", clickhouse)
                .env("CLAUDEWATCH_SINK__CLICKHOUSE__DATABASE", "cw")
                .env("CLAUDEWATCH_SINK__CLICKHOUSE__TTL_DAYS", "0")
                .env("CLAUDEWATCH_SINK__CLICKHOUSE__BATCH_AGE_MS", "200")
                .env("CLAUDEWATCH_SINK__CLICKHOUSE__BATCH_ROWS", "1000")
                .env(
                    "CLAUDEWATCH_SINK__CLICKHOUSE__JOURNAL_DIR",
                    dir.join("journal"),
                )
                .env(
                    "CLAUDEWATCH_SINK__CLICKHOUSE__DEAD_LETTER_PATH",
                    dir.join("dead.jsonl"),
                )
                .env("CLAUDEWATCH_SINK__CLICKHOUSE__DRAIN_TIMEOUT_MS", "20000")
                .env("CLAUDEWATCH_SERVER__SHUTDOWN_TIMEOUT_SECS", "40")
                .envs(env.iter().copied()),
        );
        Serve { child, base }
    }

    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn stop(mut self) -> i32 {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        self.child.wait().unwrap().code().unwrap_or(-1)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A query's TabSeparated answer.
fn query(url: &str, sql: &str) -> String {
    let mut resp = agent().post(url).send(sql).unwrap();
    let text = resp.body_mut().read_to_string().unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{sql}: {text}");
    text
}

#[test]
fn kill_9_between_insert_and_acknowledgement_then_restart_stores_every_call_once() {
    let dir = tempfile_dir();
    let server = ch::LocalClickHouse::start(&dir.join("ch"), 0);
    let serve = Serve::launch(&dir, &server.url);
    let threads = load_until_gone(&serve.base, 3, SPANS);
    std::thread::sleep(Duration::from_millis(2500));
    serve.kill();
    let acked: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert!(
        acked.len() > 10,
        "the load ran ({} acknowledged)",
        acked.len()
    );
    let before: u64 = query(&server.url, "SELECT count() FROM cw.llm_calls")
        .trim()
        .parse()
        .unwrap();
    assert!(
        before < acked.len() as u64 * SPANS,
        "the kill came before everything was stored ({before} rows), so the replay is tested"
    );

    let serve = Serve::launch(&dir, &server.url);
    assert_eq!(serve.stop(), 0);
    let ids = query(
        &server.url,
        "SELECT request_id FROM cw.llm_calls ORDER BY request_id",
    );
    let mut ids: Vec<&str> = ids.lines().collect();
    let total = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), total, "no call stored twice");
    for batch in &acked {
        for i in 0..SPANS {
            let id = format!("req_load_{}", batch * 1_000_000 + i + 1);
            assert!(
                ids.binary_search(&id.as_str()).is_ok(),
                "acknowledged call {id} is missing"
            );
        }
    }
    let hourly: u64 = query(&server.url, "SELECT sum(calls) FROM cw.llm_calls_hourly")
        .trim()
        .parse()
        .unwrap();
    let daily: u64 = query(
        &server.url,
        "SELECT sum(requests) FROM cw.llm_requests_daily",
    )
    .trim()
    .parse()
    .unwrap();
    assert_eq!(
        (hourly, daily),
        (total as u64, total as u64),
        "rollups count each call once"
    );
    eprintln!(
        "{} acknowledged requests, {before} rows before the restart, {total} after",
        acked.len()
    );
    server.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn clickhouse_down_fills_the_journal_then_clients_get_503_and_nothing_is_dropped() {
    let dir = tempfile_dir_named("down");
    // Nothing listens on port 9: ClickHouse is down from the start.
    let serve = Serve::launch_with(
        &dir,
        "http://127.0.0.1:9",
        &[
            ("CLAUDEWATCH_SINK__CLICKHOUSE__MAX_JOURNAL_BYTES", "100000"),
            ("CLAUDEWATCH_PIPELINE__MAX_UNSTORED_RECORDS", "500"),
            ("CLAUDEWATCH_SINK__CLICKHOUSE__DRAIN_TIMEOUT_MS", "100"),
            ("CLAUDEWATCH_SERVER__SHUTDOWN_TIMEOUT_SECS", "3"),
        ],
    );
    let mut acked = 0u64;
    let mut refused = 0u64;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut batch = 0;
    while refused == 0 && Instant::now() < deadline {
        match post(
            &serve.base,
            "/v1/traces",
            "application/x-protobuf",
            &unique_batch(batch, SPANS),
        ) {
            200 => acked += 1,
            503 => refused += 1,
            other => panic!("unexpected answer {other}"),
        }
        batch += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        refused > 0,
        "ClickHouse down: the backlog reached the clients as 503"
    );
    assert!(
        acked * SPANS > 500,
        "the journal and the backlog filled first ({acked} accepted)"
    );
    assert!(
        metric(&serve.base, "claudewatch_clickhouse_journal_rows") > 0.0,
        "/metrics shows the journal's backlog"
    );
    assert!(
        metric(&serve.base, "claudewatch_clickhouse_insert_retries_total") > 0.0,
        "/metrics counts the failed inserts"
    );
    // Every acknowledged request waited for a spool append (at most one per
    // request sent; the refused ones may have been refused before it).
    let appends = metric(&serve.base, "claudewatch_spool_append_seconds_count");
    assert!(
        appends >= 1.0 && appends <= (acked + refused) as f64,
        "{appends} spool appends for {acked} acknowledged requests"
    );
    drop(serve);
    // Everything acknowledged is in the spool or the journal: started against a
    // live server, it all lands.
    let server = ch::LocalClickHouse::start(&dir.join("ch"), 0);
    let serve = Serve::launch(&dir, &server.url);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut stored = 0;
    while Instant::now() < deadline {
        stored = query(&server.url, "SELECT count() FROM cw.llm_calls")
            .trim()
            .parse()
            .unwrap();
        if stored >= acked * SPANS {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // The counter moves once the insert's answer is read, just after the
    // rows became visible.
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&serve.base, "claudewatch_clickhouse_inserted_rows_total") < stored as f64 {
        assert!(
            Instant::now() < deadline,
            "/metrics counts the rows ClickHouse confirmed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(serve.stop(), 0);
    let distinct: u64 = query(
        &server.url,
        "SELECT uniqExact(request_id) FROM cw.llm_calls",
    )
    .trim()
    .parse()
    .unwrap();
    let total: u64 = query(&server.url, "SELECT count() FROM cw.llm_calls")
        .trim()
        .parse()
        .unwrap();
    assert!(
        stored >= acked * SPANS,
        "{stored} stored of {} acknowledged",
        acked * SPANS
    );
    assert_eq!(distinct, total, "nothing stored twice");
    server.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    tempfile_dir_named("kill9")
}

fn tempfile_dir_named(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("cw-serve-ch-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
