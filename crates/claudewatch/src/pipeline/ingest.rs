//! The ingest thread: takes queued requests in batches, extracts them,
//! spools them (one fsync per batch), answers, and hands the extracted
//! observations to the worker thread (merge windows, sealing, storing).
//!
//! Answers never wait for a seal or a sink write: those run on the worker
//! thread. What this thread passes on stays counted in the memory limit
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

/// The ingest side of the pipeline (see the module documentation).
pub(super) struct Ingest {
    rx: Receiver<Job>,
    spool: Arc<Mutex<Spool>>,
    limits: AttributeLimits,
    shared: Arc<Shared>,
    to_worker: SyncSender<AdmittedBatch>,
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
        spool: Arc<Mutex<Spool>>,
        limits: AttributeLimits,
        shared: Arc<Shared>,
        to_worker: SyncSender<AdmittedBatch>,
    ) -> Ingest {
        Ingest {
            rx,
            spool,
            limits,
            shared,
            to_worker,
        }
    }

    /// Runs until every receiver is gone; then the worker drains.
    pub(super) fn run(self) {
        while let Ok(first) = self.rx.recv() {
            let mut jobs = vec![first];
            while jobs.len() < self.shared.settings.max_batch_requests {
                match self.rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            self.accept(jobs);
        }
    }

    /// Extracts, spools (one fsync) and answers a batch of requests, then
    /// passes what was spooled to the worker.
    fn accept(&self, jobs: Vec<Job>) {
        let metrics = &self.shared.metrics;
        metrics.queue_depth.dec_by(jobs.len() as i64);
        let arrived = unix_now_ns();
        // This thread is the only one appending: the numbers stay free.
        let first_seq = lock(&self.spool).next_seq();
        let mut verdicts = Vec::with_capacity(jobs.len());
        let mut entries = Vec::new();
        let mut admitted = Vec::new();
        let mut admitted_bytes = 0;
        let mut passed_on = vec![false; jobs.len()];
        for (k, job) in jobs.iter().enumerate() {
            let s = &job.submission;
            verdicts.push(
                match extract_request(s.signal, s.encoding, &s.body, &self.limits) {
                    Err(e) => Verdict::Invalid(e.to_string()),
                    Ok(extracted) => {
                        let verdict = self.accepted(s.signal, &extracted.stats);
                        // Requests with nothing about a Claude call need no spooling.
                        if !extracted.is_empty() {
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
                        verdict
                    }
                },
            );
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
        for ((job, verdict), passed_on) in jobs.into_iter().zip(verdicts).zip(passed_on) {
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

    /// Counts an accepted request's items and rejections; its answer.
    fn accepted(&self, signal: Signal, stats: &ExtractStats) -> Verdict {
        let metrics = &self.shared.metrics;
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
}
