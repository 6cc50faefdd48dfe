//! `claudewatch report`: a terminal summary of a time range from ClickHouse
//! (cost, outcomes and error rates, TTFT, requests per day against the tier,
//! unpriced and retired models).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::cmd::migrate::ClickHouseArgs;
use crate::config::Overrides;
use crate::report::query::{Range, Source};
use crate::report::{self, render, time, Options, Tier};

/// Output formats of `claudewatch report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned tables for a terminal.
    Text,
    /// One JSON object, for scripts and tests.
    Json,
}

/// Arguments of `claudewatch report`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Reads the tables `serve` fills with [sink] kind = \"clickhouse\" and prints, for the range:
  - cost by model family and by service, and the total; unpriced calls and calls of unknown
    cost are counted apart, never priced as 0;
  - calls by outcome; error rates by model with 429 (rate_limited: your own quota) and
    529 (overloaded: the platform) side by side;
  - TTFT p50/p95/p99 by model against the p95 target (ABOVE when over it);
  - requests per UTC day per organization id (else tenant) and model family against the
    tier's RPD (HIGH from 80 %); days are counted whole, as the quota is;
  - model ids without a price; calls to retired models (404 not_found by model id, and
    families known retired: claude-1, claude-instant, claude-2, claude-3-sonnet,
    claude-3-opus, claude-3-5-sonnet; add more with --retired).
Whole hours come from the rollups (llm_calls_hourly, llm_ttft_hourly, llm_requests_daily),
partial hours at the range's edges from llm_calls, so the figures are exact for any range.
Connection settings come from the same layers as serve's: defaults < --config FILE <
CLAUDEWATCH_SINK__CLICKHOUSE__<KEY> < flags. Exit status: 0 (also for an empty range),
2 on an error (ClickHouse unreachable, no schema, bad arguments).

Examples:
  claudewatch report                              # the last 24 hours
  claudewatch report --since 7d --tier 3
  claudewatch report --since 2026-11-01 --until 2026-11-08T12:00:00Z --tenant acme
  claudewatch report --all --format json | jq .cost.total")]
pub struct ReportArgs {
    /// Start of the range (inclusive): RFC 3339 (2026-11-23T08:00:00Z, or a date, 2026-11-23,
    /// read as UTC midnight) or an age before now (90s, 30m, 24h, 7d, 2w) [default: 24h].
    #[arg(long, value_name = "TIME", conflicts_with = "all")]
    since: Option<String>,
    /// End of the range (exclusive): the same forms, or `now` [default: now].
    #[arg(long, value_name = "TIME", conflicts_with = "all")]
    until: Option<String>,
    /// Report on the whole table, whatever the time.
    #[arg(long)]
    all: bool,
    /// Only this tenant's calls (the tenant serve stamped from the bearer token).
    #[arg(long, value_name = "NAME")]
    tenant: Option<String>,
    /// Rate-limit tier the RPD is compared with: 1 (1,000/day), 2 (10,000), 3 (100,000),
    /// 4 (500,000), or enterprise (give --rpd).
    #[arg(
        long,
        value_enum,
        default_value = "2",
        env = "CLAUDEWATCH_REPORT_TIER",
        hide_possible_values = true
    )]
    tier: Tier,
    /// Requests per day allowed, overriding the tier's (custom limits).
    #[arg(long, value_name = "N", env = "CLAUDEWATCH_REPORT_RPD")]
    rpd: Option<u64>,
    /// TTFT p95 target in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 2000.0)]
    ttft_target_ms: f64,
    /// A model family to count as retired besides the built-in ones (repeatable).
    #[arg(long, value_name = "FAMILY")]
    retired: Vec<String>,
    /// Output: aligned tables, or one JSON object.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Seconds to wait for each query.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    timeout_secs: u64,
    #[command(flatten)]
    clickhouse: ClickHouseArgs,
}

fn now_ns() -> anyhow::Result<i64> {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the system clock is before 1970")?;
    i64::try_from(d.as_nanos()).context("the system clock is past 2262")
}

/// The range the flags select.
fn range(args: &ReportArgs) -> anyhow::Result<Range> {
    if args.all {
        return Ok(Range::All);
    }
    let now = now_ns()?;
    let since = time::parse_instant(args.since.as_deref().unwrap_or("24h"), now)
        .map_err(|e| anyhow::anyhow!("--since {e}"))?;
    let until = match &args.until {
        Some(u) => time::parse_instant(u, now).map_err(|e| anyhow::anyhow!("--until {e}"))?,
        None => now,
    };
    if since >= until {
        anyhow::bail!(
            "--since ({}) must be before --until ({})",
            time::format_rfc3339(since),
            time::format_rfc3339(until)
        );
    }
    Ok(Range::Between {
        since_ns: since,
        until_ns: until,
    })
}

/// Runs the command.
pub fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let range = range(&args)?;
    let rpd_limit = match (args.rpd, args.tier.rpd()) {
        (Some(0), _) => anyhow::bail!("--rpd must be at least 1"),
        (Some(n), _) | (None, Some(n)) => n,
        (None, None) => {
            anyhow::bail!("--tier enterprise has custom limits: give them with --rpd N")
        }
    };
    if !(args.ttft_target_ms.is_finite() && args.ttft_target_ms > 0.0) {
        anyhow::bail!("--ttft-target-ms must be a positive number of milliseconds");
    }
    let config = args.clickhouse.load(Overrides::default())?;
    let section = &config.sink.clickhouse;
    let source = Source {
        client: section.sink_config().client(),
        url: section.url.clone(),
        database: section.database.clone(),
        timeout: Duration::from_secs(args.timeout_secs.max(1)),
    };
    let options = Options {
        range,
        tenant: args.tenant.clone(),
        tier: args.tier,
        rpd_limit,
        ttft_target_ms: args.ttft_target_ms,
        retired: args.retired.clone(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = runtime.block_on(report::build(&source, &options))?;
    let text = match args.format {
        Format::Text => render::text(&report),
        Format::Json => render::json(&report)?,
    };
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(ExitCode::SUCCESS),
        // A closed pipe (`| head`) is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e).context("writing the report"),
    }
}
