//! The worker thread: puts what the spool thread spooled into the merge
//! windows, seals aged calls into records, stores them and has the spool's
//! checkpoint moved (by the checkpoint thread); replays the spool at start
//! and drains at shutdown.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use claudewatch_enrich::{extract_request, EnrichConfig, MergeWindow, Sealed, WindowStats};
use claudewatch_sink::Sink;
use claudewatch_spool::{Spool, SpoolError};

use super::checkpointer::{self, Checkpointer, CommitDone, CommitRequest};
use super::ingest::{encoding_of, lock, signal_of, AdmittedBatch};
use super::progress::Progress;
use super::Shared;

/// Longest wait between two attempts to store records in a failing sink.
const MAX_SINK_BACKOFF: Duration = Duration::from_secs(5);
/// Batches admitted at most between two looks at the seal and store work.
const ADMIT_BURST: usize = 64;
/// Longest sleep of the loop while idle.
const IDLE_TICK: Duration = Duration::from_millis(250);
/// Longest sleep of the loop while a checkpoint is being committed.
const COMMIT_POLL: Duration = Duration::from_millis(2);

pub(super) struct Worker {
    rx: Receiver<AdmittedBatch>,
    sink: Box<dyn Sink>,
    spool: Arc<Mutex<Spool>>,
    /// The spool's directory (its checkpoint file is written without the lock).
    spool_dir: std::path::PathBuf,
    /// One past the last spool entry put into a window: entries from here on
    /// are spooled but not admitted yet, so a checkpoint must replay them.
    admitted_next_seq: u64,
    enrich: EnrichConfig,
    shared: Arc<Shared>,
    windows: HashMap<Option<String>, MergeWindow>,
    progress: Progress,
    /// Sealed records the sink has not confirmed yet, oldest first.
    unstored: Vec<Sealed>,
    /// The emptied vectors of the last stored batch, filled by the next seal.
    spare: Sealed,
    /// Checkpoints go to the checkpoint thread, one at a time.
    to_checkpointer: SyncSender<CommitRequest>,
    commits_done: Receiver<CommitDone>,
    commit_in_flight: bool,
    /// The newest checkpoint requested while one was in flight.
    next_commit: Option<CommitRequest>,
    /// When the sink failed last, the next attempt and the current backoff.
    sink_retry: Option<(Instant, Duration)>,
    /// Earliest next seal (seals are spaced by half a window age).
    next_seal: Instant,
    clock: Instant,
    reported: WindowStats,
}

impl Worker {
    pub(super) fn new(
        rx: Receiver<AdmittedBatch>,
        sink: Box<dyn Sink>,
        spool: Arc<Mutex<Spool>>,
        enrich: EnrichConfig,
        shared: Arc<Shared>,
    ) -> std::io::Result<Worker> {
        let (admitted_next_seq, spool_dir) = {
            let held = lock(&spool);
            (held.next_seq(), held.dir().to_path_buf())
        };
        let (to_checkpointer, requests) = mpsc::sync_channel(1);
        let (done, commits_done) = mpsc::channel();
        let checkpointer = Checkpointer {
            rx: requests,
            done,
            spool: spool.clone(),
            spool_dir: spool_dir.clone(),
            shared: shared.clone(),
        };
        std::thread::Builder::new()
            .name("claudewatch-checkpoint".into())
            .spawn(move || checkpointer.run())?;
        Ok(Worker {
            rx,
            sink,
            spool,
            spool_dir,
            admitted_next_seq,
            enrich,
            shared,
            windows: HashMap::new(),
            progress: Progress::default(),
            unstored: Vec::new(),
            spare: Sealed::default(),
            sink_retry: None,
            next_seal: Instant::now(),
            clock: Instant::now(),
            reported: WindowStats::default(),
            to_checkpointer,
            commits_done,
            commit_in_flight: false,
            next_commit: None,
        })
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
        let mut entries = Vec::new();
        let checkpoint = {
            let spool = lock(&self.spool);
            spool.replay(|e| entries.push(e))?;
            spool.checkpoint().clone()
        };
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
            // The same extraction as the ingest thread's, done here.
            let extracted =
                extract_request(signal, encoding, &e.body, &self.enrich.attribute_limits);
            let window = self.window(&e.tenant);
            let mark = window.mark();
            match extracted.map(|x| window.admit_extracted(x, e.seq, now)) {
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
            let mut wait = self.until_next_seal();
            if self.commit_in_flight {
                // Its answer lets the sink publish: look for it soon.
                wait = wait.min(COMMIT_POLL);
            }
            match self.rx.recv_timeout(wait) {
                Ok(batch) => {
                    self.admit(batch);
                    // Take what else waits, but not forever: the seals and
                    // stores below must run under any load.
                    for _ in 0..ADMIT_BURST {
                        match self.rx.try_recv() {
                            Ok(batch) => self.admit(batch),
                            Err(_) => break,
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            self.tick(false);
            self.poll_commits(false);
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
        let mut settled: Option<Instant> = None;
        for w in self.windows.values() {
            if let Some(oldest) = w.oldest_arrival_ns() {
                let due = Duration::from_nanos(
                    oldest
                        .saturating_add(age.as_nanos() as u64)
                        .saturating_sub(now_ns),
                );
                wake = wake.min(now + due);
            }
            if let Some(t) = w.settled_due_ns() {
                let at = now + Duration::from_nanos(t.saturating_sub(now_ns));
                settled = Some(settled.map_or(at, |s| s.min(at)));
            }
        }
        let turn = wake.max(self.next_seal);
        settled
            .map_or(turn, |s| turn.min(s))
            .saturating_duration_since(now)
    }

    /// Puts spooled requests into their windows.
    fn admit(&mut self, batch: AdmittedBatch) {
        let now = self.now_ns();
        let held = self
            .shared
            .queued_bytes
            .fetch_sub(batch.bytes, Ordering::AcqRel);
        self.shared
            .metrics
            .queued_bytes
            .set(held.saturating_sub(batch.bytes) as i64);
        for a in batch.items {
            let window = self.window(&a.tenant);
            let total = window.admit_extracted(a.extracted, a.seq, now);
            self.progress.entry(a.seq, total, Vec::new());
            self.admitted_next_seq = self.admitted_next_seq.max(a.seq + 1);
        }
        self.report_window();
    }

    /// Seals aged calls and stores them; retries a failing sink.
    fn tick(&mut self, all: bool) {
        let now = Instant::now();
        let retry_due = self.sink_retry.is_none_or(|(at, _)| now >= at);
        if !self.unstored.is_empty() && retry_due {
            self.store_unstored();
        }
        let limits = self.shared.settings.window;
        // A window over its cap is sealed at once: the cap bounds memory.
        let over_cap = self
            .windows
            .values()
            .any(|w| w.len() > limits.max_observations);
        let now_ns = self.now_ns();
        // Seals come at most every half window age (each groups the whole
        // window), but a window that received nothing since its last seal
        // is sealed as soon as its next call is due: the end of a burst is
        // written without waiting for the next turn.
        let settled = self
            .windows
            .values()
            .any(|w| w.settled_due_ns().is_some_and(|t| t <= now_ns));
        if !all && now < self.next_seal && !over_cap && !settled {
            return;
        }
        let due = |w: &MergeWindow| {
            w.len() > limits.max_observations
                || w.oldest_arrival_ns()
                    .is_some_and(|t| t.saturating_add(limits.max_age_ns) <= now_ns)
        };
        // The vectors of the last stored batch are filled again.
        let mut sealed = std::mem::take(&mut self.spare);
        for w in self.windows.values_mut() {
            if all || due(w) {
                w.seal_into(now_ns, all, &mut sealed);
            }
        }
        if sealed.origins.is_empty() {
            self.spare = sealed;
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
                for mut batch in std::mem::take(&mut self.unstored) {
                    self.progress.stored(&batch.origins);
                    batch.records.clear();
                    batch.origins.clear();
                    if batch.records.capacity() > self.spare.records.capacity() {
                        self.spare = batch;
                    }
                }
                if self.sink_retry.take().is_some() {
                    tracing::info!(records, "the sink recovered: backlog stored");
                }
                if self.windows.values().all(MergeWindow::is_empty) {
                    self.sink.quiet();
                }
                let position = self.sink.position();
                let checkpoint = self.progress.checkpoint(self.admitted_next_seq, position);
                self.request_commit(CommitRequest {
                    checkpoint,
                    position,
                });
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

    /// Has `request` committed by the checkpoint thread, or keeps it as the
    /// next one (replacing an older one it covers) while one is in flight.
    fn request_commit(&mut self, request: CommitRequest) {
        if self.commit_in_flight {
            self.next_commit = Some(request);
            return;
        }
        match self.to_checkpointer.try_send(request) {
            Ok(()) => self.commit_in_flight = true,
            // Cannot happen (one request at a time); never commit two at once.
            Err(TrySendError::Full(request)) => {
                self.commit_in_flight = true;
                self.next_commit = Some(request);
            }
            // Only when the checkpoint thread died: commit here.
            Err(TrySendError::Disconnected(request)) => {
                let result = checkpointer::commit(
                    &self.spool,
                    &self.spool_dir,
                    &self.shared,
                    request.checkpoint,
                );
                self.committed(CommitDone {
                    position: request.position,
                    result,
                });
            }
        }
    }

    /// Takes the checkpoint thread's answers (waiting for every commit
    /// requested when `wait`) and sends the next commit.
    fn poll_commits(&mut self, wait: bool) {
        while self.commit_in_flight {
            let done = if wait {
                self.commits_done.recv().ok()
            } else {
                match self.commits_done.try_recv() {
                    Ok(done) => Some(done),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => None,
                }
            };
            self.commit_in_flight = false;
            // `None`: the checkpoint thread is gone, nothing more comes back,
            // and a waiting checkpoint is committed here (`request_commit`).
            let gone = done.is_none();
            if let Some(done) = done {
                self.committed(done);
            }
            if let Some(next) = self.next_commit.take() {
                self.request_commit(next);
            }
            if gone {
                break;
            }
        }
    }

    /// A commit's outcome: once the checkpoint is durable, the sink may
    /// publish what it holds up to the checkpoint's position.
    fn committed(&mut self, done: CommitDone) {
        match done.result {
            // Durable: a restart will not replay what the sink holds up to `position`.
            Ok(()) => {
                if let Err(e) = self.sink.committed(done.position) {
                    tracing::error!(sink = self.sink.name(), error = %e, "the sink cannot record the checkpoint: it publishes its data at the next one");
                }
            }
            Err(e) => {
                self.shared.metrics.spool_errors.inc();
                tracing::error!(error = %e, "cannot write the spool checkpoint: a restart will replay more (no loss, no duplicate)");
            }
        }
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
        // The last checkpoint is durable before the process may exit.
        self.poll_commits(true);
        if self.unstored.is_empty() {
            tracing::info!("pipeline drained: every acknowledged call is stored");
        } else {
            tracing::error!("the sink still fails at the drain deadline: the unstored calls stay in the spool and are replayed at the next start");
        }
    }

    /// Publishes the windows' counters and size.
    fn report_window(&mut self) {
        let mut total = WindowStats::default();
        let (mut waiting, mut sealed_ids) = (0, 0);
        for w in self.windows.values() {
            let s = w.stats();
            total.calls += s.calls;
            total.merged += s.merged;
            total.late_duplicates += s.late_duplicates;
            total.sealed_early += s.sealed_early;
            waiting += w.len();
            sealed_ids += w.sealed_ids();
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
        m.window_sealed_ids.set(sealed_ids as i64);
        self.reported = total;
    }
}
