//! Self-metrics of `serve`, exposed on `/metrics` in the Prometheus text
//! format. All of them are defined here, named `claudewatch_<name>_<unit>_total`.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use claudewatch_sink::clickhouse::ClickHouseStats;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

/// Labels: the OTLP signal and what became of the request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// traces, logs or metrics.
    pub signal: String,
    /// accepted, invalid, busy, unavailable, shutting_down.
    pub result: String,
}

/// Labels: a signal.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SignalLabels {
    /// traces, logs or metrics.
    pub signal: String,
}

/// Labels: a rejection reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Why items were rejected.
    pub reason: String,
}

/// Every metric of the service.
#[derive(Clone)]
pub struct Metrics {
    /// Export requests by signal and result.
    pub requests: Family<RequestLabels, Counter>,
    /// Items (spans, log records, data points) received in accepted requests.
    pub items: Family<SignalLabels, Counter>,
    /// Items rejected (partial success), by reason.
    pub rejected_items: Family<ReasonLabels, Counter>,
    /// Call records written to the sinks.
    pub records_written: Counter,
    /// Observations merged into another call's record.
    pub observations_merged: Counter,
    /// Requests waiting in the queue.
    pub queue_depth: Gauge<i64, AtomicI64>,
    /// Sink write or flush failures.
    pub sink_errors: Counter,
    /// Time to write and flush one batch to the sinks.
    pub sink_flush_seconds: Histogram,
    /// Time to append one group of requests to the spool and fsync it (every
    /// acknowledgement waits for one: the disk's share of the latency).
    pub spool_append_seconds: Histogram,
    /// Decompressed request bytes waiting in the queue.
    pub queued_bytes: Gauge<i64, AtomicI64>,
    /// Observations waiting in the merge windows.
    pub window_observations: Gauge<i64, AtomicI64>,
    /// Ids of written calls held to recognise late duplicates.
    pub window_sealed_ids: Gauge<i64, AtomicI64>,
    /// Observations that arrived after their call was stored, dropped.
    pub late_duplicates: Counter,
    /// Calls sealed before their age because the window was full.
    pub sealed_early: Counter,
    /// Records sealed but not yet confirmed by the sink.
    pub unstored_records: Gauge<i64, AtomicI64>,
    /// Bytes held by the spool.
    pub spool_bytes: Gauge<i64, AtomicI64>,
    /// Spool entries with observations not yet stored.
    pub spool_open_entries: Gauge<i64, AtomicI64>,
    /// Spool append or checkpoint failures.
    pub spool_errors: Counter,
    /// Spool entries replayed at start.
    pub spool_replayed_entries: Counter,
    /// Bytes of torn spool tail cut off at start.
    pub spool_torn_tail_bytes: Counter,
    /// Spool segments found with a corrupt entry at start.
    pub spool_corrupt_segments: Counter,
    /// Unmapped attributes dropped by the count cap.
    pub dropped_attributes: Counter,
    /// Attribute values cut by the length cap.
    pub truncated_values: Counter,
}

impl Metrics {
    /// Creates the metrics and registers them.
    pub fn new(registry: &mut Registry) -> Arc<Metrics> {
        let m = Metrics {
            requests: Family::default(),
            items: Family::default(),
            rejected_items: Family::default(),
            records_written: Counter::default(),
            observations_merged: Counter::default(),
            queue_depth: Gauge::default(),
            sink_errors: Counter::default(),
            sink_flush_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            spool_append_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            queued_bytes: Gauge::default(),
            window_observations: Gauge::default(),
            window_sealed_ids: Gauge::default(),
            late_duplicates: Counter::default(),
            sealed_early: Counter::default(),
            unstored_records: Gauge::default(),
            spool_bytes: Gauge::default(),
            spool_open_entries: Gauge::default(),
            spool_errors: Counter::default(),
            spool_replayed_entries: Counter::default(),
            spool_torn_tail_bytes: Counter::default(),
            spool_corrupt_segments: Counter::default(),
            dropped_attributes: Counter::default(),
            truncated_values: Counter::default(),
        };
        registry.register(
            "claudewatch_export_requests",
            "OTLP export requests by signal and result",
            m.requests.clone(),
        );
        registry.register(
            "claudewatch_received_items",
            "Spans, log records and data points in accepted requests",
            m.items.clone(),
        );
        registry.register(
            "claudewatch_rejected_items",
            "Items rejected with a partial success, by reason",
            m.rejected_items.clone(),
        );
        registry.register(
            "claudewatch_records_written",
            "Call records written to the sinks",
            m.records_written.clone(),
        );
        registry.register(
            "claudewatch_observations_merged",
            "Spans or logs merged into another observation's call record",
            m.observations_merged.clone(),
        );
        registry.register(
            "claudewatch_queue_depth",
            "Export requests waiting for the enricher",
            m.queue_depth.clone(),
        );
        registry.register(
            "claudewatch_sink_errors",
            "Sink write or flush failures",
            m.sink_errors.clone(),
        );
        registry.register_with_unit(
            "claudewatch_sink_flush",
            "Time to write and flush one batch",
            Unit::Seconds,
            m.sink_flush_seconds.clone(),
        );
        registry.register_with_unit(
            "claudewatch_spool_append",
            "Time to append one group of requests to the spool and fsync it",
            Unit::Seconds,
            m.spool_append_seconds.clone(),
        );
        registry.register_with_unit(
            "claudewatch_queued",
            "Decompressed request bytes waiting in the queue",
            Unit::Bytes,
            m.queued_bytes.clone(),
        );
        registry.register(
            "claudewatch_merge_window_observations",
            "Observations waiting in the merge windows for the rest of their call",
            m.window_observations.clone(),
        );
        registry.register(
            "claudewatch_merge_window_sealed_ids",
            "Ids of written calls held to recognise a late piece of them (pipeline.merge_window_max_sealed_ids)",
            m.window_sealed_ids.clone(),
        );
        registry.register(
            "claudewatch_late_duplicates",
            "Observations that arrived after their call was stored, dropped",
            m.late_duplicates.clone(),
        );
        registry.register(
            "claudewatch_merge_window_sealed_early",
            "Calls sealed before their age because the window was full",
            m.sealed_early.clone(),
        );
        registry.register(
            "claudewatch_unstored_records",
            "Records sealed but not yet confirmed by the sink",
            m.unstored_records.clone(),
        );
        registry.register_with_unit(
            "claudewatch_spool",
            "Bytes held by the write-ahead spool",
            Unit::Bytes,
            m.spool_bytes.clone(),
        );
        registry.register(
            "claudewatch_spool_open_entries",
            "Spooled requests with observations not yet stored",
            m.spool_open_entries.clone(),
        );
        registry.register(
            "claudewatch_spool_errors",
            "Spool append or checkpoint failures",
            m.spool_errors.clone(),
        );
        registry.register(
            "claudewatch_spool_replayed_entries",
            "Spooled requests replayed at start",
            m.spool_replayed_entries.clone(),
        );
        registry.register_with_unit(
            "claudewatch_spool_torn_tail",
            "Torn spool tail cut off at start (a crash mid-append; never acknowledged)",
            Unit::Bytes,
            m.spool_torn_tail_bytes.clone(),
        );
        registry.register(
            "claudewatch_spool_corrupt_segments",
            "Spool segments found with a corrupt entry at start",
            m.spool_corrupt_segments.clone(),
        );
        registry.register(
            "claudewatch_dropped_attributes",
            "Unmapped attributes dropped by the count cap (enrich.max_attributes)",
            m.dropped_attributes.clone(),
        );
        registry.register(
            "claudewatch_truncated_attribute_values",
            "Attribute values cut by the length cap (enrich.max_attribute_value_bytes)",
            m.truncated_values.clone(),
        );
        Arc::new(m)
    }

    /// Counts one request.
    pub fn request(&self, signal: &str, result: &str) {
        self.requests
            .get_or_create(&RequestLabels {
                signal: signal.into(),
                result: result.into(),
            })
            .inc();
    }
}

/// The ClickHouse sink's counters ([`ClickHouseStats`], kept by its inserter
/// thread), read at each scrape.
#[derive(Debug)]
pub struct ClickHouseCollector(pub Arc<ClickHouseStats>);

impl Collector for ClickHouseCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        let counters = [
            (
                "claudewatch_clickhouse_inserted_rows",
                "Rows ClickHouse confirmed (a deduplicated retry counts again)",
                &s.rows_inserted,
            ),
            (
                "claudewatch_clickhouse_inserts",
                "Insert statements ClickHouse confirmed",
                &s.inserts,
            ),
            (
                "claudewatch_clickhouse_insert_retries",
                "Failed inserts that were retried (ClickHouse down, timeout, server error)",
                &s.retries,
            ),
            (
                "claudewatch_clickhouse_dead_letter_rows",
                "Rows ClickHouse refused, written to the dead-letter file",
                &s.dead_letters,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value.load(Ordering::Relaxed));
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        let rows = ConstGauge::new(s.journal_rows.load(Ordering::Relaxed) as i64);
        rows.encode(encoder.encode_descriptor(
            "claudewatch_clickhouse_journal_rows",
            "Rows journaled and not yet confirmed by ClickHouse",
            None,
            rows.metric_type(),
        )?)?;
        let bytes = ConstGauge::new(s.journal_bytes.load(Ordering::Relaxed) as i64);
        bytes.encode(encoder.encode_descriptor(
            "claudewatch_clickhouse_journal",
            "Bytes of the ClickHouse sink's journal on disk",
            Some(&Unit::Bytes),
            bytes.metric_type(),
        )?)?;
        Ok(())
    }
}
