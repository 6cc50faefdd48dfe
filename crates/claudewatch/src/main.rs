//! The `claudewatch` command: CLI parsing and dispatch to subcommands.

#![forbid(unsafe_code)]

mod cmd;
mod config;
mod metrics;
mod pipeline;
mod report;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// claudewatch turns the OpenTelemetry telemetry your applications emit about
/// their Claude API calls into one exact record per call: outcome (429 quota
/// vs 529 overload), tokens with cache tokens unfolded, exact cost, TTFT.
#[derive(Debug, Parser)]
#[command(name = "claudewatch", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Enrich OTLP export requests stored as files into call records (JSON lines on stdout).
    Enrich(cmd::enrich::EnrichArgs),
    /// Receive OTLP over HTTP and write call records to the sink (see --help).
    Serve(cmd::serve::ServeArgs),
    /// Create or upgrade the ClickHouse schema (idempotent; see --help).
    Migrate(cmd::migrate::MigrateArgs),
    /// Summarise a time range from ClickHouse: cost, errors (429 vs 529), TTFT, RPD (see --help).
    Report(cmd::report::ReportArgs),
    /// Print the built-in price table (TOML), a starting point for --prices.
    Prices,
    /// Send realistic OTLP traffic about Claude calls and count what was acknowledged (see --help).
    Loadgen(cmd::loadgen::LoadgenArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Enrich(args) => cmd::enrich::run(args),
        Command::Serve(args) => cmd::serve::run(args),
        Command::Loadgen(args) => cmd::loadgen::run(args),
        Command::Migrate(args) => cmd::migrate::run(args),
        Command::Report(args) => cmd::report::run(args),
        Command::Prices => {
            print!("{}", claudewatch_enrich::pricing::DEFAULT_PRICES_TOML);
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("claudewatch: error: {err:#}");
            ExitCode::from(2)
        }
    }
}
