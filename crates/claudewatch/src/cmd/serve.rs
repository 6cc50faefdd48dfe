//! `claudewatch serve`: the long-running OTLP receiver.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use claudewatch_enrich::{AttributeLimits, EnrichConfig, WindowLimits};
use claudewatch_ingest::{GrpcSettings, HttpSettings};
use claudewatch_spool::SpoolConfig;
use prometheus_client::registry::Registry;

use crate::config::{self, Config, Overrides};
use crate::metrics::Metrics;
use crate::pipeline::{self, PipelineSettings};

/// Arguments of `claudewatch serve`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Receives OTLP over HTTP (POST /v1/traces, /v1/logs, /v1/metrics; protobuf or JSON; \
gzip or zstd) and gRPC (the Export method of the trace, logs and metrics services; gzip \
or zstd), turns it into call records and writes them to the sink. A request is \
acknowledged once it is in the write-ahead spool (fsynced): a crash after that loses \
nothing, the spool is replayed at the next start. Pieces of one call that arrive in \
different requests merge within the merge window (pipeline.merge_window_ms).

Configuration: built-in defaults < --config FILE < CLAUDEWATCH_<SECTION>__<KEY> \
environment variables (e.g. CLAUDEWATCH_SERVER__HTTP_LISTEN=0.0.0.0:4318) < flags. \
deploy/claudewatch.toml documents every key; an unknown key is an error.

Also served: /metrics (Prometheus), /healthz, /readyz. SIGTERM or Ctrl-C stops \
accepting, drains the queue, flushes the sink and exits 0.")]
pub struct ServeArgs {
    /// Config file (TOML).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// OTLP/HTTP listen address [server.http_listen].
    #[arg(long, value_name = "ADDR")]
    http_listen: Option<String>,
    /// OTLP/gRPC listen address [server.grpc_listen].
    #[arg(long, value_name = "ADDR")]
    grpc_listen: Option<String>,
    /// Write-ahead spool directory [spool.dir].
    #[arg(long, value_name = "DIR")]
    spool_dir: Option<PathBuf>,
    /// Bytes the spool may hold before refusing with 503 [spool.max_bytes].
    #[arg(long, value_name = "BYTES")]
    spool_max_bytes: Option<u64>,
    /// Merge window in milliseconds [pipeline.merge_window_ms].
    #[arg(long, value_name = "MS")]
    merge_window_ms: Option<u64>,
    /// JSON-lines sink: a file to append to, or - for stdout [sink.jsonl.path].
    #[arg(long, value_name = "PATH")]
    jsonl: Option<String>,
    /// Do not fsync the JSON-lines file on flush [sink.jsonl.fsync = false]:
    /// faster, but a machine crash may lose records already taken off the spool.
    #[arg(long)]
    no_fsync: bool,
    /// Log format: text or json [log.format].
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<String>,
    /// Print the effective configuration (TOML) and exit.
    #[arg(long)]
    print_config: bool,
}

impl ServeArgs {
    fn overrides(&self) -> Overrides {
        let mut o = Overrides::default();
        if let Some(v) = &self.http_listen {
            o.set("server.http_listen", v.clone());
        }
        if let Some(v) = &self.grpc_listen {
            o.set("server.grpc_listen", v.clone());
        }
        if let Some(v) = &self.spool_dir {
            o.set("spool.dir", v.display().to_string());
        }
        if let Some(v) = self.spool_max_bytes {
            o.set("spool.max_bytes", v);
        }
        if let Some(v) = self.merge_window_ms {
            o.set("pipeline.merge_window_ms", v);
        }
        if let Some(v) = &self.jsonl {
            o.set("sink.jsonl.path", v.clone());
        }
        if self.no_fsync {
            o.set("sink.jsonl.fsync", false);
        }
        if let Some(v) = &self.log_format {
            o.set("log.format", v.clone());
        }
        o
    }
}

/// Runs the command.
pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = config::load(args.config.as_deref(), &args.overrides())?;
    if args.print_config {
        println!(
            "{}",
            toml::to_string_pretty(&config).context("rendering the configuration")?
        );
        return Ok(ExitCode::SUCCESS);
    }
    init_logging(&config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(config))?;
    Ok(ExitCode::SUCCESS)
}

fn init_logging(config: &Config) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level)
        .with_context(|| format!("invalid log.level {:?}", config.log.level))?;
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let result = if config.log.format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    result.map_err(|e| anyhow::anyhow!("cannot start logging: {e}"))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let prices = super::load_prices(config.enrich.prices.as_deref())?;
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let opened = super::migrate::open_sink(&config).await?;
    if let Some(stats) = opened.clickhouse_stats {
        registry.register_collector(Box::new(crate::metrics::ClickHouseCollector(stats)));
    }
    let sink = opened.sink;
    let registry = Arc::new(registry);
    let (pipeline, worker) = pipeline::start(
        PipelineSettings {
            queue_capacity: config.pipeline.queue_capacity,
            max_batch_requests: config.pipeline.max_batch_requests,
            max_queued_bytes: config.pipeline.max_queued_bytes,
            max_unstored_records: config.pipeline.max_unstored_records,
            admission_wait: Duration::from_millis(config.pipeline.admission_wait_ms),
            retry_after_secs: config.pipeline.retry_after_secs,
            default_tenant: config.enrich.default_tenant.clone(),
            window: WindowLimits {
                max_age_ns: config.pipeline.merge_window_ms.saturating_mul(1_000_000),
                max_observations: config.pipeline.merge_window_max_observations,
                max_sealed_ids: config.pipeline.merge_window_max_sealed_ids,
            },
            spool: SpoolConfig {
                dir: config.spool.dir.clone(),
                segment_bytes: config.spool.segment_bytes,
                max_bytes: config.spool.max_bytes,
            },
            drain_timeout: Duration::from_secs(config.server.shutdown_timeout_secs)
                .saturating_sub(Duration::from_secs(1)),
            worker_backlog_batches: pipeline::WORKER_BACKLOG_BATCHES,
        },
        EnrichConfig {
            prices,
            tenant: None,
            attribute_limits: AttributeLimits {
                max_count: config.enrich.max_attributes,
                max_value_bytes: config.enrich.max_attribute_value_bytes,
            },
        },
        sink,
        metrics.clone(),
    )
    .context("starting the pipeline worker")?;

    let tokens: std::collections::HashMap<String, String> =
        config.auth.tokens.clone().into_iter().collect();
    let (traces, logs, metrics_svc) = claudewatch_ingest::grpc_services(
        GrpcSettings {
            max_message_bytes: config.server.max_body_bytes,
            tokens: tokens.clone(),
        },
        pipeline.clone(),
    );
    let otlp = claudewatch_ingest::router(
        HttpSettings {
            max_body_bytes: config.server.max_body_bytes,
            tokens,
        },
        pipeline,
    );
    let app: Router = otlp
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(|| async { "ready\n" }))
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move {
                    let mut text = String::new();
                    match prometheus_client::encoding::text::encode(&mut text, &registry) {
                        Ok(()) => (
                            StatusCode::OK,
                            [(
                                header::CONTENT_TYPE,
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            )],
                            text,
                        )
                            .into_response(),
                        Err(e) => {
                            (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
                        }
                    }
                }
            }),
        );

    let listener = tokio::net::TcpListener::bind(&config.server.http_listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.http_listen))?;
    let grpc_listener = tokio::net::TcpListener::bind(&config.server.grpc_listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.grpc_listen))?;
    let signals = shutdown_signal()?;
    let addr =
        |l: &tokio::net::TcpListener| l.local_addr().map(|a| a.to_string()).unwrap_or_default();
    tracing::info!(
        listen = %addr(&listener),
        grpc_listen = %addr(&grpc_listener),
        sink = %config.sink.kind,
        spool = %config.spool.dir.display(),
        merge_window_ms = config.pipeline.merge_window_ms,
        "claudewatch serving OTLP/HTTP on /v1/traces, /v1/logs, /v1/metrics, OTLP/gRPC, /metrics, /healthz, /readyz"
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    // TCP_NODELAY on every accepted connection: an answer written in pieces
    // (HTTP/2's HEADERS, DATA and trailers) must not wait behind Nagle for the
    // client's delayed ACK, up to 40 ms (seen as gRPC's p99 at 50,000 spans/s).
    let http = axum::serve(
        axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        }),
        app,
    )
    .with_graceful_shutdown(stopped());
    let grpc_incoming = nodelay_incoming(grpc_listener);
    // Export requests of ~100 KB exceed HTTP/2's default 64 KiB window: larger
    // windows save a round trip per request. Larger frames let a client send
    // a request in fewer DATA frames, read with fewer syscalls (default 16 KiB:
    // about 11 reads per request instead of HTTP/1.1's one; -1.3 % CPU at
    // 100,000 spans/s with loadgen, whose h2 client uses the larger frames).
    let grpc = tonic::transport::Server::builder()
        .initial_stream_window_size(Some(4 << 20))
        .initial_connection_window_size(Some(16 << 20))
        .max_frame_size(Some(1 << 20))
        .add_service(traces)
        .add_service(logs)
        .add_service(metrics_svc)
        .serve_with_incoming_shutdown(grpc_incoming, stopped());
    let signal = async move {
        signals.await;
        let _ = stop_tx.send(true);
    };
    let (http, grpc, ()) = tokio::join!(http, grpc, signal);
    http.context("serving OTLP/HTTP")?;
    grpc.context("serving OTLP/gRPC")?;

    tracing::info!("stopped accepting; draining the queue and flushing the sink");
    let deadline = Duration::from_secs(config.server.shutdown_timeout_secs);
    let joined =
        tokio::time::timeout(deadline, tokio::task::spawn_blocking(move || worker.join())).await;
    match joined {
        Ok(Ok(Ok(()))) => {
            tracing::info!("shut down cleanly");
            Ok(())
        }
        Ok(_) => anyhow::bail!("the pipeline worker failed while draining"),
        Err(_) => anyhow::bail!(
            "the queue did not drain within {}s (server.shutdown_timeout_secs)",
            deadline.as_secs()
        ),
    }
}

/// The connections `listener` accepts, each with TCP_NODELAY set.
fn nodelay_incoming(
    listener: tokio::net::TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    tokio_stream::StreamExt::map(
        tokio_stream::wrappers::TcpListenerStream::new(listener),
        |accepted| {
            if let Ok(tcp) = &accepted {
                let _ = tcp.set_nodelay(true);
            }
            accepted
        },
    )
}

/// Installs the SIGINT and SIGTERM handlers now (so a signal that arrives
/// right after the listeners are announced is not fatal) and returns a future
/// that completes on the first of them.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => tracing::info!("interrupt received"),
            _ = term.recv() => tracing::info!("SIGTERM received"),
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_grpc_connections_do_not_wait_for_nagle() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut incoming = std::pin::pin!(nodelay_incoming(listener));
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let accepted = tokio_stream::StreamExt::next(&mut incoming)
            .await
            .unwrap()
            .unwrap();
        assert!(accepted.nodelay().unwrap());
    }
}
