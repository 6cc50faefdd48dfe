//! `claudewatch migrate`: applies the ClickHouse schema migrations; and the
//! opening of the configured sink for `serve` (which migrates first when
//! `sink.clickhouse.migrate_on_start` is set).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use claudewatch_sink::clickhouse::schema;
use claudewatch_sink::{ClickHouseSink, JsonLinesSink, JsonLinesTarget, Sink};

use crate::config::{self, ClickHouseSection, Config, Overrides};

/// Arguments of `claudewatch migrate`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Creates or upgrades the ClickHouse schema: the database (sink.clickhouse.database, \
default claudewatch), the table llm_calls, its rollups and their materialized views, \
and the table schema_migrations that records the version. Idempotent: safe to run on \
every start (serve does it when sink.clickhouse.migrate_on_start is set). Refuses a \
database whose schema is newer than this claudewatch knows, changing nothing. Also \
brings llm_calls' TTL to sink.clickhouse.ttl_days. Settings come from the same layers \
as serve's: defaults < --config FILE < CLAUDEWATCH_SINK__CLICKHOUSE__<KEY> < flags.")]
pub struct MigrateArgs {
    #[command(flatten)]
    clickhouse: ClickHouseArgs,
    /// Days llm_calls keeps rows, 0 for ever [sink.clickhouse.ttl_days].
    #[arg(long, value_name = "DAYS")]
    ttl_days: Option<u32>,
}

/// The ClickHouse connection flags, shared by `migrate` and `report`: the
/// config file and the `[sink.clickhouse]` keys `serve` reads.
#[derive(Debug, Clone, clap::Args)]
pub struct ClickHouseArgs {
    /// Config file (TOML), as for serve.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// ClickHouse URL [sink.clickhouse.url].
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// Database [sink.clickhouse.database].
    #[arg(long, value_name = "NAME")]
    database: Option<String>,
    /// User [sink.clickhouse.user].
    #[arg(long, value_name = "USER")]
    user: Option<String>,
    /// Password [sink.clickhouse.password]; prefer the environment variable
    /// CLAUDEWATCH_SINK__CLICKHOUSE__PASSWORD.
    #[arg(long, value_name = "PASSWORD")]
    password: Option<String>,
}

impl ClickHouseArgs {
    /// The configuration from the layers (defaults < --config FILE <
    /// CLAUDEWATCH_<SECTION>__<KEY> < these flags and the keys of `extra`).
    pub fn load(&self, mut extra: Overrides) -> anyhow::Result<Config> {
        let keys = [
            ("url", &self.url),
            ("database", &self.database),
            ("user", &self.user),
            ("password", &self.password),
        ];
        for (key, value) in keys {
            if let Some(v) = value {
                extra.set(&format!("sink.clickhouse.{key}"), v.clone());
            }
        }
        config::load(self.config.as_deref(), &extra)
    }
}

/// Runs the command.
pub fn run(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let mut o = Overrides::default();
    if let Some(v) = args.ttl_days {
        o.set("sink.clickhouse.ttl_days", v);
    }
    let config = args.clickhouse.load(o)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = runtime.block_on(migrate(&config.sink.clickhouse))?;
    println!(
        "database {}: schema version {} -> {} (applied: {}){}",
        config.sink.clickhouse.database,
        report.from,
        report.to,
        if report.applied.is_empty() {
            "none, already current".to_owned()
        } else {
            report
                .applied
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        },
        if report.ttl_changed {
            format!("; TTL set to {} days", config.sink.clickhouse.ttl_days)
        } else {
            String::new()
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// Applies the migrations to the configured database.
pub async fn migrate(section: &ClickHouseSection) -> anyhow::Result<schema::MigrateReport> {
    let sink = section.sink_config();
    let client = sink.client_on("default");
    schema::migrate(&client, &section.database, section.ttl_days)
        .await
        .with_context(|| format!("migrating the ClickHouse schema at {}", section.url))
}

/// The sink serve writes to, and the ClickHouse sink's counters for `/metrics`.
pub struct OpenedSink {
    /// The sink `sink.kind` names.
    pub sink: Box<dyn Sink>,
    /// The ClickHouse sink's counters (None for the JSON-lines sink).
    pub clickhouse_stats: Option<std::sync::Arc<claudewatch_sink::clickhouse::ClickHouseStats>>,
}

/// Opens the sink `sink.kind` names (migrating ClickHouse first when configured).
pub async fn open_sink(config: &Config) -> anyhow::Result<OpenedSink> {
    match config.sink.kind.as_str() {
        "clickhouse" => {
            let section = &config.sink.clickhouse;
            if section.migrate_on_start {
                let client = section.sink_config().client_on("default");
                match schema::migrate(&client, &section.database, section.ttl_days).await {
                    Ok(report) => tracing::info!(
                        database = %section.database,
                        from = report.from,
                        to = report.to,
                        "ClickHouse schema current"
                    ),
                    // Unreachable or failing server: serve anyway (records wait in
                    // the spool and the journal) and keep trying in the background.
                    Err(schema::SchemaError::ClickHouse { what, source }) => {
                        tracing::warn!(error = %source, what, "cannot migrate the ClickHouse schema now: serving anyway, retrying every 5 s");
                        let (client, database, ttl) =
                            (client.clone(), section.database.clone(), section.ttl_days);
                        tokio::spawn(async move {
                            loop {
                                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                                match schema::migrate(&client, &database, ttl).await {
                                    Ok(_) => {
                                        tracing::info!(database, "ClickHouse schema migrated");
                                        break;
                                    }
                                    Err(schema::SchemaError::ClickHouse { .. }) => {}
                                    Err(e) => {
                                        tracing::error!(error = %e, "ClickHouse schema refused: records stay journaled");
                                        break;
                                    }
                                }
                            }
                        });
                    }
                    Err(e) => {
                        return Err(e).with_context(|| {
                            format!("migrating the ClickHouse schema at {}", section.url)
                        })
                    }
                }
            }
            let sink = ClickHouseSink::open(&section.sink_config())
                .context("opening the ClickHouse sink's journal")?;
            let stats = sink.stats();
            Ok(OpenedSink {
                sink: Box::new(sink),
                clickhouse_stats: Some(stats),
            })
        }
        _ => {
            let sink = JsonLinesSink::open(
                JsonLinesTarget::parse(&config.sink.jsonl.path),
                config.sink.jsonl.fsync,
            )
            .context("opening the JSON-lines sink")?;
            Ok(OpenedSink {
                sink: Box::new(sink),
                clickhouse_stats: None,
            })
        }
    }
}
