//! `serve` configuration: built-in defaults, then the config file, then
//! `CLAUDEWATCH_<SECTION>__<KEY>` environment variables, then flags.
//! Unknown keys anywhere are an error that names the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// The whole configuration of `claudewatch serve`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Listeners and request limits.
    pub server: ServerConfig,
    /// The processing pipeline.
    pub pipeline: PipelineConfig,
    /// Bearer-token authentication.
    pub auth: AuthConfig,
    /// The write-ahead spool.
    pub spool: SpoolSection,
    /// Where records go.
    pub sink: SinkConfig,
    /// Enrichment settings.
    pub enrich: EnrichSection,
    /// Logging.
    pub log: LogConfig,
}

/// Listeners and request limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// OTLP/HTTP listen address (also serves /metrics, /healthz, /readyz).
    pub http_listen: String,
    /// OTLP/gRPC listen address.
    pub grpc_listen: String,
    /// Largest request body, compressed or decompressed, in bytes.
    pub max_body_bytes: usize,
    /// Seconds allowed to drain the queue and flush sinks on SIGTERM.
    pub shutdown_timeout_secs: u64,
}

/// The processing pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineConfig {
    /// Requests waiting for the enricher; when full, clients get 503 + Retry-After.
    pub queue_capacity: usize,
    /// The Retry-After value suggested when the queue is full, in seconds.
    pub retry_after_secs: u32,
    /// Requests processed together and made durable with one spool fsync.
    pub max_batch_requests: usize,
    /// Decompressed request bytes allowed to wait in the queue or, spooled,
    /// for the merge window's thread (the memory limit); beyond it, clients
    /// get 503 + Retry-After.
    pub max_queued_bytes: usize,
    /// Records sealed but not confirmed by a failing sink beyond which new
    /// data is refused with 503 + Retry-After.
    pub max_unstored_records: usize,
    /// How long a request that finds the queue or the memory limit full waits
    /// for room before it is answered 503 + Retry-After, in milliseconds (0:
    /// at once). A short wait rides out a seal's pause; a refusal makes the
    /// client wait Retry-After (at least a second) with the core idle.
    pub admission_wait_ms: u64,
    /// A call's record is written once none of its spans or logs arrived for
    /// this long, so pieces exported in different requests merge.
    pub merge_window_ms: u64,
    /// Observations the merge window holds at most (about 1 KB each);
    /// beyond, the oldest calls are written early, down to half this many.
    pub merge_window_max_observations: usize,
    /// Ids of written calls kept (for 10 × `merge_window_ms` at most) to
    /// recognise a late piece of an already written call, about 30 bytes each;
    /// the oldest are forgotten first. A call has 2 to 4 ids: at 200,000
    /// spans/s the default covers about 2 s, long enough for a piece refused
    /// (503) and retried after Retry-After.
    pub merge_window_max_sealed_ids: usize,
}

/// The write-ahead spool: acknowledged requests, kept until their records are stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpoolSection {
    /// Directory of the spool (created when missing). Keep it on a local disk.
    pub dir: PathBuf,
    /// Size of one segment file, in bytes.
    pub segment_bytes: u64,
    /// Bytes the spool may hold; beyond, clients get 503 + Retry-After.
    pub max_bytes: u64,
}

/// Bearer-token authentication.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Token -> tenant. Empty: no authentication, no tenant.
    pub tokens: BTreeMap<String, String>,
}

/// Where records go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SinkConfig {
    /// `jsonl` or `clickhouse`.
    pub kind: String,
    /// The JSON-lines sink.
    pub jsonl: JsonlConfig,
    /// The ClickHouse sink.
    pub clickhouse: ClickHouseSection,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            kind: "jsonl".into(),
            jsonl: JsonlConfig::default(),
            clickhouse: ClickHouseSection::default(),
        }
    }
}

/// The ClickHouse sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClickHouseSection {
    /// HTTP(S) URL of the server; `https://` for TLS.
    pub url: String,
    /// Database holding `llm_calls` and its rollups.
    pub database: String,
    /// User.
    pub user: String,
    /// Password (empty: none).
    pub password: String,
    /// Insert compression: "lz4" (the default) or "none" (for a ClickHouse
    /// on the same host: spares both sides the work).
    pub compression: String,
    /// Apply the schema migrations at start (`claudewatch migrate` does the same).
    pub migrate_on_start: bool,
    /// Days `llm_calls` keeps a row (0: forever); applied by the migrations.
    pub ttl_days: u32,
    /// Rows per batch (a backlog may go in larger inserts: `catch_up_batches`).
    pub batch_rows: usize,
    /// Bytes of row data per batch (likewise).
    pub batch_bytes: usize,
    /// When more than a batch waits (ClickHouse is behind), one insert takes
    /// up to this many batches' worth of the waiting rows (1: never more).
    pub catch_up_batches: usize,
    /// A smaller batch is inserted once its oldest rows waited this long, or
    /// sooner when nothing more is on its way and no batch went early for
    /// that reason within this long.
    pub batch_age_ms: u64,
    /// Batches inserted at the same time.
    pub max_in_flight: usize,
    /// The sink's journal (encoded batches until ClickHouse confirms them).
    pub journal_dir: PathBuf,
    /// Bytes the journal may hold; beyond, new data is refused (503).
    pub max_journal_bytes: u64,
    /// JSON-lines file receiving the records ClickHouse refuses, with the reason.
    pub dead_letter_path: PathBuf,
    /// Timeout of one insert, in milliseconds.
    pub insert_timeout_ms: u64,
    /// First retry delay in milliseconds (doubled per failure, full jitter).
    pub retry_initial_ms: u64,
    /// Longest retry delay in milliseconds.
    pub retry_max_ms: u64,
    /// At shutdown, milliseconds spent inserting what is journaled.
    pub drain_timeout_ms: u64,
}

impl Default for ClickHouseSection {
    fn default() -> Self {
        let d = claudewatch_sink::ClickHouseConfig::default();
        ClickHouseSection {
            url: d.url,
            database: d.database,
            user: d.user,
            password: d.password,
            compression: if d.lz4 { "lz4" } else { "none" }.into(),
            migrate_on_start: true,
            ttl_days: 90,
            batch_rows: d.batch_rows,
            batch_bytes: d.batch_bytes,
            catch_up_batches: d.catch_up_batches,
            batch_age_ms: d.batch_age.as_millis() as u64,
            max_in_flight: d.max_in_flight,
            journal_dir: d.journal_dir,
            max_journal_bytes: d.max_journal_bytes,
            dead_letter_path: d.dead_letter_path,
            insert_timeout_ms: d.insert_timeout.as_millis() as u64,
            retry_initial_ms: d.retry_initial.as_millis() as u64,
            retry_max_ms: d.retry_max.as_millis() as u64,
            drain_timeout_ms: d.drain_timeout.as_millis() as u64,
        }
    }
}

impl ClickHouseSection {
    /// The sink's settings.
    pub fn sink_config(&self) -> claudewatch_sink::ClickHouseConfig {
        use std::time::Duration;
        claudewatch_sink::ClickHouseConfig {
            url: self.url.clone(),
            database: self.database.clone(),
            user: self.user.clone(),
            password: self.password.clone(),
            lz4: self.compression != "none",
            batch_rows: self.batch_rows,
            batch_bytes: self.batch_bytes,
            catch_up_batches: self.catch_up_batches,
            batch_age: Duration::from_millis(self.batch_age_ms),
            journal_dir: self.journal_dir.clone(),
            max_journal_bytes: self.max_journal_bytes,
            dead_letter_path: self.dead_letter_path.clone(),
            max_in_flight: self.max_in_flight,
            insert_timeout: Duration::from_millis(self.insert_timeout_ms),
            retry_initial: Duration::from_millis(self.retry_initial_ms),
            retry_max: Duration::from_millis(self.retry_max_ms),
            drain_timeout: Duration::from_millis(self.drain_timeout_ms),
        }
    }
}

/// The JSON-lines sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JsonlConfig {
    /// File to append to, or `-` for stdout.
    pub path: String,
    /// fsync on every flush, before the spool forgets the records' requests.
    pub fsync: bool,
}

/// Enrichment settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnrichSection {
    /// Price table file (TOML) replacing the built-in one.
    pub prices: Option<PathBuf>,
    /// Tenant for requests without a token-mapped tenant.
    pub default_tenant: Option<String>,
    /// Unmapped attributes kept per span or log record (at most 32); the rest
    /// are dropped and counted.
    pub max_attributes: usize,
    /// Bytes kept of an unmapped attribute's value (at most 256); longer
    /// values are cut and counted.
    pub max_attribute_value_bytes: usize,
}

impl Default for EnrichSection {
    fn default() -> Self {
        EnrichSection {
            prices: None,
            default_tenant: None,
            max_attributes: claudewatch_model::ATTRIBUTES_MAX_COUNT,
            max_attribute_value_bytes: claudewatch_model::ATTRIBUTE_VALUE_MAX_LEN,
        }
    }
}

/// Logging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: String,
    /// A tracing filter, e.g. `info` or `claudewatch=debug`.
    pub level: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            http_listen: "127.0.0.1:4318".into(),
            grpc_listen: "127.0.0.1:4317".into(),
            max_body_bytes: 16 << 20,
            shutdown_timeout_secs: 30,
        }
    }
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            queue_capacity: 256,
            retry_after_secs: 1,
            max_batch_requests: 64,
            max_queued_bytes: 64 << 20,
            max_unstored_records: 200_000,
            admission_wait_ms: 250,
            merge_window_ms: 2_000,
            merge_window_max_observations: 50_000,
            merge_window_max_sealed_ids: 1_000_000,
        }
    }
}

impl Default for SpoolSection {
    fn default() -> Self {
        SpoolSection {
            dir: PathBuf::from("claudewatch-spool"),
            segment_bytes: 64 << 20,
            max_bytes: 1 << 30,
        }
    }
}

impl Default for JsonlConfig {
    fn default() -> Self {
        JsonlConfig {
            path: "-".into(),
            fsync: true,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

/// Flag overrides: only the flags given, as a nested map of dotted paths.
#[derive(Debug, Default, Serialize)]
pub struct Overrides(serde_json::Map<String, serde_json::Value>);

impl Overrides {
    /// Sets a dotted path such as `sink.jsonl.path` to `value`.
    pub fn set(&mut self, path: &str, value: impl Into<serde_json::Value>) {
        let mut node = &mut self.0;
        let mut parts = path.split('.').peekable();
        while let Some(part) = parts.next() {
            if parts.peek().is_none() {
                node.insert(part.to_owned(), value.into());
                return;
            }
            let child = node
                .entry(part.to_owned())
                .or_insert_with(|| serde_json::Value::Object(Default::default()));
            if !child.is_object() {
                *child = serde_json::Value::Object(Default::default());
            }
            match child {
                serde_json::Value::Object(map) => node = map,
                _ => return,
            }
        }
    }
}

/// Loads the configuration from the layers, in order.
pub fn load(file: Option<&Path>, overrides: &Overrides) -> anyhow::Result<Config> {
    let mut figment = Figment::from(Serialized::defaults(Config::default()));
    if let Some(path) = file {
        if !path.exists() {
            anyhow::bail!("config file {} does not exist", path.display());
        }
        figment = figment.merge(Toml::file(path));
    }
    // Only CLAUDEWATCH_<SECTION>__<KEY> variables: others (CLAUDEWATCH_SHARED, ...) are not config.
    figment = figment
        .merge(
            Env::prefixed("CLAUDEWATCH_")
                .filter(|k| k.as_str().contains("__"))
                .split("__"),
        )
        .merge(Serialized::defaults(overrides));
    let config: Config = figment
        .extract()
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    if !matches!(config.log.format.as_str(), "text" | "json") {
        anyhow::bail!(
            "invalid configuration: log.format must be \"text\" or \"json\", not {:?}",
            config.log.format
        );
    }
    if !matches!(config.sink.kind.as_str(), "jsonl" | "clickhouse") {
        anyhow::bail!(
            "invalid configuration: sink.kind must be \"jsonl\" or \"clickhouse\", not {:?}",
            config.sink.kind
        );
    }
    if !matches!(config.sink.clickhouse.compression.as_str(), "lz4" | "none") {
        anyhow::bail!(
            "invalid configuration: sink.clickhouse.compression must be \"lz4\" or \"none\", not {:?}",
            config.sink.clickhouse.compression
        );
    }
    if config.pipeline.queue_capacity == 0 || config.pipeline.max_batch_requests == 0 {
        anyhow::bail!("invalid configuration: pipeline.queue_capacity and pipeline.max_batch_requests must be at least 1");
    }
    if config.enrich.max_attributes > claudewatch_model::ATTRIBUTES_MAX_COUNT
        || config.enrich.max_attribute_value_bytes > claudewatch_model::ATTRIBUTE_VALUE_MAX_LEN
    {
        anyhow::bail!(
            "invalid configuration: enrich.max_attributes is at most {} and enrich.max_attribute_value_bytes at most {} (the record's own limits)",
            claudewatch_model::ATTRIBUTES_MAX_COUNT,
            claudewatch_model::ATTRIBUTE_VALUE_MAX_LEN
        );
    }
    Ok(config)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("cw-config-{}-{name}.toml", std::process::id()));
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn the_example_config_parses_and_matches_the_defaults() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/claudewatch.toml");
        let loaded = load(Some(&example), &Overrides::default()).unwrap();
        assert_eq!(loaded, Config::default());
    }

    #[test]
    fn unknown_keys_are_named() {
        let p = write("unknown", "[server]\nhttp_lisen = \"127.0.0.1:1\"\n");
        let err = load(Some(&p), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("http_lisen"), "{err}");
        let p = write("section", "[sever]\n");
        let err = load(Some(&p), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("sever"), "{err}");
    }

    #[test]
    fn flags_override_the_file() {
        let p = write(
            "layers",
            "[server]\nhttp_listen = \"127.0.0.1:1111\"\nmax_body_bytes = 42\n",
        );
        let mut o = Overrides::default();
        o.set("server.http_listen", "127.0.0.1:2222");
        o.set("sink.jsonl.fsync", true);
        let c = load(Some(&p), &o).unwrap();
        assert_eq!(c.server.http_listen, "127.0.0.1:2222");
        assert_eq!(c.server.max_body_bytes, 42);
        assert!(c.sink.jsonl.fsync);
    }

    #[test]
    fn bad_values_are_errors() {
        let p = write("badlog", "[log]\nformat = \"xml\"\n");
        assert!(load(Some(&p), &Overrides::default())
            .unwrap_err()
            .to_string()
            .contains("log.format"));
        assert!(load(Some(Path::new("/nonexistent.toml")), &Overrides::default()).is_err());
        let p = write("codec", "[sink.clickhouse]\ncompression = \"gzip\"\n");
        assert!(load(Some(&p), &Overrides::default())
            .unwrap_err()
            .to_string()
            .contains("sink.clickhouse.compression"));
        let p = write("nocodec", "[sink.clickhouse]\ncompression = \"none\"\n");
        let c = load(Some(&p), &Overrides::default()).unwrap();
        assert!(!c.sink.clickhouse.sink_config().lz4);
        assert!(ClickHouseSection::default().sink_config().lz4);
        let p = write("caps", "[enrich]\nmax_attributes = 1000\n");
        assert!(load(Some(&p), &Overrides::default())
            .unwrap_err()
            .to_string()
            .contains("enrich.max_attributes"));
    }
}
