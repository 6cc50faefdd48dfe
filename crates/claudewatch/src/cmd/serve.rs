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
use claudewatch_enrich::EnrichConfig;
use claudewatch_ingest::HttpSettings;
use claudewatch_sink::{JsonLinesSink, JsonLinesTarget};
use prometheus_client::registry::Registry;

use crate::config::{self, Config, Overrides};
use crate::metrics::Metrics;
use crate::pipeline::{self, PipelineSettings};

/// Arguments of `claudewatch serve`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Receives OTLP over HTTP (POST /v1/traces, /v1/logs, /v1/metrics; protobuf or JSON; \
gzip or zstd), turns it into call records and writes them to the sink. A request is \
acknowledged only after its records were written and the sink flushed.

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
    /// JSON-lines sink: a file to append to, or - for stdout [sink.jsonl.path].
    #[arg(long, value_name = "PATH")]
    jsonl: Option<String>,
    /// fsync the JSON-lines file after every batch [sink.jsonl.fsync].
    #[arg(long)]
    fsync: bool,
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
        if let Some(v) = &self.jsonl {
            o.set("sink.jsonl.path", v.clone());
        }
        if self.fsync {
            o.set("sink.jsonl.fsync", true);
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
    let registry = Arc::new(registry);

    let sink = JsonLinesSink::open(
        JsonLinesTarget::parse(&config.sink.jsonl.path),
        config.sink.jsonl.fsync,
    )
    .context("opening the JSON-lines sink")?;
    let (pipeline, worker) = pipeline::start(
        PipelineSettings {
            queue_capacity: config.pipeline.queue_capacity,
            max_batch_requests: config.pipeline.max_batch_requests,
            retry_after_secs: config.pipeline.retry_after_secs,
            default_tenant: config.enrich.default_tenant.clone(),
        },
        EnrichConfig {
            prices,
            tenant: None,
        },
        Box::new(sink),
        metrics.clone(),
    )
    .context("starting the pipeline worker")?;

    let otlp = claudewatch_ingest::router(
        HttpSettings {
            max_body_bytes: config.server.max_body_bytes,
            tokens: config.auth.tokens.clone().into_iter().collect(),
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
    tracing::info!(
        listen = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        sink = %config.sink.jsonl.path,
        fsync = config.sink.jsonl.fsync,
        "claudewatch serving OTLP/HTTP on /v1/traces, /v1/logs, /v1/metrics; /metrics, /healthz, /readyz"
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving HTTP")?;

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

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => tracing::info!("interrupt received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}
