//! The local ClickHouse of `deploy/local/` for the sink's tests: start, stop,
//! restart on the same port and data directory; and call records to store.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

use claudewatch_model::CallRecord;

/// The repository root (this crate is `crates/sink`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

fn venv_python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let root = repo_root();
            let status = Command::new("sh")
                .arg(root.join("deploy/local/venv.sh"))
                .stdout(Stdio::inherit())
                .status()
                .expect("run deploy/local/venv.sh");
            assert!(status.success(), "deploy/local/venv.sh failed: {status}");
            root.join("target/local-clickhouse/venv/bin/python")
        })
        .clone()
}

/// A running `chserver`, killed when dropped.
pub struct LocalClickHouse {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Its data directory.
    pub data: PathBuf,
}

impl LocalClickHouse {
    /// Starts a server on `data`, on `port` (0: a free one).
    pub fn start(data: &Path, port: u16) -> Self {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut child = Command::new(venv_python())
                .args(["-m", "chserver", "--port"])
                .arg(port.to_string())
                .arg("--data")
                .arg(data)
                .current_dir(repo_root().join("deploy/local"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start chserver");
            let stderr = child.stderr.take().expect("piped stderr");
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Some(rest) = line.split("listening on ").nth(1) {
                        let url = rest
                            .split_whitespace()
                            .next()
                            .unwrap_or_default()
                            .to_owned();
                        let _ = tx.send(url);
                    } else if std::env::var_os("CHSERVER_LOG").is_some() || !line.contains(" INFO ")
                    {
                        eprintln!("[chserver] {line}");
                    }
                }
            });
            match rx.recv_timeout(Duration::from_secs(120)) {
                Ok(url) => {
                    return Self {
                        child,
                        url,
                        data: data.to_path_buf(),
                    }
                }
                // The port may still be held by the previous server: retry.
                Err(_) if port != 0 && Instant::now() < deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("chserver did not start");
                }
            }
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.url.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// SIGTERM and wait for the exit; its status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "chserver ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for LocalClickHouse {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The shared fixtures directory.
pub fn shared() -> PathBuf {
    std::env::var("CLAUDEWATCH_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join("../shared"))
}

/// The records of every fixture capture, as `claudewatch enrich` makes them
/// (one enricher per capture directory).
pub fn fixture_records() -> Vec<CallRecord> {
    use claudewatch_enrich::{EnrichConfig, Enricher};
    use claudewatch_otlp::{decode, Encoding, Signal};
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(shared().join("fixtures"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let mut records = Vec::new();
    for dir in dirs {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        let mut e = Enricher::new(EnrichConfig::default());
        for f in files {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            let signal = if name.contains("-traces.") {
                Signal::Traces
            } else if name.contains("-logs.") {
                Signal::Logs
            } else if name.contains("-metrics.") {
                Signal::Metrics
            } else {
                continue;
            };
            let encoding = if name.ends_with(".pb") {
                Encoding::Protobuf
            } else if name.ends_with(".json") {
                Encoding::Json
            } else {
                continue;
            };
            if let Ok(req) = decode(signal, encoding, &std::fs::read(&f).unwrap()) {
                e.push(&req);
            }
        }
        records.extend(e.finish());
    }
    records
}

/// `n` distinct synthetic records (batch `b`), over two UTC days, some with
/// TTFT, some unpriced, some 429s, recent enough for any TTL.
pub fn synthetic(b: u64, n: u64) -> Vec<CallRecord> {
    let template: CallRecord =
        serde_json::from_str(include_str!("../../testdata/record.json")).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let base = now - now % 86_400_000_000_000 - 3_600_000_000_000;
    (0..n)
        .map(|i| {
            let mut r = template.clone();
            let k = b * 1_000_000 + i;
            r.time_unix_nano = base + k * 7_000_003;
            r.request_id = Some(format!("req_{b}_{i}"));
            r.tenant = Some(["a", "b"][(i % 2) as usize].into());
            r.input_tokens = Some(1000 + i % 17);
            r.output_tokens = if i % 11 == 0 { None } else { Some(i % 300) };
            r.cost_usd = if i % 11 == 0 {
                None
            } else {
                Some(rust_decimal::Decimal::new((k % 9973) as i64 + 1, 7))
            };
            r.ttft_ms = (i % 3 == 0).then_some((i % 500) as f64 + 0.25);
            if i % 13 == 0 {
                r.outcome = claudewatch_model::Outcome::RateLimited;
                r.http_status = Some(429);
            }
            r
        })
        .collect()
}

/// Rows for a rate test: `CLAUDEWATCH_RATE_ROWS` when measuring, else `default`
/// (small enough for every test run, which checks the counts).
pub fn rate_rows(default: u64) -> u64 {
    std::env::var("CLAUDEWATCH_RATE_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &u64| n > 0)
        .unwrap_or(default)
}

/// Migrates `database` on `server` (no TTL) and inserts `records` directly
/// with the `clickhouse` crate at its defaults (one insert, rollups filled by
/// their materialized views). For tests that need data to query.
pub fn load_records(server: &LocalClickHouse, database: &str, records: &[CallRecord]) {
    use claudewatch_sink::clickhouse::{row::CallRow, schema};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = clickhouse::Client::default().with_url(&server.url);
        schema::migrate(&client, database, 0).await.unwrap();
        let client = client.with_database(database);
        let mut insert = client.insert::<CallRow>("llm_calls").await.unwrap();
        for r in records {
            insert
                .write(&CallRow::from_record(r).unwrap())
                .await
                .unwrap();
        }
        insert.end().await.unwrap();
    });
}

/// A query's single `UInt64` answer.
pub async fn count_of(client: &clickhouse::Client, sql: &str) -> u64 {
    client.query(sql).fetch_one::<u64>().await.expect(sql)
}

/// Totals of the detail table and of each rollup, which must agree.
pub async fn assert_rollups_match(client: &clickhouse::Client, expected_rows: u64) {
    let detail = count_of(client, "SELECT count() FROM llm_calls").await;
    assert_eq!(detail, expected_rows, "detail rows");
    let hourly = count_of(client, "SELECT toUInt64(sum(calls)) FROM llm_calls_hourly").await;
    let daily = count_of(
        client,
        "SELECT toUInt64(sum(requests)) FROM llm_requests_daily",
    )
    .await;
    assert_eq!(
        (hourly, daily),
        (expected_rows, expected_rows),
        "rollup calls"
    );
    let (a, b): (String, String) = client
        .query("SELECT toString(assumeNotNull((SELECT sum(ifNull(cost_usd, 0)) FROM llm_calls))), toString(assumeNotNull((SELECT sum(cost_usd) FROM llm_calls_hourly)))")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(a, b, "cost");
    let tokens = |t: &str| format!("SELECT toUInt64(sum(ifNull({t}, 0))) FROM llm_calls");
    for t in ["input_tokens", "output_tokens", "cache_read_tokens"] {
        let d = count_of(client, &tokens(t)).await;
        let r = count_of(
            client,
            &format!("SELECT toUInt64(sum({t})) FROM llm_calls_hourly"),
        )
        .await;
        assert_eq!(d, r, "{t}");
    }
    let ttft = count_of(
        client,
        "SELECT count() FROM llm_calls WHERE ttft_ms IS NOT NULL",
    )
    .await;
    let samples = count_of(client, "SELECT toUInt64(sum(samples)) FROM llm_ttft_hourly").await;
    assert_eq!(ttft, samples, "ttft samples");
    let limited = count_of(
        client,
        "SELECT countIf(outcome = 'rate_limited') FROM llm_calls",
    )
    .await;
    let r = count_of(
        client,
        "SELECT toUInt64(sum(rate_limited)) FROM llm_requests_daily",
    )
    .await;
    assert_eq!(limited, r, "rate limited");
}
