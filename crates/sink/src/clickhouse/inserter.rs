//! The background inserter: drains the journal into ClickHouse, batch by
//! batch in journal order, each batch with its deduplication token, retried
//! with exponential backoff and full jitter until ClickHouse confirms it.
//!
//! A batch is sent as the journal holds it (see [`header`]): no row is
//! decoded or serialized again on the way.
//!
//! A batch ClickHouse refuses because of its data (not connectivity, not the
//! server's state) is split in halves, each inserted under a token derived
//! from the batch's and the half's range, until the refused rows are alone:
//! those go to the dead-letter file with ClickHouse's reason, the rest is
//! stored.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use claudewatch_model::CallRecord;
use clickhouse::Client;

use super::journal::{BatchLimits, Group, Journal};
use bytes::Bytes;

use super::header::{self, TableHeader};
use super::row;
use crate::SinkError;

/// ClickHouse exception codes that are about the rows themselves: retrying
/// the same rows cannot help, so the batch is split to isolate them.
const DATA_ERROR_CODES: &[u32] = &[
    6,   // CANNOT_PARSE_TEXT
    26,  // CANNOT_PARSE_QUOTED_STRING
    27,  // CANNOT_PARSE_INPUT_ASSERTION_FAILED
    32,  // ATTEMPT_TO_READ_AFTER_EOF
    33,  // CANNOT_READ_ALL_DATA
    38,  // CANNOT_PARSE_DATE
    41,  // CANNOT_PARSE_DATETIME
    69,  // ARGUMENT_OUT_OF_BOUND
    70,  // CANNOT_CONVERT_TYPE
    72,  // CANNOT_PARSE_NUMBER
    117, // INCORRECT_DATA
    131, // TOO_LARGE_STRING_SIZE
    321, // VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
    349, // CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
    395, // FUNCTION_THROW_IF_VALUE_IS_NON_ZERO
    407, // DECIMAL_OVERFLOW
    469, // VIOLATED_CONSTRAINT
];

/// The ClickHouse exception code in an error, if it carries one.
pub fn exception_code(e: &clickhouse::error::Error) -> Option<u32> {
    let clickhouse::error::Error::BadResponse(text) = e else {
        return None;
    };
    let rest = &text[text.find("Code: ")? + 6..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Whether ClickHouse refused the rows themselves (see [`DATA_ERROR_CODES`];
/// also `TOO_MANY_PARTS` when it is about partitions in one insert, which a
/// smaller batch fixes). A header the table does not match is not: the rows
/// are fine, the table changed (see [`header`]).
pub fn is_data_error(e: &clickhouse::error::Error) -> bool {
    if header::is_header_error(e) {
        return false;
    }
    match exception_code(e) {
        Some(252) => e.to_string().contains("partitions for single INSERT"),
        Some(code) => DATA_ERROR_CODES.contains(&code),
        None => false,
    }
}

/// Counters of the ClickHouse sink (read by serve's `/metrics`).
#[derive(Debug, Default)]
pub struct ClickHouseStats {
    /// Rows ClickHouse confirmed (a deduplicated retry counts again).
    pub rows_inserted: AtomicU64,
    /// Insert statements ClickHouse confirmed.
    pub inserts: AtomicU64,
    /// Failed insert attempts that were retried.
    pub retries: AtomicU64,
    /// Rows written to the dead-letter file (refused by ClickHouse or unencodable).
    pub dead_letters: AtomicU64,
    /// Rows in the journal not yet confirmed.
    pub journal_rows: AtomicU64,
    /// Bytes of the journal on disk.
    pub journal_bytes: AtomicU64,
}

/// The dead-letter file: one JSON line per refused record.
pub struct DeadLetters {
    path: PathBuf,
    file: Option<File>,
}

impl DeadLetters {
    /// Dead letters go to `path` (created at the first one).
    pub fn new(path: PathBuf) -> DeadLetters {
        DeadLetters { path, file: None }
    }

    /// Appends records with the reason and fsyncs.
    pub fn write(
        &mut self,
        rows: &[(CallRecord, String)],
        token: Option<&str>,
    ) -> Result<(), SinkError> {
        if rows.is_empty() {
            return Ok(());
        }
        let what = || format!("writing dead letters to {}", self.path.display());
        if self.file.is_none() {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|source| SinkError::Io {
                    what: what(),
                    source,
                })?;
            }
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(|source| SinkError::Io {
                    what: what(),
                    source,
                })?;
            self.file = Some(f);
        }
        let mut text = Vec::new();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        for (record, reason) in rows {
            let line = serde_json::json!({
                "rejected_unix_nano": now,
                "reason": reason,
                "batch_token": token,
                "record": record,
            });
            serde_json::to_writer(&mut text, &line)
                .map_err(|e| SinkError::Journal(e.to_string()))?;
            text.push(b'\n');
        }
        let f = self
            .file
            .as_mut()
            .ok_or_else(|| SinkError::Journal("dead-letter file not open".into()))?;
        f.write_all(&text)
            .and_then(|()| f.sync_data())
            .map_err(|source| SinkError::Io {
                what: what(),
                source,
            })
    }
}

/// Settings of the inserter.
#[derive(Debug, Clone)]
pub struct InserterSettings {
    /// Table to insert into (in the client's database).
    pub table: String,
    /// How batches are cut.
    pub limits: BatchLimits,
    /// Batches inserted at the same time.
    pub max_in_flight: usize,
    /// Timeout of one insert (send and answer).
    pub insert_timeout: Duration,
    /// First retry delay.
    pub retry_initial: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
}

/// State the sink and the inserter thread share.
pub struct Shared {
    /// The journal.
    pub journal: Mutex<Journal>,
    /// Wakes the inserter (new released entries, shutdown).
    pub wake: tokio::sync::Notify,
    /// Set at shutdown: cut every released batch now, stop once all are in.
    pub stopping: AtomicBool,
    /// Set when the drain deadline passed: abandon what is in flight.
    pub abort: AtomicBool,
    /// Counters.
    pub stats: Arc<ClickHouseStats>,
    /// The dead-letter file.
    pub dead_letters: Mutex<DeadLetters>,
    /// The header of the inserts (the table's columns, read once).
    pub header: TableHeader,
}

impl Shared {
    /// Locks the journal (a poisoned lock is still usable: the journal's
    /// state on disk is what counts).
    pub fn journal(&self) -> MutexGuard<'_, Journal> {
        self.journal.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Locks the dead-letter file.
    pub fn dead_letters(&self) -> MutexGuard<'_, DeadLetters> {
        self.dead_letters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes the journal's size.
    pub fn report_size(&self, j: &Journal) {
        let size = j.size();
        self.stats.journal_rows.store(size.rows, Ordering::Relaxed);
        self.stats
            .journal_bytes
            .store(size.bytes, Ordering::Relaxed);
    }
}

enum Failure {
    /// ClickHouse refused these rows: the reason.
    Data(String),
    /// Shutdown past its deadline.
    Aborted,
}

/// Runs the inserter until shutdown (blocking; run it on its own thread).
pub fn run(shared: Arc<Shared>, client: Client, settings: InserterSettings) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the ClickHouse inserter's runtime: records stay in the journal");
            return;
        }
    };
    runtime.block_on(drive(shared, client, settings));
}

async fn drive(shared: Arc<Shared>, client: Client, settings: InserterSettings) {
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let stopping = shared.stopping.load(Ordering::Acquire);
        if shared.abort.load(Ordering::Acquire) {
            break;
        }
        while tasks.len() < settings.max_in_flight.max(1) {
            let next = shared.journal().next_group(settings.limits, stopping);
            match next {
                Ok(Some(group)) => {
                    let (shared, client, settings) =
                        (shared.clone(), client.clone(), settings.clone());
                    tasks.spawn(async move {
                        let first = group.first;
                        (
                            first,
                            insert_group(&shared, &client, &settings, group).await,
                        )
                    });
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(error = %e, "ClickHouse journal: cannot plan a batch");
                    break;
                }
            }
        }
        if stopping && tasks.is_empty() && !shared.journal().has_released_work() {
            break;
        }
        let due = shared.journal().next_due(settings.limits.age);
        let wait = due
            .map_or(Duration::from_millis(500), |d| {
                d.saturating_duration_since(Instant::now())
            })
            .clamp(Duration::from_millis(5), Duration::from_millis(500));
        tokio::select! {
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                let Ok((first, result)) = done else { continue };
                let mut j = shared.journal();
                match result {
                    Ok(()) => {
                        if let Err(e) = j.complete(first) {
                            tracing::error!(error = %e, "ClickHouse journal: cannot mark a confirmed batch done (a restart inserts it again, and ClickHouse drops the copy)");
                        }
                    }
                    Err(Failure::Aborted) => j.abandon(first),
                    Err(Failure::Data(_)) => unreachable!("data failures are isolated inside insert_group"),
                }
                shared.report_size(&j);
            }
            () = shared.wake.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
}

/// Inserts one batch, isolating refused rows; `Err(Aborted)` only at shutdown.
async fn insert_group(
    shared: &Shared,
    client: &Client,
    settings: &InserterSettings,
    group: Group,
) -> Result<(), Failure> {
    let token = group.token();
    let reason = match insert_retrying(
        shared,
        client,
        settings,
        &group.payloads,
        group.rows,
        &token,
    )
    .await
    {
        Ok(()) => return Ok(()),
        Err(Failure::Data(reason)) => reason,
        Err(Failure::Aborted) => return Err(Failure::Aborted),
    };
    let rows = split_rows(&group.payloads, &token);
    let n = rows.len();
    let mut rejected = Vec::new();
    let mut stack = Vec::new();
    if n == 1 {
        rejected.push((0, reason));
    } else if n > 1 {
        split_warning(n, &reason);
        stack.extend([(n / 2, n), (0, n / 2)]);
    }
    while let Some((a, b)) = stack.pop() {
        if a == b {
            continue;
        }
        let part_token = format!("{token}-{a}-{b}");
        let chunks = contiguous(&group.payloads, &rows[a..b]);
        match insert_retrying(
            shared,
            client,
            settings,
            &chunks,
            (b - a) as u64,
            &part_token,
        )
        .await
        {
            Ok(()) => {}
            Err(Failure::Data(reason)) if b - a == 1 => rejected.push((a, reason)),
            Err(Failure::Data(reason)) => {
                split_warning(b - a, &reason);
                let mid = a + (b - a) / 2;
                stack.push((mid, b));
                stack.push((a, mid));
            }
            Err(Failure::Aborted) => return Err(Failure::Aborted),
        }
    }
    if !rejected.is_empty() {
        let mut letters: Vec<(CallRecord, String)> = Vec::with_capacity(rejected.len());
        for (i, reason) in rejected {
            let at = rows[i];
            let mut decoded = Vec::with_capacity(1);
            match row::decode(&group.payloads[at.payload][at.start..at.end], &mut decoded) {
                Ok(()) if decoded.len() == 1 => {
                    letters.push((decoded.remove(0).into_record(), reason));
                }
                _ => tracing::error!(
                    token,
                    reason,
                    "a refused ClickHouse row does not decode: it is dropped"
                ),
            }
        }
        tracing::error!(
            rows = letters.len(),
            token,
            "ClickHouse refused rows: written to the dead-letter file"
        );
        shared
            .stats
            .dead_letters
            .fetch_add(letters.len() as u64, Ordering::Relaxed);
        loop {
            let written = shared.dead_letters().write(&letters, Some(&token));
            match written {
                Ok(()) => break,
                Err(e) => {
                    tracing::error!(error = %e, "cannot write dead letters: retrying");
                    if shared.abort.load(Ordering::Acquire) {
                        return Err(Failure::Aborted);
                    }
                    tokio::time::sleep(settings.retry_max).await;
                }
            }
        }
    }
    Ok(())
}

fn split_warning(rows: usize, reason: &str) {
    tracing::warn!(
        rows,
        reason,
        "ClickHouse refused a batch's data: splitting it to isolate the refused rows"
    );
}

/// One row of a batch: where its bytes are in the batch's payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RowAt {
    /// Which payload of the batch.
    payload: usize,
    /// Its byte range in that payload.
    start: usize,
    end: usize,
}

/// The batch's rows, one by one (to isolate refused ones). A payload that
/// does not decode (it passed the journal's checksum, so a bug) is skipped
/// with an error: it cannot be split, and ClickHouse cannot take it.
fn split_rows(payloads: &[Bytes], token: &str) -> Vec<RowAt> {
    let mut rows = Vec::new();
    for (payload, bytes) in payloads.iter().enumerate() {
        match row::row_ends(bytes) {
            Ok(ends) => {
                let mut start = 0;
                for end in ends {
                    rows.push(RowAt {
                        payload,
                        start,
                        end,
                    });
                    start = end;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, token, "ClickHouse journal entry does not decode: its rows are skipped");
            }
        }
    }
    rows
}

/// The bytes of `rows`, as few slices of `payloads` as possible (adjacent
/// rows of one payload are one slice).
fn contiguous(payloads: &[Bytes], rows: &[RowAt]) -> Vec<Bytes> {
    let mut out: Vec<Bytes> = Vec::new();
    let mut run: Option<RowAt> = None;
    for r in rows {
        run = match run {
            Some(mut cur) if cur.payload == r.payload && cur.end == r.start => {
                cur.end = r.end;
                Some(cur)
            }
            Some(cur) => {
                out.push(payloads[cur.payload].slice(cur.start..cur.end));
                Some(*r)
            }
            None => Some(*r),
        };
    }
    if let Some(cur) = run {
        out.push(payloads[cur.payload].slice(cur.start..cur.end));
    }
    out
}

/// Bytes handed to the client per `send` (each one compressed block), as
/// the crate's own `Insert` does.
const SEND_CHUNK: usize = 256 * 1024;

async fn insert_once(
    shared: &Shared,
    client: &Client,
    settings: &InserterSettings,
    chunks: &[Bytes],
    token: &str,
) -> clickhouse::error::Result<()> {
    let header = shared.header.get(client, &settings.table).await?;
    let mut insert = client
        .insert_formatted_with(header::insert_sql(&settings.table))
        .with_timeouts(Some(settings.insert_timeout), Some(settings.insert_timeout))
        .with_setting("insert_deduplicate", "1")
        .with_setting("insert_deduplication_token", token)
        .with_setting("deduplicate_blocks_in_dependent_materialized_views", "1")
        .with_setting("async_insert", "0");
    insert.send(header).await?;
    for chunk in chunks {
        let mut at = 0;
        while at < chunk.len() {
            let end = (at + SEND_CHUNK).min(chunk.len());
            insert.send(chunk.slice(at..end)).await?;
            at = end;
        }
    }
    insert.end().await
}

async fn insert_retrying(
    shared: &Shared,
    client: &Client,
    settings: &InserterSettings,
    chunks: &[Bytes],
    rows: u64,
    token: &str,
) -> Result<(), Failure> {
    let mut backoff = settings.retry_initial;
    let mut failures = 0u64;
    loop {
        if shared.abort.load(Ordering::Acquire) {
            return Err(Failure::Aborted);
        }
        let started = Instant::now();
        match insert_once(shared, client, settings, chunks, token).await {
            Ok(()) => {
                tracing::debug!(
                    rows,
                    token,
                    seconds = started.elapsed().as_secs_f64(),
                    "ClickHouse insert confirmed"
                );
                shared
                    .stats
                    .rows_inserted
                    .fetch_add(rows, Ordering::Relaxed);
                shared.stats.inserts.fetch_add(1, Ordering::Relaxed);
                if failures > 0 {
                    tracing::info!(failures, token, "ClickHouse insert succeeded after retries");
                }
                return Ok(());
            }
            Err(e) if is_data_error(&e) => return Err(Failure::Data(e.to_string())),
            Err(e) => {
                failures += 1;
                shared.stats.retries.fetch_add(1, Ordering::Relaxed);
                if failures == 1 || failures.is_power_of_two() {
                    tracing::warn!(error = %e, failures, rows, token, "ClickHouse insert failed: retrying with backoff (the rows stay in the journal)");
                }
                if header::is_header_error(&e) {
                    // The table changed since its columns were read.
                    shared.header.forget();
                }
                // Full jitter: uniform in [0, backoff].
                let delay = backoff.mul_f64(fastrand::f64());
                let until = Instant::now() + delay;
                while Instant::now() < until {
                    if shared.abort.load(Ordering::Acquire) {
                        return Err(Failure::Aborted);
                    }
                    tokio::time::sleep(
                        until
                            .saturating_duration_since(Instant::now())
                            .min(Duration::from_millis(50)),
                    )
                    .await;
                }
                backoff = (backoff * 2).min(settings.retry_max);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_errors_are_told_from_the_rest() {
        let e = |s: &str| clickhouse::error::Error::BadResponse(s.to_owned());
        assert!(is_data_error(&e(
            "Code: 469. DB::Exception: Constraint `x` is violated"
        )));
        assert!(!is_data_error(&e(
            "Code: 241. DB::Exception: Memory limit exceeded"
        )));
        assert!(!is_data_error(&e("Code: 60. DB::Exception: Unknown table")));
        assert!(is_data_error(&e(
            "Code: 252. DB::Exception: Too many partitions for single INSERT block (more than 100)"
        )));
        assert!(!is_data_error(&e(
            "Code: 252. DB::Exception: Too many parts (300)"
        )));
        assert!(!is_data_error(&clickhouse::error::Error::TimedOut));
        // The table changed: the rows are fine.
        assert!(!is_data_error(&e(
            "Code: 117. DB::Exception: Type of 'x' must be String, not UInt8: (while reading header): While executing BinaryRowInputFormat. (INCORRECT_DATA)"
        )));
        assert!(is_data_error(&e(
            "Code: 117. DB::Exception: Cannot read all data. (INCORRECT_DATA)"
        )));
        assert_eq!(exception_code(&e("Code: 62. DB::Exception")), Some(62));
    }
}
