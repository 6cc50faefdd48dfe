//! `claudewatch enrich`: OTLP export requests stored as files in, call records
//! out, as one stream.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use claudewatch_enrich::{EnrichConfig, Enricher};
use claudewatch_otlp::{decode, sniff_other_signal, Encoding, Signal};

/// Largest input file read (a guard against reading a disk image by mistake).
const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// Arguments of `claudewatch enrich`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Each FILE is one OTLP export request body: protobuf (.pb, or any other name) or \
OTLP/JSON (.json). The signal is taken from --signal, else from the file name \
(001-traces.pb, 003-logs.json). Files are read in the order given and processed \
as one stream, so spans and logs of one call in different files merge into one record.

Output: one JSON call record per line on stdout. On stderr: one line per rejected \
file or item and a summary. Exit status: 0 when everything was read, 1 when any \
file or item was rejected (the rest is still processed), 2 on a usage error.

Example:
  claudewatch enrich ../shared/fixtures/traceloop/*.pb > calls.jsonl")]
pub struct EnrichArgs {
    /// Signal of every file (traces, logs, metrics); default: from each file name.
    #[arg(long, value_parser = parse_signal)]
    signal: Option<Signal>,
    /// Price table (TOML) replacing the built-in one; see `claudewatch prices`.
    #[arg(long, value_name = "FILE")]
    prices: Option<PathBuf>,
    /// Tenant to stamp on every record.
    #[arg(long)]
    tenant: Option<String>,
    /// OTLP export request files.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

fn parse_signal(s: &str) -> Result<Signal, String> {
    Signal::parse(s)
        .ok_or_else(|| format!("unknown signal {s:?} (expected traces, logs or metrics)"))
}

/// Runs the command.
pub fn run(args: EnrichArgs) -> anyhow::Result<ExitCode> {
    let prices = super::load_prices(args.prices.as_deref())?;
    let mut enricher = Enricher::new(EnrichConfig {
        prices,
        tenant: args.tenant.clone(),
        attribute_limits: Default::default(),
    });
    let mut files_ok = 0u64;
    let mut files_rejected = 0u64;

    for path in &args.files {
        match read_into(path, args.signal, &mut enricher) {
            Ok(()) => files_ok += 1,
            Err(err) => {
                eprintln!("claudewatch: rejected {}: {err:#}", path.display());
                files_rejected += 1;
            }
        }
    }

    let records = enricher.finish();
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    for r in &records {
        serde_json::to_writer(&mut out, r).context("writing a record")?;
        out.write_all(b"\n").context("writing a record")?;
    }
    out.flush().context("writing records")?;

    let s = enricher.stats();
    let x = &s.extract;
    eprintln!(
        "claudewatch: {} files read, {} rejected; {} spans, {} log records, {} metric points; \
         {} observations of Claude calls, {} records ({} observations merged as duplicates); \
         {} items not about Claude calls",
        files_ok,
        files_rejected,
        x.spans,
        x.log_records,
        x.metric_points,
        x.observations,
        s.calls,
        s.merged,
        x.not_claude
    );
    if x.total_token_mismatches
        + x.folding_contradictions
        + x.truncated_values
        + x.dropped_attributes
        > 0
    {
        eprintln!(
            "claudewatch: {} total-token mismatches, {} cache-folding contradictions, {} attribute values truncated, {} attributes dropped",
            x.total_token_mismatches, x.folding_contradictions, x.truncated_values, x.dropped_attributes
        );
    }
    for (reason, n) in &x.rejected {
        eprintln!("claudewatch: rejected {n} items: {reason}");
    }
    let anything_rejected = files_rejected > 0 || x.rejected_total() > 0;
    Ok(if anything_rejected {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Reads one file and feeds it to the enricher (protobuf traces through the
/// zero-copy path).
fn read_into(
    path: &std::path::Path,
    signal: Option<Signal>,
    enricher: &mut Enricher,
) -> anyhow::Result<()> {
    let name = path.to_string_lossy();
    let signal = match signal.or_else(|| Signal::from_file_name(&name)) {
        Some(s) => s,
        None => anyhow::bail!(
            "cannot tell the signal from the file name: pass --signal traces|logs|metrics"
        ),
    };
    let meta = std::fs::metadata(path).context("cannot read the file")?;
    if meta.len() > MAX_FILE_BYTES {
        anyhow::bail!(
            "file is {} bytes, over the {} byte limit",
            meta.len(),
            MAX_FILE_BYTES
        );
    }
    let bytes = std::fs::read(path).context("cannot read the file")?;
    if bytes.is_empty() {
        anyhow::bail!("file is empty: an OTLP export request has at least one resource");
    }
    let encoding = Encoding::from_file_name(&name);
    let result = if (signal, encoding) == (Signal::Traces, Encoding::Protobuf) {
        enricher.push_traces_protobuf(&bytes)
    } else {
        decode(signal, encoding, &bytes).map(|req| enricher.push(&req))
    };
    result.map_err(|err| {
        let hint = match sniff_other_signal(signal, encoding, &bytes) {
            Some(other) => format!(
                " (it decodes as a {other} request: pass --signal {other} or rename the file)"
            ),
            None => String::new(),
        };
        anyhow::anyhow!("{err}{hint}")
    })
}
