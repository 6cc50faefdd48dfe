//! The ClickHouse sink against the local ClickHouse (`deploy/local`), with the
//! `clickhouse` crate at its defaults (LZ4, validation): schema migrations,
//! field-by-field round trip of the fixture records, and the fault cases with
//! exact counts (server down then back, a retried batch whose insert had
//! succeeded, a refused row, a table changed under the sink), rollups
//! included.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::path::Path;
use std::time::Duration;

use claudewatch_model::CallRecord;
use claudewatch_sink::clickhouse::row::CallRow;
use claudewatch_sink::clickhouse::schema::{self, SchemaError};
use claudewatch_sink::{ClickHouseConfig, ClickHouseSink, Sink};
use clickhouse::Client;
use common::LocalClickHouse;

const DB: &str = "cw";

fn config(server: &LocalClickHouse, dir: &Path) -> ClickHouseConfig {
    ClickHouseConfig {
        url: server.url.clone(),
        database: DB.into(),
        journal_dir: dir.join("journal"),
        dead_letter_path: dir.join("dead.jsonl"),
        batch_age: Duration::from_millis(50),
        retry_initial: Duration::from_millis(50),
        retry_max: Duration::from_millis(400),
        insert_timeout: Duration::from_secs(10),
        drain_timeout: Duration::from_secs(10),
        ..ClickHouseConfig::default()
    }
}

/// Applies the schema to `DB` on `server` (no TTL).
fn migrate(rt: &tokio::runtime::Runtime, server: &LocalClickHouse) {
    rt.block_on(schema::migrate(
        &Client::default().with_url(&server.url),
        DB,
        0,
    ))
    .unwrap();
}

/// A temporary directory, the local server in it with the schema applied,
/// the sink's configuration and a client.
fn migrated() -> (
    tempfile::TempDir,
    LocalClickHouse,
    tokio::runtime::Runtime,
    ClickHouseConfig,
    Client,
) {
    let data = tempfile::tempdir().unwrap();
    let server = LocalClickHouse::start(&data.path().join("ch"), 0);
    let rt = runtime();
    migrate(&rt, &server);
    let config = config(&server, data.path());
    let client = config.client();
    (data, server, rt, config, client)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn count(client: &Client, sql: &str) -> u64 {
    client.query(sql).fetch_one::<u64>().await.expect(sql)
}

/// Writes, flushes and publishes `records` as serve does (flush, then the
/// spool checkpoint, then `committed`).
fn store(sink: &mut ClickHouseSink, records: &[CallRecord]) {
    sink.write(records).unwrap();
    sink.flush().unwrap();
    let p = sink.position();
    sink.committed(p).unwrap();
}

#[test]
fn migrations_are_idempotent_versioned_and_refuse_a_newer_schema() {
    let data = tempfile::tempdir().unwrap();
    let server = LocalClickHouse::start(&data.path().join("ch"), 0);
    let client = Client::default().with_url(&server.url);
    runtime().block_on(async {
        let first = schema::migrate(&client, DB, 90).await.unwrap();
        assert_eq!(
            (first.from, first.to, first.applied.clone()),
            (0, 1, vec![1])
        );
        assert!(!first.ttl_changed);
        let again = schema::migrate(&client, DB, 90).await.unwrap();
        assert_eq!(
            (again.from, again.applied.len(), again.ttl_changed),
            (1, 0, false)
        );
        assert_eq!(
            count(&client, "SELECT count() FROM cw.schema_migrations").await,
            1
        );
        let tables = count(
            &client,
            "SELECT count() FROM system.tables WHERE database = 'cw'",
        )
        .await;
        assert_eq!(
            tables, 8,
            "schema_migrations, llm_calls, 3 rollups, 3 views"
        );
        // A new TTL is applied, once.
        assert!(schema::migrate(&client, DB, 30).await.unwrap().ttl_changed);
        assert!(!schema::migrate(&client, DB, 30).await.unwrap().ttl_changed);
        assert!(schema::migrate(&client, DB, 0).await.unwrap().ttl_changed);
        // A schema from the future: refused, nothing changed.
        client
            .query("INSERT INTO cw.schema_migrations (version, name) VALUES (99, 'future')")
            .execute()
            .await
            .unwrap();
        let err = schema::migrate(&client, DB, 0).await.unwrap_err();
        assert!(
            matches!(
                err,
                SchemaError::TooNew {
                    found: 99,
                    known: 1,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(
            count(&client, "SELECT count() FROM cw.schema_migrations").await,
            2
        );
    });
    server.stop();
}

#[test]
fn fixture_records_round_trip_field_by_field() {
    round_trip(true);
}

#[test]
fn fixture_records_round_trip_uncompressed_too() {
    round_trip(false);
}

/// Stores the fixture records (inserts LZ4-compressed or not) and reads them
/// back field by field.
fn round_trip(lz4: bool) {
    let records = common::fixture_records();
    assert!(records.len() > 30, "{} fixture records", records.len());
    let (_data, server, rt, config, _) = migrated();
    let config = ClickHouseConfig { lz4, ..config };
    let mut sink = ClickHouseSink::open(&config).unwrap();
    sink.recover(None).unwrap();
    store(&mut sink, &records);
    assert!(sink.wait_idle(Duration::from_secs(30)));
    let client = config.client();
    let rows: Vec<CallRow> = rt
        .block_on(client.query("SELECT ?fields FROM llm_calls").fetch_all())
        .unwrap();
    let mut back: Vec<CallRecord> = rows.into_iter().map(CallRow::into_record).collect();
    let key = |r: &CallRecord| serde_json::to_string(r).unwrap();
    let mut expected = records.clone();
    expected.sort_by_key(key);
    back.sort_by_key(key);
    assert_eq!(back.len(), expected.len());
    for (b, e) in back.iter().zip(&expected) {
        assert_eq!(b, e);
    }
    rt.block_on(common::assert_rollups_match(&client, records.len() as u64));
    drop(sink);
    server.stop();
}

#[test]
fn clickhouse_down_under_load_then_back_loses_nothing_and_doubles_nothing() {
    let data = tempfile::tempdir().unwrap();
    let ch_dir = data.path().join("ch");
    let server = LocalClickHouse::start(&ch_dir, 0);
    let port = server.port();
    let rt = runtime();
    migrate(&rt, &server);
    let config = config(&server, data.path());
    let client = config.client();
    let mut sink = ClickHouseSink::open(&config).unwrap();
    sink.recover(None).unwrap();
    for b in 0..3 {
        store(&mut sink, &common::synthetic(b, 2_000));
    }
    assert!(sink.wait_idle(Duration::from_secs(30)));
    assert_eq!(
        rt.block_on(count(&client, "SELECT count() FROM llm_calls")),
        6_000
    );

    // Down: flushes still succeed (the journal holds the rows), nothing is inserted.
    server.stop();
    for b in 3..8 {
        store(&mut sink, &common::synthetic(b, 2_000));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(sink.backlog_rows(), 10_000);
    assert!(!sink.wait_idle(Duration::from_millis(300)));
    let retries = sink
        .stats()
        .retries
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        retries > 0,
        "the inserter retried while the server was down"
    );

    // Back on the same port and data: everything lands once.
    let server = LocalClickHouse::start(&ch_dir, port);
    assert!(sink.wait_idle(Duration::from_secs(60)), "backlog drained");
    assert_eq!(sink.backlog_rows(), 0);
    // A new client: the old one's pooled connection went with the old server,
    // and its runtime (idle between `block_on`s) never saw it close.
    let client = config.client();
    rt.block_on(common::assert_rollups_match(&client, 16_000));
    let distinct = rt.block_on(count(
        &client,
        "SELECT uniqExact(request_id) FROM llm_calls",
    ));
    assert_eq!(distinct, 16_000);
    drop(sink);
    server.stop();
}

#[test]
fn a_full_journal_fails_flush_without_losing_what_it_holds() {
    let data = tempfile::tempdir().unwrap();
    let mut config = ClickHouseConfig {
        // Nothing listens there: ClickHouse is down.
        url: "http://127.0.0.1:9".into(),
        journal_dir: data.path().join("journal"),
        dead_letter_path: data.path().join("dead.jsonl"),
        max_journal_bytes: 400_000,
        drain_timeout: Duration::from_millis(100),
        ..ClickHouseConfig::default()
    };
    config.retry_max = Duration::from_millis(100);
    let mut sink = ClickHouseSink::open(&config).unwrap();
    sink.recover(None).unwrap();
    let mut stored = 0;
    let mut refused = false;
    for b in 0..20 {
        let records = common::synthetic(b, 500);
        sink.write(&records).unwrap();
        match sink.flush() {
            Ok(()) => {
                stored += records.len() as u64;
                let p = sink.position();
                sink.committed(p).unwrap();
            }
            Err(e) => {
                assert!(
                    matches!(e, claudewatch_sink::SinkError::Backlogged { .. }),
                    "{e}"
                );
                refused = true;
                break;
            }
        }
    }
    assert!(refused, "the journal filled up");
    assert_eq!(sink.backlog_rows(), stored);
    drop(sink);
    // Reopened: the same rows wait, none lost.
    let sink = ClickHouseSink::open(&config).unwrap();
    assert_eq!(sink.backlog_rows(), stored);
}

#[test]
fn a_batch_retried_after_its_insert_succeeded_is_stored_once() {
    let (data, server, rt, config, client) = migrated();
    let records = common::synthetic(1, 3_000);
    let mut sink = ClickHouseSink::open(&config).unwrap();
    sink.recover(None).unwrap();
    sink.write(&records).unwrap();
    sink.flush().unwrap();
    let position = sink.position();
    // The journal as it was before the insert's answer came back.
    let copy = data.path().join("journal-copy");
    copy_dir(&config.journal_dir, &copy);
    sink.committed(position).unwrap();
    assert!(sink.wait_idle(Duration::from_secs(30)));
    drop(sink);
    rt.block_on(common::assert_rollups_match(&client, 3_000));

    // The answer was lost: the journal still says "not confirmed", and the
    // restarted sink inserts the same batch again, with the same token.
    std::fs::remove_dir_all(&config.journal_dir).unwrap();
    copy_dir(&copy, &config.journal_dir);
    let mut sink = ClickHouseSink::open(&config).unwrap();
    assert_eq!(sink.backlog_rows(), 3_000);
    sink.recover(position).unwrap();
    assert!(sink.wait_idle(Duration::from_secs(30)));
    let stats = sink.stats();
    assert_eq!(
        stats
            .rows_inserted
            .load(std::sync::atomic::Ordering::Relaxed),
        3_000,
        "sent again"
    );
    rt.block_on(common::assert_rollups_match(&client, 3_000));
    drop(sink);
    server.stop();
}

/// A record that cannot be a row at all (time beyond DateTime64(9)) goes to
/// the dead-letter file at flush; the rest of the batch is stored.
#[test]
fn an_unencodable_record_is_dead_lettered_and_the_rest_stored() {
    refused_rows(false);
}

/// A row ClickHouse refuses (the table's plausibility constraint) is isolated
/// by splitting the batch, dead-lettered with ClickHouse's reason, and the
/// rest of the batch is stored.
#[test]
fn a_row_clickhouse_refuses_is_dead_lettered_and_the_rest_stored() {
    refused_rows(true);
}

fn refused_rows(with_constraint_violation: bool) {
    let (_data, server, rt, config, client) = migrated();
    let mut records = common::synthetic(2, 1_000);
    if with_constraint_violation {
        records[321].time_unix_nano = 915_184_800_000_000_000; // 1999-01-01
    }
    // This one cannot even be a DateTime64(9).
    records[654].time_unix_nano = u64::MAX;
    let bad = if with_constraint_violation { 2 } else { 1 };
    let mut sink = ClickHouseSink::open(&config).unwrap();
    sink.recover(None).unwrap();
    store(&mut sink, &records);
    assert!(sink.wait_idle(Duration::from_secs(60)));
    rt.block_on(common::assert_rollups_match(&client, 1_000 - bad));
    let dead = std::fs::read_to_string(&config.dead_letter_path).unwrap();
    let lines: Vec<serde_json::Value> = dead
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len() as u64, bad, "{dead}");
    let by_id = |id: &str| {
        lines
            .iter()
            .find(|l| l["record"]["request_id"] == id)
            .unwrap_or_else(|| panic!("{id} not dead-lettered: {dead}"))
    };
    let unencodable = by_id("req_2_654");
    assert!(unencodable["reason"]
        .as_str()
        .unwrap()
        .contains("DateTime64"));
    if with_constraint_violation {
        let refused = by_id("req_2_321");
        assert!(
            refused["reason"]
                .as_str()
                .unwrap()
                .contains("VIOLATED_CONSTRAINT"),
            "{refused}"
        );
        assert!(refused["batch_token"].is_string());
        let back: CallRecord = serde_json::from_value(refused["record"].clone()).unwrap();
        assert_eq!(back, records[321]);
    }
    assert_eq!(
        sink.stats()
            .dead_letters
            .load(std::sync::atomic::Ordering::Relaxed),
        bad
    );
    drop(sink);
    server.stop();
}

/// The rows are sent as the journal holds them, under a header of the
/// table's types read once: a table that changed only in `LowCardinality`
/// (same bytes) takes them after one refused attempt and a fresh read; a
/// table that no longer fits the rows holds them in the journal, retried and
/// never dead-lettered, until it fits again.
#[test]
fn a_table_changed_under_the_sink_holds_the_rows_until_they_fit() {
    use std::sync::atomic::Ordering::Relaxed;
    let (_data, server, rt, config, client) = migrated();
    let records = common::synthetic(3, 1_100);
    let mut sink = ClickHouseSink::open(&config).unwrap();
    sink.recover(None).unwrap();
    let stored = || rt.block_on(count(&client, "SELECT count() FROM llm_calls"));

    store(&mut sink, &records[..500]);
    assert!(sink.wait_idle(Duration::from_secs(60)));
    assert_eq!(stored(), 500);

    let alter = |sql: &str| rt.block_on(client.query(sql).execute()).unwrap();
    alter("ALTER TABLE llm_calls MODIFY COLUMN environment Nullable(String)");
    let retries = sink.stats().retries.load(Relaxed);
    store(&mut sink, &records[500..1_000]);
    assert!(sink.wait_idle(Duration::from_secs(60)));
    assert_eq!(stored(), 1_000);
    assert_eq!(
        sink.stats().retries.load(Relaxed),
        retries + 1,
        "one attempt under the old header, refused by ClickHouse"
    );

    alter("ALTER TABLE llm_calls MODIFY COLUMN http_status Nullable(UInt32)");
    let retries = sink.stats().retries.load(Relaxed);
    store(&mut sink, &records[1_000..]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while sink.stats().retries.load(Relaxed) < retries + 3 {
        assert!(std::time::Instant::now() < deadline, "no retries");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(sink.backlog_rows(), 100);
    assert_eq!(stored(), 1_000);
    assert_eq!(sink.stats().dead_letters.load(Relaxed), 0);

    alter("ALTER TABLE llm_calls MODIFY COLUMN http_status Nullable(UInt16)");
    assert!(sink.wait_idle(Duration::from_secs(60)));
    rt.block_on(common::assert_rollups_match(&client, 1_100));
    assert!(!config.dead_letter_path.exists());
    drop(sink);
    server.stop();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Every row of a sustained load is stored once, rollups included; the rate
/// is printed. As a measurement: `CLAUDEWATCH_RATE_ROWS=500000 cargo test
/// --release -p claudewatch-sink --test clickhouse_sink -- --nocapture rate`.
#[test]
fn rate_of_the_sink_into_the_local_server() {
    let data = tempfile::tempdir().unwrap();
    let server = LocalClickHouse::start(&data.path().join("ch"), 0);
    let rt = runtime();
    migrate(&rt, &server);
    let config = config(&server, data.path());
    let total = common::rate_rows(20_000);
    let per_batch = total.min(25_000);
    let batches: Vec<Vec<CallRecord>> = (0..total / per_batch)
        .map(|b| common::synthetic(b, per_batch))
        .collect();
    let mut sink = ClickHouseSink::open(&config).unwrap();
    sink.recover(None).unwrap();
    let started = std::time::Instant::now();
    for b in &batches {
        store(&mut sink, b);
    }
    let journaled = started.elapsed();
    assert!(sink.wait_idle(Duration::from_secs(300)));
    let elapsed = started.elapsed();
    let rows = (total / per_batch * per_batch) as f64;
    eprintln!(
        "journaled {rows} rows in {:.2} s ({:.0} rows/s); stored in ClickHouse after {:.2} s ({:.0} rows/s)",
        journaled.as_secs_f64(),
        rows / journaled.as_secs_f64(),
        elapsed.as_secs_f64(),
        rows / elapsed.as_secs_f64()
    );
    rt.block_on(common::assert_rollups_match(&config.client(), rows as u64));
    drop(sink);
    server.stop();
}
