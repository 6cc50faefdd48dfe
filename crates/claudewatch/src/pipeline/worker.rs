//! The pipeline thread: takes queued requests in batches, extracts them into
//! the merge windows, spools them (one fsync per batch) and answers; seals
//! aged calls into records, stores them and moves the spool's checkpoint.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use claudewatch_enrich::{
    CallRecord, EnrichConfig, ExtractStats, MergeWindow, Origin, WindowStats,
};
use claudewatch_ingest::{Refusal, Submission, Verdict};
use claudewatch_otlp::{decode, DecodeError, Encoding, Signal};
use claudewatch_sink::Sink;
use claudewatch_spool::{Entry, Spool, SpoolError};

use super::progress::Progress;
use super::{Job, Shared};
use crate::metrics::{ReasonLabels, SignalLabels};

/// Longest wait between two attempts to store records in a failing sink.
const MAX_SINK_BACKOFF: Duration = Duration::from_secs(5);
/// Longest sleep of the loop while idle.
const IDLE_TICK: Duration = Duration::from_millis(250);

/// Sealed records the sink has not confirmed yet.
struct Unstored {
    records: Vec<CallRecord>,
    origins: Vec<Origin>,
}

pub(super) struct Worker {
    rx: Receiver<Job>,
    sink: Box<dyn Sink>,
    spool: Spool,
    enrich: EnrichConfig,
    shared: Arc<Shared>,
    windows: HashMap<Option<String>, MergeWindow>,
    progress: Progress,
    unstored: Vec<Unstored>,
    /// When the sink failed last, the next attempt and the current backoff.
    sink_retry: Option<(Instant, Duration)>,
    /// Earliest next seal (seals are spaced by half a window age).
    next_seal: Instant,
    clock: Instant,
    reported: WindowStats,
}

fn signal_code(s: Signal) -> u8 {
    match s {
        Signal::Traces => 0,
        Signal::Logs => 1,
        Signal::Metrics => 2,
    }
}

fn signal_of(code: u8) -> Option<Signal> {
    match code {
        0 => Some(Signal::Traces),
        1 => Some(Signal::Logs),
        2 => Some(Signal::Metrics),
        _ => None,
    }
}

fn encoding_code(e: Encoding) -> u8 {
    match e {
        Encoding::Protobuf => 0,
        Encoding::Json => 1,
    }
}

fn encoding_of(code: u8) -> Option<Encoding> {
    match code {
        0 => Some(Encoding::Protobuf),
        1 => Some(Encoding::Json),
        _ => None,
    }
}

fn unix_now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Extracts one request into `window` as spool entry `entry`.
fn push(
    window: &mut MergeWindow,
    signal: Signal,
    encoding: Encoding,
    body: &[u8],
    entry: u64,
    now_ns: u64,
) -> Result<u32, DecodeError> {
    match (signal, encoding) {
        (Signal::Traces, Encoding::Protobuf) => window.push_traces_protobuf(body, entry, now_ns),
        _ => decode(signal, encoding, body).map(|req| window.push(&req, entry, now_ns)),
    }
}

impl Worker {
    pub(super) fn new(
        rx: Receiver<Job>,
        sink: Box<dyn Sink>,
        spool: Spool,
        enrich: EnrichConfig,
        shared: Arc<Shared>,
    ) -> Worker {
        Worker {
            rx,
            sink,
            spool,
            enrich,
            shared,
            windows: HashMap::new(),
            progress: Progress::default(),
            unstored: Vec::new(),
            sink_retry: None,
            next_seal: Instant::now(),
            clock: Instant::now(),
            reported: WindowStats::default(),
        }
    }

    /// Monotonic nanoseconds for the merge windows.
    fn now_ns(&self) -> u64 {
        self.clock.elapsed().as_nanos() as u64
    }

    fn window(&mut self, tenant: &Option<String>) -> &mut MergeWindow {
        if !self.windows.contains_key(tenant) {
            let config = EnrichConfig {
                tenant: tenant.clone(),
                ..self.enrich.clone()
            };
            self.windows.insert(
                tenant.clone(),
                MergeWindow::new(config, self.shared.settings.window),
            );
        }
        // Inserted just above when missing.
        self.windows
            .get_mut(tenant)
            .unwrap_or_else(|| unreachable!("window inserted above"))
    }

    /// Puts what the spool holds beyond its checkpoint back into the windows.
    pub(super) fn replay(&mut self) -> Result<(), SpoolError> {
        let checkpoint = self.spool.checkpoint().clone();
        let mut entries = Vec::new();
        self.spool.replay(|e| entries.push(e))?;
        if entries.is_empty() {
            return Ok(());
        }
        tracing::info!(
            entries = entries.len(),
            "replaying the spool: requests acknowledged before the last stop but not yet stored"
        );
        let now = self.now_ns();
        for e in &entries {
            let (Some(signal), Some(encoding)) = (signal_of(e.signal), encoding_of(e.encoding))
            else {
                tracing::error!(
                    seq = e.seq,
                    "spool entry with an unknown signal or encoding: skipped"
                );
                continue;
            };
            let window = self.window(&e.tenant);
            let mark = window.mark();
            match push(window, signal, encoding, &e.body, e.seq, now) {
                Ok(total) => {
                    window.skip_since(mark, |o| checkpoint.is_stored(o.entry, o.ordinal));
                    let stored = checkpoint.partial.get(&e.seq).cloned().unwrap_or_default();
                    self.progress.entry(e.seq, total, stored);
                }
                Err(err) => {
                    tracing::error!(seq = e.seq, error = %err, "spool entry no longer decodes: skipped")
                }
            }
        }
        self.shared
            .metrics
            .spool_replayed_entries
            .inc_by(entries.len() as u64);
        self.report_window();
        Ok(())
    }

    pub(super) fn run(mut self) {
        loop {
            let wait = self.until_next_seal();
            match self.rx.recv_timeout(wait) {
                Ok(first) => {
                    let mut jobs = vec![first];
                    while jobs.len() < self.shared.settings.max_batch_requests {
                        match self.rx.try_recv() {
                            Ok(job) => jobs.push(job),
                            Err(_) => break,
                        }
                    }
                    self.accept(jobs);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            self.tick(false);
        }
        self.drain();
    }

    fn until_next_seal(&self) -> Duration {
        let now = Instant::now();
        let mut wake = now + IDLE_TICK;
        if let Some((at, _)) = self.sink_retry {
            wake = wake.min(at);
        }
        let age = Duration::from_nanos(self.shared.settings.window.max_age_ns);
        let now_ns = self.now_ns();
        for w in self.windows.values() {
            if let Some(oldest) = w.oldest_arrival_ns() {
                let due = Duration::from_nanos(
                    oldest
                        .saturating_add(age.as_nanos() as u64)
                        .saturating_sub(now_ns),
                );
                wake = wake.min(now + due);
            }
        }
        wake.max(self.next_seal).saturating_duration_since(now)
    }

    /// Extracts, spools (one fsync) and answers a batch of requests.
    fn accept(&mut self, jobs: Vec<Job>) {
        let metrics = self.shared.metrics.clone();
        metrics.queue_depth.dec_by(jobs.len() as i64);
        let now = self.now_ns();
        let arrived = unix_now_ns();
        let mut marks = Vec::new();
        let mut verdicts = Vec::with_capacity(jobs.len());
        let mut entries = Vec::new();
        let mut totals = Vec::new();
        for job in &jobs {
            let s: &Submission = &job.submission;
            let seq = self.spool.next_seq() + entries.len() as u64;
            let window = self.window(&s.tenant);
            if !marks.iter().any(|(t, _)| t == &s.tenant) {
                marks.push((s.tenant.clone(), window.mark()));
            }
            let before = window.stats().extract.clone();
            let pushed = push(window, s.signal, s.encoding, &s.body, seq, now);
            let after = window.stats().extract.clone();
            verdicts.push(match pushed {
                Err(e) => Verdict::Invalid(e.to_string()),
                Ok(total) => {
                    // Requests with nothing about a Claude call need no spooling.
                    if total > 0 {
                        entries.push(Entry {
                            seq,
                            signal: signal_code(s.signal),
                            encoding: encoding_code(s.encoding),
                            tenant: s.tenant.clone(),
                            arrived_unix_ns: arrived,
                            body: s.body.clone(),
                        });
                        totals.push((seq, total));
                    }
                    self.accepted(s.signal, &before, &after)
                }
            });
        }
        let spooled = self.spool.append(&entries);
        self.shared
            .metrics
            .spool_bytes
            .set(self.spool.bytes() as i64);
        let refusal = match spooled {
            Ok(()) => {
                for (seq, total) in totals {
                    self.progress.entry(seq, total, Vec::new());
                }
                None
            }
            Err(e) => {
                metrics.spool_errors.inc();
                tracing::error!(error = %e, requests = entries.len(), "cannot spool: the requests are refused with a retryable answer");
                for (tenant, mark) in marks {
                    self.window(&tenant).rollback(mark);
                }
                let retry_after_secs = self.shared.settings.retry_after_secs.max(1);
                Some(match e {
                    SpoolError::Full { .. } => Refusal::Busy {
                        retry_after_secs,
                        reason: e.to_string(),
                    },
                    _ => Refusal::Unavailable {
                        retry_after_secs,
                        reason: format!("cannot store the request durably: {e}"),
                    },
                })
            }
        };
        for (job, verdict) in jobs.into_iter().zip(verdicts) {
            self.shared
                .queued_bytes
                .fetch_sub(job.submission.body.len(), Ordering::AcqRel);
            let reply = match (&refusal, verdict) {
                (Some(r), Verdict::Accepted { .. }) => Err(r.clone()),
                (_, v) => Ok(v),
            };
            // The client may have gone away; the data is spooled either way.
            let _ = job.reply.send(reply);
        }
        metrics
            .queued_bytes
            .set(self.shared.queued_bytes.load(Ordering::Relaxed) as i64);
        self.report_window();
    }

    /// Seals aged calls and stores them; retries a failing sink.
    fn tick(&mut self, all: bool) {
        let now = Instant::now();
        let retry_due = self.sink_retry.is_none_or(|(at, _)| now >= at);
        if !self.unstored.is_empty() && retry_due {
            self.store_unstored();
        }
        if !all && now < self.next_seal {
            return;
        }
        let now_ns = self.now_ns();
        let limits = self.shared.settings.window;
        let due = |w: &MergeWindow| {
            w.len() > limits.max_observations
                || w.oldest_arrival_ns()
                    .is_some_and(|t| t.saturating_add(limits.max_age_ns) <= now_ns)
        };
        let mut sealed = Unstored {
            records: Vec::new(),
            origins: Vec::new(),
        };
        for w in self.windows.values_mut() {
            if all || due(w) {
                let s = w.seal(now_ns, all);
                sealed.records.extend(s.records);
                sealed.origins.extend(s.origins);
            }
        }
        if sealed.origins.is_empty() {
            return;
        }
        self.next_seal = now + Duration::from_nanos(limits.max_age_ns / 2);
        self.unstored.push(sealed);
        self.report_window();
        if retry_due {
            self.store_unstored();
        }
    }

    /// Writes every sealed batch in order, flushes once, moves the checkpoint.
    fn store_unstored(&mut self) {
        let metrics = self.shared.metrics.clone();
        let before = self.sink.position();
        let started = Instant::now();
        let mut stored = Ok(());
        for batch in &self.unstored {
            stored = self.sink.write(&batch.records);
            if stored.is_err() {
                break;
            }
        }
        let stored = stored.and_then(|()| self.sink.flush());
        metrics
            .sink_flush_seconds
            .observe(started.elapsed().as_secs_f64());
        let records: usize = self.unstored.iter().map(|u| u.records.len()).sum();
        match stored {
            Ok(()) => {
                metrics.records_written.inc_by(records as u64);
                for batch in std::mem::take(&mut self.unstored) {
                    self.progress.stored(&batch.origins);
                }
                if self.sink_retry.take().is_some() {
                    tracing::info!(records, "the sink recovered: backlog stored");
                }
                let position = self.sink.position();
                let checkpoint = self.progress.checkpoint(self.spool.next_seq(), position);
                match self.spool.commit(checkpoint) {
                    // Durable: a restart will not replay what the sink holds up to `position`.
                    Ok(()) => {
                        if let Err(e) = self.sink.committed(position) {
                            tracing::error!(sink = self.sink.name(), error = %e, "the sink cannot record the checkpoint: it publishes its data at the next one");
                        }
                    }
                    Err(e) => {
                        metrics.spool_errors.inc();
                        tracing::error!(error = %e, "cannot write the spool checkpoint: a restart will replay more (no loss, no duplicate)");
                    }
                }
                metrics.spool_bytes.set(self.spool.bytes() as i64);
                metrics
                    .spool_open_entries
                    .set(self.progress.open_entries() as i64);
            }
            Err(e) => {
                metrics.sink_errors.inc();
                // Cut off whatever part of the batch reached the sink, so the
                // retry does not write it twice.
                if let Some(p) = before {
                    if let Err(e) = self.sink.rollback(p) {
                        tracing::error!(error = %e, "cannot cut the sink back after a failed write");
                    }
                }
                let backoff = self
                    .sink_retry
                    .map_or(Duration::from_millis(100), |(_, b)| {
                        (b * 2).min(MAX_SINK_BACKOFF)
                    });
                self.sink_retry = Some((Instant::now() + backoff, backoff));
                tracing::error!(sink = self.sink.name(), error = %e, records, retry_in_ms = backoff.as_millis() as u64, "sink failed: records stay spooled and are retried");
            }
        }
        let backlogged =
            records > self.shared.settings.max_unstored_records && !self.unstored.is_empty();
        self.shared
            .sink_backlogged
            .store(backlogged, Ordering::Relaxed);
        metrics
            .unstored_records
            .set(self.unstored.iter().map(|u| u.records.len()).sum::<usize>() as i64);
    }

    /// At shutdown: seals every call and stores it, retrying a failing sink
    /// until the drain deadline; what is left stays in the spool for the next start.
    fn drain(&mut self) {
        let deadline = Instant::now() + self.shared.settings.drain_timeout;
        self.tick(true);
        while !self.unstored.is_empty() && Instant::now() < deadline {
            let wait = self.sink_retry.map_or(Duration::ZERO, |(at, _)| {
                at.saturating_duration_since(Instant::now())
            });
            std::thread::sleep(wait.min(deadline.saturating_duration_since(Instant::now())));
            self.store_unstored();
        }
        if self.unstored.is_empty() {
            tracing::info!("pipeline drained: every acknowledged call is stored");
        } else {
            tracing::error!("the sink still fails at the drain deadline: the unstored calls stay in the spool and are replayed at the next start");
        }
    }

    fn accepted(&self, signal: Signal, before: &ExtractStats, after: &ExtractStats) -> Verdict {
        let metrics = &self.shared.metrics;
        let items = (after.spans + after.log_records + after.metric_points)
            .saturating_sub(before.spans + before.log_records + before.metric_points);
        let rejected = after
            .rejected_total()
            .saturating_sub(before.rejected_total());
        metrics.dropped_attributes.inc_by(
            after
                .dropped_attributes
                .saturating_sub(before.dropped_attributes),
        );
        metrics.truncated_values.inc_by(
            after
                .truncated_values
                .saturating_sub(before.truncated_values),
        );
        metrics
            .items
            .get_or_create(&SignalLabels {
                signal: signal.as_str().into(),
            })
            .inc_by(items);
        let mut reasons = Vec::new();
        for (reason, n) in &after.rejected {
            let delta = n.saturating_sub(before.rejected.get(reason).copied().unwrap_or(0));
            if delta > 0 {
                metrics
                    .rejected_items
                    .get_or_create(&ReasonLabels {
                        reason: (*reason).into(),
                    })
                    .inc_by(delta);
                reasons.push(format!("{delta} {reason}"));
            }
        }
        Verdict::Accepted {
            items,
            rejected,
            message: reasons.join(", "),
        }
    }

    /// Publishes the windows' counters and size.
    fn report_window(&mut self) {
        let mut total = WindowStats::default();
        let mut waiting = 0;
        for w in self.windows.values() {
            let s = w.stats();
            total.calls += s.calls;
            total.merged += s.merged;
            total.late_duplicates += s.late_duplicates;
            total.sealed_early += s.sealed_early;
            waiting += w.len();
        }
        let m = &self.shared.metrics;
        m.observations_merged
            .inc_by(total.merged.saturating_sub(self.reported.merged));
        m.late_duplicates.inc_by(
            total
                .late_duplicates
                .saturating_sub(self.reported.late_duplicates),
        );
        m.sealed_early.inc_by(
            total
                .sealed_early
                .saturating_sub(self.reported.sealed_early),
        );
        m.window_observations.set(waiting as i64);
        self.reported = total;
    }
}
