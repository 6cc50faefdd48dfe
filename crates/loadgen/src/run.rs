//! The run: workers that build, send and account for export requests, a
//! pacer for the target rate, the progress line and the final report.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hdrhistogram::Histogram;

use crate::encode::{encode_request, Format};
use crate::plan::{Built, Plan, Ticket};
use crate::transport::{Attempt, Conn, Protocol, Target};
use crate::Error;

/// When a run stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// After this many calls.
    Count(u64),
    /// After this long (calls already started are completed).
    Duration(Duration),
}

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Transport and encoding.
    pub protocol: Protocol,
    /// Endpoint URL; None: the protocol's default.
    pub endpoint: Option<String>,
    /// gzip request bodies.
    pub gzip: bool,
    /// Target rate in spans per second; 0: as fast as possible.
    pub rate: f64,
    /// When to stop.
    pub stop: Stop,
    /// Concurrent connections (each with one request in flight).
    pub concurrency: usize,
    /// Target spans per export request.
    pub spans_per_request: usize,
    /// `Authorization: Bearer` token.
    pub bearer: Option<String>,
    /// Seed of the traffic mix and ids.
    pub seed: u64,
    /// Share of calls (out of 100) turned into 529s ([`crate::Mix`]).
    pub overloaded_percent: u64,
    /// Organisations the calls are spread over, 1 to 4 ([`crate::Mix`]).
    pub organizations: usize,
    /// Retries of one request before it counts as failed.
    pub max_retries: u32,
    /// Longest wait before a retry (caps `Retry-After`).
    pub max_retry_wait: Duration,
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// Print a progress line on stderr every second.
    pub progress: bool,
    /// Build and encode every request before the clock starts (needs
    /// [`Stop::Count`]; holds all the bodies in memory, about 1.5 KB per
    /// call): the run then spends its CPU on sending only, like a replay, so
    /// a benchmark on a shared machine measures the receiver, not the generator.
    pub prebuild: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            protocol: Protocol::HttpProtobuf,
            endpoint: None,
            gzip: false,
            rate: 0.0,
            stop: Stop::Count(1000),
            concurrency: 4,
            spans_per_request: 100,
            bearer: None,
            seed: 1,
            overloaded_percent: 0,
            organizations: crate::mix::ORGANIZATIONS,
            max_retries: 10,
            max_retry_wait: Duration::from_secs(30),
            timeout: Duration::from_secs(30),
            progress: false,
            prebuild: false,
        }
    }
}

/// Request latency percentiles, milliseconds.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Maximum.
    pub max: f64,
}

/// What a run did. `calls_acked` is the exact number of distinct calls whose
/// every span the server acknowledged: the number of call records the
/// receiver must write.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Report {
    /// Distinct calls whose every span was acknowledged.
    pub calls_acked: u64,
    /// Spans in acknowledged requests.
    pub spans_acked: u64,
    /// Calls generated (acked + failed).
    pub calls_generated: u64,
    /// Calls with a span in a request that finally failed.
    pub calls_failed: u64,
    /// Export requests sent (not counting retries).
    pub requests: u64,
    /// Requests that finally failed (retries exhausted or not retryable).
    pub requests_failed: u64,
    /// Retried attempts.
    pub retries: u64,
    /// Every unsuccessful attempt, by kind (`http_503`, `grpc_unavailable`,
    /// `connect`, `timeout`, `partial_success`, ...).
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Spans acknowledged per second of the run.
    pub rate_spans_per_s: f64,
    /// Latency of answered attempts (send to answer).
    pub latency_ms: Latency,
    /// Run time, seconds.
    pub elapsed_s: f64,
    /// When the run's clock started (after a prebuild), Unix seconds: the
    /// start of the sending, for a benchmark that times the receiver.
    pub started_unix_s: f64,
    /// Request body bytes sent (after compression), acknowledged requests.
    pub bytes_acked: u64,
    /// The seed (rerun with it to send the same calls).
    pub seed: u64,
    /// Protocol used.
    pub protocol: Protocol,
    /// gzip on.
    pub gzip: bool,
    /// Calls per export request.
    pub calls_per_request: u64,
}

impl Report {
    /// True when no request finally failed.
    pub fn ok(&self) -> bool {
        self.requests_failed == 0
    }

    /// The report in words.
    pub fn to_words(&self) -> String {
        let proto = match self.protocol {
            Protocol::HttpProtobuf => "OTLP/HTTP protobuf",
            Protocol::HttpJson => "OTLP/HTTP JSON",
            Protocol::Grpc => "OTLP/gRPC",
        };
        let mut s = format!(
            "loadgen: {proto}{gz}, seed {seed}: sent {calls} distinct calls ({spans} spans) in {req} requests over {t:.2} s: {rate:.0} spans/s, {mb:.1} MB.\n",
            gz = if self.gzip { " gzip" } else { "" },
            seed = self.seed,
            calls = self.calls_acked,
            spans = self.spans_acked,
            req = self.requests,
            t = self.elapsed_s,
            rate = self.rate_spans_per_s,
            mb = self.bytes_acked as f64 / 1e6,
        );
        s.push_str(&format!(
            "loadgen: request latency ms: p50 {:.2}, p90 {:.2}, p99 {:.2}, max {:.2}.\n",
            self.latency_ms.p50, self.latency_ms.p90, self.latency_ms.p99, self.latency_ms.max
        ));
        if self.errors_by_kind.is_empty() {
            s.push_str("loadgen: no errors, no retries.\n");
        } else {
            let kinds: Vec<String> = self
                .errors_by_kind
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            s.push_str(&format!(
                "loadgen: unsuccessful attempts: {}; {} retried.\n",
                kinds.join(", "),
                self.retries
            ));
        }
        if self.requests_failed > 0 {
            s.push_str(&format!(
                "loadgen: FAILED: {} requests were never acknowledged; {} calls were not (fully) delivered and are not counted as sent.\n",
                self.requests_failed, self.calls_failed
            ));
        }
        s
    }
}

/// Shared state of a run.
struct Shared {
    plan: Plan,
    target: Target,
    config: Config,
    sched: Mutex<Sched>,
    start: Instant,
    spans_reserved: AtomicU64,
    spans_acked: AtomicU64,
    calls_done_acked: AtomicU64,
    calls_generated: AtomicU64,
    errors: AtomicU64,
    failed_calls: Mutex<HashSet<u64>>,
    /// With [`Config::prebuild`]: every request, built before the start.
    prebuilt: Option<Mutex<VecDeque<Ready>>>,
}

struct Sched {
    next: u64,
    last_base: u64,
    stopped: bool,
}

fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl Shared {
    /// The next request to build, or None when the run is over.
    fn take(&self) -> Option<Ticket> {
        let mut s = self.sched.lock().unwrap_or_else(|e| e.into_inner());
        if s.stopped {
            return None;
        }
        let mut tail = false;
        match self.config.stop {
            Stop::Count(_) => {
                if self.plan.request_count().is_some_and(|n| s.next >= n) {
                    s.stopped = true;
                    return None;
                }
            }
            Stop::Duration(d) => {
                if self.start.elapsed() >= d {
                    s.stopped = true;
                    tail = true;
                }
            }
        }
        let base = wall_ns();
        let t = Ticket {
            index: s.next,
            tail,
            base_unix_nano: base,
            prev_base_unix_nano: s.last_base,
        };
        s.next += 1;
        s.last_base = base;
        Some(t)
    }
}

/// One worker's tallies.
struct Tally {
    requests: u64,
    requests_failed: u64,
    retries: u64,
    bytes_acked: u64,
    errors: BTreeMap<String, u64>,
    hist: Histogram<u64>,
}

/// Runs the load: builds a multi-threaded tokio runtime with `threads`
/// workers (0: one per core) and blocks until done.
pub fn run_blocking(config: Config, threads: usize) -> Result<Report, Error> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if threads > 0 {
        b.worker_threads(threads);
    }
    let rt = b.enable_all().build().map_err(Error::Runtime)?;
    rt.block_on(run(config))
}

/// Runs the load on the current tokio runtime.
pub async fn run(config: Config) -> Result<Report, Error> {
    if config.concurrency == 0 {
        return Err(Error::Config("concurrency must be at least 1".into()));
    }
    if !(config.rate >= 0.0 && config.rate.is_finite()) {
        return Err(Error::Config("rate must be a finite number >= 0".into()));
    }
    if config.prebuild && !matches!(config.stop, Stop::Count(_)) {
        return Err(Error::Config(
            "prebuild needs a count of calls, not a duration".into(),
        ));
    }
    let endpoint = config
        .endpoint
        .clone()
        .unwrap_or_else(|| config.protocol.default_endpoint().to_owned());
    let target = Target::new(
        config.protocol,
        &endpoint,
        config.gzip,
        config.bearer.clone(),
        config.timeout,
    )?;
    let limit = match config.stop {
        Stop::Count(n) => Some(n),
        Stop::Duration(_) => None,
    };
    let mix = crate::Mix {
        seed: config.seed,
        overloaded_percent: config.overloaded_percent,
        organizations: config.organizations,
    };
    let plan = Plan::new(mix, config.spans_per_request, limit);
    let calls_per_request = plan.calls_per_request();
    let mut shared = Shared {
        plan,
        target,
        config: config.clone(),
        sched: Mutex::new(Sched {
            next: 0,
            last_base: wall_ns(),
            stopped: false,
        }),
        start: Instant::now(),
        spans_reserved: AtomicU64::new(0),
        spans_acked: AtomicU64::new(0),
        calls_done_acked: AtomicU64::new(0),
        calls_generated: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        failed_calls: Mutex::new(HashSet::new()),
        prebuilt: None,
    };
    if config.prebuild {
        prebuild(&mut shared)?;
    }
    let started_unix_s = wall_ns() as f64 / 1e9;
    let shared = Arc::new(shared);

    let done = Arc::new(AtomicBool::new(false));
    let progress = config.progress.then(|| {
        let (shared, done) = (shared.clone(), done.clone());
        tokio::spawn(async move { progress_loop(&shared, &done).await })
    });

    let mut handles = Vec::with_capacity(config.concurrency);
    for _ in 0..config.concurrency {
        let shared = shared.clone();
        handles.push(tokio::spawn(async move { worker(shared).await }));
    }
    let mut tallies = Vec::with_capacity(handles.len());
    for h in handles {
        tallies.push(h.await.map_err(|e| Error::Worker(e.to_string()))??);
    }
    let elapsed = shared.start.elapsed();
    done.store(true, Ordering::Relaxed);
    if let Some(p) = progress {
        let _ = p.await;
    }

    let mut hist = Histogram::<u64>::new(3).map_err(|e| Error::Worker(e.to_string()))?;
    let mut report = Report {
        seed: config.seed,
        protocol: config.protocol,
        gzip: config.gzip,
        calls_per_request,
        started_unix_s,
        ..Report::default()
    };
    for t in tallies {
        report.requests += t.requests;
        report.requests_failed += t.requests_failed;
        report.retries += t.retries;
        report.bytes_acked += t.bytes_acked;
        for (k, v) in t.errors {
            *report.errors_by_kind.entry(k).or_default() += v;
        }
        let _ = hist.add(&t.hist);
    }
    let failed = shared
        .failed_calls
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .len() as u64;
    report.calls_generated = shared.calls_generated.load(Ordering::Relaxed);
    report.calls_failed = failed;
    report.calls_acked = report.calls_generated.saturating_sub(failed);
    report.spans_acked = shared.spans_acked.load(Ordering::Relaxed);
    report.elapsed_s = elapsed.as_secs_f64();
    report.rate_spans_per_s = if report.elapsed_s > 0.0 {
        report.spans_acked as f64 / report.elapsed_s
    } else {
        0.0
    };
    let ms = |us: u64| us as f64 / 1000.0;
    if !hist.is_empty() {
        report.latency_ms = Latency {
            p50: ms(hist.value_at_quantile(0.50)),
            p90: ms(hist.value_at_quantile(0.90)),
            p99: ms(hist.value_at_quantile(0.99)),
            max: ms(hist.max()),
        };
    }
    Ok(report)
}

async fn progress_loop(shared: &Shared, done: &AtomicBool) {
    let tty = std::io::stderr().is_terminal();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut last_spans = 0u64;
    let mut last_t = Instant::now();
    loop {
        tick.tick().await;
        if done.load(Ordering::Relaxed) {
            break;
        }
        let spans = shared.spans_acked.load(Ordering::Relaxed);
        let now = Instant::now();
        let rate = (spans - last_spans) as f64 / now.duration_since(last_t).as_secs_f64();
        (last_spans, last_t) = (spans, now);
        let line = format!(
            "loadgen: {:>6.1}s  {:>9.0} spans/s  {:>10} calls acked  {:>6} errors",
            shared.start.elapsed().as_secs_f64(),
            rate,
            shared.calls_done_acked.load(Ordering::Relaxed),
            shared.errors.load(Ordering::Relaxed),
        );
        let mut err = std::io::stderr().lock();
        let _ = if tty {
            write!(err, "\r{line}\x1b[K")
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
    }
    if tty {
        let _ = writeln!(std::io::stderr());
    }
}

async fn worker(shared: Arc<Shared>) -> Result<Tally, Error> {
    let cfg = &shared.config;
    let mut conn = Conn::new(&shared.target)?;
    let mut tally = Tally {
        requests: 0,
        requests_failed: 0,
        retries: 0,
        bytes_acked: 0,
        errors: BTreeMap::new(),
        hist: Histogram::new_with_bounds(1, 600_000_000, 3)
            .map_err(|e| Error::Worker(e.to_string()))?,
    };
    let mut builder = Builder::new(cfg);
    let mut next = builder.next(&shared)?;
    while let Some(Ready {
        ticket,
        n_spans,
        completed_calls,
        payload,
    }) = next.take()
    {
        if cfg.rate > 0.0 {
            let before = shared.spans_reserved.fetch_add(n_spans, Ordering::Relaxed);
            let at = shared.start + Duration::from_secs_f64(before as f64 / cfg.rate);
            tokio::time::sleep_until(at.into()).await;
        }
        tally.requests += 1;
        let mut attempt = 0u32;
        let acked = loop {
            let t0 = Instant::now();
            // The next request is built while this one is in flight, as an
            // SDK's batch processor fills its next batch during an export:
            // once this answer comes, the next request leaves at once. (The
            // yield first lets the connection task write this request.)
            let send = async {
                let result = conn.send(payload.clone()).await;
                (result, t0.elapsed())
            };
            let build = async {
                if next.is_some() {
                    return Ok(None);
                }
                tokio::task::yield_now().await;
                builder.next(&shared).map(Some)
            };
            let ((result, took), built_next) = tokio::join!(send, build);
            if let Some(ready) = built_next? {
                next = ready;
            }
            let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
            match result {
                Attempt::Acked { rejected } => {
                    let _ = tally.hist.record(us.max(1));
                    if rejected > 0 {
                        *tally.errors.entry("partial_success".into()).or_default() += 1;
                        shared.errors.fetch_add(1, Ordering::Relaxed);
                        break false;
                    }
                    break true;
                }
                Attempt::Retry {
                    kind,
                    after,
                    answered,
                } => {
                    if answered {
                        let _ = tally.hist.record(us.max(1));
                    }
                    *tally.errors.entry(kind).or_default() += 1;
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                    if attempt >= cfg.max_retries {
                        break false;
                    }
                    let backoff = Duration::from_millis(50u64 << attempt.min(7));
                    let wait = after.unwrap_or(backoff).min(cfg.max_retry_wait);
                    tally.retries += 1;
                    attempt += 1;
                    tokio::time::sleep(wait).await;
                }
                Attempt::Fail { kind } => {
                    let _ = tally.hist.record(us.max(1));
                    *tally.errors.entry(kind).or_default() += 1;
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                    break false;
                }
            }
        };
        if acked {
            tally.bytes_acked += payload.len() as u64;
            shared.spans_acked.fetch_add(n_spans, Ordering::Relaxed);
            shared
                .calls_done_acked
                .fetch_add(completed_calls, Ordering::Relaxed);
        } else {
            tally.requests_failed += 1;
            let touched = shared.plan.touched(ticket);
            shared
                .failed_calls
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(touched);
        }
    }
    Ok(tally)
}

/// A request built, encoded and compressed, waiting to be sent.
struct Ready {
    ticket: Ticket,
    n_spans: u64,
    /// Calls whose last span is in this request.
    completed_calls: u64,
    payload: Bytes,
}

/// One exporter's buffers for building requests.
struct Builder {
    built: Built,
    order: Vec<usize>,
    body: Vec<u8>,
    gzip: bool,
    format: Format,
}

impl Builder {
    fn new(cfg: &Config) -> Builder {
        Builder {
            built: Built::default(),
            order: Vec::new(),
            body: Vec::new(),
            // Bodies are compressed here, once per request (gRPC messages too:
            // see `GrpcConn`), at gzip's fast level.
            gzip: cfg.gzip,
            format: cfg.protocol.format(),
        }
    }

    /// Takes the next ticket with spans and builds its request (or, after
    /// [`prebuild`], takes the next one built); `None` once the run is over.
    fn next(&mut self, shared: &Shared) -> Result<Option<Ready>, Error> {
        if let Some(queue) = &shared.prebuilt {
            return Ok(queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front());
        }
        while let Some(ticket) = shared.take() {
            shared.plan.build(ticket, &mut self.built);
            shared
                .calls_generated
                .fetch_add(self.built.new_calls, Ordering::Relaxed);
            if self.built.spans.is_empty() {
                continue;
            }
            encode_request(
                &self.built.spans,
                self.format,
                &mut self.order,
                &mut self.body,
            );
            let payload = if self.gzip {
                gzip(&self.body)?
            } else {
                // The request takes the buffer (no copy); the next one is
                // built in a new buffer of the same size.
                let next = Vec::with_capacity(self.body.capacity());
                Bytes::from(std::mem::replace(&mut self.body, next))
            };
            return Ok(Some(Ready {
                ticket,
                n_spans: self.built.spans.len() as u64,
                completed_calls: self.built.completed_calls,
                payload,
            }));
        }
        Ok(None)
    }
}

/// Builds every request of the run into `shared.prebuilt`, then restarts the
/// clock: the run's rate and elapsed time cover the sending only.
fn prebuild(shared: &mut Shared) -> Result<(), Error> {
    let t0 = Instant::now();
    let mut builder = Builder::new(&shared.config);
    let mut queue = VecDeque::new();
    let mut bytes = 0usize;
    while let Some(ready) = builder.next(shared)? {
        bytes += ready.payload.len();
        queue.push_back(ready);
    }
    if shared.config.progress {
        eprintln!(
            "loadgen: built {} requests ({:.1} MB) in {:.2} s before the start",
            queue.len(),
            bytes as f64 / 1e6,
            t0.elapsed().as_secs_f64()
        );
    }
    shared.prebuilt = Some(Mutex::new(queue));
    shared.start = Instant::now();
    Ok(())
}

fn gzip(body: &[u8]) -> Result<Bytes, Error> {
    use flate2::write::GzEncoder;
    let mut enc = GzEncoder::new(
        Vec::with_capacity(body.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    enc.write_all(body).map_err(Error::Io)?;
    Ok(Bytes::from(enc.finish().map_err(Error::Io)?))
}
