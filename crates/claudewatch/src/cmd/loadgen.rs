//! `claudewatch loadgen`: realistic OTLP traffic about Claude calls, at a
//! target rate, with an exact count of the calls the receiver acknowledged.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use claudewatch_loadgen::{run_blocking, Config, Protocol, Stop};

/// Arguments of `claudewatch loadgen`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Traffic: a deterministic mix (--seed) of calls described the way real clients \
describe them: the Anthropic SDK's own spans, OpenLLMetry/Traceloop and the OTel \
GenAI instrumentation wrapping the SDK span (duplicate twin spans, nested in one \
trace or in two unlinked traces, sometimes exported in two different requests), \
OpenLIT with its httpx attempt spans, and hand-written GenAI semconv spans. Models: \
Sonnet 4.5, Haiku 4.5, Opus 4.1/4.5 and an unpriced one; streams and not; success, \
429 rate_limit_error, 529 overloaded_error, 500 api_error, a stream that died \
mid-way, a 529-529-200 retry; cache reads and writes. Every call has its own \
request id (req_...), so the records a receiver writes can be counted.

Counting: a call counts as sent (calls_acked) only when every request holding one \
of its spans was acknowledged; a receiver that loses nothing and doubles nothing \
writes exactly calls_acked records. HTTP 429/502/503/504 (Retry-After honoured), \
gRPC UNAVAILABLE/RESOURCE_EXHAUSTED (and the other retryable codes), connection \
errors and timeouts are retried; a request that still fails counts its calls as \
failed, never as sent.

Output: a progress line on stderr every second (elapsed, spans/s, calls acked, \
errors), then the report in words on stderr. --summary-json FILE writes \
{calls_acked, spans_acked, calls_generated, calls_failed, requests, \
requests_failed, retries, errors_by_kind, rate_spans_per_s, latency_ms: {p50, \
p90, p99, max}, elapsed_s, started_unix_s, bytes_acked, seed, protocol, gzip, \
calls_per_request}. \
errors_by_kind counts every unsuccessful attempt (http_503, grpc_unavailable, \
connect, timeout, partial_success, ...); latency is per answered attempt.

Exit status: 0 when every request was acknowledged, 1 when any request finally \
failed, 2 on a usage error.

Examples:
  claudewatch loadgen --count 100000 --summary-json sent.json
  claudewatch loadgen --protocol grpc --gzip --duration 30s --rate 150000 --concurrency 16")]
pub struct LoadgenArgs {
    /// Transport and encoding: http/protobuf, http/json or grpc.
    #[arg(long, default_value = "http/protobuf", value_parser = parse_protocol)]
    protocol: Protocol,
    /// Receiver URL (http:// only). Default: http://127.0.0.1:4318 for HTTP
    /// (the path /v1/traces is appended unless present), http://127.0.0.1:4317 for gRPC.
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,
    /// Compress request bodies with gzip (HTTP Content-Encoding, gRPC message compression).
    #[arg(long)]
    gzip: bool,
    /// Target rate in spans per second; 0 sends as fast as the receiver answers.
    #[arg(long, default_value_t = 0.0, value_name = "SPANS_PER_S")]
    rate: f64,
    /// Send for this long (e.g. 30s, 500ms, 2m; a bare number is seconds). Calls
    /// already started are completed. Default when neither --duration nor --count: 10s.
    #[arg(long, value_parser = parse_duration, conflicts_with = "count")]
    duration: Option<Duration>,
    /// Send exactly this many calls, then stop.
    #[arg(long, value_name = "CALLS")]
    count: Option<u64>,
    /// Concurrent connections, each with one request in flight.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Spans per export request (batch size; calls are never cut, except twins
    /// deliberately exported in two requests, so a request may hold a few more).
    #[arg(long, default_value_t = 100, value_name = "N")]
    spans_per_request: usize,
    /// Send `Authorization: Bearer TOKEN` (HTTP header or gRPC metadata).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "CLAUDEWATCH_LOADGEN_BEARER",
        hide_env_values = true
    )]
    bearer: Option<String>,
    /// Seed of the traffic mix and of every id; the same seed sends the same
    /// calls (a receiver then merges them as duplicates). Default: from the clock.
    #[arg(long)]
    seed: Option<u64>,
    /// Turn this share of the calls (0-100) into 529 overloaded_error, on top
    /// of the mix's own: a platform overload burst.
    #[arg(long, default_value_t = 0, value_name = "PERCENT", value_parser = clap::value_parser!(u64).range(0..=100))]
    overloaded_percent: u64,
    /// Spread the calls over this many organisations (1-4); 1 puts every
    /// request on one organisation's quota (requests per day climb fastest).
    #[arg(long, default_value_t = 4, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=4))]
    organizations: u64,
    /// Retries of one request before it counts as failed.
    #[arg(long, default_value_t = 10)]
    max_retries: u32,
    /// Longest wait before a retry; caps Retry-After (e.g. 30s).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    max_retry_wait: Duration,
    /// Timeout of one attempt (e.g. 30s).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
    /// Runtime worker threads; 0 uses one per core.
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Write the summary as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    summary_json: Option<PathBuf>,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
    /// Build and encode all --count calls' requests before the clock starts
    /// (in memory, about 1.5 KB per call), then only send them: for benchmarks
    /// where the generator shares the receiver's cores.
    #[arg(long, requires = "count")]
    prebuild: bool,
    /// Send nothing: write the --count calls' request bodies to DIR as
    /// NNNNNNNN-traces.pb (or .json), the same payload, for `claudewatch enrich`.
    #[arg(long, value_name = "DIR", requires = "count")]
    write_dir: Option<PathBuf>,
}

fn parse_protocol(s: &str) -> Result<Protocol, String> {
    s.parse()
        .map_err(|e: claudewatch_loadgen::Error| e.to_string())
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("bad duration {s:?} (e.g. 30s, 500ms, 2m)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("bad duration unit in {s:?} (ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("bad duration {s:?}"))
}

/// Runs the command.
pub fn run(args: LoadgenArgs) -> anyhow::Result<ExitCode> {
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    if let Some(dir) = &args.write_dir {
        return write_bodies(&args, seed, dir);
    }
    let stop = match (args.count, args.duration) {
        (Some(n), _) => Stop::Count(n),
        (None, Some(d)) => Stop::Duration(d),
        (None, None) => Stop::Duration(Duration::from_secs(10)),
    };
    let config = Config {
        protocol: args.protocol,
        endpoint: args.endpoint,
        gzip: args.gzip,
        rate: args.rate,
        stop,
        concurrency: args.concurrency,
        spans_per_request: args.spans_per_request,
        bearer: args.bearer,
        seed,
        overloaded_percent: args.overloaded_percent,
        organizations: args.organizations as usize,
        max_retries: args.max_retries,
        max_retry_wait: args.max_retry_wait,
        timeout: args.timeout,
        progress: !args.quiet,
        prebuild: args.prebuild,
    };
    let report = run_blocking(config, args.threads).context("loadgen")?;
    eprint!("{}", report.to_words());
    if let Some(path) = &args.summary_json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Writes the request bodies of `--count` calls to `dir` instead of sending them.
fn write_bodies(args: &LoadgenArgs, seed: u64, dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    let calls = args.count.unwrap_or(0);
    let (format, ext) = match args.protocol {
        Protocol::HttpJson => (claudewatch_loadgen::encode::Format::Json, "json"),
        _ => (claudewatch_loadgen::encode::Format::Protobuf, "pb"),
    };
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mix = claudewatch_loadgen::Mix {
        seed,
        overloaded_percent: args.overloaded_percent,
        organizations: args.organizations as usize,
    };
    let bodies =
        claudewatch_loadgen::request_bodies(mix, calls, args.spans_per_request, format, base);
    for (i, body) in bodies.iter().enumerate() {
        let path = dir.join(format!("{i:08}-traces.{ext}"));
        std::fs::write(&path, body).with_context(|| format!("writing {}", path.display()))?;
    }
    eprintln!(
        "wrote {} request bodies ({calls} calls, seed {seed}) to {}",
        bodies.len(),
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("3 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
