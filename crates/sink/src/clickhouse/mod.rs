//! The ClickHouse sink: records → RowBinary rows → the sink's own journal
//! (fsynced on `flush`) → a background inserter → `llm_calls` (and, through
//! materialized views, its rollups), exactly once.
//!
//! Why a journal: after a crash, serve's spool replay regenerates records,
//! and the batches it forms differ from the original ones, so a token derived
//! from a replayed batch could not match the first insert. The journal keeps
//! the *encoded batches* themselves: a batch is planned durably before it is
//! first inserted, so every retry, even after a crash, sends the same rows
//! with the same `insert_deduplication_token`, and ClickHouse (with
//! `deduplicate_blocks_in_dependent_materialized_views`, the rollups too)
//! keeps one copy.
//!
//! How it meets serve's contract (see `Sink`):
//! - `write` encodes rows into memory; `flush` appends them to the journal
//!   and fsyncs: the sink's durability point. A full journal (ClickHouse
//!   down for long) fails `flush` with [`SinkError::Backlogged`]: serve keeps
//!   the records, retries, and answers 503 once its backlog limit is reached.
//! - `position` is the journal's next entry number, stored in serve's spool
//!   checkpoint. Entries are inserted only once a durable checkpoint covers
//!   them ([`Sink::committed`]); at start, [`Sink::recover`] drops the
//!   entries the checkpoint does not cover (the spool replays their records).
//!   So a record is never both in the journal and replayed.

pub mod header;
pub mod inserter;
pub mod journal;
pub mod row;
pub mod schema;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use claudewatch_model::CallRecord;
use clickhouse::Client;

use crate::{Sink, SinkError};
pub use inserter::ClickHouseStats;
use inserter::{DeadLetters, InserterSettings, Shared};
use journal::{BatchLimits, Chunk, Journal};

/// Settings of the ClickHouse sink.
#[derive(Debug, Clone)]
pub struct ClickHouseConfig {
    /// Server URL: `http://host:8123`, or `https://...` for TLS (system roots
    /// are not used: the Mozilla roots of `webpki-roots` are).
    pub url: String,
    /// Database holding `llm_calls`.
    pub database: String,
    /// User.
    pub user: String,
    /// Password (empty: none).
    pub password: String,
    /// Compress inserts with LZ4 (the `clickhouse` crate's default). Off
    /// spares both sides the work when ClickHouse is on the same host or a
    /// fast local network.
    pub lz4: bool,
    /// Rows per batch (a backlog may go in larger inserts: `catch_up_batches`).
    pub batch_rows: usize,
    /// Bytes of row data per batch (likewise).
    pub batch_bytes: usize,
    /// When more than a batch waits (ClickHouse is behind), one insert takes
    /// up to this many batches' worth of the waiting rows (1: never more
    /// than one batch).
    pub catch_up_batches: usize,
    /// A batch smaller than the limits is inserted once its oldest rows waited
    /// this long, or sooner when nothing more is on its way (serve's merge
    /// windows are empty) and no other batch went early for that reason
    /// within this long.
    pub batch_age: Duration,
    /// Directory of the journal.
    pub journal_dir: PathBuf,
    /// Bytes the journal may hold; beyond, `flush` fails (backpressure).
    pub max_journal_bytes: u64,
    /// JSON-lines file receiving the rows ClickHouse refuses.
    pub dead_letter_path: PathBuf,
    /// Batches inserted at the same time.
    pub max_in_flight: usize,
    /// Timeout of one insert.
    pub insert_timeout: Duration,
    /// First retry delay (doubled per failure, with full jitter).
    pub retry_initial: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// At shutdown, how long to keep inserting what is journaled (the rest
    /// stays in the journal for the next start).
    pub drain_timeout: Duration,
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        ClickHouseConfig {
            url: "http://127.0.0.1:8123".into(),
            database: "claudewatch".into(),
            user: "default".into(),
            password: String::new(),
            lz4: true,
            batch_rows: 50_000,
            batch_bytes: 32 << 20,
            catch_up_batches: 4,
            batch_age: Duration::from_secs(1),
            journal_dir: PathBuf::from("claudewatch-journal"),
            max_journal_bytes: 256 << 20,
            dead_letter_path: PathBuf::from("claudewatch-dead-letters.jsonl"),
            max_in_flight: 2,
            insert_timeout: Duration::from_secs(30),
            retry_initial: Duration::from_millis(100),
            retry_max: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(3),
        }
    }
}

impl ClickHouseConfig {
    /// A client (crate defaults: validation, and LZ4 unless `lz4` is off) on `database`.
    pub fn client_on(&self, database: &str) -> Client {
        let mut c = Client::default()
            .with_url(&self.url)
            .with_database(database)
            .with_user(&self.user);
        if !self.password.is_empty() {
            c = c.with_password(&self.password);
        }
        if !self.lz4 {
            c = c.with_compression(clickhouse::Compression::None);
        }
        c
    }

    /// A client on the configured database.
    pub fn client(&self) -> Client {
        self.client_on(&self.database)
    }
}

/// Journal entries per full batch at least: a batch is made of whole
/// entries, so it is full to within one entry of its limits (with one entry
/// per flush, a flush of 17k rows made batches of 34k where 50k were due).
const ENTRIES_PER_BATCH: usize = 8;

/// At most this much is set aside for an entry's rows up front (the default
/// entry is 4 MiB; a larger `batch_bytes` lets the buffer grow as needed).
const ENTRY_PREALLOCATION: usize = 8 << 20;

/// An empty chunk with room for a whole entry of `entry_bytes`, so that rows
/// are encoded without the buffer growing (each growth a copy, and fresh
/// pages to fault in); a sixteenth more for the row that crosses
/// `entry_bytes` (the entry is cut after it).
fn entry_chunk(entry_bytes: usize) -> Chunk {
    let room = entry_bytes.min(ENTRY_PREALLOCATION);
    Chunk::with_capacity(room + room / 16)
}

/// The ClickHouse sink (see the module documentation).
pub struct ClickHouseSink {
    shared: Arc<Shared>,
    /// Rows and bytes per journal entry at most (a batch is whole entries).
    entry_rows: usize,
    entry_bytes: usize,
    /// Encoded chunks not yet journaled.
    chunks: Vec<Chunk>,
    /// The chunk rows are encoded into, sized for a whole entry.
    current: Chunk,
    /// Records that cannot be rows, written as dead letters at the next flush.
    unencodable: Vec<(CallRecord, String)>,
    drain_timeout: Duration,
    thread: Option<JoinHandle<()>>,
}

impl ClickHouseSink {
    /// Opens the journal and starts the inserter. Does not touch the schema
    /// (see [`schema::migrate`]) and does not need ClickHouse to be up.
    pub fn open(config: &ClickHouseConfig) -> Result<ClickHouseSink, SinkError> {
        let journal = Journal::open(&config.journal_dir, config.max_journal_bytes)?;
        let stats = Arc::new(ClickHouseStats::default());
        let shared = Arc::new(Shared {
            journal: Mutex::new(journal),
            wake: tokio::sync::Notify::new(),
            stopping: Default::default(),
            abort: Default::default(),
            stats,
            dead_letters: Mutex::new(DeadLetters::new(config.dead_letter_path.clone())),
            header: Default::default(),
        });
        {
            let j = shared.journal();
            shared.report_size(&j);
            let size = j.size();
            if size.entries > 0 {
                tracing::info!(entries = size.entries, rows = size.rows, "ClickHouse journal: batches from before the last stop will be inserted (already stored ones are dropped by ClickHouse's deduplication)");
            }
        }
        let settings = InserterSettings {
            table: "llm_calls".into(),
            limits: BatchLimits {
                rows: config.batch_rows.max(1) as u64,
                bytes: config.batch_bytes.max(1) as u64,
                catch_up: config.catch_up_batches.max(1) as u64,
                age: config.batch_age,
            },
            max_in_flight: config.max_in_flight.max(1),
            insert_timeout: config.insert_timeout,
            retry_initial: config.retry_initial.max(Duration::from_millis(1)),
            retry_max: config.retry_max.max(config.retry_initial),
        };
        let client = config.client();
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("claudewatch-ch-insert".into())
            .spawn(move || inserter::run(thread_shared, client, settings))
            .map_err(|source| SinkError::Io {
                what: "starting the ClickHouse inserter thread".into(),
                source,
            })?;
        let entry_bytes = (config.batch_bytes / ENTRIES_PER_BATCH).max(1);
        Ok(ClickHouseSink {
            shared,
            entry_rows: (config.batch_rows / ENTRIES_PER_BATCH).clamp(1, u32::MAX as usize),
            entry_bytes,
            chunks: Vec::new(),
            current: entry_chunk(entry_bytes),
            unencodable: Vec::new(),
            drain_timeout: config.drain_timeout,
            thread: Some(thread),
        })
    }

    /// The sink's counters.
    pub fn stats(&self) -> Arc<ClickHouseStats> {
        self.shared.stats.clone()
    }

    /// Rows journaled and not yet confirmed by ClickHouse.
    pub fn backlog_rows(&self) -> u64 {
        self.shared.journal().size().rows
    }

    /// Waits until every released row is confirmed, or `timeout`; true when done.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if !self.shared.journal().has_released_work() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn cut(&mut self) {
        if !self.current.is_empty() {
            let fresh = entry_chunk(self.entry_bytes);
            let full = std::mem::replace(&mut self.current, fresh);
            self.chunks.push(full);
        }
    }

    fn clear(&mut self) {
        self.chunks.clear();
        self.current = entry_chunk(self.entry_bytes);
        self.unencodable.clear();
    }
}

impl Sink for ClickHouseSink {
    fn name(&self) -> &'static str {
        "clickhouse"
    }

    fn write(&mut self, records: &[CallRecord]) -> Result<(), SinkError> {
        for r in records {
            match row::encode(r, self.current.buffer()) {
                Ok(()) => {
                    self.current.add_row();
                    if self.current.rows() as usize >= self.entry_rows
                        || self.current.len() >= self.entry_bytes
                    {
                        self.cut();
                    }
                }
                Err(e) => self.unencodable.push((r.clone(), e.to_string())),
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.cut();
        let appended = {
            let mut j = self.shared.journal();
            let r = j.append(std::mem::take(&mut self.chunks));
            self.shared.report_size(&j);
            r
        };
        if let Err(e) = appended {
            // serve writes these records again (after `rollback`).
            self.clear();
            return Err(e);
        }
        self.chunks.clear();
        if !self.unencodable.is_empty() {
            let letters = std::mem::take(&mut self.unencodable);
            tracing::error!(
                records = letters.len(),
                "records that cannot be ClickHouse rows: written to the dead-letter file"
            );
            self.shared
                .stats
                .dead_letters
                .fetch_add(letters.len() as u64, Ordering::Relaxed);
            self.shared.dead_letters().write(&letters, None)?;
        }
        Ok(())
    }

    fn position(&self) -> Option<u64> {
        Some(self.shared.journal().next_seq())
    }

    fn rollback(&mut self, position: u64) -> Result<(), SinkError> {
        self.clear();
        let dropped = self.shared.journal().discard_from(position)?;
        if dropped > 0 {
            tracing::info!(entries = dropped, "ClickHouse journal: entries after serve's checkpoint dropped; the spool replay writes their records again");
        }
        Ok(())
    }

    fn recover(&mut self, checkpoint_position: Option<u64>) -> Result<(), SinkError> {
        let position = checkpoint_position.unwrap_or_else(|| self.shared.journal().released());
        self.rollback(position)?;
        self.shared.journal().release(position)?;
        self.shared.wake.notify_one();
        Ok(())
    }

    fn committed(&mut self, position: Option<u64>) -> Result<(), SinkError> {
        if let Some(p) = position {
            self.shared.journal().release(p)?;
            self.shared.wake.notify_one();
        }
        Ok(())
    }

    fn quiet(&mut self) {
        self.shared.journal().quiet();
        self.shared.wake.notify_one();
    }
}

impl Drop for ClickHouseSink {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Release);
        self.shared.wake.notify_one();
        let Some(thread) = self.thread.take() else {
            return;
        };
        let deadline = Instant::now() + self.drain_timeout;
        while !thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if !thread.is_finished() {
            let left = self.shared.journal().size();
            tracing::warn!(rows = left.rows, "ClickHouse not drained at shutdown: the rows stay in the journal and are inserted at the next start");
            self.shared.abort.store(true, Ordering::Release);
            self.shared.wake.notify_one();
        }
        let _ = thread.join();
    }
}
