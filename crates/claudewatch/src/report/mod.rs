//! `claudewatch report`: a summary of a time range read from ClickHouse.
//!
//! [`query`] holds the SQL and its rows, [`build`] runs the queries and
//! [`assemble`] turns the rows into a [`Report`] (plain data, serialised as
//! the `--format json` output), [`render`] prints it as text.

pub mod query;
pub mod render;
pub mod time;

use std::collections::BTreeMap;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::Serialize;

use query::{DailyRow, FactRow, ModelRow, Range, Source, TtftRow};

/// Anthropic's rate-limit tiers (SPEC section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Tier {
    /// Tier 1: 1,000 requests per day.
    #[value(name = "1")]
    One,
    /// Tier 2: 10,000 requests per day.
    #[value(name = "2")]
    Two,
    /// Tier 3: 100,000 requests per day.
    #[value(name = "3")]
    Three,
    /// Tier 4: 500,000 requests per day.
    #[value(name = "4")]
    Four,
    /// Custom limits: give the RPD with `--rpd`.
    #[value(name = "enterprise")]
    Enterprise,
}

impl Tier {
    /// The tier's default requests per day; `None` for custom (enterprise).
    pub fn rpd(self) -> Option<u64> {
        match self {
            Tier::One => Some(1_000),
            Tier::Two => Some(10_000),
            Tier::Three => Some(100_000),
            Tier::Four => Some(500_000),
            Tier::Enterprise => None,
        }
    }

    /// The tier's name: `1` to `4` or `enterprise`.
    pub fn name(self) -> &'static str {
        match self {
            Tier::One => "1",
            Tier::Two => "2",
            Tier::Three => "3",
            Tier::Four => "4",
            Tier::Enterprise => "enterprise",
        }
    }
}

/// Model families Anthropic has retired: the API answers 404 for them.
/// Matched against the stored family and, for ids the normaliser gives no
/// family (`claude-2.1`, `claude-v2`), the model id. `--retired` adds more.
pub const RETIRED_FAMILIES: &[&str] = &[
    "claude-1",
    "claude-instant",
    "claude-2",
    "claude-3-sonnet",
    "claude-3-opus",
    "claude-3-5-sonnet",
];

/// The retired family a call's model belongs to, if any: `family` listed in
/// [`RETIRED_FAMILIES`] or `extra`, or a model id spelled as a Claude 1, 2 or
/// Instant model (`claude-2.1`, `anthropic.claude-v2:1`, `claude-instant-1.2`).
pub fn retired_family(model: &str, family: &str, extra: &[String]) -> Option<String> {
    if !family.is_empty()
        && (RETIRED_FAMILIES.contains(&family) || extra.iter().any(|e| e == family))
    {
        return Some(family.to_owned());
    }
    let id = model.trim().to_ascii_lowercase();
    let id = id
        .rsplit_once("anthropic.")
        .map(|(_, rest)| rest)
        .or_else(|| id.rsplit_once("models/").map(|(_, rest)| rest))
        .unwrap_or(&id);
    for (prefix, retired) in [
        ("claude-instant", "claude-instant"),
        ("claude-v1", "claude-1"),
        ("claude-1", "claude-1"),
        ("claude-v2", "claude-2"),
        ("claude-2", "claude-2"),
    ] {
        if let Some(rest) = id.strip_prefix(prefix) {
            if rest.is_empty() || rest.starts_with(['.', '-', ':', '@', '[']) {
                return Some(retired.to_owned());
            }
        }
    }
    None
}

/// What the report is about.
#[derive(Debug, Clone)]
pub struct Options {
    /// The time range.
    pub range: Range,
    /// Only this tenant's calls.
    pub tenant: Option<String>,
    /// The rate-limit tier.
    pub tier: Tier,
    /// Requests per day allowed (the tier's, or `--rpd`).
    pub rpd_limit: u64,
    /// TTFT p95 target in milliseconds (SPEC: 2 s).
    pub ttft_target_ms: f64,
    /// Families counted as retired besides [`RETIRED_FAMILIES`].
    pub retired: Vec<String>,
}

/// A report: every figure of the range. Serialised as-is by `--format json`;
/// money is an exact decimal string, an unknown name is `null`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The range.
    pub range: RangeOut,
    /// The database read.
    pub database: String,
    /// The tenant filter, if any.
    pub tenant: Option<String>,
    /// The tier RPD is compared with.
    pub tier: String,
    /// Its requests per day.
    pub rpd_limit: u64,
    /// TTFT p95 target, milliseconds.
    pub ttft_target_ms: f64,
    /// Calls in the range (0: nothing else is filled).
    pub calls: u64,
    /// Cost.
    pub cost: CostSection,
    /// Calls by outcome, most frequent first.
    pub outcomes: Vec<OutcomeLine>,
    /// Error rates, 429 and 529 side by side.
    pub errors: ErrorSection,
    /// TTFT quantiles by model family.
    pub ttft: Vec<TtftLine>,
    /// Requests per UTC day against the tier's RPD.
    pub rpd: Vec<RpdLine>,
    /// Model ids without a price (cost `NULL`, `unpriced`).
    pub unpriced_models: Vec<UnpricedLine>,
    /// Calls to retired models: 404 `not_found` ids and known retired families.
    pub retired_models: Vec<RetiredLine>,
}

/// The range of a report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RangeOut {
    /// True for `--all` (no bounds).
    pub all: bool,
    /// Inclusive start, RFC 3339 UTC.
    pub since: Option<String>,
    /// Exclusive end, RFC 3339 UTC.
    pub until: Option<String>,
}

/// Cost totals.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct CostSection {
    /// Every call of the range.
    pub total: CostLine,
    /// By model family, most expensive first.
    pub by_model: Vec<CostLine>,
    /// By service, most expensive first.
    pub by_service: Vec<CostLine>,
}

/// Cost of a group of calls.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct CostLine {
    /// Model family or service; `null` when unknown (and for the total).
    pub name: Option<String>,
    /// Calls.
    pub calls: u64,
    /// Sum of the known costs, USD.
    pub cost_usd: Decimal,
    /// Calls whose model has no price (not in `cost_usd`, never counted as 0).
    pub unpriced_calls: u64,
    /// Calls whose cost is unknown (`NULL`): the unpriced ones and those whose
    /// billable counts were lost.
    pub cost_unknown_calls: u64,
}

/// Calls of one outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutcomeLine {
    /// Outcome (snake_case, as stored).
    pub outcome: String,
    /// Calls.
    pub calls: u64,
    /// Percent of the range's calls.
    pub share_pct: f64,
}

/// Error rates.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct ErrorSection {
    /// Every call of the range.
    pub total: ErrorLine,
    /// By model family, most calls first.
    pub by_model: Vec<ErrorLine>,
}

/// Errors of a group of calls.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct ErrorLine {
    /// Model family; `null` when unknown (and for the total).
    pub name: Option<String>,
    /// Calls.
    pub calls: u64,
    /// Calls whose outcome is not `success`.
    pub errors: u64,
    /// `errors` in percent of `calls`.
    pub error_pct: f64,
    /// 429 `rate_limited`: your own quota.
    pub rate_limited_429: u64,
    /// 429s in percent of `calls`.
    pub rate_limited_pct: f64,
    /// 529 `overloaded`: the platform, for everyone.
    pub overloaded_529: u64,
    /// 529s in percent of `calls`.
    pub overloaded_pct: f64,
    /// Calls with any overload signal (529, mid-stream overload, 500 "Overloaded").
    pub overload_signals: u64,
}

/// TTFT of one model family.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TtftLine {
    /// Model family; `null` when unknown.
    pub name: Option<String>,
    /// Calls with a measured TTFT (streams).
    pub samples: u64,
    /// Median, ms.
    pub p50_ms: f64,
    /// 90th percentile, ms.
    pub p90_ms: f64,
    /// 95th percentile, ms.
    pub p95_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// `p95_ms` above the target.
    pub above_target: bool,
}

/// Requests of one UTC day and quota key against the tier's RPD.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RpdLine {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    /// Organization id, else tenant; `null` when neither is known.
    pub quota_key: Option<String>,
    /// `organization`, `tenant` or `none`.
    pub quota_kind: &'static str,
    /// Model family; `null` when unknown.
    pub model_family: Option<String>,
    /// Requests (every HTTP call, retries too).
    pub requests: u64,
    /// Of which 429s.
    pub rate_limited: u64,
    /// The tier's RPD.
    pub limit: u64,
    /// `requests` in percent of `limit`.
    pub used_pct: f64,
    /// At least 80 % used.
    pub near_limit: bool,
}

/// A model id without a price.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnpricedLine {
    /// The id as sent; `null` when unknown.
    pub model: Option<String>,
    /// Its family; `null` when unknown.
    pub model_family: Option<String>,
    /// Calls with cost `NULL` flagged unpriced.
    pub calls: u64,
}

/// Calls to a retired (or not found) model id.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetiredLine {
    /// The id as sent; `null` when unknown.
    pub model: Option<String>,
    /// Its family; `null` when unknown.
    pub model_family: Option<String>,
    /// Calls.
    pub calls: u64,
    /// Of which 404 `not_found`.
    pub not_found_calls: u64,
    /// The known retired family it belongs to, if any.
    pub retired_family: Option<String>,
}

/// The share `part / whole` in percent (0 for an empty whole).
pub fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

fn name(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// The rows of a range, as the queries return them.
#[derive(Debug, Clone, Default)]
pub struct Rows {
    /// Cost, calls and outcomes.
    pub facts: Vec<FactRow>,
    /// TTFT quantiles.
    pub ttft: Vec<TtftRow>,
    /// Requests per day.
    pub daily: Vec<DailyRow>,
    /// Per model id.
    pub models: Vec<ModelRow>,
}

/// Runs the queries of `opts` on `source` and assembles the report. An empty
/// range runs only the first query.
pub async fn build(source: &Source, opts: &Options) -> anyhow::Result<Report> {
    let plan = query::plan(opts.range);
    let tenant = opts.tenant.as_deref();
    let mut rows = Rows::default();
    if let Some(sql) = query::facts_sql(&plan, tenant.is_some()) {
        rows.facts = source.fetch("cost and outcomes", &sql, tenant).await?;
    }
    if rows.facts.iter().any(|f| f.calls > 0) {
        if let Some(sql) = query::ttft_sql(&plan, tenant.is_some()) {
            rows.ttft = source.fetch("TTFT", &sql, tenant).await?;
        }
        let sql = query::daily_sql(opts.range, tenant.is_some());
        rows.daily = source.fetch("requests per day", &sql, tenant).await?;
        let sql = query::models_sql(opts.range, tenant.is_some());
        rows.models = source.fetch("model ids", &sql, tenant).await?;
    }
    assemble(opts, &source.database, rows)
}

fn parse_money(text: &str) -> anyhow::Result<Decimal> {
    Decimal::from_str(text.trim())
        .or_else(|_| Decimal::from_scientific(text.trim()))
        .map_err(|e| anyhow::anyhow!("ClickHouse returned the cost {text:?}, not a decimal: {e}"))
}

/// Turns the rows into a report (pure: no IO).
pub fn assemble(opts: &Options, database: &str, rows: Rows) -> anyhow::Result<Report> {
    let range = match opts.range {
        Range::All => RangeOut {
            all: true,
            since: None,
            until: None,
        },
        Range::Between { since_ns, until_ns } => RangeOut {
            all: false,
            since: Some(time::format_rfc3339(since_ns)),
            until: Some(time::format_rfc3339(until_ns)),
        },
    };
    let mut total_cost = CostLine::default();
    let mut by_model: BTreeMap<&str, CostLine> = BTreeMap::new();
    let mut by_service: BTreeMap<&str, CostLine> = BTreeMap::new();
    let mut outcomes: BTreeMap<&str, u64> = BTreeMap::new();
    let mut total_err = ErrorLine::default();
    let mut err_by_model: BTreeMap<&str, ErrorLine> = BTreeMap::new();
    for f in &rows.facts {
        let cost = parse_money(&f.cost_usd)?;
        for (line, key) in [
            (&mut total_cost, None),
            (
                by_model.entry(&f.model_family).or_default(),
                Some(&f.model_family),
            ),
            (by_service.entry(&f.service).or_default(), Some(&f.service)),
        ] {
            line.name = key.and_then(|k| name(k));
            line.calls += f.calls;
            line.cost_usd += cost;
            line.unpriced_calls += f.unpriced_calls;
            line.cost_unknown_calls += f.cost_unknown;
        }
        *outcomes.entry(&f.outcome).or_default() += f.calls;
        for (line, key) in [
            (&mut total_err, None),
            (
                err_by_model.entry(&f.model_family).or_default(),
                Some(&f.model_family),
            ),
        ] {
            line.name = key.and_then(|k| name(k));
            line.calls += f.calls;
            if f.outcome != "success" {
                line.errors += f.calls;
            }
            match f.outcome.as_str() {
                "rate_limited" => line.rate_limited_429 += f.calls,
                "overloaded" => line.overloaded_529 += f.calls,
                _ => {}
            }
            line.overload_signals += f.overloads;
        }
    }
    let calls = total_cost.calls;
    let by_cost = |a: &CostLine, b: &CostLine| {
        b.cost_usd
            .cmp(&a.cost_usd)
            .then(b.calls.cmp(&a.calls))
            .then(a.name.cmp(&b.name))
    };
    let mut by_model: Vec<CostLine> = by_model.into_values().collect();
    by_model.sort_by(by_cost);
    let mut by_service: Vec<CostLine> = by_service.into_values().collect();
    by_service.sort_by(by_cost);
    for line in std::iter::once(&mut total_cost)
        .chain(by_model.iter_mut())
        .chain(by_service.iter_mut())
    {
        line.cost_usd = line.cost_usd.normalize();
    }

    let mut outcomes: Vec<OutcomeLine> = outcomes
        .into_iter()
        .map(|(outcome, n)| OutcomeLine {
            outcome: outcome.to_owned(),
            calls: n,
            share_pct: pct(n, calls),
        })
        .collect();
    outcomes.sort_by(|a, b| b.calls.cmp(&a.calls).then(a.outcome.cmp(&b.outcome)));

    let mut err_by_model: Vec<ErrorLine> = err_by_model.into_values().collect();
    err_by_model.sort_by(|a, b| b.calls.cmp(&a.calls).then(a.name.cmp(&b.name)));
    for line in std::iter::once(&mut total_err).chain(err_by_model.iter_mut()) {
        line.error_pct = pct(line.errors, line.calls);
        line.rate_limited_pct = pct(line.rate_limited_429, line.calls);
        line.overloaded_pct = pct(line.overloaded_529, line.calls);
    }

    let ttft = rows
        .ttft
        .iter()
        .filter(|t| t.samples > 0)
        .map(|t| {
            let q = |i: usize| t.ttft_q.get(i).map_or(f64::NAN, |v| f64::from(*v));
            TtftLine {
                name: name(&t.model_family),
                samples: t.samples,
                p50_ms: q(0),
                p90_ms: q(1),
                p95_ms: q(2),
                p99_ms: q(3),
                above_target: q(2) > opts.ttft_target_ms,
            }
        })
        .collect();

    let mut rpd: Vec<RpdLine> = rows
        .daily
        .iter()
        .map(|d| {
            let used_pct = pct(d.requests, opts.rpd_limit);
            RpdLine {
                day: d.day.clone(),
                quota_key: name(&d.quota_key),
                quota_kind: if d.by_org != 0 {
                    "organization"
                } else if d.quota_key.is_empty() {
                    "none"
                } else {
                    "tenant"
                },
                model_family: name(&d.model_family),
                requests: d.requests,
                rate_limited: d.rate_limited,
                limit: opts.rpd_limit,
                used_pct,
                near_limit: used_pct >= 80.0,
            }
        })
        .collect();
    rpd.sort_by(|a, b| {
        a.day
            .cmp(&b.day)
            .then(b.requests.cmp(&a.requests))
            .then(a.quota_key.cmp(&b.quota_key))
            .then(a.model_family.cmp(&b.model_family))
    });

    let mut unpriced_models: Vec<UnpricedLine> = rows
        .models
        .iter()
        .filter(|m| m.unpriced_calls > 0)
        .map(|m| UnpricedLine {
            model: name(&m.model_id),
            model_family: name(&m.family),
            calls: m.unpriced_calls,
        })
        .collect();
    unpriced_models.sort_by(|a, b| b.calls.cmp(&a.calls).then(a.model.cmp(&b.model)));

    let mut retired_models: Vec<RetiredLine> = rows
        .models
        .iter()
        .filter_map(|m| {
            let retired = retired_family(&m.model_id, &m.family, &opts.retired);
            (m.not_found > 0 || retired.is_some()).then(|| RetiredLine {
                model: name(&m.model_id),
                model_family: name(&m.family),
                calls: m.calls,
                not_found_calls: m.not_found,
                retired_family: retired,
            })
        })
        .collect();
    retired_models.sort_by(|a, b| b.calls.cmp(&a.calls).then(a.model.cmp(&b.model)));

    Ok(Report {
        range,
        database: database.to_owned(),
        tenant: opts.tenant.clone(),
        tier: opts.tier.name().to_owned(),
        rpd_limit: opts.rpd_limit,
        ttft_target_ms: opts.ttft_target_ms,
        calls,
        cost: CostSection {
            total: total_cost,
            by_model,
            by_service,
        },
        outcomes,
        errors: ErrorSection {
            total: total_err,
            by_model: err_by_model,
        },
        ttft,
        rpd,
        unpriced_models,
        retired_models,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_dashboard_counts_the_same_retired_families() {
        let panel = include_str!("../../../../deploy/grafana/panels/deprecated_models.sql");
        for family in RETIRED_FAMILIES {
            assert!(
                panel.contains(&format!("'{family}'")),
                "{family} is retired for report but not in the Grafana panel"
            );
        }
    }

    #[test]
    fn retired_models_by_family_or_by_id() {
        let none: &[String] = &[];
        assert_eq!(
            retired_family("claude-3-sonnet-20240229", "claude-3-sonnet", none).as_deref(),
            Some("claude-3-sonnet")
        );
        assert_eq!(
            retired_family("claude-instant-1.2", "claude-instant", none).as_deref(),
            Some("claude-instant")
        );
        for (id, family) in [
            ("claude-2.1", "claude-2"),
            ("claude-2", "claude-2"),
            ("anthropic.claude-v2:1", "claude-2"),
            ("claude-v1", "claude-1"),
            ("claude-1.3", "claude-1"),
            ("anthropic.claude-instant-v1", "claude-instant"),
        ] {
            assert_eq!(
                retired_family(id, "", none).as_deref(),
                Some(family),
                "{id}"
            );
        }
        for (id, family) in [
            ("claude-sonnet-4-5", "claude-sonnet-4-5"),
            ("claude-3-5-haiku-20241022", "claude-3-5-haiku"),
            ("claude-3-haiku-20240307", "claude-3-haiku"),
            ("claude-100k-thing", ""),
            ("", ""),
        ] {
            assert_eq!(retired_family(id, family, none), None, "{id}");
        }
        assert_eq!(
            retired_family(
                "claude-3-7-sonnet-latest",
                "claude-3-7-sonnet",
                &["claude-3-7-sonnet".into()]
            )
            .as_deref(),
            Some("claude-3-7-sonnet")
        );
    }

    fn fact(service: &str, family: &str, outcome: &str, calls: u64, cost: &str) -> FactRow {
        FactRow {
            service: service.into(),
            model_family: family.into(),
            outcome: outcome.into(),
            calls,
            overloads: u64::from(outcome == "overloaded") * calls,
            unpriced_calls: 0,
            cost_usd: cost.into(),
            cost_unknown: 0,
        }
    }

    fn options() -> Options {
        Options {
            range: Range::All,
            tenant: None,
            tier: Tier::One,
            rpd_limit: 1_000,
            ttft_target_ms: 2_000.0,
            retired: Vec::new(),
        }
    }

    #[test]
    fn assembles_exact_sums_rates_and_flags() {
        let rows = Rows {
            facts: vec![
                fact(
                    "a",
                    "claude-sonnet-4-5",
                    "success",
                    7,
                    "0.100000000000000001",
                ),
                fact("b", "claude-sonnet-4-5", "rate_limited", 2, "0"),
                fact("b", "claude-sonnet-4-5", "overloaded", 1, "0"),
                fact("b", "", "success", 2, "0.2"),
            ],
            ttft: vec![TtftRow {
                model_family: "claude-sonnet-4-5".into(),
                samples: 3,
                ttft_q: vec![100.0, 1_900.0, 2_100.0, 2_500.0],
            }],
            daily: vec![DailyRow {
                day: "2026-11-23".into(),
                quota_key: "org".into(),
                by_org: 1,
                model_family: "claude-sonnet-4-5".into(),
                requests: 850,
                rate_limited: 2,
            }],
            models: vec![
                ModelRow {
                    model_id: "claude-2.1".into(),
                    family: String::new(),
                    calls: 2,
                    not_found: 0,
                    unpriced_calls: 2,
                },
                ModelRow {
                    model_id: "claude-sonnet-4-5".into(),
                    family: "claude-sonnet-4-5".into(),
                    calls: 10,
                    not_found: 0,
                    unpriced_calls: 0,
                },
            ],
        };
        let r = assemble(&options(), "db", rows).unwrap();
        assert_eq!(r.calls, 12);
        assert_eq!(
            r.cost.total.cost_usd,
            Decimal::from_str("0.300000000000000001").unwrap()
        );
        assert_eq!(r.cost.by_model[0].name, None, "most expensive first");
        assert_eq!(r.cost.by_service.len(), 2);
        assert_eq!(r.errors.total.errors, 3);
        assert_eq!(
            (
                r.errors.total.rate_limited_429,
                r.errors.total.overloaded_529
            ),
            (2, 1)
        );
        assert!((r.errors.by_model[0].error_pct - 30.0).abs() < 1e-9);
        assert_eq!(r.outcomes[0].outcome, "success");
        assert_eq!(r.outcomes[0].calls, 9);
        assert!(r.ttft[0].above_target);
        assert!(r.rpd[0].near_limit && r.rpd[0].quota_kind == "organization");
        assert!((r.rpd[0].used_pct - 85.0).abs() < 1e-9);
        assert_eq!(r.unpriced_models.len(), 1);
        assert_eq!(r.retired_models.len(), 1);
        assert_eq!(
            r.retired_models[0].retired_family.as_deref(),
            Some("claude-2")
        );
        let text = render::text(&r);
        assert!(text.contains("HIGH") && text.contains("ABOVE"), "{text}");
        assert!(
            text.lines().all(|l| l.chars().count() <= 100),
            "fits 100 columns:\n{text}"
        );
    }
}
