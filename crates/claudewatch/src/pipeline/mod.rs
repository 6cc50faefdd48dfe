//! The stream pipeline of `serve`: receivers → bounded queue → enricher and
//! spool → merge window → sink.
//!
//! A request is acknowledged once it is in the write-ahead spool (fsynced):
//! from then on a crash cannot lose it. Its observations wait in the merge
//! window of their tenant until their call is complete, then the call's record
//! goes to the sink; after the sink flushed, the spool's checkpoint moves on.
//! After a crash, the sink is cut back to the checkpoint's position and the
//! spool replays what the checkpoint does not cover, so every acknowledged
//! call is stored, and stored once.
//!
//! Four threads: `ingest` extracts; `spool` spools and answers (the next
//! batches are extracted during this one's fsync); `worker` merges, seals and
//! stores, so an answer never waits for a seal or a sink write; `checkpoint`
//! makes the worker's checkpoints durable, so the worker never waits on the
//! disk. A request's bytes count against the memory limit from its admission
//! until the worker took its observations.
//!
//! Backpressure, all answered with a retryable refusal: the queue is full
//! (requests), the queued bodies exceed the memory limit (bytes: in the queue
//! or waiting for the worker), the spool is full, or the sink is behind
//! (records sealed but not stored).

mod checkpointer;
mod ingest;
mod progress;
#[cfg(test)]
mod tests;
mod worker;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use claudewatch_enrich::{EnrichConfig, WindowLimits};
use claudewatch_ingest::{Refusal, Submission, Submit, SubmitFuture, Verdict};
use claudewatch_sink::Sink;
use claudewatch_spool::{Spool, SpoolConfig};
use tokio::sync::oneshot;

use crate::metrics::Metrics;

/// Spooled batches (each up to `max_batch_requests` requests) waiting for the
/// worker at most, by default; the memory limit normally binds first (a seal
/// holds the worker for a few hundred milliseconds at full load).
pub const WORKER_BACKLOG_BATCHES: usize = 1024;

/// Extracted batches that may wait for the spool thread (each up to
/// `max_batch_requests` requests): extraction runs ahead during an fsync.
const EXTRACTED_BATCHES: usize = 4;

/// Settings of the pipeline.
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    /// Queue capacity in requests.
    pub queue_capacity: usize,
    /// Requests taken from the queue together (one spool fsync).
    pub max_batch_requests: usize,
    /// Decompressed bytes allowed to wait in the queue (the memory limit).
    pub max_queued_bytes: usize,
    /// Records sealed but not yet stored beyond which new data is refused.
    pub max_unstored_records: usize,
    /// How long a request refused for room (queue or memory limit) waits for
    /// room before the refusal is its answer.
    pub admission_wait: Duration,
    /// Retry-After suggested with retryable refusals, in seconds.
    pub retry_after_secs: u32,
    /// Tenant for requests without one.
    pub default_tenant: Option<String>,
    /// The merge window.
    pub window: WindowLimits,
    /// The write-ahead spool.
    pub spool: SpoolConfig,
    /// How long the drain at shutdown keeps retrying a failing sink.
    pub drain_timeout: Duration,
    /// Spooled batches that may wait for the worker ([`WORKER_BACKLOG_BATCHES`]).
    pub worker_backlog_batches: usize,
}

struct Job {
    submission: Submission,
    reply: oneshot::Sender<Result<Verdict, Refusal>>,
}

/// State the receivers and the worker share.
struct Shared {
    metrics: Arc<Metrics>,
    settings: PipelineSettings,
    queued_bytes: AtomicUsize,
    /// Set by the worker while sealed records wait for a failing sink.
    sink_backlogged: AtomicBool,
    /// Requests waiting for room now (at most `queue_capacity`).
    admission_waiters: AtomicUsize,
}

/// Where an admitted request's answer arrives.
type Answer = oneshot::Receiver<Result<Verdict, Refusal>>;

/// How often a request waiting for room tries again.
const ADMISSION_POLL: Duration = Duration::from_millis(5);

/// Counts one request waiting for room while it lives.
struct Waiter<'a>(&'a AtomicUsize);

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The receivers' handle on the pipeline.
#[derive(Clone)]
pub struct Pipeline {
    tx: mpsc::SyncSender<Job>,
    shared: Arc<Shared>,
}

/// Opens the spool, cuts the sink back to the spool's checkpoint, replays what
/// was acknowledged but not stored before the last stop, then starts the
/// worker thread. Returns the handle receivers submit to, and the thread,
/// which ends after every `Pipeline` clone is dropped and everything drained.
pub fn start(
    settings: PipelineSettings,
    enrich: EnrichConfig,
    mut sink: Box<dyn Sink>,
    metrics: Arc<Metrics>,
) -> anyhow::Result<(Pipeline, JoinHandle<()>)> {
    let (spool, report) = Spool::open(settings.spool.clone())
        .with_context(|| format!("opening the spool in {}", settings.spool.dir.display()))?;
    tracing::info!(
        dir = %settings.spool.dir.display(),
        entries = report.entries,
        to_replay = report.to_replay,
        torn_tail_bytes = report.torn_tail_bytes,
        "spool opened"
    );
    if report.torn_tail_bytes > 0 {
        tracing::warn!(
            bytes = report.torn_tail_bytes,
            "spool had a torn tail (a write cut short by a crash, never acknowledged): cut off"
        );
    }
    if report.corrupt_segments > 0 {
        tracing::error!(
            segments = report.corrupt_segments,
            "spool segments with a corrupt entry: the entries after it cannot be replayed"
        );
    }
    metrics.spool_torn_tail_bytes.inc_by(report.torn_tail_bytes);
    metrics
        .spool_corrupt_segments
        .inc_by(report.corrupt_segments);
    sink.recover(report.checkpoint.sink_position)
        .context("cutting the sink back to the spool checkpoint")?;
    let (tx, rx) = mpsc::sync_channel(settings.queue_capacity);
    let shared = Arc::new(Shared {
        metrics,
        settings,
        queued_bytes: AtomicUsize::new(0),
        sink_backlogged: AtomicBool::new(false),
        admission_waiters: AtomicUsize::new(0),
    });
    let spool = Arc::new(Mutex::new(spool));
    let (to_worker, from_spool) = mpsc::sync_channel(shared.settings.worker_backlog_batches.max(1));
    let limits = enrich.attribute_limits;
    let mut worker = worker::Worker::new(from_spool, sink, spool.clone(), enrich, shared.clone())
        .context("starting the checkpoint thread")?;
    worker.replay().context("replaying the spool")?;
    // Batches extracted while the spool waits for the disk queue up (their
    // bytes stay in the memory limit) and are spooled together.
    let (to_spool, from_ingest) = mpsc::sync_channel(EXTRACTED_BATCHES);
    let spooler = ingest::Spooler::new(from_ingest, spool, shared.clone(), to_worker);
    std::thread::Builder::new()
        .name("claudewatch-spool".into())
        .spawn(move || spooler.run())
        .context("starting the spool thread")?;
    let ingest = ingest::Ingest::new(rx, limits, shared.clone(), to_spool);
    std::thread::Builder::new()
        .name("claudewatch-ingest".into())
        .spawn(move || ingest.run())
        .context("starting the ingest thread")?;
    // The worker ends once the ingest and spool threads ended (their channels
    // closed) and it drained: joining it is joining the pipeline.
    let handle = std::thread::Builder::new()
        .name("claudewatch-enrich".into())
        .spawn(move || {
            yield_to_ingest();
            worker.run()
        })
        .context("starting the pipeline worker thread")?;
    Ok((Pipeline { tx, shared }, handle))
}

/// Lowers the calling (worker) thread's CPU priority a little, so that on a
/// busy core the ingest and spool threads, which answer clients, run first and the
/// worker catches up in between (its backlog is bounded by the memory
/// limit). Best effort.
fn yield_to_ingest() {
    #[cfg(target_os = "linux")]
    {
        let tid = rustix::thread::gettid();
        let _ = rustix::process::setpriority_process(Some(tid), WORKER_NICENESS);
    }
}

/// The worker thread's nice value (Linux): each step is about 25 % less CPU
/// share under contention.
#[cfg(target_os = "linux")]
const WORKER_NICENESS: i32 = 5;

fn result_name(r: &Result<Verdict, Refusal>) -> &'static str {
    match r {
        Ok(Verdict::Accepted { .. }) => "accepted",
        Ok(Verdict::Invalid(_)) => "invalid",
        Err(Refusal::Busy { .. }) => "busy",
        Err(Refusal::Unavailable { .. }) => "unavailable",
        Err(Refusal::ShuttingDown) => "shutting_down",
    }
}

impl Pipeline {
    /// Admits a submission to the queue, or says why not (all retryable);
    /// when the refusal is for room (the queue or the memory limit), the
    /// submission comes back with it, for another try.
    fn admit(&self, submission: Submission) -> Result<Answer, (Refusal, Option<Submission>)> {
        let s = &self.shared.settings;
        let retry_after_secs = s.retry_after_secs.max(1);
        if self.shared.sink_backlogged.load(Ordering::Relaxed) {
            let refusal = Refusal::Unavailable {
                retry_after_secs,
                reason: format!(
                    "the sink is behind ({} records waiting to be stored): retry later",
                    s.max_unstored_records
                ),
            };
            return Err((refusal, None));
        }
        let len = submission.body.len();
        let held = self.shared.queued_bytes.fetch_add(len, Ordering::AcqRel);
        if held > 0 && held + len > s.max_queued_bytes {
            self.shared.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            let refusal = Refusal::Busy {
                retry_after_secs,
                reason: format!(
                    "memory limit: {} bytes of requests already queued (pipeline.max_queued_bytes)",
                    held
                ),
            };
            return Err((refusal, Some(submission)));
        }
        let (reply, answer) = oneshot::channel();
        match self.tx.try_send(Job { submission, reply }) {
            Ok(()) => {
                self.shared.metrics.queue_depth.inc();
                self.shared
                    .metrics
                    .queued_bytes
                    .set(self.shared.queued_bytes.load(Ordering::Relaxed) as i64);
                Ok(answer)
            }
            Err(e) => {
                self.shared.queued_bytes.fetch_sub(len, Ordering::AcqRel);
                Err(match e {
                    mpsc::TrySendError::Full(job) => (
                        Refusal::Busy {
                            retry_after_secs,
                            reason: format!(
                                "queue full ({} requests): retry later",
                                s.queue_capacity
                            ),
                        },
                        Some(job.submission),
                    ),
                    mpsc::TrySendError::Disconnected(_) => (Refusal::ShuttingDown, None),
                })
            }
        }
    }

    /// [`Pipeline::admit`], and when refused for room, tries again every few
    /// milliseconds for up to `admission_wait` (while at most
    /// `queue_capacity` requests wait so), then answers the refusal. The
    /// bodies waiting are bounded by that count; nothing else is held.
    async fn admit_or_wait(&self, submission: Submission) -> Result<Answer, Refusal> {
        let (refusal, back) = match self.admit(submission) {
            Ok(answer) => return Ok(answer),
            Err(refused) => refused,
        };
        let (Some(mut submission), false) = (back, self.shared.settings.admission_wait.is_zero())
        else {
            return Err(refusal);
        };
        let waiters = &self.shared.admission_waiters;
        if waiters.fetch_add(1, Ordering::AcqRel) >= self.shared.settings.queue_capacity {
            waiters.fetch_sub(1, Ordering::AcqRel);
            return Err(refusal);
        }
        let _waiter = Waiter(waiters);
        let deadline = tokio::time::Instant::now() + self.shared.settings.admission_wait;
        let mut last = refusal;
        while tokio::time::Instant::now() + ADMISSION_POLL <= deadline {
            tokio::time::sleep(ADMISSION_POLL).await;
            match self.admit(submission) {
                Ok(answer) => return Ok(answer),
                Err((refusal, Some(back))) => {
                    submission = back;
                    last = refusal;
                }
                Err((refusal, None)) => return Err(refusal),
            }
        }
        Err(last)
    }
}

impl Submit for Pipeline {
    fn submit(&self, mut submission: Submission) -> SubmitFuture<'_> {
        Box::pin(async move {
            if submission.tenant.is_none() {
                submission.tenant = self.shared.settings.default_tenant.clone();
            }
            let signal = submission.signal;
            let result = match self.admit_or_wait(submission).await {
                Ok(answer) => answer.await.unwrap_or(Err(Refusal::ShuttingDown)),
                Err(refusal) => Err(refusal),
            };
            self.shared
                .metrics
                .request(signal.as_str(), result_name(&result));
            result
        })
    }
}
