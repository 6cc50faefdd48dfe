//! `make run` (deploy/demo/run.sh) end to end, at a small volume: the local
//! ClickHouse, `migrate`, `serve`, the real Anthropic SDK against the fake
//! Claude API and the load generator (steady, a 529 burst, a quota climb),
//! every acknowledged call stored once, `report` showing the traffic; then
//! Ctrl-C (SIGINT to the script) stops every process it started, serve
//! draining cleanly.
//!
//! The script builds nothing here: it runs this build's binary (`DEMO_BIN`)
//! and the real-client harness's cached SDK venv (`DEMO_PYTHON`), on free
//! ports, with its state in a directory of its own.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

// Only the venv and path helpers are used here.
#[allow(dead_code)]
mod common;
#[allow(dead_code)]
#[path = "realclients/harness.rs"]
mod harness;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn port_in_use(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_err()
}

#[test]
fn make_run_demo_stores_every_call_reports_it_and_stops_cleanly_on_ctrl_c() {
    let python = harness::venv_python("base");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let state = root.join("target/demo-test");
    let _ = std::fs::remove_dir_all(&state);
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let mut child = Command::new("bash")
        .arg(root.join("deploy/demo/run.sh"))
        .env("DEMO_BIN", env!("CARGO_BIN_EXE_claudewatch"))
        .env("DEMO_PYTHON", &python)
        .env("DEMO_STATE", &state)
        .env("DEMO_CLICKHOUSE_PORT", ports[0].to_string())
        .env("DEMO_HTTP_PORT", ports[1].to_string())
        .env("DEMO_GRPC_PORT", ports[2].to_string())
        .env("DEMO_FAKE_PORT", ports[3].to_string())
        .env("DEMO_SECONDS", "2")
        .env("DEMO_RATE", "300")
        .env("DEMO_QUOTA_CALLS", "900")
        .env("DEMO_TIER", "1")
        .env_remove("DEMO_ONCE")
        .env_remove("DEMO_KEEP")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bash deploy/demo/run.sh");
    let (tx, rx) = mpsc::channel::<String>();
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    drop(tx);

    let mut output = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(400);
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                panic!(
                    "the demo did not reach its idle phase:\n{}",
                    output.join("\n")
                )
            });
        eprintln!("[demo] {line}");
        let idle = line.contains("Ctrl-C stops everything");
        output.push(line);
        if idle {
            break;
        }
    }
    let text = output.join("\n");
    // Every acknowledged call (SDK + load generator) is in ClickHouse, once.
    let stored_line = output
        .iter()
        .find(|l| l.contains("every acknowledged call is stored, once"))
        .unwrap_or_else(|| panic!("no storage check in the output:\n{text}"));
    let new_calls: u64 = stored_line
        .split('(')
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the count in {stored_line:?}"));
    assert!(new_calls > 900, "SDK and loadgen calls stored: {new_calls}");
    assert!(text.contains("13 SDK calls made"), "{text}");
    // The report shows the same traffic: its header counts every call.
    let header = output
        .iter()
        .find(|l| l.contains(" calls; cost "))
        .unwrap_or_else(|| panic!("no report in the output:\n{text}"));
    let reported: u64 = header
        .split_whitespace()
        .next()
        .unwrap()
        .replace(',', "")
        .parse()
        .unwrap_or_else(|_| panic!("cannot read the report's call count in {header:?}"));
    assert_eq!(reported, new_calls, "report counts the demo's calls");
    for section in [
        "COST BY MODEL",
        "ERROR RATES BY MODEL",
        "TTFT",
        "REQUESTS PER UTC DAY vs tier 1",
        "CALLS TO RETIRED MODELS",
    ] {
        assert!(text.contains(section), "report section {section}:\n{text}");
    }
    // The 529 burst shows in the overload column of the total line.
    let total = output
        .iter()
        .skip_while(|l| !l.contains("ERROR RATES BY MODEL"))
        .find(|l| l.trim_start().starts_with("total"))
        .unwrap_or_else(|| panic!("no total error line:\n{text}"));
    let cols: Vec<&str> = total.split_whitespace().collect();
    let overloaded: u64 = cols[6].replace(',', "").parse().unwrap();
    let calls: u64 = cols[1].replace(',', "").parse().unwrap();
    assert!(
        overloaded * 10 > calls,
        "the 529 burst: {overloaded} of {calls} ({total})"
    );
    // The quota climb: one organisation's requests of the day are HIGH or FULL on tier 1.
    assert!(
        text.contains("HIGH") || text.contains("FULL"),
        "the quota climb reaches the tier's RPD:\n{text}"
    );
    for p in &ports[..3] {
        assert!(port_in_use(*p), "port {p} is served while the demo runs");
    }

    // Ctrl-C.
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the demo ignored Ctrl-C:\n{}",
            output.join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let rest: Vec<String> = rx.try_iter().collect();
    let rest = rest.join("\n");
    assert_eq!(status.code(), Some(130), "Ctrl-C's exit status\n{rest}");
    assert!(rest.contains("stopped;"), "cleanup ran:\n{rest}");
    assert!(
        !rest.contains("killing it"),
        "every process stopped on TERM:\n{rest}"
    );
    let serve_log = std::fs::read_to_string(state.join("serve.log")).unwrap();
    assert!(
        serve_log.contains("shut down cleanly"),
        "serve drained and exited:\n{serve_log}"
    );
    for p in &ports {
        assert!(!port_in_use(*p), "port {p} released: everything stopped");
    }
    let _ = std::fs::remove_dir_all(&state);
}
