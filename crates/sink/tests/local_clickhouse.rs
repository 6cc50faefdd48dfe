//! The local ClickHouse of `deploy/local/` (ClickHouse's engine from chdb-core behind
//! the HTTP interface) driven by the `clickhouse` crate at its defaults: LZ4-compressed
//! `RowBinaryWithNamesAndTypes` inserts, validated fetches, settings in the URL.
//!
//! Each test starts its own server (`python -m chserver`) on a free port with a
//! fresh data directory, in the virtual environment that `deploy/local/venv.sh` creates
//! (pip installs from PyPI the first time, so a fresh machine needs no setup).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use clickhouse::{Client, Row};
use serde::{Deserialize, Serialize};

mod common;

use common::LocalClickHouse;

/// What these tests ask of the shared local server.
trait ServerExt {
    /// A client with the crate's defaults (LZ4, validation) on `database`.
    fn client(&self, database: &str) -> Client;
    /// `GET path` on the server: status line, headers (lower-cased names) and body.
    fn http_get(&self, path: &str) -> (u16, Vec<(String, String)>, String);
}

impl ServerExt for LocalClickHouse {
    fn client(&self, database: &str) -> Client {
        Client::default()
            .with_url(&self.url)
            .with_database(database)
    }

    fn http_get(&self, path: &str) -> (u16, Vec<(String, String)>, String) {
        let address = self.url.trim_start_matches("http://");
        let mut stream = TcpStream::connect(address).expect("connect");
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
        )
        .expect("send request");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read response");
        let (head, body) = response.split_once("\r\n\r\n").expect("header end");
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|code| code.parse().ok())
            .expect("status line");
        let headers = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
            .collect();
        (status, headers, body.to_owned())
    }
}

/// SIGTERM, and a clean exit (status 0).
fn stop_cleanly(server: LocalClickHouse) {
    let status = server.stop();
    assert!(status.success(), "chserver exited with {status} on SIGTERM");
}

/// A row mixing the types the call records will use.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
struct Call {
    /// DateTime64(9): nanoseconds since the epoch.
    ts: i64,
    /// LowCardinality(String).
    model: String,
    /// Nullable(Decimal(18, 9)): the decimal's raw value, 10^-9 units.
    cost: Option<i64>,
    /// UInt32.
    tokens: u32,
    /// String.
    request_id: String,
    /// Nullable(UInt32).
    ttft_ms: Option<u32>,
}

const CALLS_DDL: &str = "(
    ts DateTime64(9),
    model LowCardinality(String),
    cost Nullable(Decimal(18, 9)),
    tokens UInt32,
    request_id String,
    ttft_ms Nullable(UInt32)
) ENGINE = MergeTree ORDER BY ts";

/// Row `i` of `batch`: every value distinct and edge values (empty, non-ASCII,
/// NULL, extremes) along the way.
fn call(batch: u32, i: u32) -> Call {
    let n = i64::from(batch) * 1_000_000 + i64::from(i);
    Call {
        ts: 1_795_393_612_843_722_046 + n * 1_000_003,
        model: [
            "claude-sonnet-4-5",
            "claude-opus-4-1",
            "claude-haiku-4-5",
            "",
        ][i as usize % 4]
            .to_owned(),
        cost: (!i.is_multiple_of(3)).then(|| {
            (if i.is_multiple_of(2) { -1 } else { 1 }) * (n * 123_456_789 % 999_999_999_999_999_999)
        }),
        tokens: if i.is_multiple_of(97) {
            u32::MAX
        } else {
            i * 7
        },
        request_id: format!("req_{batch}_{i}_é✓"),
        ttft_ms: (!i.is_multiple_of(5)).then_some(i % 10_000),
    }
}

/// Create `database` (through a client on `default`, as `database` does not exist yet)
/// and its `table` of calls.
async fn create_calls(client: &Client, database: &str, table: &str, extra_settings: &str) {
    client
        .clone()
        .with_database("default")
        .query(&format!("CREATE DATABASE IF NOT EXISTS {database}"))
        .execute()
        .await
        .expect("create database");
    client
        .query(&format!(
            "CREATE TABLE {table} {CALLS_DDL} {extra_settings}"
        ))
        .execute()
        .await
        .expect("create table");
}

async fn insert_calls(client: &Client, table: &str, rows: &[Call]) {
    let mut insert = client.insert::<Call>(table).await.expect("insert");
    for row in rows {
        insert.write(row).await.expect("write row");
    }
    insert.end().await.expect("end insert");
}

async fn fetch_calls(client: &Client, table: &str) -> Vec<Call> {
    client
        .query(&format!("SELECT ?fields FROM {table} ORDER BY ts"))
        .fetch_all::<Call>()
        .await
        .expect("fetch")
}

async fn count(client: &Client, table: &str) -> u64 {
    client
        .query(&format!("SELECT count() FROM {table}"))
        .fetch_one::<u64>()
        .await
        .expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_round_trip_and_persist_across_a_restart() {
    let data = tempfile::tempdir().expect("temp dir");
    let server = LocalClickHouse::start(data.path(), 0);
    let client = server.client("cw");
    create_calls(&client, "cw", "calls", "").await;

    // Enough rows for several 256 KiB LZ4 blocks.
    let rows: Vec<Call> = (0..30_000).map(|i| call(0, i)).collect();
    insert_calls(&client, "calls", &rows).await;
    assert_eq!(fetch_calls(&client, "calls").await, rows);

    // Query parameters (the crate sends them as multipart/form-data).
    let picked = client
        .query(
            "SELECT ?fields FROM calls WHERE tokens = {tokens:UInt32} AND request_id = {id:String}",
        )
        .param("tokens", rows[12].tokens)
        .param("id", &rows[12].request_id)
        .fetch_all::<Call>()
        .await
        .expect("fetch with parameters");
    assert_eq!(picked, vec![rows[12].clone()]);

    // The crate asks for `Accept-Encoding: lz4`; with `enable_http_compression=1` the
    // result comes back as an LZ4 frame, which the crate decodes.
    let compressed = client
        .clone()
        .with_setting("enable_http_compression", "1")
        .query("SELECT ?fields FROM calls ORDER BY ts")
        .fetch_all::<Call>()
        .await
        .expect("fetch with HTTP compression");
    assert_eq!(compressed, rows);

    // A setting in the URL reaches the engine.
    let threads = client
        .query("SELECT toUInt64(getSetting('max_threads'))")
        .with_setting("max_threads", "3")
        .fetch_one::<u64>()
        .await
        .expect("setting");
    assert_eq!(threads, 3);

    stop_cleanly(server);
    let server = LocalClickHouse::start(data.path(), 0);
    let client = server.client("cw");
    assert_eq!(fetch_calls(&client, "calls").await, rows);
    stop_cleanly(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insert_deduplication_token_makes_a_retried_insert_a_no_op() {
    let data = tempfile::tempdir().expect("temp dir");
    let server = LocalClickHouse::start(data.path(), 0);
    let client = server.client("cw");
    create_calls(
        &client,
        "cw",
        "calls",
        "SETTINGS non_replicated_deduplication_window = 100",
    )
    .await;

    let rows: Vec<Call> = (0..1_000).map(|i| call(1, i)).collect();
    let with_token = |token: &str| {
        client
            .clone()
            .with_setting("insert_deduplication_token", token)
    };
    insert_calls(&with_token("batch-1"), "calls", &rows).await;
    assert_eq!(count(&client, "calls").await, 1_000);
    // The same block again under the same token: a retry, dropped.
    insert_calls(&with_token("batch-1"), "calls", &rows).await;
    assert_eq!(count(&client, "calls").await, 1_000);
    // Under another token the same rows are a new insert.
    insert_calls(&with_token("batch-2"), "calls", &rows).await;
    assert_eq!(count(&client, "calls").await, 2_000);
    stop_cleanly(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_clickhouse_exception_codes() {
    let data = tempfile::tempdir().expect("temp dir");
    let server = LocalClickHouse::start(data.path(), 0);
    let client = server.client("default");

    let err = client
        .query("SELEC 1")
        .execute()
        .await
        .expect_err("syntax error");
    let text = err.to_string();
    assert!(
        matches!(err, clickhouse::error::Error::BadResponse(_)),
        "{err:?}"
    );
    assert!(
        text.contains("Code: 62") && text.contains("SYNTAX_ERROR"),
        "{text}"
    );

    let err = client
        .query("SELECT ?fields FROM missing")
        .fetch_all::<Call>()
        .await
        .expect_err("unknown table");
    assert!(err.to_string().contains("Code: 60"), "{err}");

    let err = client
        .insert::<Call>("missing")
        .await
        .err()
        .expect("insert into a missing table");
    assert!(err.to_string().contains("Code: 60"), "{err}");

    // On the wire: ClickHouse's status, header and text.
    let (status, headers, body) = server.http_get("/?query=SELEC%201");
    assert_eq!(status, 400);
    assert!(headers.contains(&("x-clickhouse-exception-code".to_owned(), "62".to_owned())));
    assert!(
        body.starts_with("Code: 62. DB::Exception: Syntax error"),
        "{body}"
    );
    let (status, headers, _) = server.http_get("/?query=SELECT%201%20FROM%20missing");
    assert_eq!(status, 404);
    assert!(headers.contains(&("x-clickhouse-exception-code".to_owned(), "60".to_owned())));
    // GET is read-only, as on a real server.
    let (status, headers, body) =
        server.http_get("/?query=CREATE%20TABLE%20t%20(a%20UInt8)%20ENGINE%3DMemory");
    assert_eq!(status, 500);
    assert!(
        headers.contains(&("x-clickhouse-exception-code".to_owned(), "164".to_owned())),
        "{body}"
    );

    let (status, _, body) = server.http_get("/ping");
    assert_eq!((status, body.as_str()), (200, "Ok.\n"));
    stop_cleanly(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_inserts_all_land() {
    let data = tempfile::tempdir().expect("temp dir");
    let server = LocalClickHouse::start(data.path(), 0);
    let client = server.client("cw");
    create_calls(&client, "cw", "calls", "").await;

    const TASKS: u32 = 6;
    const ROWS: u32 = 5_000;
    let tasks: Vec<_> = (0..TASKS)
        .map(|batch| {
            let client = client.clone();
            tokio::spawn(async move {
                let rows: Vec<Call> = (0..ROWS).map(|i| call(batch + 10, i)).collect();
                for part in rows.chunks(1_000) {
                    insert_calls(&client, "calls", part).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("insert task");
    }

    let mut expected: Vec<Call> = (0..TASKS)
        .flat_map(|batch| (0..ROWS).map(move |i| call(batch + 10, i)))
        .collect();
    expected.sort_by_key(|row| row.ts);
    assert_eq!(fetch_calls(&client, "calls").await, expected);
    stop_cleanly(server);
}

/// A wide row for the insert-rate measurement.
#[derive(Row, Serialize)]
struct Wide {
    ts: i64,
    service: String,
    model: String,
    outcome: String,
    request_id: String,
    trace_id: String,
    http_status: u16,
    input_tokens: u32,
    output_tokens: u32,
    cache_read_tokens: u32,
    cache_write_tokens: u32,
    cost: Option<i64>,
    ttft_ms: Option<f64>,
    duration_ms: f64,
    retry_attempt: u8,
    stream: bool,
    retryable: bool,
    environment: String,
    source: String,
    error_type: Option<String>,
}

/// A long streamed insert of a wide table stores every row; the raw insert
/// rate is printed. As a measurement, 1M rows: `CLAUDEWATCH_RATE_ROWS=1000000
/// cargo test --release -p claudewatch-sink --test local_clickhouse -- --nocapture
/// insert_rate` (about 360k rows/s on a 2-core machine, client and server sharing it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_rate_of_a_wide_table() {
    let data = tempfile::tempdir().expect("temp dir");
    let server = LocalClickHouse::start(data.path(), 0);
    let client = server.client("default");
    client
        .query(
            "CREATE TABLE wide (ts DateTime64(9), service LowCardinality(String), model LowCardinality(String),
             outcome LowCardinality(String), request_id String, trace_id String, http_status UInt16,
             input_tokens UInt32, output_tokens UInt32, cache_read_tokens UInt32, cache_write_tokens UInt32,
             cost Nullable(Decimal(18, 9)), ttft_ms Nullable(Float64), duration_ms Float64, retry_attempt UInt8,
             stream Bool, retryable Bool, environment LowCardinality(String), source LowCardinality(String),
             error_type Nullable(String)) ENGINE = MergeTree ORDER BY ts",
        )
        .execute()
        .await
        .expect("create");
    let rows: u64 = std::env::var("CLAUDEWATCH_RATE_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let started = Instant::now();
    let mut insert = client.insert::<Wide>("wide").await.expect("insert");
    for i in 0..rows {
        insert
            .write(&Wide {
                ts: 1_795_393_612_843_722_046 + i as i64 * 1_000,
                service: "checkout".into(),
                model: "claude-sonnet-4-5".into(),
                outcome: "success".into(),
                request_id: format!("req_011CWnt0nrF8392jRAAt{i:08}"),
                trace_id: format!("{i:032x}"),
                http_status: 200,
                input_tokens: (i % 5000) as u32,
                output_tokens: (i % 700) as u32,
                cache_read_tokens: 0,
                cache_write_tokens: 12,
                cost: Some(i as i64 * 3_600),
                ttft_ms: (i % 2 == 0).then_some(152.817),
                duration_ms: 396.555,
                retry_attempt: 0,
                stream: true,
                retryable: false,
                environment: "prod".into(),
                source: "anthropic_sdk@2.12.0".into(),
                error_type: None,
            })
            .await
            .expect("write");
    }
    insert.end().await.expect("end");
    let elapsed = started.elapsed();
    assert_eq!(count(&client, "wide").await, rows);
    eprintln!(
        "inserted {rows} rows of 20 columns in {:.2} s: {:.0} rows/s",
        elapsed.as_secs_f64(),
        rows as f64 / elapsed.as_secs_f64()
    );
    stop_cleanly(server);
}
