//! The Grafana dashboards of `deploy/grafana/`.
//!
//! Every panel's SQL (`deploy/grafana/panels/*.sql`) and every variable query
//! runs against the local ClickHouse holding the fixture call records, after
//! the substitutions Grafana and the ClickHouse plugin make (template
//! variables, `$__conditionalAll`, the time macros), and its figures must
//! equal those computed here from the `CallRecord`s: exact counts and decimal
//! costs, t-digest quantiles between the neighbouring samples.
//!
//! Without a server: each dashboard's JSON is checked (unique panel ids, a
//! grid without overlaps, the provisioned data source uid, SQL targets whose
//! `rawSql` equals a panel file, every file used, variables defined), and so
//! are the provisioning files. `CLAUDEWATCH_BLESS_DASHBOARDS=1` copies the
//! panel files into the dashboard JSON instead of failing on a difference.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../../sink/tests/common/mod.rs"]
mod ch;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::str::FromStr;

use claudewatch_model::CallRecord;
use rust_decimal::Decimal;
use serde_json::Value;

/// The uid of the provisioned data source, which every panel must use.
const DATASOURCE_UID: &str = "claudewatch-clickhouse";
/// The plugin's id.
const PLUGIN: &str = "grafana-clickhouse-datasource";
/// The database the test loads (claudewatch's default).
const DATABASE: &str = "claudewatch";
/// The plugin's backend macros this test can expand (`pkg/macros/macros.go`).
const MACROS: &[&str] = &[
    "timeFilter",
    "timeFilter_ms",
    "fromTime",
    "toTime",
    "fromTime_ms",
    "toTime_ms",
    "dateFilter",
    "timeInterval",
    "interval_s",
];
/// Retired model families, as the deprecated-model panel lists them.
const RETIRED_FAMILIES: &[&str] = &[
    "claude-1",
    "claude-instant",
    "claude-2",
    "claude-2-0",
    "claude-2-1",
    "claude-3-sonnet",
    "claude-3-opus",
    "claude-3-5-sonnet",
];
/// SPEC section 3: RPM, TPM and RPD of tiers 1 to 4.
const RPM: [u64; 4] = [50, 1_000, 2_000, 4_000];
const TPM: [u64; 4] = [40_000, 80_000, 160_000, 400_000];
const RPD: [u64; 4] = [1_000, 10_000, 100_000, 500_000];
/// SPEC section 5: the p95 TTFT target in milliseconds.
const TTFT_TARGET_MS: f64 = 2_000.0;

// ---------------------------------------------------------------- files

/// `deploy/grafana/`.
fn grafana_dir() -> PathBuf {
    ch::repo_root().join("deploy/grafana")
}

/// One `panels/*.sql` file.
#[derive(Debug, Clone)]
struct PanelFile {
    /// The file name, e.g. `top_errors.sql`.
    name: String,
    /// The panel it belongs to: the header line `-- Panel: TITLE`.
    title: String,
    /// The header's other comment lines, joined: the panel's description.
    description: String,
    /// The whole file: the panel's `rawSql`.
    sql: String,
}

/// Every panel file, by file name.
fn panel_files() -> BTreeMap<String, PanelFile> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(grafana_dir().join("panels")).expect("read panels/") {
        let path = entry.expect("panels/ entry").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.ends_with(".sql"),
            "panels/ holds only .sql files, found {name}"
        );
        let sql = std::fs::read_to_string(&path).expect("read panel file");
        let mut lines = sql.lines();
        let title = lines
            .next()
            .and_then(|l| l.strip_prefix("-- Panel: "))
            .unwrap_or_else(|| panic!("{name}: the first line must be `-- Panel: TITLE`"))
            .trim()
            .to_owned();
        let description = lines
            .map_while(|l| l.strip_prefix("--"))
            .map(str::trim)
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            !description.is_empty(),
            "{name}: the header needs a description"
        );
        files.insert(
            name.clone(),
            PanelFile {
                name,
                title,
                description,
                sql,
            },
        );
    }
    assert!(!files.is_empty(), "no panel files");
    files
}

/// Every dashboard: its path and its JSON.
fn dashboards() -> Vec<(PathBuf, Value)> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(grafana_dir().join("dashboards"))
        .expect("read dashboards/")
        .map(|e| e.expect("dashboards/ entry").path())
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no dashboards");
    paths
        .into_iter()
        .map(|p| {
            assert_eq!(
                p.extension().and_then(|e| e.to_str()),
                Some("json"),
                "dashboards/ holds only .json files: {}",
                p.display()
            );
            let text = std::fs::read_to_string(&p).expect("read dashboard");
            let json: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", p.display()));
            (p, json)
        })
        .collect()
}

/// The panels of a dashboard, those inside collapsed rows included.
fn all_panels(dash: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dash["panels"].as_array().expect("panels array") {
        out.push(p);
        if let Some(inner) = p["panels"].as_array() {
            out.extend(inner.iter());
        }
    }
    out
}

/// The template variables of a dashboard.
fn variables(dash: &Value) -> &Vec<Value> {
    dash["templating"]["list"]
        .as_array()
        .expect("templating.list array")
}

/// The SQL of a query variable.
fn variable_sql(var: &Value) -> &str {
    var["query"]["rawSql"]
        .as_str()
        .unwrap_or_else(|| panic!("variable {} has no query.rawSql", var["name"]))
}

/// Whether a panel is a row (no query of its own).
fn is_row(panel: &Value) -> bool {
    panel["type"] == "row"
}

// ------------------------------------------- Grafana's and the plugin's substitution

/// A variable's selection.
#[derive(Debug, Clone)]
enum Sel {
    /// "All" (`$__all`): every option the variable's query returned.
    All,
    /// These values.
    Values(Vec<String>),
}

/// What a query is run with: the time range, the interval and the variables.
#[derive(Debug, Clone)]
struct QueryContext {
    /// Range start and end, Unix milliseconds (Grafana's resolution).
    from_ms: i64,
    to_ms: i64,
    /// The panel's interval in seconds (`$__interval_s`).
    interval_s: u64,
    /// Variable name -> (selection, every option of the variable).
    vars: BTreeMap<String, (Sel, Vec<String>)>,
}

impl QueryContext {
    /// The values a variable stands for: the selected ones, or every option for "All".
    fn values(&self, name: &str) -> Option<(bool, Vec<String>)> {
        self.vars.get(name).map(|(sel, options)| match sel {
            Sel::All => (true, options.clone()),
            Sel::Values(v) => (false, v.clone()),
        })
    }
}

/// Splits the arguments of a macro call whose `(` is at `open`: top-level
/// commas separate them. Returns the arguments (untrimmed) and the index
/// just past the closing `)`.
fn macro_args(s: &str, open: usize) -> (Vec<String>, usize) {
    let bytes = s.as_bytes();
    assert_eq!(bytes[open], b'(', "macro call without arguments");
    let mut depth = 0usize;
    let mut quoted = false;
    let mut args = Vec::new();
    let mut start = open + 1;
    for (i, &b) in bytes.iter().enumerate().skip(open) {
        match b {
            b'\'' => quoted = !quoted,
            b'(' if !quoted => depth += 1,
            b')' if !quoted => {
                depth -= 1;
                if depth == 0 {
                    args.push(s[start..i].to_owned());
                    return (args, i + 1);
                }
            }
            b',' if !quoted && depth == 1 => {
                args.push(s[start..i].to_owned());
                start = i + 1;
            }
            _ => {}
        }
    }
    panic!("unbalanced macro call in: {s}");
}

/// The frontend's `$__conditionalAll(condition, $var)`: `1=1` when the
/// variable is "All" (or empty), else the condition (`applyConditionalAll`).
fn apply_conditional_all(sql: &str, ctx: &QueryContext) -> String {
    const MACRO: &str = "$__conditionalAll(";
    let mut sql = sql.to_owned();
    while let Some(at) = sql.rfind(MACRO) {
        let (args, end) = macro_args(&sql, at + MACRO.len() - 1);
        assert_eq!(args.len(), 2, "$__conditionalAll takes 2 arguments: {sql}");
        let name = args[1]
            .trim()
            .trim_start_matches('$')
            .trim_start_matches('{')
            .trim_end_matches('}');
        let (all, values) = ctx
            .values(name)
            .unwrap_or_else(|| panic!("$__conditionalAll on undefined variable {name}"));
        let phrase = if all || values.join(",").is_empty() {
            "1=1".to_owned()
        } else {
            args[0].clone()
        };
        sql.replace_range(at..end, &phrase);
    }
    sql
}

/// Grafana's template variable substitution (`templateSrv.replace`) with the
/// plugin's default format: `$name`, `${name}`, `${name:format}`. Names that
/// are not variables (the plugin's `$__` macros) are left alone.
fn replace_variables(sql: &str, ctx: &QueryContext) -> String {
    let mut out = String::new();
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, format, len) = if let Some(braced) = after.strip_prefix('{') {
            let close = braced.find('}').expect("unclosed ${");
            let inner = &braced[..close];
            let (name, format) = match inner.split_once(':') {
                Some((n, f)) => (n, Some(f)),
                None => (inner, None),
            };
            (name, format, close + 2)
        } else {
            let n = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..n], None, n)
        };
        match ctx.values(name) {
            Some((_, values)) => {
                let multi = matches!(ctx.vars[name].0, Sel::All) || values.len() != 1;
                let text = match format {
                    Some("singlequote") => values
                        .iter()
                        .map(|v| format!("'{}'", v.replace('\'', "\\'")))
                        .collect::<Vec<_>>()
                        .join(","),
                    Some(other) => panic!("variable format {other} not modelled"),
                    // The plugin's format: arrays quoted, a single value raw.
                    None if multi => format!("'{}'", values.join("','")),
                    None => values.concat(),
                };
                out.push_str(&text);
            }
            None => out.push_str(&rest[at..at + 1 + len]),
        }
        rest = &rest[at + 1 + len..];
    }
    out.push_str(rest);
    out
}

/// The plugin backend's macros (`pkg/macros/macros.go`), formatted as it does.
fn expand_macros(sql: &str, ctx: &QueryContext) -> String {
    let from_s = ctx.from_ms.div_euclid(1000);
    let to_s = ctx.to_ms.div_euclid(1000);
    let date = |ms: i64| format_date(ms.div_euclid(1000));
    let mut out = String::new();
    let mut rest = sql.to_owned();
    while let Some(at) = rest.find("$__") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 3..];
        let n = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        let name = after[..n].to_owned();
        let (args, end) = if after[n..].starts_with('(') {
            let (args, end) = macro_args(&rest, at + 3 + n);
            (args.iter().map(|a| a.trim().to_owned()).collect(), end)
        } else {
            (Vec::new(), at + 3 + n)
        };
        let arg = |k: usize| -> &str {
            args.get(k)
                .unwrap_or_else(|| panic!("$__{name} needs an argument"))
        };
        let text = match name.as_str() {
            "fromTime" => format!("toDateTime({from_s})"),
            "toTime" => format!("toDateTime({to_s})"),
            "fromTime_ms" => format!("fromUnixTimestamp64Milli({})", ctx.from_ms),
            "toTime_ms" => format!("fromUnixTimestamp64Milli({})", ctx.to_ms),
            "timeFilter" => format!(
                "{c} >= toDateTime({from_s}) AND {c} <= toDateTime({to_s})",
                c = arg(0)
            ),
            "timeFilter_ms" => format!(
                "{c} >= fromUnixTimestamp64Milli({}) AND {c} <= fromUnixTimestamp64Milli({})",
                ctx.from_ms,
                ctx.to_ms,
                c = arg(0)
            ),
            "dateFilter" => format!(
                "{c} >= toDate('{}') AND {c} <= toDate('{}')",
                date(ctx.from_ms),
                date(ctx.to_ms),
                c = arg(0)
            ),
            "timeInterval" => format!(
                "toStartOfInterval(toDateTime({}), INTERVAL {} second)",
                arg(0),
                ctx.interval_s.max(1)
            ),
            "interval_s" => ctx.interval_s.max(1).to_string(),
            other => panic!("macro $__{other} is not one this test models: {MACROS:?}"),
        };
        out.push_str(&text);
        rest = rest[end..].to_owned();
    }
    out.push_str(&rest);
    out
}

/// What reaches ClickHouse: the frontend's substitutions, then the backend's.
fn interpolate(sql: &str, ctx: &QueryContext) -> String {
    let sql = apply_conditional_all(sql, ctx);
    let sql = replace_variables(&sql, ctx);
    expand_macros(&sql, ctx)
}

// ---------------------------------------------------------------- time

/// The UTC calendar date of a day number since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `YYYY-MM-DD` of a Unix second, as ClickHouse prints a `Date`.
fn format_date(secs: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DD hh:mm:ss` of a Unix second, as ClickHouse prints a UTC `DateTime`.
fn format_datetime(secs: i64) -> String {
    let s = secs.rem_euclid(86_400);
    format!(
        "{} {:02}:{:02}:{:02}",
        format_date(secs),
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

/// `YYYY-MM-DD hh:mm:ss.nnnnnnnnn`, as ClickHouse prints a UTC `DateTime64(9)`.
fn format_datetime_ns(ns: u64) -> String {
    format!(
        "{}.{:09}",
        format_datetime((ns / 1_000_000_000) as i64),
        ns % 1_000_000_000
    )
}

// ---------------------------------------------------------------- the records

/// A call record as the panels see it (`''` for a missing sort-key value).
#[derive(Debug, Clone)]
struct Call {
    /// Start, Unix seconds and nanoseconds.
    secs: i64,
    ns: u64,
    /// Sort-key columns and the strings the panels group by.
    tenant: String,
    service: String,
    family: String,
    model: String,
    organization: String,
    /// The outcome's snake_case name (its serde form).
    outcome: String,
    http_status: Option<u16>,
    error_type: String,
    /// Exact cost, `None` when unknown.
    cost: Option<Decimal>,
    /// Token counts, `None` when unknown.
    input: Option<u64>,
    cache_write: Option<u64>,
    output: Option<u64>,
    overload: bool,
    ttft: Option<f64>,
}

impl Call {
    /// The panel view of a record.
    fn from_record(r: &CallRecord) -> Call {
        let outcome = serde_json::to_value(r.outcome).expect("outcome serialises");
        Call {
            secs: (r.time_unix_nano / 1_000_000_000) as i64,
            ns: r.time_unix_nano,
            tenant: r.tenant.clone().unwrap_or_default(),
            service: r.service.clone().unwrap_or_default(),
            family: r.model_family.clone().unwrap_or_default(),
            model: r.model.clone().unwrap_or_default(),
            organization: r.organization_id.clone().unwrap_or_default(),
            outcome: outcome.as_str().expect("outcome is a string").to_owned(),
            http_status: r.http_status,
            error_type: r.error_type.clone().unwrap_or_default(),
            cost: r.cost_usd,
            input: r.input_tokens,
            cache_write: r.cache_write_tokens,
            output: r.output_tokens,
            overload: r.overload,
            ttft: r.ttft_ms,
        }
    }

    /// The family as the panels label it.
    fn family_label(&self) -> String {
        label(&self.family)
    }

    /// The quota key: organization id, else tenant.
    fn quota_key(&self) -> String {
        [&self.organization, &self.tenant]
            .into_iter()
            .find(|s| !s.is_empty())
            .cloned()
            .unwrap_or_else(|| "(unattributed)".to_owned())
    }

    /// Tokens counted against TPM: uncached input, cache writes, output.
    fn tpm_tokens(&self) -> u64 {
        self.input.unwrap_or(0) + self.cache_write.unwrap_or(0) + self.output.unwrap_or(0)
    }

    /// Whether the deprecated-model panel lists the call.
    fn deprecated(&self) -> bool {
        self.outcome == "not_found"
            || RETIRED_FAMILIES.contains(&self.family.as_str())
            || (self.family.is_empty() && retired_model_id(&self.model))
    }
}

/// `''` shown as `(unknown)`.
fn label(s: &str) -> String {
    if s.is_empty() {
        "(unknown)".to_owned()
    } else {
        s.to_owned()
    }
}

/// A model id the normaliser gives no family but that names a retired model:
/// `claude-instant...`, `claude-1...`, `claude-2...`, `claude-v1`, `claude-v2`.
fn retired_model_id(model: &str) -> bool {
    let m = model.to_ascii_lowercase();
    m.contains("claude-instant")
        || m.match_indices("claude-").any(|(i, _)| {
            let rest = &m[i + "claude-".len()..];
            let rest = rest.strip_prefix('v').unwrap_or(rest);
            let mut chars = rest.chars();
            matches!(chars.next(), Some('1' | '2'))
                && !chars.next().is_some_and(|c| c.is_ascii_digit())
        })
}

/// The fixture records, plus a copy for tenant `acme` a day and two hours
/// later: its streams repeated ten times (enough TTFT samples to tell p90,
/// p95 and p99 apart) with TTFTs 20 to 29 times longer (p95 beyond the 2 s
/// target), and two of its successful calls sent to retired models (one
/// family the normaliser knows, one id it gives no family).
fn test_records() -> Vec<CallRecord> {
    let fixtures = ch::fixture_records();
    assert!(fixtures.len() > 20, "too few fixture records");
    let mut out = fixtures.clone();
    let (mut opus, mut haiku) = (false, false);
    for r in &fixtures {
        let mut c = r.clone();
        c.tenant = Some("acme".into());
        c.time_unix_nano += 26 * 3_600_000_000_000;
        if c.outcome == claudewatch_model::Outcome::Success
            && c.service.as_deref() == Some("claudewatch-fixture-openlit")
        {
            match c.model_family.as_deref() {
                Some("claude-opus-4-1") if !opus => {
                    c.model = Some("claude-3-opus-20240229".into());
                    c.model_family = Some("claude-3-opus".into());
                    opus = true;
                }
                Some("claude-haiku-4-5") if !haiku => {
                    c.model = Some("claude-2.1".into());
                    c.model_family = None;
                    haiku = true;
                }
                _ => {}
            }
        }
        match r.ttft_ms {
            Some(ttft) => {
                for j in 0..10u32 {
                    let mut copy = c.clone();
                    copy.time_unix_nano += u64::from(j) * 1_000_000_000;
                    copy.ttft_ms = Some(ttft * f64::from(20 + j));
                    copy.request_id = copy.request_id.map(|id| format!("{id}-{j}"));
                    out.push(copy);
                }
            }
            None => out.push(c),
        }
    }
    assert!(opus && haiku, "the fixture calls to relabel were not found");
    out
}

// ---------------------------------------------------------------- figures

/// An expected figure.
#[derive(Debug, Clone)]
enum Fig {
    /// Text equal to ClickHouse's (strings, integers, times, `NULL`).
    Exact(String),
    /// A decimal equal in value.
    Dec(Decimal),
    /// A decimal within 1e-18 (a truncated quotient).
    DecQuotient(Option<Decimal>),
    /// A float within a relative 1e-9.
    Approx(f64),
    /// A float in a closed range (a t-digest quantile).
    Within(f64, f64),
}

/// An integer figure.
fn int(n: impl ToString) -> Fig {
    Fig::Exact(n.to_string())
}

/// A JSON value as text: strings bare, `null` as `NULL`.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "NULL".to_owned(),
        Value::Bool(b) => u8::from(*b).to_string(),
        other => other.to_string(),
    }
}

/// A JSON value as a float (numbers, or numbers in strings).
fn float(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().expect("finite number"),
        Value::String(s) => s.parse().unwrap_or_else(|_| panic!("not a number: {s}")),
        other => panic!("not a number: {other}"),
    }
}

/// The rows of a result keyed by the key columns' text (joined by ` | `).
fn keyed(rows: &[Value], keys: &[&str]) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for row in rows {
        let key = keys
            .iter()
            .map(|k| {
                text(
                    row.get(*k)
                        .unwrap_or_else(|| panic!("result has no column {k}: {row}")),
                )
            })
            .collect::<Vec<_>>()
            .join(" | ");
        assert!(
            out.insert(key.clone(), row.clone()).is_none(),
            "duplicate result row for {key}"
        );
    }
    out
}

/// Compares a panel's rows with the expected figures: the same keys, and
/// every value column equal to its figure.
fn compare(
    what: &str,
    rows: &[Value],
    keys: &[&str],
    columns: &[&str],
    expected: &BTreeMap<String, Vec<Fig>>,
) {
    assert!(
        !expected.is_empty(),
        "{what}: the records give this panel nothing to show; the check would be empty"
    );
    let actual = keyed(rows, keys);
    assert_eq!(
        actual.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "{what}: the rows' keys ({}) differ",
        keys.join(", ")
    );
    for (key, figs) in expected {
        let row = &actual[key];
        assert_eq!(figs.len(), columns.len(), "{what}: figures per row");
        for (col, fig) in columns.iter().zip(figs) {
            let got = row
                .get(*col)
                .unwrap_or_else(|| panic!("{what}: no column {col} in {row}"));
            let ok = match fig {
                Fig::Exact(s) => text(got) == *s,
                Fig::Dec(d) => Decimal::from_str(&text(got)).ok() == Some(*d),
                Fig::DecQuotient(None) => got.is_null(),
                Fig::DecQuotient(Some(d)) => Decimal::from_str(&text(got))
                    .is_ok_and(|g| (g - d).abs() <= Decimal::new(1, 18)),
                Fig::Approx(x) => {
                    let g = float(got);
                    (g - x).abs() <= 1e-9 * x.abs().max(1.0)
                }
                Fig::Within(lo, hi) => {
                    let g = float(got);
                    let eps = 1e-9 * hi.abs().max(1.0);
                    g >= lo - eps && g <= hi + eps
                }
            };
            assert!(
                ok,
                "{what}: row [{key}] column {col} is {got}, expected {fig:?}"
            );
        }
    }
}

/// The range a t-digest estimate of quantile `q` of sorted `v` lies in.
/// With few samples every sample is its own centroid and ClickHouse
/// interpolates between the centroids around rank `q n - 1/2`; the exact
/// quantile sits at rank `q (n - 1)`; the range spans the samples around both.
fn around(v: &[f64], q: f64) -> Fig {
    let last = (v.len() - 1) as f64;
    let digest = (q * v.len() as f64 - 0.5).clamp(0.0, last);
    let exact = q * last;
    let lo = digest.min(exact).floor() as usize;
    let hi = digest.max(exact).ceil() as usize;
    Fig::Within(v[lo], v[hi])
}

/// The exact quantile `q` of sorted `v` (linear interpolation).
fn exact_quantile(v: &[f64], q: f64) -> f64 {
    let pos = q * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

/// Sum of known costs (`NULL` adds nothing, as in the rollup).
fn cost_sum<'a>(calls: impl IntoIterator<Item = &'a Call>) -> Decimal {
    calls.into_iter().filter_map(|c| c.cost).sum()
}

/// Groups calls by a key.
fn group<'a, K: Ord>(calls: &[&'a Call], key: impl Fn(&Call) -> K) -> BTreeMap<K, Vec<&'a Call>> {
    let mut out: BTreeMap<K, Vec<&Call>> = BTreeMap::new();
    for c in calls {
        out.entry(key(c)).or_default().push(c);
    }
    out
}

// ---------------------------------------------------------------- scenarios

/// Variable choices the panels are run with.
#[derive(Debug, Clone)]
struct Scenario {
    /// For the assertion messages.
    name: &'static str,
    /// The `tier` variable, 1 to 4.
    tier: usize,
    /// The `tenant`, `service` and `model` variables.
    tenant: Sel,
    service: Sel,
    model: Sel,
    /// `$__interval_s`.
    interval_s: u64,
}

impl Scenario {
    /// Whether a call passes the tenant, model and (when the panel's table has
    /// the column) service filters.
    fn keeps(&self, c: &Call, has_service: bool) -> bool {
        let ok = |sel: &Sel, v: &str| match sel {
            Sel::All => true,
            Sel::Values(vs) => vs.iter().any(|x| x == v),
        };
        ok(&self.tenant, &c.tenant)
            && ok(&self.model, &c.family)
            && (!has_service || ok(&self.service, &c.service))
    }
}

/// A selection of these values.
fn values(v: &[&str]) -> Sel {
    Sel::Values(v.iter().map(|s| (*s).to_owned()).collect())
}

/// Runs a query through the `clickhouse` crate, rows as JSON objects
/// (decimals as exact strings).
async fn query(client: &clickhouse::Client, sql: &str) -> Vec<Value> {
    // The crate binds `?` placeholders; `??` is a literal `?`.
    let bytes = client
        .query(&sql.replace('?', "??"))
        .fetch_bytes("JSONEachRow")
        .expect("start query")
        .collect()
        .await
        .unwrap_or_else(|e| panic!("query failed: {e}\n{sql}"));
    String::from_utf8(bytes.to_vec())
        .expect("utf8 result")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSONEachRow line"))
        .collect()
}

/// Every panel's query and every variable's query against the fixture records.
#[test]
fn every_panel_shows_the_figures_of_the_records() {
    let started = std::time::Instant::now();
    let records = test_records();
    let calls: Vec<Call> = records.iter().map(Call::from_record).collect();

    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("dashboards-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create data dir");
    let server = ch::LocalClickHouse::start(&dir, 0);
    ch::load_records(&server, DATABASE, &records);

    let min = calls.iter().map(|c| c.secs).min().unwrap();
    let max = calls.iter().map(|c| c.secs).max().unwrap();
    // Whole hours around the records, as a dashboard range would be.
    let from_ms = (min - min.rem_euclid(3600) - 3600) * 1000;
    let to_ms = (max - max.rem_euclid(3600) + 2 * 3600) * 1000 - 1;

    let (_, dash) = dashboards()
        .into_iter()
        .find(|(p, _)| p.ends_with("claudewatch.json"))
        .expect("dashboards/claudewatch.json");
    let files = panel_files();
    let sql_of = |title: &str| -> String {
        let f = files
            .values()
            .find(|f| f.title == title)
            .unwrap_or_else(|| panic!("no panel file for {title}"));
        f.sql.clone()
    };

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = clickhouse::Client::default()
        .with_url(&server.url)
        .with_database(DATABASE)
        .with_setting("output_format_json_quote_decimals", "1");

    // The variables' options, from their own queries (tenant first: the others
    // cascade from it), checked against the records.
    let mut options: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let all_ctx = |options: &BTreeMap<String, Vec<String>>| QueryContext {
        from_ms,
        to_ms,
        interval_s: 60,
        vars: ["tenant", "service", "model"]
            .iter()
            .map(|n| {
                (
                    (*n).to_owned(),
                    (Sel::All, options.get(*n).cloned().unwrap_or_default()),
                )
            })
            .chain([("tier".to_owned(), (values(&["1"]), vec!["1".to_owned()]))])
            .collect(),
    };
    for var in variables(&dash).iter().filter(|v| v["type"] == "query") {
        let name = var["name"].as_str().unwrap().to_owned();
        let sql = interpolate(variable_sql(var), &all_ctx(&options));
        let rows = rt.block_on(query(&client, &sql));
        let got: Vec<String> = rows
            .iter()
            .map(|r| {
                let obj = r.as_object().expect("row object");
                assert_eq!(obj.len(), 1, "variable {name}: one column expected");
                text(obj.values().next().unwrap())
            })
            .collect();
        let expected: BTreeSet<String> = calls
            .iter()
            .map(|c| match name.as_str() {
                "tenant" => c.tenant.clone(),
                "service" => c.service.clone(),
                "model" => c.family.clone(),
                other => panic!("unexpected query variable {other}"),
            })
            .filter(|v| !v.is_empty())
            .collect();
        assert_eq!(
            got,
            expected.iter().cloned().collect::<Vec<_>>(),
            "variable {name}: options (sorted, distinct, no empty value)"
        );
        options.insert(name, got);
    }
    for n in ["tenant", "service", "model"] {
        assert!(
            options.get(n).is_some_and(|o| !o.is_empty()),
            "variable {n} has no options"
        );
    }

    let scenarios = [
        Scenario {
            name: "everything, tier 2",
            tier: 2,
            tenant: Sel::All,
            service: Sel::All,
            model: Sel::All,
            interval_s: 60,
        },
        Scenario {
            name: "tenant acme, tier 4, 5-minute interval",
            tier: 4,
            tenant: values(&["acme"]),
            service: Sel::All,
            model: Sel::All,
            interval_s: 300,
        },
        Scenario {
            name: "two services and two models, tier 1",
            tier: 1,
            tenant: Sel::All,
            service: values(&[
                "claudewatch-fixture-openlit",
                "claudewatch-fixture-traceloop",
            ]),
            model: values(&["claude-sonnet-4-5", "claude-3-sonnet", "claude-3-opus"]),
            interval_s: 120,
        },
    ];

    let mut checked: BTreeSet<String> = BTreeSet::new();
    for sc in &scenarios {
        let ctx = QueryContext {
            from_ms,
            to_ms,
            interval_s: sc.interval_s,
            vars: [
                ("tier", values(&[&sc.tier.to_string()]), vec![]),
                ("tenant", sc.tenant.clone(), options["tenant"].clone()),
                ("service", sc.service.clone(), options["service"].clone()),
                ("model", sc.model.clone(), options["model"].clone()),
            ]
            .into_iter()
            .map(|(n, s, o)| (n.to_owned(), (s, o)))
            .collect(),
        };
        let mut run = |title: &str| -> Vec<Value> {
            checked.insert(title.to_owned());
            rt.block_on(query(&client, &interpolate(&sql_of(title), &ctx)))
        };
        let with_service: Vec<&Call> = calls.iter().filter(|c| sc.keeps(c, true)).collect();
        let without_service: Vec<&Call> = calls.iter().filter(|c| sc.keeps(c, false)).collect();
        let day = |c: &Call| format_datetime(c.secs - c.secs.rem_euclid(86_400));
        let t = sc.tier - 1;
        let what = |title: &str| format!("{title} [{}]", sc.name);

        // Cost per day by model / by service: exact decimal sums.
        for (title, by, col) in [
            ("Cost per day by model", 0, "family"),
            ("Cost per day by service", 1, "service_name"),
        ] {
            let expected = group(&with_service, |c| {
                let who = if by == 0 {
                    c.family_label()
                } else {
                    label(&c.service)
                };
                format!("{} | {who}", day(c))
            })
            .into_iter()
            .map(|(k, cs)| (k, vec![Fig::Dec(cost_sum(cs))]))
            .collect();
            compare(
                &what(title),
                &run(title),
                &["time", col],
                &["usd"],
                &expected,
            );
        }

        // Cost per request.
        {
            let expected = group(&with_service, Call::family_label)
                .into_iter()
                .map(|(k, cs)| {
                    let priced = cs.iter().filter(|c| c.cost.is_some()).count();
                    let succeeded = cs
                        .iter()
                        .filter(|c| c.cost.is_some() && c.outcome == "success")
                        .count();
                    let usd = cost_sum(cs.iter().copied());
                    let per =
                        |n: usize| (n > 0).then(|| (usd / Decimal::from(n)).trunc_with_scale(18));
                    let figs = vec![
                        int(cs.len()),
                        int(priced),
                        int(cs.len() - priced),
                        Fig::Dec(usd),
                        Fig::DecQuotient(per(priced)),
                        Fig::DecQuotient(per(succeeded)),
                    ];
                    (k, figs)
                })
                .collect();
            compare(
                &what("Cost per request"),
                &run("Cost per request"),
                &["family"],
                &[
                    "requests",
                    "priced_requests",
                    "unknown_cost",
                    "usd",
                    "usd_per_request",
                    "usd_per_success",
                ],
                &expected,
            );
        }

        // Tokens and requests per minute against TPM and RPM.
        let per_minute = group(&with_service, |c| {
            format!(
                "{} | {} | {}",
                format_datetime(c.secs - c.secs.rem_euclid(60)),
                c.quota_key(),
                c.family_label()
            )
        });
        let tpm = per_minute
            .iter()
            .map(|(k, cs)| {
                let tokens: u64 = cs.iter().map(|c| c.tpm_tokens()).sum();
                let pct = (tokens * 100) as f64 / TPM[t] as f64;
                (k.clone(), vec![Fig::Approx(pct)])
            })
            .collect();
        compare(
            &what("Tokens per minute vs tier TPM"),
            &run("Tokens per minute vs tier TPM"),
            &["time", "quota_key", "family"],
            &["pct_of_tpm"],
            &tpm,
        );
        let rpm = per_minute
            .iter()
            .map(|(k, cs)| {
                let pct = (cs.len() * 100) as f64 / RPM[t] as f64;
                (k.clone(), vec![Fig::Approx(pct)])
            })
            .collect();
        compare(
            &what("Requests per minute vs tier RPM"),
            &run("Requests per minute vs tier RPM"),
            &["time", "quota_key", "family"],
            &["pct_of_rpm"],
            &rpm,
        );

        // Requests per UTC day against RPD (no service column in the rollup).
        let rpd = group(&without_service, |c| {
            format!("{} | {}", format_date(c.secs), c.quota_key())
        })
        .into_iter()
        .map(|(k, cs)| {
            let limited = cs.iter().filter(|c| c.outcome == "rate_limited").count();
            let pct = (cs.len() * 100) as f64 / RPD[t] as f64;
            (
                k,
                vec![int(cs.len()), int(limited), int(RPD[t]), Fig::Approx(pct)],
            )
        })
        .collect();
        compare(
            &what("RPD consumption vs tier"),
            &run("RPD consumption vs tier"),
            &["day", "quota_key"],
            &[
                "day_requests",
                "day_rate_limited",
                "rpd_limit",
                "pct_of_rpd",
            ],
            &rpd,
        );

        // 429 vs 529 per minute, in buckets of the interval.
        let step = sc.interval_s as i64;
        let per_min = |n: usize| Fig::Approx((n * 60) as f64 / step as f64);
        let rates = group(&with_service, |c| {
            format_datetime(c.secs - c.secs.rem_euclid(step))
        })
        .into_iter()
        .map(|(k, cs)| {
            let count = |f: &dyn Fn(&Call) -> bool| cs.iter().filter(|c| f(c)).count();
            let figs = vec![
                per_min(count(&|c| c.outcome == "rate_limited")),
                per_min(count(&|c| c.outcome == "overloaded")),
                per_min(count(&|c| c.overload)),
            ];
            (k, figs)
        })
        .collect();
        compare(
            &what("429 rate_limited vs 529 overloaded"),
            &run("429 rate_limited vs 529 overloaded"),
            &["time"],
            &["rate_limited_429", "overloaded_529", "overload_any"],
            &rates,
        );
        let overloads: usize = with_service
            .iter()
            .filter(|c| c.outcome == "overloaded")
            .count();
        assert!(overloads > 0, "{}: no 529 to show", sc.name);

        // TTFT per hour and per model (no service column in the rollup).
        let streams: Vec<&Call> = without_service
            .iter()
            .copied()
            .filter(|c| c.ttft.is_some())
            .collect();
        let sorted = |cs: &[&Call]| {
            let mut v: Vec<f64> = cs.iter().filter_map(|c| c.ttft).collect();
            v.sort_by(f64::total_cmp);
            v
        };
        let hourly_rows = run("TTFT p50 / p95 vs 2 s target");
        let hourly = group(&streams, |c| {
            format_datetime(c.secs - c.secs.rem_euclid(3600))
        })
        .into_iter()
        .map(|(k, cs)| {
            let v = sorted(&cs);
            (k, vec![around(&v, 0.5), around(&v, 0.95)])
        })
        .collect();
        compare(
            &what("TTFT p50 / p95 vs 2 s target"),
            &hourly_rows,
            &["time"],
            &["p50_ms", "p95_ms"],
            &hourly,
        );
        if matches!(sc.tenant, Sel::All) {
            // The fixture hour meets the target, the slowed copy's hour does not.
            let p95s: Vec<f64> = hourly_rows.iter().map(|r| float(&r["p95_ms"])).collect();
            assert!(
                p95s.iter().any(|p| *p < TTFT_TARGET_MS)
                    && p95s.iter().any(|p| *p > TTFT_TARGET_MS),
                "{}: expected one hour within and one beyond the 2 s target: {p95s:?}",
                sc.name
            );
        }
        let by_model_rows = run("TTFT by model");
        let by_model = group(&streams, Call::family_label)
            .into_iter()
            .map(|(k, cs)| {
                let v = sorted(&cs);
                let figs = vec![
                    int(cs.len()),
                    around(&v, 0.5),
                    around(&v, 0.95),
                    around(&v, 0.99),
                ];
                (k, figs)
            })
            .collect::<BTreeMap<_, _>>();
        compare(
            &what("TTFT by model"),
            &by_model_rows,
            &["family"],
            &["samples", "p50_ms", "p95_ms", "p99_ms"],
            &by_model,
        );
        for row in &by_model_rows {
            let fam = text(&row["family"]);
            let v = sorted(&group(&streams, Call::family_label)[&fam]);
            let within = exact_quantile(&v, 0.95) < TTFT_TARGET_MS;
            assert_eq!(
                text(&row["p95_within_target"]),
                u8::from(within).to_string(),
                "{}: TTFT by model, {fam}: p95 within target",
                sc.name
            );
        }

        // Top errors.
        let failed: Vec<&Call> = with_service
            .iter()
            .copied()
            .filter(|c| c.outcome != "success")
            .collect();
        let errors: BTreeMap<String, Vec<Fig>> = group(&failed, |c| {
            format!(
                "{} | {} | {} | {}",
                c.outcome,
                c.http_status
                    .map_or_else(|| "NULL".to_owned(), |s| s.to_string()),
                c.error_type,
                c.family_label()
            )
        })
        .into_iter()
        .map(|(k, cs)| {
            let services: BTreeSet<&str> = cs.iter().map(|c| c.service.as_str()).collect();
            let last = cs.iter().map(|c| c.ns).max().unwrap();
            (
                k,
                vec![
                    int(cs.len()),
                    int(services.len()),
                    Fig::Exact(format_datetime_ns(last)),
                ],
            )
        })
        .collect();
        assert!(errors.len() <= 20, "more error groups than the panel shows");
        let error_rows = run("Top errors");
        compare(
            &what("Top errors"),
            &error_rows,
            &["outcome", "http_status", "api_error", "family"],
            &["calls", "services", "last_seen"],
            &errors,
        );
        let counts: Vec<f64> = error_rows.iter().map(|r| float(&r["calls"])).collect();
        assert!(
            counts.windows(2).all(|w| w[0] >= w[1]),
            "{}: top errors not most frequent first: {counts:?}",
            sc.name
        );

        // Deprecated-model calls.
        let deprecated: Vec<&Call> = with_service
            .iter()
            .copied()
            .filter(|c| c.deprecated())
            .collect();
        let expected: BTreeMap<String, Vec<Fig>> = group(&deprecated, |c| {
            format!("{} | {} | {}", c.service, c.model, c.family_label())
        })
        .into_iter()
        .map(|(k, cs)| {
            let not_found = cs.iter().filter(|c| c.outcome == "not_found").count();
            let last = cs.iter().map(|c| c.ns).max().unwrap();
            (
                k,
                vec![
                    int(cs.len()),
                    int(not_found),
                    Fig::Exact(format_datetime_ns(last)),
                ],
            )
        })
        .collect();
        compare(
            &what("Deprecated-model calls"),
            &run("Deprecated-model calls"),
            &["service", "model_id", "family"],
            &["calls", "not_found_404", "last_seen"],
            &expected,
        );
        // The relabelled calls of every scenario: a retired family without a
        // 404, and (from a service all scenarios but one keep) an id the
        // normaliser gives no family.
        let keys: Vec<&String> = expected.keys().collect();
        assert!(
            keys.iter().any(|k| k.ends_with("| claude-3-opus")),
            "{}: claude-3-opus missing from deprecated calls: {keys:?}",
            sc.name
        );
        if matches!(sc.service, Sel::All) {
            assert!(
                keys.iter().any(|k| k.contains("claude-2.1 | (unknown)")),
                "{}: claude-2.1 missing from deprecated calls: {keys:?}",
                sc.name
            );
        }
    }

    let titles: BTreeSet<String> = files.values().map(|f| f.title.clone()).collect();
    assert_eq!(checked, titles, "every panel file is run and checked");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "dashboards: {} panels x {} scenarios checked in {:.1?}",
        titles.len(),
        scenarios.len(),
        started.elapsed()
    );
}

// ---------------------------------------------------------------- static checks

/// The names of the template variables an SQL text refers to (`$name`,
/// `${name}`, `${name:format}`), macros (`$__...`) excluded.
fn referenced_variables(sql: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in sql.match_indices('$') {
        let after = &sql[i + 1..];
        let after = after.strip_prefix('{').unwrap_or(after);
        let n = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        let name = &after[..n];
        if !name.is_empty() && !name.starts_with("__") {
            out.insert(name.to_owned());
        }
    }
    out
}

/// The `$__` macros an SQL text uses.
fn referenced_macros(sql: &str) -> BTreeSet<String> {
    sql.match_indices("$__")
        .map(|(i, _)| {
            let after = &sql[i + 3..];
            let n = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            after[..n].to_owned()
        })
        .collect()
}

/// The dashboard JSON with every target's `rawSql` and every panel's
/// description taken from its panel file.
fn blessed(mut dash: Value, files: &BTreeMap<String, PanelFile>) -> Value {
    let fix = |panel: &mut Value| {
        let title = panel["title"].as_str().unwrap_or_default().to_owned();
        if let Some(f) = files.values().find(|f| f.title == title) {
            panel["description"] = Value::String(f.description.clone());
            if let Some(targets) = panel.get_mut("targets").and_then(Value::as_array_mut) {
                for t in targets {
                    t["rawSql"] = Value::String(f.sql.clone());
                }
            }
        }
    };
    if let Some(panels) = dash.get_mut("panels").and_then(Value::as_array_mut) {
        for p in panels {
            fix(p);
            if let Some(inner) = p.get_mut("panels").and_then(Value::as_array_mut) {
                inner.iter_mut().for_each(fix);
            }
        }
    }
    dash
}

/// The dashboards' JSON: structure, data source, targets equal to the panel
/// files, every file used, variables defined.
#[test]
fn dashboards_are_consistent_with_the_panel_files() {
    let files = panel_files();
    let bless = std::env::var_os("CLAUDEWATCH_BLESS_DASHBOARDS").is_some();
    let mut used: BTreeMap<String, usize> = BTreeMap::new();
    let mut uids = BTreeSet::new();
    for (path, mut dash) in dashboards() {
        let name = path.display().to_string();
        if bless {
            dash = blessed(dash, &files);
        }
        let canonical = serde_json::to_string_pretty(&dash).unwrap() + "\n";
        if bless {
            std::fs::write(&path, &canonical).expect("write blessed dashboard");
        }
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            canonical,
            "{name}: not in canonical form (sorted keys, 2-space indent); \
             run with CLAUDEWATCH_BLESS_DASHBOARDS=1 to rewrite it"
        );
        let uid = dash["uid"].as_str().expect("dashboard uid");
        assert!(uids.insert(uid.to_owned()), "dashboard uid {uid} repeated");
        assert!(dash["title"].as_str().is_some_and(|t| !t.is_empty()));
        let schema = dash["schemaVersion"].as_u64().expect("schemaVersion");
        assert!(
            (36..=41).contains(&schema),
            "{name}: schemaVersion {schema}"
        );
        assert!(
            dash["id"].is_null(),
            "{name}: provisioned dashboards have id null"
        );

        // Template variables.
        let vars = variables(&dash);
        let defined: BTreeSet<String> = vars
            .iter()
            .map(|v| v["name"].as_str().expect("variable name").to_owned())
            .collect();
        assert_eq!(defined.len(), vars.len(), "{name}: variable names repeated");
        let mut referenced = BTreeSet::new();
        for v in vars {
            let vname = v["name"].as_str().unwrap();
            match v["type"].as_str() {
                Some("custom") => {
                    assert_eq!(vname, "tier", "{name}: unexpected custom variable");
                    assert_eq!(v["query"], "1,2,3,4", "{name}: tier options");
                    let opts: Vec<&str> = v["options"]
                        .as_array()
                        .expect("tier options")
                        .iter()
                        .map(|o| o["value"].as_str().unwrap())
                        .collect();
                    assert_eq!(opts, ["1", "2", "3", "4"], "{name}: tier options");
                    assert_eq!(v["multi"], false, "{name}: tier is single-valued");
                }
                Some("query") => {
                    assert_eq!(v["datasource"]["uid"], DATASOURCE_UID, "{name}: {vname}");
                    assert_eq!(v["datasource"]["type"], PLUGIN, "{name}: {vname}");
                    let sql = variable_sql(v);
                    assert_eq!(v["definition"], sql, "{name}: {vname} definition");
                    assert_eq!(v["includeAll"], true, "{name}: {vname} has All");
                    assert_eq!(v["multi"], true, "{name}: {vname} is multi-valued");
                    assert_eq!(
                        v["current"]["value"],
                        serde_json::json!(["$__all"]),
                        "{name}: {vname} defaults to All"
                    );
                    assert!(
                        v["allValue"].is_null(),
                        "{name}: {vname}: a custom allValue would defeat $__conditionalAll"
                    );
                    referenced.extend(referenced_variables(sql));
                    for m in referenced_macros(sql) {
                        assert!(
                            MACROS.contains(&m.as_str()) || m == "conditionalAll",
                            "{name}: {vname} uses macro $__{m}"
                        );
                    }
                }
                other => panic!("{name}: variable {vname} of type {other:?}"),
            }
        }

        // Panels.
        let panels = all_panels(&dash);
        let mut ids = BTreeSet::new();
        let mut cells: BTreeMap<(u64, u64), u64> = BTreeMap::new();
        for p in &panels {
            let id = p["id"].as_u64().expect("panel id");
            let title = p["title"].as_str().expect("panel title");
            assert!(ids.insert(id), "{name}: panel id {id} repeated ({title})");
            let g = &p["gridPos"];
            let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| {
                g[k].as_u64()
                    .unwrap_or_else(|| panic!("{name}: {title}: gridPos.{k}"))
            });
            assert!(
                w >= 1 && h >= 1 && x + w <= 24,
                "{name}: {title}: gridPos {g}"
            );
            for cx in x..x + w {
                for cy in y..y + h {
                    if let Some(other) = cells.insert((cx, cy), id) {
                        panic!("{name}: panels {other} and {id} ({title}) overlap");
                    }
                }
            }
            if is_row(p) {
                assert!(
                    p.get("targets").is_none(),
                    "{name}: row {title} has targets"
                );
                referenced.extend(referenced_variables(title));
                continue;
            }
            assert_eq!(p["datasource"]["uid"], DATASOURCE_UID, "{name}: {title}");
            assert_eq!(p["datasource"]["type"], PLUGIN, "{name}: {title}");
            let file = files
                .values()
                .find(|f| f.title == title)
                .unwrap_or_else(|| panic!("{name}: panel {title} has no panel file"));
            assert_eq!(
                p["description"], file.description,
                "{name}: {title}: description differs from {}'s header; \
                 run with CLAUDEWATCH_BLESS_DASHBOARDS=1",
                file.name
            );
            let targets = p["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "{name}: {title} has no targets");
            let mut refs = BTreeSet::new();
            for t in targets {
                assert!(
                    refs.insert(t["refId"].as_str().expect("refId")),
                    "{title}: refId"
                );
                assert_eq!(t["datasource"]["uid"], DATASOURCE_UID, "{name}: {title}");
                assert_eq!(t["editorType"], "sql", "{name}: {title}: editorType");
                let (format, query_type) = (t["format"].as_u64(), t["queryType"].as_str());
                assert!(
                    matches!(
                        (format, query_type),
                        (Some(0), Some("timeseries")) | (Some(1), Some("table"))
                    ),
                    "{name}: {title}: format {format:?} with queryType {query_type:?}"
                );
                let wants = if format == Some(0) {
                    "timeseries"
                } else {
                    "table"
                };
                assert_eq!(
                    p["type"], wants,
                    "{name}: {title}: panel type for its format"
                );
                let version = t["pluginVersion"].as_str().expect("pluginVersion");
                let major: u32 = version.split('.').next().unwrap().parse().unwrap();
                assert!(
                    major >= 4,
                    "{name}: {title}: pluginVersion {version} < 4 is migrated as v3"
                );
                let raw = t["rawSql"].as_str().expect("rawSql");
                assert_eq!(
                    raw, file.sql,
                    "{name}: {title}: rawSql differs from panels/{}; \
                     run with CLAUDEWATCH_BLESS_DASHBOARDS=1",
                    file.name
                );
                *used.entry(file.name.clone()).or_default() += 1;
                referenced.extend(referenced_variables(raw));
            }
        }
        let undefined: Vec<&String> = referenced.difference(&defined).collect();
        assert!(
            undefined.is_empty(),
            "{name}: undefined variables {undefined:?}"
        );
        let unused: Vec<&String> = defined.difference(&referenced).collect();
        assert!(unused.is_empty(), "{name}: unused variables {unused:?}");
    }
    for f in files.values() {
        assert_eq!(
            used.get(&f.name).copied().unwrap_or(0),
            1,
            "panels/{} must be the query of exactly one panel",
            f.name
        );
    }
}

/// The panel files: only macros the plugin has, no `$` in comments (Grafana
/// would substitute it there too), no statement separator.
#[test]
fn panel_files_use_only_the_plugins_macros() {
    for f in panel_files().values() {
        for m in referenced_macros(&f.sql) {
            assert!(
                MACROS.contains(&m.as_str()) || m == "conditionalAll",
                "{}: macro $__{m} is not one of the plugin's that this test expands",
                f.name
            );
        }
        for line in f.sql.lines().filter(|l| l.trim_start().starts_with("--")) {
            assert!(!line.contains('$'), "{}: `$` in a comment: {line}", f.name);
        }
        let code = f.sql.lines().filter(|l| !l.trim_start().starts_with("--"));
        assert!(
            !code.clone().any(|l| l.contains(';')),
            "{}: no `;` (one statement)",
            f.name
        );
        assert!(f.sql.ends_with('\n'), "{}: ends with a newline", f.name);
    }
}

/// The substitution modelled here on examples from the plugin's own tests.
#[test]
fn substitution_follows_grafana_and_the_plugin() {
    let ctx = QueryContext {
        from_ms: 1_700_000_000_123,
        to_ms: 1_700_003_600_456,
        interval_s: 30,
        vars: [
            (
                "a".to_owned(),
                (Sel::All, vec!["x".to_owned(), "y".to_owned()]),
            ),
            (
                "b".to_owned(),
                (
                    values(&["o'k", "z"]),
                    vec!["o'k".to_owned(), "z".to_owned()],
                ),
            ),
            ("tier".to_owned(), (values(&["3"]), vec![])),
        ]
        .into_iter()
        .collect(),
    };
    assert_eq!(
        interpolate(
            "WHERE $__conditionalAll(c IN (${a:singlequote}), $a) AND $__conditionalAll(d IN (${b:singlequote}), $b)",
            &ctx
        ),
        r"WHERE 1=1 AND d IN ('o\'k','z')"
    );
    assert_eq!(
        interpolate("[1,2,3][${tier}] $tier $b", &ctx),
        "[1,2,3][3] 3 'o'k','z'"
    );
    assert_eq!(
        interpolate("$__timeFilter(t) $__fromTime $__toTime_ms", &ctx),
        "t >= toDateTime(1700000000) AND t <= toDateTime(1700003600) toDateTime(1700000000) fromUnixTimestamp64Milli(1700003600456)"
    );
    assert_eq!(
        interpolate("$__timeInterval(t) / $__interval_s", &ctx),
        "toStartOfInterval(toDateTime(t), INTERVAL 30 second) / 30"
    );
    assert_eq!(
        interpolate("$__timeFilter_ms(t) $__dateFilter(d)", &ctx),
        "t >= fromUnixTimestamp64Milli(1700000000123) AND t <= fromUnixTimestamp64Milli(1700003600456) \
         d >= toDate('2023-11-14') AND d <= toDate('2023-11-14')"
    );
    assert_eq!(
        format_datetime_ns(1_795_393_612_088_952_249),
        "2026-11-23 00:26:52.088952249"
    );
    assert_eq!(format_date(0), "1970-01-01");
    assert_eq!(format_date(951_782_400), "2000-02-29");
    assert!(retired_model_id("claude-2.1") && retired_model_id("anthropic.claude-v2:1"));
    assert!(retired_model_id("claude-instant-1.2") && !retired_model_id("claude-sonnet-4-5"));
    assert!(!retired_model_id("claude-3-haiku-20240307") && !retired_model_id("claude-10"));
}

// ---------------------------------------------------------------- provisioning

/// The scalars of a small YAML file (block maps and lists of maps, the
/// subset provisioning files use) as `path -> value`, e.g.
/// `datasources[0].jsonData.port -> $CLICKHOUSE_PORT`. Rejects what it does
/// not understand (tabs, odd indentation, lines that are not `key: value`).
fn yaml_scalars(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut items: BTreeMap<String, usize> = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let n = n + 1;
        let content = line.trim_start_matches(' ');
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        assert!(!line.contains('\t'), "line {n}: tab");
        let mut indent = line.len() - content.len();
        assert_eq!(indent % 2, 0, "line {n}: odd indentation");
        while stack.last().is_some_and(|(i, _)| *i >= indent) {
            stack.pop();
        }
        let mut parent = stack.last().map(|(_, p)| p.clone()).unwrap_or_default();
        let mut content = content;
        if let Some(rest) = content.strip_prefix("- ") {
            let k = items.entry(parent.clone()).or_default();
            let item = format!("{parent}[{k}]");
            *k += 1;
            stack.push((indent + 1, item.clone()));
            parent = item;
            indent += 2;
            content = rest;
        }
        let (key, value) = match content.split_once(": ") {
            Some((k, v)) => (k, v.trim()),
            None => (
                content
                    .strip_suffix(':')
                    .unwrap_or_else(|| panic!("line {n}: not `key: value`: {line}")),
                "",
            ),
        };
        assert!(
            !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "line {n}: key {key:?}"
        );
        let path = if parent.is_empty() {
            key.to_owned()
        } else {
            format!("{parent}.{key}")
        };
        if value.is_empty() {
            stack.push((indent, path));
        } else {
            let value = value.trim_matches(|c| c == '\'' || c == '"').to_owned();
            assert!(
                out.insert(path.clone(), value).is_none(),
                "line {n}: {path} repeated"
            );
        }
    }
    out
}

/// The provisioning files: the data source the dashboards use, the file
/// provider, and every environment variable documented in the README.
#[test]
fn provisioning_files_match_the_dashboards() {
    let dir = grafana_dir().join("provisioning");
    let readme = std::fs::read_to_string(grafana_dir().join("README.md")).expect("README.md");

    let ds_text = std::fs::read_to_string(dir.join("datasources/clickhouse.yaml")).unwrap();
    let ds = yaml_scalars(&ds_text);
    let get = |m: &BTreeMap<String, String>, k: &str| -> String {
        m.get(k).cloned().unwrap_or_else(|| panic!("{k} missing"))
    };
    assert_eq!(get(&ds, "apiVersion"), "1");
    assert_eq!(get(&ds, "datasources[0].uid"), DATASOURCE_UID);
    assert_eq!(get(&ds, "datasources[0].type"), PLUGIN);
    assert_eq!(get(&ds, "datasources[0].jsonData.protocol"), "http");
    assert!(!ds.contains_key("datasources[1].uid"), "one data source");
    for key in ["host", "port", "secure", "username", "defaultDatabase"] {
        let v = get(&ds, &format!("datasources[0].jsonData.{key}"));
        assert!(
            v.starts_with("$CLICKHOUSE_"),
            "jsonData.{key} = {v}: from the environment"
        );
    }
    assert!(get(&ds, "datasources[0].secureJsonData.password").starts_with("$CLICKHOUSE_"));
    let env_vars: BTreeSet<&str> = ds.values().filter_map(|v| v.strip_prefix('$')).collect();
    for var in &env_vars {
        assert!(
            readme.contains(&format!("{var}=\"${{{var}:-")),
            "README.md: no localhost default for {var}"
        );
    }
    assert_eq!(env_vars.len(), 6);
    assert!(
        readme.contains("make local-clickhouse"),
        "README: the local server"
    );

    let dash_text = std::fs::read_to_string(dir.join("dashboards/claudewatch.yaml")).unwrap();
    let pv = yaml_scalars(&dash_text);
    assert_eq!(get(&pv, "apiVersion"), "1");
    assert_eq!(get(&pv, "providers[0].type"), "file");
    let path = get(&pv, "providers[0].options.path");
    assert!(
        readme.contains(&format!("deploy/grafana/dashboards:{path}")),
        "README.md must mount the dashboards at {path}"
    );
    assert!(
        readme.contains("deploy/grafana/provisioning:/etc/grafana/provisioning"),
        "README.md must mount the provisioning directory"
    );
}
