//! Sinks: where call records are stored.
//!
//! Architecture invariant: `flush` returning `Ok` means the records written
//! so far are durable in the sink's own terms (fsynced file, ClickHouse insert
//! confirmed). The spool's checkpoint advances only after it.

#![forbid(unsafe_code)]

pub mod clickhouse;
pub mod json_line;
mod jsonl;

pub use clickhouse::{ClickHouseConfig, ClickHouseSink};
pub use jsonl::{JsonLinesSink, JsonLinesTarget};

use claudewatch_model::CallRecord;

/// Why a sink could not store records.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// An IO failure (disk full, closed pipe, ...).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The sink holds as much unconfirmed data as it may (its destination is
    /// down or slow): retry later; the caller keeps the records.
    #[error(
        "sink backlog full: {bytes} bytes held, limit {limit} (the destination is down or behind)"
    )]
    Backlogged {
        /// Bytes held.
        bytes: u64,
        /// The limit.
        limit: u64,
    },
    /// The sink's own journal failed.
    #[error("sink journal: {0}")]
    Journal(String),
}

/// A destination for call records.
pub trait Sink: Send {
    /// A short name for logs and metrics (`jsonl`, `clickhouse`).
    fn name(&self) -> &'static str;
    /// Buffers records for storage.
    fn write(&mut self, records: &[CallRecord]) -> Result<(), SinkError>;
    /// Makes everything written so far durable.
    fn flush(&mut self) -> Result<(), SinkError>;
    /// The durable position after the last flush, when the sink can cut back
    /// to it (a file's length). The spool's checkpoint stores it.
    fn position(&self) -> Option<u64> {
        None
    }
    /// Discards what was written after `position` (a restart does this before
    /// replaying the spool, which writes those records again). Sinks without
    /// positions keep everything: their delivery after a crash is at least once.
    fn rollback(&mut self, position: u64) -> Result<(), SinkError> {
        let _ = position;
        Ok(())
    }
    /// Called once at start, before anything is written, with the position
    /// the spool's checkpoint recorded (`None` when it recorded none). The
    /// default cuts back to it ([`Sink::rollback`]).
    fn recover(&mut self, checkpoint_position: Option<u64>) -> Result<(), SinkError> {
        match checkpoint_position {
            Some(p) => self.rollback(p),
            None => Ok(()),
        }
    }
    /// Called after a spool checkpoint recording `position` is durable: what
    /// was flushed up to it will never be replayed, so a sink that stages
    /// data (the ClickHouse journal) may publish it. The default does nothing.
    fn committed(&mut self, position: Option<u64>) -> Result<(), SinkError> {
        let _ = position;
        Ok(())
    }
    /// Called after a store that left nothing waiting upstream (every merge
    /// window empty): no more records are on their way for now, so a sink
    /// that holds records back to batch them (the ClickHouse journal) need
    /// not wait for more. The default does nothing.
    fn quiet(&mut self) {}
}
