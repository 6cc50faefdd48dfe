//! Admission under pressure, deterministically: a sink that blocks until the
//! test releases it holds the worker; the ingest and spool threads go on
//! answering until the worker's channel is full, then wait, so the queue and
//! the memory limit fill exactly when the test says, and a retry after the
//! release succeeds. Also: checkpoints reach the sink only once durable.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use claudewatch_enrich::{CallRecord, EnrichConfig, WindowLimits};
use claudewatch_ingest::{Refusal, Submission, Submit, Verdict};
use claudewatch_otlp::proto::collector::trace::v1::ExportTraceServiceRequest;
use claudewatch_otlp::proto::common::v1::{
    any_value::Value as V, AnyValue, InstrumentationScope, KeyValue,
};
use claudewatch_otlp::proto::trace::v1::{ResourceSpans, ScopeSpans, Span};
use claudewatch_otlp::{Encoding, Signal};
use claudewatch_sink::{Sink, SinkError};
use claudewatch_spool::SpoolConfig;
use prost::Message;

use super::{start, Pipeline, PipelineSettings};
use crate::metrics::Metrics;

/// A sink whose `write` waits for a token from the test.
struct GatedSink {
    gate: Arc<Mutex<mpsc::Receiver<()>>>,
    /// Writes begun (the worker is held from the first).
    entered: Arc<std::sync::atomic::AtomicUsize>,
    written: Arc<Mutex<Vec<CallRecord>>>,
}

impl Sink for GatedSink {
    fn name(&self) -> &'static str {
        "gated"
    }
    fn write(&mut self, records: &[CallRecord]) -> Result<(), SinkError> {
        self.entered
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.gate.lock().unwrap().recv().ok();
        self.written.lock().unwrap().extend_from_slice(records);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

fn call(n: u64) -> bytes::Bytes {
    let kv = |k: &str, v: V| KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        key_strindex: 0,
    };
    let span = Span {
        trace_id: u128::from(n + 1).to_be_bytes().to_vec(),
        span_id: (n + 1).to_be_bytes().to_vec(),
        name: "anthropic.messages.create".into(),
        start_time_unix_nano: 1_795_393_612_000_000_000,
        end_time_unix_nano: 1_795_393_612_040_000_000,
        attributes: vec![
            kv(
                "gen_ai.request.model",
                V::StringValue("claude-haiku-4-5".into()),
            ),
            kv("http.response.status_code", V::IntValue(200)),
            kv(
                "anthropic.request.id",
                V::StringValue(format!("req_gate_{n}")),
            ),
            kv("gen_ai.usage.input_tokens", V::IntValue(10)),
            kv("gen_ai.usage.output_tokens", V::IntValue(2)),
        ],
        ..Default::default()
    };
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: None,
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "com.anthropic.sdk.python".into(),
                    ..Default::default()
                }),
                spans: vec![span],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    };
    bytes::Bytes::from(req.encode_to_vec())
}

fn submission(n: u64) -> Submission {
    Submission {
        signal: Signal::Traces,
        encoding: Encoding::Protobuf,
        body: call(n),
        tenant: None,
    }
}

fn accepted(r: &Result<Verdict, Refusal>) -> bool {
    matches!(r, Ok(Verdict::Accepted { rejected: 0, .. }))
}

/// What [`start_gated`] gives: the pipeline, its worker thread, the sender
/// that lets one sink write through, the count of writes begun, and what was
/// written.
type Gated = (
    Pipeline,
    std::thread::JoinHandle<()>,
    mpsc::Sender<()>,
    Arc<std::sync::atomic::AtomicUsize>,
    Arc<Mutex<Vec<CallRecord>>>,
);

/// Starts a pipeline whose sink holds the worker in every write until the
/// test sends on the returned gate.
fn start_gated(settings: PipelineSettings) -> Gated {
    let (release, gate) = mpsc::channel();
    let written = Arc::new(Mutex::new(Vec::new()));
    let entered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let sink = GatedSink {
        gate: Arc::new(Mutex::new(gate)),
        entered: entered.clone(),
        written: written.clone(),
    };
    let metrics = Metrics::new(&mut prometheus_client::registry::Registry::default());
    let (pipeline, worker) =
        start(settings, EnrichConfig::default(), Box::new(sink), metrics).unwrap();
    (pipeline, worker, release, entered, written)
}

/// Test settings: one request per batch, no merge wait, an unreachable cap,
/// refusals answered at once; tests override what they exercise.
fn test_settings(spool: &std::path::Path) -> PipelineSettings {
    PipelineSettings {
        queue_capacity: 16,
        max_batch_requests: 1,
        max_queued_bytes: 1 << 30,
        max_unstored_records: 1000,
        admission_wait: Duration::ZERO,
        retry_after_secs: 1,
        default_tenant: None,
        window: WindowLimits {
            max_age_ns: 0,
            max_observations: 1000,
            max_sealed_ids: 4000,
        },
        spool: SpoolConfig {
            dir: spool.to_path_buf(),
            segment_bytes: 1 << 20,
            max_bytes: 1 << 30,
        },
        drain_timeout: Duration::from_secs(5),
        worker_backlog_batches: 1024,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_pushes_back_then_the_retry_succeeds() {
    push_back_then_success(1 << 30, "queue full").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_limit_pushes_back_then_the_retry_succeeds() {
    // Room for one request's bytes; the queue itself has room for two.
    push_back_then_success(call(0).len() + 1, "memory limit").await;
}

async fn push_back_then_success(max_queued_bytes: usize, expected: &str) {
    let spool = tempfile_dir();
    let queue_capacity = if expected == "queue full" { 1 } else { 2 };
    let worker_backlog_batches = if expected == "queue full" { 1 } else { 1024 };
    let settings = PipelineSettings {
        queue_capacity,
        max_queued_bytes,
        worker_backlog_batches,
        ..test_settings(&spool)
    };
    let (pipeline, worker, release, entered, written) = start_gated(settings);

    // A is spooled and answered; the worker then seals it and blocks in the sink.
    assert!(accepted(&pipeline.submit(submission(0)).await));
    let mut waited = 0;
    while entered.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
        waited += 1;
        assert!(waited < 1000, "A never reached the sink");
    }
    // Answers go on while the worker is held, until what waits for it reaches
    // a limit: its channel (then the spool thread waits, extracted batches
    // wait for it, unanswered, up to their channel's capacity and the one the
    // ingest thread holds, and a request B stays in
    // the queue and takes its only slot), or the memory limit (the bytes of
    // the requests passed on count until the worker takes them).
    let mut n = 1;
    let mut b = None;
    let mut held = Vec::new();
    let c = loop {
        assert!(n < 100, "nothing pushed back while the worker is held");
        let p = pipeline.clone();
        let job = tokio::spawn(async move { p.submit(submission(n)).await });
        let mut waited = 0;
        let stuck = loop {
            if job.is_finished() {
                break Some(false);
            }
            if pipeline.shared.metrics.queue_depth.get() >= 1 && waited >= 40 {
                break Some(true);
            }
            if waited >= 100 {
                break None; // taken from the queue, waiting between the stages
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            waited += 1;
        };
        match stuck {
            Some(true) => {
                b = Some(job);
                break n + 1;
            }
            None => {
                assert!(
                    held.len() <= super::EXTRACTED_BATCHES,
                    "more batches held between the stages than their channel and the ingest thread hold"
                );
                held.push(job);
                n += 1;
                continue;
            }
            Some(false) => {}
        }
        match job.await.unwrap() {
            Err(Refusal::Busy { .. }) => break n,
            other => assert!(accepted(&other), "request {n}: {other:?}"),
        }
        n += 1;
    };
    // C: the queue is full, or the memory limit is reached: a retryable refusal.
    match pipeline.submit(submission(c)).await {
        Err(Refusal::Busy {
            retry_after_secs,
            reason,
        }) => {
            assert_eq!(retry_after_secs, 1);
            assert!(reason.contains(expected), "{reason}");
        }
        other => panic!("expected a retryable refusal, got {other:?}"),
    }
    // The sink moves again: B is answered, and C's retry succeeds.
    let releaser = std::thread::spawn(move || {
        while release.send(()).is_ok() {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    for job in held.into_iter().chain(b) {
        assert!(accepted(&job.await.unwrap()));
    }
    // C's retry succeeds once the worker took what held the limit.
    let mut retries = 0;
    loop {
        match pipeline.submit(submission(c)).await {
            Err(Refusal::Busy { .. }) if retries < 250 => {
                retries += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => {
                assert!(accepted(&other), "C's retry: {other:?}");
                break;
            }
        }
    }
    drop(pipeline);
    tokio::task::spawn_blocking(move || worker.join().unwrap())
        .await
        .unwrap();
    let mut ids: Vec<String> = written
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.request_id.clone().unwrap())
        .collect();
    ids.sort();
    let mut want: Vec<String> = (0..=c).map(|i| format!("req_gate_{i}")).collect();
    want.sort();
    assert_eq!(ids, want, "every answered request written once");
    // The sink is gone with the worker: the releaser's sends fail and it ends.
    releaser.join().unwrap();
    std::fs::remove_dir_all(spool).unwrap();
}

/// A sink that keeps what it is given.
struct CollectingSink(Arc<Mutex<Vec<CallRecord>>>);

impl Sink for CollectingSink {
    fn name(&self) -> &'static str {
        "collecting"
    }
    fn write(&mut self, records: &[CallRecord]) -> Result<(), SinkError> {
        self.0.lock().unwrap().extend_from_slice(records);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_refused_for_room_waits_for_it_instead() {
    // Room for one request's bytes; the worker is held in the sink by A, so
    // B's bytes stay counted until it is let go. C waits rather than being
    // refused, and is admitted as soon as the worker takes B.
    let spool = tempfile_dir();
    let settings = PipelineSettings {
        max_queued_bytes: call(0).len() + 1,
        admission_wait: Duration::from_secs(20),
        ..test_settings(&spool)
    };
    let (pipeline, worker, release, entered, written) = start_gated(settings);
    assert!(accepted(&pipeline.submit(submission(0)).await));
    while entered.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(accepted(&pipeline.submit(submission(1)).await));
    let p = pipeline.clone();
    let c = tokio::spawn(async move { p.submit(submission(2)).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!c.is_finished(), "C was answered while there was no room");
    assert_eq!(
        pipeline
            .shared
            .admission_waiters
            .load(std::sync::atomic::Ordering::SeqCst),
        1,
        "C waits for room"
    );
    let releaser = std::thread::spawn(move || {
        while release.send(()).is_ok() {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    let answer = c.await.unwrap();
    assert!(accepted(&answer), "C once there is room: {answer:?}");
    assert_eq!(
        pipeline
            .shared
            .admission_waiters
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    drop(pipeline);
    tokio::task::spawn_blocking(move || worker.join().unwrap())
        .await
        .unwrap();
    assert_eq!(written.lock().unwrap().len(), 3, "A, B and C written once");
    releaser.join().unwrap();
    std::fs::remove_dir_all(spool).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_over_its_cap_is_sealed_at_once_down_to_half() {
    const CAP: usize = 4;
    const CALLS: u64 = 12;
    let spool = tempfile_dir();
    let settings = PipelineSettings {
        // No call ever ages out during the test: only the cap seals.
        window: WindowLimits {
            max_age_ns: 3_600_000_000_000,
            max_observations: CAP,
            max_sealed_ids: (CAP * 4).max(1024),
        },
        ..test_settings(&spool)
    };
    let written = Arc::new(Mutex::new(Vec::new()));
    let metrics = Metrics::new(&mut prometheus_client::registry::Registry::default());
    let (pipeline, worker) = start(
        settings,
        EnrichConfig::default(),
        Box::new(CollectingSink(written.clone())),
        metrics,
    )
    .unwrap();
    for n in 0..CALLS {
        assert!(accepted(&pipeline.submit(submission(n)).await));
        // One request at a time: the window crosses its cap again and again,
        // and comes back under it at once (the next seal by age is an hour away).
        let mut waited = 0;
        loop {
            let waiting = pipeline.shared.metrics.window_observations.get() as u64;
            let stored = written.lock().unwrap().len() as u64;
            if waiting + stored > n && waiting <= CAP as u64 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            waited += 1;
            assert!(
                waited < 1000,
                "call {n}: {waiting} observations waiting (cap {CAP}), {stored} written"
            );
        }
    }
    // Before any shutdown, every crossing was sealed at once down to half the
    // cap: all but the last few calls are written.
    let before_stop = written.lock().unwrap().len();
    assert!(
        before_stop as u64 >= CALLS - CAP as u64,
        "{before_stop} of {CALLS} written before the stop"
    );
    drop(pipeline);
    tokio::task::spawn_blocking(move || worker.join().unwrap())
        .await
        .unwrap();
    assert_eq!(
        written.lock().unwrap().len() as u64,
        CALLS,
        "all written once"
    );
    std::fs::remove_dir_all(spool).unwrap();
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "cw-pipeline-test-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A sink whose position is the count of records written, and which checks,
/// each time it hears a position committed, that the spool's checkpoint on
/// disk already records it.
struct CheckpointCheckingSink {
    spool: std::path::PathBuf,
    written: u64,
    committed: Arc<Mutex<Vec<u64>>>,
}

impl Sink for CheckpointCheckingSink {
    fn name(&self) -> &'static str {
        "checkpoint-checking"
    }
    fn write(&mut self, records: &[CallRecord]) -> Result<(), SinkError> {
        self.written += records.len() as u64;
        Ok(())
    }
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
    fn position(&self) -> Option<u64> {
        Some(self.written)
    }
    fn committed(&mut self, position: Option<u64>) -> Result<(), SinkError> {
        let position = position.expect("a positioned sink hears its position");
        let on_disk: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.spool.join("checkpoint.json")).unwrap())
                .unwrap();
        let durable = on_disk["sink_position"].as_u64().unwrap();
        assert!(
            durable >= position,
            "committed({position}) before the checkpoint on disk recorded it ({durable})"
        );
        self.committed.lock().unwrap().push(position);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_hears_a_position_committed_only_once_its_checkpoint_is_durable() {
    let spool = tempfile_dir();
    let committed = Arc::new(Mutex::new(Vec::new()));
    let sink = CheckpointCheckingSink {
        spool: spool.clone(),
        written: 0,
        committed: committed.clone(),
    };
    let metrics = Metrics::new(&mut prometheus_client::registry::Registry::default());
    let (pipeline, worker) = start(
        test_settings(&spool),
        EnrichConfig::default(),
        Box::new(sink),
        metrics,
    )
    .unwrap();
    const N: u64 = 20;
    for n in 0..N {
        assert!(accepted(&pipeline.submit(submission(n)).await));
        // Seals (no merge wait) and checkpoints happen between requests.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(pipeline);
    tokio::task::spawn_blocking(move || worker.join().unwrap())
        .await
        .unwrap();
    let committed = committed.lock().unwrap().clone();
    assert!(
        committed.len() >= 2,
        "checkpoints along the way: {committed:?}"
    );
    assert!(
        committed.windows(2).all(|w| w[0] <= w[1]),
        "in order: {committed:?}"
    );
    assert_eq!(
        committed.last(),
        Some(&N),
        "the drain waits for the checkpoint of the last records"
    );
    std::fs::remove_dir_all(spool).unwrap();
}
