//! Harness of the real-client end-to-end test (`realclients.rs`): cached
//! Python virtualenvs per `requirements.txt` section, the fake Anthropic API,
//! `claudewatch serve` and `scenario.py` as child processes.
//!
//! Venvs live in `target/realclients/venv-<section>` (override the parent
//! with `CLAUDEWATCH_REALCLIENTS_DIR`). Each holds its section's pins plus
//! the OTLP/gRPC exporter at the section's OpenTelemetry SDK version; a stamp
//! file holds exactly what was installed (Python version + requirements
//! text), so a venv is rebuilt when, and only when, that changes. A lock per
//! section (a mutex between threads, a lock directory between processes)
//! lets parallel tests and test runs share one install.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a first `pip install` of one section may take.
const PIP_TIMEOUT: Duration = Duration::from_secs(900);

/// Prints a progress line on the test's stderr (shown with `--nocapture`, and
/// in the output of a failing test).
pub fn progress(what: &str) {
    eprintln!("[realclients] {what}");
}

/// The shared `realclients` tools (`../shared/realclients`).
pub fn realclients_dir() -> PathBuf {
    super::common::ground_truth::shared_dir().join("realclients")
}

/// Where the venvs are cached and the runs leave their files:
/// `target/realclients`.
pub fn cache_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("CLAUDEWATCH_REALCLIENTS_DIR") {
        return PathBuf::from(dir);
    }
    // CARGO_TARGET_TMPDIR is `<target dir>/tmp`, wherever the target dir is.
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(|target| target.join("realclients"))
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("realclients"))
}

/// The Python interpreter that creates the venvs (`CLAUDEWATCH_PYTHON`, else
/// `python3`), with its version; panics with what to install when it is
/// missing, too old, or cannot make venvs.
fn base_python() -> &'static (String, String) {
    static PY: OnceLock<(String, String)> = OnceLock::new();
    PY.get_or_init(|| {
        let py = std::env::var("CLAUDEWATCH_PYTHON").unwrap_or_else(|_| "python3".into());
        let out = Command::new(&py)
            .args([
                "-c",
                "import sys, venv, ensurepip; assert sys.version_info >= (3, 10), sys.version; print(sys.version.split()[0])",
            ])
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "realclients needs Python >= 3.10 with venv and pip, but `{py}` cannot be run: {e}. \
                     Install python3 (with python3-venv on Debian/Ubuntu) or set CLAUDEWATCH_PYTHON."
                )
            });
        assert!(
            out.status.success(),
            "realclients needs Python >= 3.10 with the venv and ensurepip modules (pip), but `{py}` \
             says:\n{}\nInstall python3-venv / python3-pip or set CLAUDEWATCH_PYTHON.",
            String::from_utf8_lossy(&out.stderr)
        );
        let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        (py, version)
    })
}

/// The pinned requirements of one `# [section]` of `requirements.txt`, in
/// file order (the same selection as `lib.sh`'s `venv_for`).
pub fn section_requirements(requirements: &str, section: &str) -> Vec<String> {
    let mut on = false;
    let mut out = Vec::new();
    for line in requirements.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("# [") {
            on = rest.split(']').next() == Some(section);
            continue;
        }
        if on && !line.is_empty() && !line.starts_with('#') {
            out.push(line.to_owned());
        }
    }
    out
}

/// The section's requirements plus the OTLP/gRPC exporter at the version of
/// the section's `opentelemetry-sdk` pin.
pub fn venv_requirements(requirements: &str, section: &str) -> String {
    let mut reqs = section_requirements(requirements, section);
    assert!(
        !reqs.is_empty(),
        "requirements.txt has no `# [{section}]` section"
    );
    let sdk = reqs
        .iter()
        .find_map(|r| r.strip_prefix("opentelemetry-sdk=="))
        .unwrap_or_else(|| panic!("section [{section}] pins no opentelemetry-sdk"))
        .to_owned();
    if !reqs
        .iter()
        .any(|r| r.starts_with("opentelemetry-exporter-otlp-proto-grpc=="))
    {
        reqs.push(format!("opentelemetry-exporter-otlp-proto-grpc=={sdk}"));
    }
    let mut text = reqs.join("\n");
    text.push('\n');
    text
}

/// The Python interpreter of the cached venv of one `requirements.txt`
/// section (`base`, `traceloop`, `openlit`), created on first use.
pub fn venv_python(section: &str) -> PathBuf {
    let req_path = realclients_dir().join("requirements.txt");
    let requirements = fs::read_to_string(&req_path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", req_path.display()));
    let wanted = venv_requirements(&requirements, section);
    let (py, py_version) = base_python();
    let stamp_text = format!("python {py_version}\n{wanted}");

    let cache = cache_dir();
    fs::create_dir_all(&cache).unwrap_or_else(|e| panic!("creating {}: {e}", cache.display()));
    let venv = cache.join(format!("venv-{section}"));
    let python = venv.join("bin").join("python");
    let stamp = venv.join("claudewatch-stamp.txt");

    // One installer per section, across threads and processes.
    let section_mutex = section_mutex(section);
    let _thread_turn = section_mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let _process_turn = DirLock::acquire(&cache.join(format!("venv-{section}.lock")));

    if python.exists() && fs::read_to_string(&stamp).ok().as_deref() == Some(stamp_text.as_str()) {
        return python;
    }
    progress(&format!(
        "creating venv [{section}] in {} (pip install, a few minutes the first time)",
        venv.display()
    ));
    let started = Instant::now();
    if venv.exists() {
        fs::remove_dir_all(&venv)
            .unwrap_or_else(|e| panic!("removing the stale {}: {e}", venv.display()));
    }
    run_checked(
        Command::new(py).args(["-m", "venv"]).arg(&venv),
        Duration::from_secs(120),
        &format!("{py} -m venv {}", venv.display()),
    );
    let req_file = venv.join("claudewatch-requirements.txt");
    fs::write(&req_file, &wanted).unwrap_or_else(|e| panic!("writing {}: {e}", req_file.display()));
    run_checked(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(&req_file),
        PIP_TIMEOUT,
        &format!(
            "pip install -r {} (section [{section}])",
            req_file.display()
        ),
    );
    // The stamp goes last: an interrupted install is redone next time.
    fs::write(&stamp, &stamp_text).unwrap_or_else(|e| panic!("writing {}: {e}", stamp.display()));
    progress(&format!(
        "venv [{section}] ready in {:.0}s",
        started.elapsed().as_secs_f64()
    ));
    python
}

/// The mutex of one section's venv, shared by this process's test threads.
fn section_mutex(section: &str) -> Arc<Mutex<()>> {
    static ALL: OnceLock<Mutex<BTreeMap<String, Arc<Mutex<()>>>>> = OnceLock::new();
    let mut all = ALL
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    all.entry(section.to_owned()).or_default().clone()
}

/// A lock between processes: a directory that only one of them can create,
/// removed on drop; one older than an install can take is stale.
struct DirLock(PathBuf);

impl DirLock {
    fn acquire(path: &Path) -> DirLock {
        let mut waited = false;
        loop {
            match fs::create_dir(path) {
                Ok(()) => return DirLock(path.to_owned()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let age = fs::metadata(path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok());
                    if age.is_some_and(|a| a > PIP_TIMEOUT) {
                        progress(&format!("removing the stale lock {}", path.display()));
                        let _ = fs::remove_dir(path);
                        continue;
                    }
                    if !waited {
                        progress(&format!(
                            "waiting for {} (another test run is installing)",
                            path.display()
                        ));
                        waited = true;
                    }
                    thread::sleep(Duration::from_millis(500));
                }
                Err(e) => panic!("creating the lock {}: {e}", path.display()),
            }
        }
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.0);
    }
}

/// Runs a command to completion within `timeout`; panics with its output
/// when it fails.
fn run_checked(cmd: &mut Command, timeout: Duration, what: &str) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let out = collect(child.stdout.take());
    let err = collect(child.stderr.take());
    let status = wait_until(&mut child, timeout);
    let text = |c: Arc<Mutex<Vec<String>>>| c.lock().map(|l| l.join("\n")).unwrap_or_default();
    match status {
        Some(s) if s.success() => {}
        other => panic!(
            "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            other.map_or_else(
                || format!("killed after {}s", timeout.as_secs()),
                |s| s.to_string()
            ),
            text(out),
            text(err)
        ),
    }
}

/// Reads a child's pipe line by line on a thread (so the child never blocks
/// on a full pipe) into a shared buffer.
fn collect<R: Read + Send + 'static>(pipe: Option<R>) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    if let Some(pipe) = pipe {
        let sink = lines.clone();
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if let Ok(mut v) = sink.lock() {
                    v.push(line);
                }
            }
        });
    }
    lines
}

/// Waits for a child up to `timeout`; kills it and returns `None` on timeout.
pub fn wait_until(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// A port that was free a moment ago (the fake API takes a port number, not 0).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free local port")
}

/// An HTTP GET; true on a 2xx answer.
fn http_ok(url: &str) -> bool {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .into();
    agent.get(url).call().is_ok()
}

/// `fake_anthropic.py` on a free port.
pub struct FakeApi {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    output: Arc<Mutex<Vec<String>>>,
}

impl FakeApi {
    /// Starts the fake API (standard library only, so any Python) with its
    /// ground truth labelled `client` and appended to `ground_truth`, and
    /// waits until `/_fake/health` answers.
    pub fn start(python: &Path, client: &str, ground_truth: &Path) -> FakeApi {
        let script = realclients_dir().join("fake_anthropic.py");
        let mut last_output = Vec::new();
        for _attempt in 0..5 {
            let port = free_port();
            let mut child = Command::new(python)
                .arg(&script)
                .args(["--port", &port.to_string(), "--client", client])
                .arg("--ground-truth")
                .arg(ground_truth)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", script.display()));
            let output = collect(child.stdout.take());
            let errors = collect(child.stderr.take());
            let base_url = format!("http://127.0.0.1:{port}");
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if http_ok(&format!("{base_url}/_fake/health")) {
                    return FakeApi {
                        child,
                        base_url,
                        output: errors,
                    };
                }
                if matches!(child.try_wait(), Ok(Some(_))) {
                    break; // the port was taken in between: try another one
                }
                thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
            last_output = [output, errors]
                .iter()
                .flat_map(|b| b.lock().map(|v| v.clone()).unwrap_or_default())
                .collect();
        }
        panic!(
            "fake_anthropic.py did not start; its output:\n{}",
            last_output.join("\n")
        );
    }

    /// The fake API's stderr so far (its request log).
    pub fn log(&self) -> String {
        self.output.lock().map(|v| v.join("\n")).unwrap_or_default()
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `claudewatch serve --help`, read once.
fn serve_help() -> &'static str {
    static HELP: OnceLock<String> = OnceLock::new();
    HELP.get_or_init(|| {
        let out = Command::new(env!("CARGO_BIN_EXE_claudewatch"))
            .args(["serve", "--help"])
            .output()
            .expect("running claudewatch serve --help");
        String::from_utf8_lossy(&out.stdout).into_owned()
    })
}

/// Whether this `claudewatch serve` has the OTLP/gRPC receiver (`--grpc-listen`).
pub fn serve_has_grpc() -> bool {
    serve_help().contains("--grpc-listen")
}

/// Where serve stores its records.
#[derive(Clone, Debug)]
pub enum Store {
    /// A JSON-lines file.
    JsonLines(PathBuf),
    /// `llm_calls` of a ClickHouse database (migrated by serve at start).
    ClickHouse {
        /// `http://host:port`.
        url: String,
        /// The database.
        database: String,
    },
}

/// `claudewatch serve` on free ports.
pub struct Serve {
    child: Child,
    /// `http://ADDR` of the OTLP/HTTP receiver.
    pub http_url: String,
    /// `http://ADDR` of the OTLP/gRPC receiver, when serve has one.
    pub grpc_url: Option<String>,
    store: Store,
    log: Arc<Mutex<Vec<String>>>,
}

impl Serve {
    /// Starts serve in `dir`, writing to `dir/records.jsonl` (JSON lines),
    /// listening for OTLP/HTTP on a free port and, when it has the gRPC
    /// receiver, for OTLP/gRPC on another (never the default 4317, which
    /// parallel tests would share), with its own spool in `dir/spool` (the
    /// default is relative to the working directory: parallel serves would
    /// share it and replay each other's requests). Waits until it logged its
    /// bound addresses (`listen=`, `grpc_listen=`).
    pub fn start(dir: &Path) -> Serve {
        Serve::start_into(dir, Store::JsonLines(dir.join("records.jsonl")))
    }

    /// [`Serve::start`] storing into `store` (ClickHouse: journal and dead
    /// letters in `dir`, small batches, a long drain at stop).
    pub fn start_into(dir: &Path, store: Store) -> Serve {
        let grpc = serve_has_grpc();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_claudewatch"));
        cmd.args([
            "serve",
            "--log-format",
            "json",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .current_dir(dir);
        match &store {
            Store::JsonLines(out) => {
                cmd.arg("--jsonl").arg(out);
            }
            Store::ClickHouse { url, database } => {
                cmd.env("CLAUDEWATCH_SINK__KIND", "clickhouse")
                    .env("CLAUDEWATCH_SINK__CLICKHOUSE__URL", url)
                    .env("CLAUDEWATCH_SINK__CLICKHOUSE__DATABASE", database)
                    .env("CLAUDEWATCH_SINK__CLICKHOUSE__TTL_DAYS", "0")
                    .env("CLAUDEWATCH_SINK__CLICKHOUSE__BATCH_AGE_MS", "200")
                    .env(
                        "CLAUDEWATCH_SINK__CLICKHOUSE__JOURNAL_DIR",
                        dir.join("journal"),
                    )
                    .env(
                        "CLAUDEWATCH_SINK__CLICKHOUSE__DEAD_LETTER_PATH",
                        dir.join("dead-letters.jsonl"),
                    )
                    .env("CLAUDEWATCH_SINK__CLICKHOUSE__DRAIN_TIMEOUT_MS", "30000")
                    .env("CLAUDEWATCH_SERVER__SHUTDOWN_TIMEOUT_SECS", "45");
            }
        }
        if grpc {
            cmd.args(["--grpc-listen", "127.0.0.1:0"]);
        }
        if serve_help().contains("--spool-dir") {
            cmd.arg("--spool-dir").arg(dir.join("spool"));
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting claudewatch serve");
        let log = collect(child.stderr.take());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let lines = log.lock().map(|v| v.clone()).unwrap_or_default();
            let http = field_in_log(&lines, "listen");
            let grpc_addr = field_in_log(&lines, "grpc_listen");
            if let Some(http) = http {
                if !grpc || grpc_addr.is_some() {
                    return Serve {
                        child,
                        http_url: format!("http://{http}"),
                        grpc_url: grpc_addr.map(|a| format!("http://{a}")),
                        store,
                        log,
                    };
                }
            }
            let exited = child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "claudewatch serve did not log its listen addresses ({}); stderr:\n{}",
                    exited.map_or_else(|| "timeout".to_owned(), |s| s.to_string()),
                    lines.join("\n")
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Serve's stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|v| v.join("\n")).unwrap_or_default()
    }

    /// SIGTERM (serve stops accepting, seals what its merge window holds,
    /// drains, flushes, exits), then the exit status and the records written.
    pub fn stop(mut self) -> (Option<ExitStatus>, Vec<Value>, String) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .is_ok_and(|s| s.success());
        assert!(sent, "cannot send SIGTERM to serve (pid {pid})");
        let status = wait_until(&mut self.child, Duration::from_secs(60));
        let records = match &self.store {
            Store::JsonLines(out) => fs::read_to_string(out)
                .unwrap_or_default()
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| {
                    serde_json::from_str(l).unwrap_or_else(|e| {
                        panic!("serve wrote a line that is not JSON ({e}): {l}")
                    })
                })
                .collect(),
            Store::ClickHouse { url, database } => stored_records(url, database),
        };
        // Let the stderr reader take the last lines.
        thread::sleep(Duration::from_millis(100));
        (status, records, self.log())
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every row of `database.llm_calls`, read with the sink's own row type and
/// turned back into call records (JSON, like the JSON-lines sink writes them).
pub fn stored_records(url: &str, database: &str) -> Vec<Value> {
    use claudewatch_sink::clickhouse::row::CallRow;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let client = clickhouse::Client::default()
        .with_url(url)
        .with_database(database);
    let rows: Vec<CallRow> = rt
        .block_on(
            client
                .query("SELECT ?fields FROM llm_calls ORDER BY time_unix_nano")
                .fetch_all(),
        )
        .unwrap_or_else(|e| panic!("reading {database}.llm_calls at {url}: {e}"));
    rows.into_iter()
        .map(|r| serde_json::to_value(r.into_record()).expect("a record is JSON"))
        .collect()
}

/// The value of `fields.<key>` in serve's JSON log lines.
fn field_in_log(lines: &[String], key: &str) -> Option<String> {
    lines.iter().find_map(|l| {
        let v: Value = serde_json::from_str(l).ok()?;
        v["fields"][key].as_str().map(str::to_owned)
    })
}
