//! `claudewatch serve` as a child process: started on free ports, its HTTP
//! address read from its log, its stderr drained so it never blocks.

#![allow(dead_code)] // each test file uses a part

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Spawns `cmd` (a `claudewatch serve ...` command, text logs) and waits
/// until it logged its OTLP/HTTP address (`listen=ADDR`); returns the child
/// and `http://ADDR`. Its later WARN and ERROR lines are echoed to the test's
/// stderr; the rest is drained.
pub fn spawn_serve(cmd: &mut Command) -> (Child, String) {
    let mut child = cmd.stderr(Stdio::piped()).spawn().expect("start serve");
    let stderr = child.stderr.take().expect("piped stderr");
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    let base = loop {
        assert!(
            Instant::now() < deadline,
            "serve did not start:\n{}",
            seen.join("\n")
        );
        let Some(line) = lines.next() else {
            panic!("serve exited early:\n{}", seen.join("\n"));
        };
        let line = line.expect("serve's stderr");
        seen.push(line.clone());
        if let Some(pos) = line.find(" listen=") {
            let addr: String = line[pos + " listen=".len()..]
                .chars()
                .take_while(|c| !c.is_whitespace())
                .collect();
            let addr = addr
                .trim_matches(|c: char| !(c.is_ascii_digit() || c == '.' || c == ':'))
                .to_owned();
            break format!("http://{addr}");
        }
    };
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if line.contains("WARN") || line.contains("ERROR") {
                eprintln!("[serve] {line}");
            }
        }
    });
    (child, base)
}
