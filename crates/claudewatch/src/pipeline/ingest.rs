//! The ingest stage, two threads in a row: `ingest` takes queued requests
//! in batches and extracts them; `spool` appends each batch to the spool (one
//! fsync), answers, and hands the extracted observations to the worker thread
//! (merge windows, sealing, storing). While one append's fsync waits for the
//! disk, the next batches are extracted, then spooled together: on a busy
//! core, the disk's latency no longer leaves the CPU idle (at 190,000 spans/s
//! the spool thread waits on fsync more than half of the time).
//!
//! Answers never wait for a seal or a sink write: those run on the worker
//! thread. What this stage passes on stays counted in the memory limit
//! (`max_queued_bytes`) until the worker took it, so when the worker falls
//! behind, receivers answer 503 rather than memory growing.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use claudewatch_enrich::{extract_request, AttributeLimits, ExtractStats, Extracted};
use claudewatch_ingest::{Refusal, Verdict};
use claudewatch_otlp::{Encoding, Signal};
use claudewatch_spool::{Entry, Spool, SpoolError};

use super::{Job, Shared};
use crate::metrics::{ReasonLabels, SignalLabels};

/// Spooled requests' observations, for the worker, and the bytes of their
/// bodies, which count against the memory limit until the worker took them.
pub(super) struct AdmittedBatch {
    /// The requests.
    pub items: Vec<Admitted>,
    /// Their body bytes, still in `queued_bytes`.
    pub bytes: usize,
}

/// One spooled request's observations, for the worker.
pub(super) struct Admitted {
    /// Its spool entry.
    pub seq: u64,
    /// The tenant its credentials map to.
    pub tenant: Option<String>,
    /// What it holds about Claude calls.
    pub extracted: Extracted,
}

/// The extracting thread (see the module documentation).
pub(super) struct Ingest {
    rx: Receiver<Job>,
    limits: AttributeLimits,
    shared: Arc<Shared>,
    to_spool: SyncSender<Extraction>,
}

/// The spooling thread (see the module documentation).
pub(super) struct Spooler {
    rx: Receiver<Extraction>,
    spool: Arc<Mutex<Spool>>,
    shared: Arc<Shared>,
    to_worker: SyncSender<AdmittedBatch>,
}

/// A batch of requests, extracted, on its way to the spool.
pub(super) struct Extraction {
    jobs: Vec<Job>,
    /// Per job: its answer if the spool takes it, and what it holds about
    /// Claude calls (`None`: nothing to spool, or undecodable).
    verdicts: Vec<(Verdict, Option<Extracted>)>,
}

/// A signal's code in the spool's entries.
pub(super) fn signal_code(s: Signal) -> u8 {
    match s {
        Signal::Traces => 0,
        Signal::Logs => 1,
        Signal::Metrics => 2,
    }
}

/// An encoding's code in the spool's entries.
pub(super) fn encoding_code(e: Encoding) -> u8 {
    match e {
        Encoding::Protobuf => 0,
        Encoding::Json => 1,
    }
}

/// The signal a spool entry's code names ([`signal_code`]'s inverse).
pub(super) fn signal_of(code: u8) -> Option<Signal> {
    match code {
        0 => Some(Signal::Traces),
        1 => Some(Signal::Logs),
        2 => Some(Signal::Metrics),
        _ => None,
    }
}

/// The encoding a spool entry's code names ([`encoding_code`]'s inverse).
pub(super) fn encoding_of(code: u8) -> Option<Encoding> {
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

/// Locks the spool; a thread that panicked holding it left it usable
/// (every spool operation is complete or returned an error).
pub(super) fn lock(spool: &Mutex<Spool>) -> MutexGuard<'_, Spool> {
    spool
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Ingest {
    pub(super) fn new(
        rx: Receiver<Job>,
        limits: AttributeLimits,
        shared: Arc<Shared>,
        to_spool: SyncSender<Extraction>,
    ) -> Ingest {
        Ingest {
            rx,
            limits,
            shared,
            to_spool,
        }
    }

    /// Runs until every receiver is gone; then the spooler and the worker drain.
    pub(super) fn run(self) {
        while let Ok(first) = self.rx.recv() {
            let mut jobs = vec![first];
            while jobs.len() < self.shared.settings.max_batch_requests {
                match self.rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            let extraction = self.extract(jobs);
            if let Err(lost) = self.to_spool.send(extraction) {
                // Only when the spool thread died: nothing of this batch is spooled.
                tracing::error!("the spool thread is gone: requests are refused");
                let retry_after_secs = self.shared.settings.retry_after_secs.max(1);
                for job in lost.0.jobs {
                    self.shared
                        .queued_bytes
                        .fetch_sub(job.submission.body.len(), Ordering::AcqRel);
                    let _ = job.reply.send(Err(Refusal::Unavailable {
                        retry_after_secs,
                        reason: "the spool thread stopped".into(),
                    }));
                }
            }
        }
    }

    /// Extracts a batch of requests and decides each one's answer.
    fn extract(&self, jobs: Vec<Job>) -> Extraction {
        self.shared.metrics.queue_depth.dec_by(jobs.len() as i64);
        let verdicts = jobs
            .iter()
            .map(|job| {
                let s = &job.submission;
                match extract_request(s.signal, s.encoding, &s.body, &self.limits) {
                    Err(e) => (Verdict::Invalid(e.to_string()), None),
                    Ok(extracted) => {
                        let verdict = accepted(&self.shared, s.signal, &extracted.stats);
                        // Requests with nothing about a Claude call need no spooling.
                        (verdict, (!extracted.is_empty()).then_some(extracted))
                    }
                }
            })
            .collect();
        Extraction { jobs, verdicts }
    }
}

impl Spooler {
    pub(super) fn new(
        rx: Receiver<Extraction>,
        spool: Arc<Mutex<Spool>>,
        shared: Arc<Shared>,
        to_worker: SyncSender<AdmittedBatch>,
    ) -> Spooler {
        Spooler {
            rx,
            spool,
            shared,
            to_worker,
        }
    }

    /// Runs until the extracting thread is gone; then the worker drains.
    /// Whatever was extracted during the last fsync goes to the spool
    /// together (one append, one fsync): the disk's pace sets the group size.
    pub(super) fn run(self) {
        while let Ok(mut group) = self.rx.recv() {
            while let Ok(more) = self.rx.try_recv() {
                group.jobs.extend(more.jobs);
                group.verdicts.extend(more.verdicts);
            }
            self.accept(group);
        }
    }

    /// Spools (one fsync) and answers a batch of extracted requests, then
    /// passes what was spooled to the worker.
    fn accept(&self, extraction: Extraction) {
        let metrics = &self.shared.metrics;
        let arrived = unix_now_ns();
        let Extraction { jobs, verdicts } = extraction;
        // This thread is the only one appending: the numbers stay free.
        let first_seq = lock(&self.spool).next_seq();
        let mut entries = Vec::new();
        let mut admitted = Vec::new();
        let mut admitted_bytes = 0;
        let mut passed_on = vec![false; jobs.len()];
        let mut answers = Vec::with_capacity(jobs.len());
        for (k, (job, (verdict, extracted))) in jobs.iter().zip(verdicts).enumerate() {
            let s = &job.submission;
            if let Some(extracted) = extracted {
                let seq = first_seq + entries.len() as u64;
                entries.push(Entry {
                    seq,
                    signal: signal_code(s.signal),
                    encoding: encoding_code(s.encoding),
                    tenant: s.tenant.clone(),
                    arrived_unix_ns: arrived,
                    body: s.body.clone(),
                });
                admitted.push(Admitted {
                    seq,
                    tenant: s.tenant.clone(),
                    extracted,
                });
                admitted_bytes += s.body.len();
                passed_on[k] = true;
            }
            answers.push(verdict);
        }
        let spooled = {
            let started = std::time::Instant::now();
            let mut spool = lock(&self.spool);
            let result = spool.append(&entries);
            metrics.spool_bytes.set(spool.bytes() as i64);
            metrics
                .spool_append_seconds
                .observe(started.elapsed().as_secs_f64());
            result
        };
        let refusal = match spooled {
            Ok(()) => None,
            Err(e) => {
                metrics.spool_errors.inc();
                tracing::error!(error = %e, requests = entries.len(), "cannot spool: the requests are refused with a retryable answer");
                admitted.clear();
                admitted_bytes = 0;
                passed_on.fill(false);
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
        for ((job, verdict), passed_on) in jobs.into_iter().zip(answers).zip(passed_on) {
            // What goes on to the worker stays counted until the worker took it.
            if !passed_on {
                self.shared
                    .queued_bytes
                    .fetch_sub(job.submission.body.len(), Ordering::AcqRel);
            }
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
        let batch = AdmittedBatch {
            items: admitted,
            bytes: admitted_bytes,
        };
        if !batch.items.is_empty() && self.to_worker.send(batch).is_err() {
            // Only when the worker thread died: what is spooled is replayed at the next start.
            tracing::error!(
                "the pipeline worker is gone: spooled requests wait for the next start"
            );
        }
    }
}

/// Counts an accepted request's items and rejections; its answer.
fn accepted(shared: &Shared, signal: Signal, stats: &ExtractStats) -> Verdict {
    let metrics = &shared.metrics;
    let items = stats.spans + stats.log_records + stats.metric_points;
    let rejected = stats.rejected_total();
    metrics.dropped_attributes.inc_by(stats.dropped_attributes);
    metrics.truncated_values.inc_by(stats.truncated_values);
    metrics
        .items
        .get_or_create(&SignalLabels {
            signal: signal.as_str().into(),
        })
        .inc_by(items);
    let mut reasons = Vec::new();
    for (reason, &n) in &stats.rejected {
        if n > 0 {
            metrics
                .rejected_items
                .get_or_create(&ReasonLabels {
                    reason: (*reason).into(),
                })
                .inc_by(n);
            reasons.push(format!("{n} {reason}"));
        }
    }
    Verdict::Accepted {
        items,
        rejected,
        message: reasons.join(", "),
    }
}
