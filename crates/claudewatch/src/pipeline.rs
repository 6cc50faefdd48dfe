//! The stream pipeline of `serve`: receivers → bounded queue → enricher →
//! sink, with acknowledgements after the sink flushed.
//!
//! One worker thread takes up to `max_batch_requests` queued requests at a
//! time, enriches them together (so the spans of one call that arrive in
//! different requests of the batch merge), writes the records and flushes the
//! sink once (group commit), then answers every request of the batch. A full
//! queue answers 503 + Retry-After at once; a failed flush answers 503 to the
//! requests of that batch, which the clients retry.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use claudewatch_enrich::{EnrichConfig, Enricher, ExtractStats};
use claudewatch_ingest::{Refusal, Submission, Submit, SubmitFuture, Verdict};
use claudewatch_otlp::{decode, Encoding, Signal};
use claudewatch_sink::Sink;
use tokio::sync::{mpsc, oneshot};

use crate::metrics::{Metrics, ReasonLabels, SignalLabels};

/// Settings of the pipeline.
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    /// Queue capacity in requests.
    pub queue_capacity: usize,
    /// Requests per batch (one flush each).
    pub max_batch_requests: usize,
    /// Retry-After when the queue is full.
    pub retry_after_secs: u32,
    /// Tenant for requests without one.
    pub default_tenant: Option<String>,
}

struct Job {
    submission: Submission,
    reply: oneshot::Sender<Result<Verdict, Refusal>>,
}

/// The receivers' handle on the pipeline.
#[derive(Clone)]
pub struct Pipeline {
    tx: mpsc::Sender<Job>,
    metrics: Arc<Metrics>,
    settings: Arc<PipelineSettings>,
}

/// Starts the worker thread; returns the handle receivers submit to, and the
/// thread, which ends after every `Pipeline` clone is dropped and the queue is drained.
pub fn start(
    settings: PipelineSettings,
    enrich: EnrichConfig,
    sink: Box<dyn Sink>,
    metrics: Arc<Metrics>,
) -> std::io::Result<(Pipeline, JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel(settings.queue_capacity);
    let settings = Arc::new(settings);
    let worker = Worker {
        rx,
        sink,
        enrich,
        metrics: metrics.clone(),
        settings: settings.clone(),
    };
    let handle = std::thread::Builder::new()
        .name("claudewatch-enrich".into())
        .spawn(move || worker.run())?;
    Ok((
        Pipeline {
            tx,
            metrics,
            settings,
        },
        handle,
    ))
}

fn result_name(r: &Result<Verdict, Refusal>) -> &'static str {
    match r {
        Ok(Verdict::Accepted { .. }) => "accepted",
        Ok(Verdict::Invalid(_)) => "invalid",
        Err(Refusal::Busy { .. }) => "busy",
        Err(Refusal::Unavailable { .. }) => "unavailable",
        Err(Refusal::ShuttingDown) => "shutting_down",
    }
}

impl Submit for Pipeline {
    fn submit(&self, mut submission: Submission) -> SubmitFuture<'_> {
        Box::pin(async move {
            if submission.tenant.is_none() {
                submission.tenant = self.settings.default_tenant.clone();
            }
            let signal = submission.signal;
            let (reply, answer) = oneshot::channel();
            let result = match self.tx.try_send(Job { submission, reply }) {
                Err(mpsc::error::TrySendError::Full(_)) => Err(Refusal::Busy {
                    retry_after_secs: self.settings.retry_after_secs,
                    reason: format!(
                        "queue full ({} requests): retry later",
                        self.settings.queue_capacity
                    ),
                }),
                Err(mpsc::error::TrySendError::Closed(_)) => Err(Refusal::ShuttingDown),
                Ok(()) => {
                    self.metrics.queue_depth.inc();
                    answer.await.unwrap_or(Err(Refusal::ShuttingDown))
                }
            };
            self.metrics.request(signal.as_str(), result_name(&result));
            result
        })
    }
}

struct Worker {
    rx: mpsc::Receiver<Job>,
    sink: Box<dyn Sink>,
    enrich: EnrichConfig,
    metrics: Arc<Metrics>,
    settings: Arc<PipelineSettings>,
}

impl Worker {
    fn run(mut self) {
        while let Some(first) = self.rx.blocking_recv() {
            let mut jobs = vec![first];
            while jobs.len() < self.settings.max_batch_requests {
                match self.rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            self.metrics.queue_depth.dec_by(jobs.len() as i64);
            self.process(jobs);
        }
        tracing::info!("pipeline drained: queue closed and every request answered");
    }

    fn process(&mut self, jobs: Vec<Job>) {
        // One enricher per tenant: calls of different tenants never merge.
        let mut enrichers: Vec<(Option<String>, Enricher)> = Vec::new();
        let mut verdicts = Vec::with_capacity(jobs.len());
        for job in &jobs {
            let s = &job.submission;
            let slot = match enrichers.iter().position(|(t, _)| *t == s.tenant) {
                Some(i) => i,
                None => {
                    let config = EnrichConfig {
                        tenant: s.tenant.clone(),
                        ..self.enrich.clone()
                    };
                    enrichers.push((s.tenant.clone(), Enricher::new(config)));
                    enrichers.len() - 1
                }
            };
            let enricher = &mut enrichers[slot].1;
            let before = enricher.stats().extract.clone();
            let pushed = match (s.signal, s.encoding) {
                (Signal::Traces, Encoding::Protobuf) => enricher.push_traces_protobuf(&s.body),
                _ => decode(s.signal, s.encoding, &s.body).map(|req| enricher.push(&req)),
            };
            verdicts.push(match pushed {
                Err(e) => Verdict::Invalid(e.to_string()),
                Ok(()) => self.accepted(s.signal, &before, &enricher.stats().extract),
            });
        }
        let mut records = Vec::new();
        for (_, mut e) in enrichers {
            records.extend(e.finish());
            self.metrics.observations_merged.inc_by(e.stats().merged);
        }
        let started = Instant::now();
        let stored = self.sink.write(&records).and_then(|()| self.sink.flush());
        self.metrics
            .sink_flush_seconds
            .observe(started.elapsed().as_secs_f64());
        match &stored {
            Ok(()) => {
                self.metrics.records_written.inc_by(records.len() as u64);
            }
            Err(e) => {
                self.metrics.sink_errors.inc();
                tracing::error!(sink = self.sink.name(), error = %e, records = records.len(), "sink failed: the batch is refused with 503 and will be retried by the clients");
            }
        }
        for (job, verdict) in jobs.into_iter().zip(verdicts) {
            let reply = match (&stored, verdict) {
                (Err(e), Verdict::Accepted { .. }) => Err(Refusal::Unavailable {
                    retry_after_secs: self.settings.retry_after_secs.max(1),
                    reason: format!("cannot store records now: {e}"),
                }),
                (_, v) => Ok(v),
            };
            // The client may have gone away; nothing to do then.
            let _ = job.reply.send(reply);
        }
    }

    fn accepted(&self, signal: Signal, before: &ExtractStats, after: &ExtractStats) -> Verdict {
        let items = (after.spans + after.log_records + after.metric_points)
            .saturating_sub(before.spans + before.log_records + before.metric_points);
        let rejected = after
            .rejected_total()
            .saturating_sub(before.rejected_total());
        self.metrics
            .items
            .get_or_create(&SignalLabels {
                signal: signal.as_str().into(),
            })
            .inc_by(items);
        let mut reasons = Vec::new();
        for (reason, n) in &after.rejected {
            let delta = n.saturating_sub(before.rejected.get(reason).copied().unwrap_or(0));
            if delta > 0 {
                self.metrics
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
}
