//! `claudewatch report` as a process against the local ClickHouse, loaded
//! with the records of every fixture capture plus synthetic calls for what the
//! fixtures lack (a quota key near its RPD, unpriced and retired models, slow
//! TTFT, a tenant). Every figure of `--format json` is compared with values
//! computed here from the records themselves: exact counts and decimal costs,
//! TTFT quantiles within a rank tolerance; for the whole table, for a range
//! whose bounds fall mid-hour (rollups plus edges), and for one tenant. Also:
//! the text output's sections, an empty range, an unreachable server.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../../sink/tests/common/mod.rs"]
mod ch;

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::str::FromStr;

use claudewatch_model::{CallRecord, Outcome};
use rust_decimal::Decimal;
use serde_json::Value;

const SECOND: u64 = 1_000_000_000;
const HOUR: u64 = 3_600 * SECOND;
const DAY: u64 = 24 * HOUR;
/// 2026-11-20T00:00:00Z.
const NOV_20: u64 = 1_795_132_800 * SECOND;

fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("cw-report-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn report(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_claudewatch"))
        .arg("report")
        .args(["--url", url])
        .args(args)
        .env_remove("CLAUDEWATCH_REPORT_TIER")
        .env_remove("CLAUDEWATCH_REPORT_RPD")
        .env_remove("CLAUDEWATCH_SINK__CLICKHOUSE__DATABASE")
        .output()
        .expect("run claudewatch report")
}

fn json_report(url: &str, args: &[&str]) -> Value {
    let out = report(url, &[args, &["--format", "json"]].concat());
    assert!(
        out.status.success(),
        "report {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The synthetic calls: built from a fixture success, changed field by field.
fn synthetic(template: &CallRecord) -> Vec<CallRecord> {
    let mut out = Vec::new();
    let call = |t: u64, model: Option<&str>, family: Option<&str>| {
        let mut r = template.clone();
        r.time_unix_nano = t;
        r.model = model.map(Into::into);
        r.model_family = family.map(Into::into);
        r.request_id = Some(format!("req_synthetic_{t}"));
        r.response_id = None;
        r.ttft_ms = None;
        r.stream = Some(false);
        r
    };
    // 850 calls of one organization and model on 2026-11-20, 03:00 to 09:50:
    // 85 % of tier 1's RPD. Some 429s and 529s, slow streams (TTFT p95 > 2 s).
    for i in 0..850u64 {
        let mut r = call(
            NOV_20 + 3 * HOUR + i * 29 * SECOND + i,
            Some("claude-haiku-4-5-20251001"),
            Some("claude-haiku-4-5"),
        );
        r.organization_id = Some("org-near-limit".into());
        r.service = Some("batch-worker".into());
        r.cost_usd = Some(Decimal::new(123_456 + i as i64, 10));
        if i % 17 == 0 {
            r.outcome = Outcome::RateLimited;
            r.http_status = Some(429);
            r.cost_usd = Some(Decimal::ZERO);
        } else if i % 23 == 0 {
            r.outcome = Outcome::Overloaded;
            r.http_status = Some(529);
            r.overload = true;
            r.cost_usd = Some(Decimal::ZERO);
        } else if i % 5 == 0 {
            r.stream = Some(true);
            r.ttft_ms = Some(1_000.0 + (i % 97) as f64 * 25.5);
        }
        out.push(r);
    }
    // Tenant t2, no organization: unpriced ids (cost NULL) and retired ones.
    let t2 = NOV_20 + DAY + 12 * HOUR + 34 * 60 * SECOND;
    for (k, (model, family, outcome, unpriced)) in [
        ("claude-2.1", None, Outcome::Success, true),
        ("claude-2.1", None, Outcome::Success, true),
        ("claude-2.1", None, Outcome::Success, true),
        (
            "claude-instant-1.2",
            Some("claude-instant"),
            Outcome::NotFound,
            false,
        ),
        (
            "claude-instant-1.2",
            Some("claude-instant"),
            Outcome::NotFound,
            false,
        ),
        (
            "claude-zeta-9",
            Some("claude-zeta-9"),
            Outcome::Success,
            true,
        ),
        (
            "claude-zeta-9",
            Some("claude-zeta-9"),
            Outcome::Success,
            true,
        ),
        (
            "claude-zeta-9",
            Some("claude-zeta-9"),
            Outcome::Success,
            true,
        ),
        (
            "claude-zeta-9",
            Some("claude-zeta-9"),
            Outcome::Success,
            true,
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let mut r = call(t2 + k as u64 * SECOND, Some(model), family);
        r.tenant = Some("t2".into());
        r.organization_id = None;
        r.service = Some("t2-app".into());
        r.outcome = outcome;
        r.unpriced = unpriced;
        if unpriced {
            r.cost_usd = None;
        } else {
            r.cost_usd = Some(Decimal::ZERO);
            r.http_status = Some(404);
        }
        out.push(r);
    }
    out
}

fn name(s: &Option<String>) -> Option<String> {
    s.clone().filter(|s| !s.is_empty())
}

fn json_name(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

#[derive(Debug, Default, PartialEq)]
struct Cost {
    calls: u64,
    cost: Decimal,
    unpriced: u64,
    unknown: u64,
}

impl Cost {
    fn add(&mut self, r: &CallRecord) {
        self.calls += 1;
        self.cost += r.cost_usd.unwrap_or_default();
        self.unpriced += u64::from(r.unpriced);
        self.unknown += u64::from(r.cost_usd.is_none());
    }

    fn of_json(v: &Value) -> Cost {
        Cost {
            calls: v["calls"].as_u64().unwrap(),
            cost: Decimal::from_str(v["cost_usd"].as_str().expect("cost is a string")).unwrap(),
            unpriced: v["unpriced_calls"].as_u64().unwrap(),
            unknown: v["cost_unknown_calls"].as_u64().unwrap(),
        }
    }
}

#[derive(Debug, Default, PartialEq)]
struct Errors {
    calls: u64,
    errors: u64,
    r429: u64,
    r529: u64,
    overload: u64,
}

impl Errors {
    fn add(&mut self, r: &CallRecord) {
        self.calls += 1;
        self.errors += u64::from(r.outcome != Outcome::Success);
        self.r429 += u64::from(r.outcome == Outcome::RateLimited);
        self.r529 += u64::from(r.outcome == Outcome::Overloaded);
        self.overload += u64::from(r.overload);
    }

    fn of_json(v: &Value) -> Errors {
        let e = Errors {
            calls: v["calls"].as_u64().unwrap(),
            errors: v["errors"].as_u64().unwrap(),
            r429: v["rate_limited_429"].as_u64().unwrap(),
            r529: v["overloaded_529"].as_u64().unwrap(),
            overload: v["overload_signals"].as_u64().unwrap(),
        };
        let pct = |n: u64| n as f64 * 100.0 / e.calls as f64;
        for (field, want) in [
            ("error_pct", pct(e.errors)),
            ("rate_limited_pct", pct(e.r429)),
            ("overloaded_pct", pct(e.r529)),
        ] {
            assert!(
                (v[field].as_f64().unwrap() - want).abs() < 1e-9,
                "{field} of {v}"
            );
        }
        e
    }
}

/// `YYYY-MM-DD` of a time (civil-from-days, independent of the binary's).
fn day_of(ns: u64) -> String {
    let z = (ns / DAY) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The exact quantile at `p` (nearest rank below), `p` clamped to [0, 1].
fn exact_quantile(sorted: &[f64], p: f64) -> f64 {
    let p = p.clamp(0.0, 1.0);
    let i = ((p * sorted.len() as f64) as usize).min(sorted.len() - 1);
    sorted[i]
}

type RpdKey = (String, Option<String>, &'static str, Option<String>);

/// Checks every figure of `report` against `selected` (the calls of the
/// range) and `days` (the calls of the whole UTC days it touches).
fn check(report: &Value, selected: &[&CallRecord], days: &[&CallRecord], rpd_limit: u64) {
    assert!(!selected.is_empty());
    assert_eq!(report["calls"].as_u64(), Some(selected.len() as u64));

    // Cost: total, by model family, by service.
    let mut total = Cost::default();
    let mut by_model: BTreeMap<Option<String>, Cost> = BTreeMap::new();
    let mut by_service: BTreeMap<Option<String>, Cost> = BTreeMap::new();
    for r in selected {
        total.add(r);
        by_model.entry(name(&r.model_family)).or_default().add(r);
        by_service.entry(name(&r.service)).or_default().add(r);
    }
    assert_eq!(Cost::of_json(&report["cost"]["total"]), total);
    for (section, want) in [("by_model", &by_model), ("by_service", &by_service)] {
        let got: BTreeMap<Option<String>, Cost> = report["cost"][section]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| (json_name(&v["name"]), Cost::of_json(v)))
            .collect();
        assert_eq!(&got, want, "cost {section}");
    }

    // Outcomes.
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    for r in selected {
        *outcomes.entry(r.outcome.as_str().to_owned()).or_default() += 1;
    }
    let got: BTreeMap<String, u64> = report["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let n = v["calls"].as_u64().unwrap();
            let share = v["share_pct"].as_f64().unwrap();
            assert!((share - n as f64 * 100.0 / selected.len() as f64).abs() < 1e-9);
            (v["outcome"].as_str().unwrap().to_owned(), n)
        })
        .collect();
    assert_eq!(got, outcomes, "outcomes");

    // Error rates, 429 and 529 apart.
    let mut total = Errors::default();
    let mut by_model: BTreeMap<Option<String>, Errors> = BTreeMap::new();
    for r in selected {
        total.add(r);
        by_model.entry(name(&r.model_family)).or_default().add(r);
    }
    assert_eq!(Errors::of_json(&report["errors"]["total"]), total);
    let got: BTreeMap<Option<String>, Errors> = report["errors"]["by_model"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (json_name(&v["name"]), Errors::of_json(v)))
        .collect();
    assert_eq!(got, by_model, "errors by model");

    // TTFT: sample counts exact, quantiles within ±5 % of rank of the exact ones.
    let mut ttft: BTreeMap<Option<String>, Vec<f64>> = BTreeMap::new();
    for r in selected {
        if let Some(t) = r.ttft_ms {
            ttft.entry(name(&r.model_family)).or_default().push(t);
        }
    }
    let lines = report["ttft"].as_array().unwrap();
    assert_eq!(
        lines.len(),
        ttft.len(),
        "one TTFT line per family with samples"
    );
    for v in lines {
        let family = json_name(&v["name"]);
        let samples = ttft.get_mut(&family).expect("a family with samples");
        samples.sort_by(f64::total_cmp);
        assert_eq!(v["samples"].as_u64(), Some(samples.len() as u64));
        for (field, p) in [("p50_ms", 0.5), ("p95_ms", 0.95)] {
            let got = v[field].as_f64().unwrap();
            let (lo, hi) = (
                exact_quantile(samples, p - 0.05),
                exact_quantile(samples, p + 0.05),
            );
            assert!(
                got >= lo * 0.999 && got <= hi * 1.001,
                "{family:?} {field} = {got}, exact between {lo} and {hi}"
            );
        }
        let p95 = v["p95_ms"].as_f64().unwrap();
        assert_eq!(v["above_target"].as_bool(), Some(p95 > 2_000.0));
    }

    // Requests per UTC day per organization (else tenant) and family.
    let mut rpd: BTreeMap<RpdKey, (u64, u64)> = BTreeMap::new();
    for r in days {
        let (key, kind) = match (name(&r.organization_id), name(&r.tenant)) {
            (Some(org), _) => (Some(org), "organization"),
            (None, Some(t)) => (Some(t), "tenant"),
            (None, None) => (None, "none"),
        };
        let e = rpd
            .entry((day_of(r.time_unix_nano), key, kind, name(&r.model_family)))
            .or_default();
        e.0 += 1;
        e.1 += u64::from(r.outcome == Outcome::RateLimited);
    }
    let got: BTreeMap<RpdKey, (u64, u64)> = report["rpd"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let requests = v["requests"].as_u64().unwrap();
            let used = requests as f64 * 100.0 / rpd_limit as f64;
            assert_eq!(v["limit"].as_u64(), Some(rpd_limit));
            assert!((v["used_pct"].as_f64().unwrap() - used).abs() < 1e-9);
            assert_eq!(v["near_limit"].as_bool(), Some(used >= 80.0));
            let kind = match v["quota_kind"].as_str().unwrap() {
                "organization" => "organization",
                "tenant" => "tenant",
                "none" => "none",
                other => panic!("quota kind {other}"),
            };
            (
                (
                    v["day"].as_str().unwrap().to_owned(),
                    json_name(&v["quota_key"]),
                    kind,
                    json_name(&v["model_family"]),
                ),
                (requests, v["rate_limited"].as_u64().unwrap()),
            )
        })
        .collect();
    assert_eq!(got, rpd, "requests per day");

    // Unpriced model ids: cost NULL and flagged unpriced.
    let mut unpriced: BTreeMap<Option<String>, u64> = BTreeMap::new();
    for r in selected {
        if r.unpriced && r.cost_usd.is_none() {
            *unpriced.entry(name(&r.model)).or_default() += 1;
        }
    }
    let got: BTreeMap<Option<String>, u64> = report["unpriced_models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (json_name(&v["model"]), v["calls"].as_u64().unwrap()))
        .collect();
    assert_eq!(got, unpriced, "unpriced models");

    // Retired: every id with a 404, and the known retired ones, with their calls.
    let mut per_model: BTreeMap<Option<String>, (u64, u64)> = BTreeMap::new();
    for r in selected {
        let e = per_model.entry(name(&r.model)).or_default();
        e.0 += 1;
        e.1 += u64::from(r.outcome == Outcome::NotFound);
    }
    let got: BTreeMap<Option<String>, (u64, u64, Option<String>)> = report["retired_models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                json_name(&v["model"]),
                (
                    v["calls"].as_u64().unwrap(),
                    v["not_found_calls"].as_u64().unwrap(),
                    json_name(&v["retired_family"]),
                ),
            )
        })
        .collect();
    for (model, (calls, not_found)) in &per_model {
        let known = match model.as_deref() {
            Some("claude-2.1") => Some("claude-2"),
            Some("claude-instant-1.2") => Some("claude-instant"),
            Some("claude-3-sonnet-20240229") => Some("claude-3-sonnet"),
            _ => None,
        };
        if *not_found > 0 || known.is_some() {
            assert_eq!(
                got.get(model),
                Some(&(*calls, *not_found, known.map(str::to_owned))),
                "retired {model:?}"
            );
        } else {
            assert!(!got.contains_key(model), "{model:?} is not retired");
        }
    }
    assert!(got.keys().all(|m| per_model.contains_key(m)));
}

#[test]
fn report_figures_equal_the_records() {
    let dir = temp_dir("figures");
    let server = ch::LocalClickHouse::start(&dir.join("ch"), 0);
    let mut records = ch::fixture_records();
    assert!(records.len() >= 40, "fixtures: {}", records.len());
    let template = records
        .iter()
        .find(|r| r.outcome == Outcome::Success && r.cost_usd.is_some() && r.model.is_some())
        .unwrap()
        .clone();
    records.extend(synthetic(&template));
    ch::load_records(&server, "claudewatch", &records);
    let url = server.url.clone();

    // The whole table (default database), tier 1 so one key is near its RPD.
    let all: Vec<&CallRecord> = records.iter().collect();
    let r = json_report(&url, &["--all", "--tier", "1"]);
    assert_eq!(r["range"]["all"], Value::Bool(true));
    assert_eq!(r["database"], "claudewatch");
    check(&r, &all, &all, 1_000);
    let near: Vec<&Value> = r["rpd"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["near_limit"] == Value::Bool(true))
        .collect();
    assert_eq!(near.len(), 1, "the synthetic organization, 85 %");
    assert_eq!(near[0]["quota_key"], "org-near-limit");
    assert!(r["ttft"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v["name"] == "claude-haiku-4-5" && v["above_target"] == Value::Bool(true)));
    assert!(r["unpriced_models"].as_array().unwrap().len() >= 2);

    // Bounds mid-hour: whole hours from the rollups, the edges from llm_calls.
    // RPD counts the whole days the range touches.
    let since = NOV_20 + 4 * HOUR + HOUR / 2; // 2026-11-20T04:30:00Z
    let until = NOV_20 + 3 * DAY + 28 * 60 * SECOND + 30 * SECOND; // 2026-11-23T00:28:30Z
    let r = json_report(
        &url,
        &[
            "--since",
            "2026-11-20T04:30:00Z",
            "--until",
            "2026-11-23T01:28:30+01:00",
        ],
    );
    assert_eq!(r["range"]["since"], "2026-11-20T04:30:00Z");
    assert_eq!(r["range"]["until"], "2026-11-23T00:28:30Z");
    let selected: Vec<&CallRecord> = records
        .iter()
        .filter(|r| (since..until).contains(&r.time_unix_nano))
        .collect();
    let days: Vec<&CallRecord> = records
        .iter()
        .filter(|r| (NOV_20..NOV_20 + 4 * DAY).contains(&r.time_unix_nano))
        .collect();
    assert!(
        selected.len() < records.len() && selected.len() > 500,
        "the range cuts both the synthetic day and the fixtures ({} of {})",
        selected.len(),
        records.len()
    );
    assert!(
        records
            .iter()
            .any(|r| r.time_unix_nano >= until && r.time_unix_nano < NOV_20 + 4 * DAY),
        "fixtures after the end"
    );
    check(&r, &selected, &days, 10_000);

    // One tenant.
    let t2: Vec<&CallRecord> = records
        .iter()
        .filter(|r| r.tenant.as_deref() == Some("t2"))
        .collect();
    let r = json_report(&url, &["--all", "--tenant", "t2"]);
    assert_eq!(r["tenant"], "t2");
    check(&r, &t2, &t2, 10_000);

    // Text: every section, 429 and 529 side by side, flags, 100 columns.
    let out = report(&url, &["--all", "--tier", "1"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "COST BY MODEL (USD)",
        "COST BY SERVICE (USD)",
        "OUTCOMES",
        "ERROR RATES BY MODEL",
        "TTFT",
        "REQUESTS PER UTC DAY vs tier 1 RPD 1,000",
        "UNPRICED MODELS",
        "CALLS TO RETIRED MODELS",
        "ABOVE",
        "claude-zeta-9",
        "claude-instant-1.2",
    ] {
        assert!(text.contains(needle), "{needle:?} missing:\n{text}");
    }
    let header = text
        .lines()
        .find(|l| l.contains("error %"))
        .expect("error table header");
    let (i429, i529) = (header.find(" 429 ").unwrap(), header.find(" 529 ").unwrap());
    assert!(i429 < i529, "429 then 529: {header}");
    let high = text
        .lines()
        .find(|l| l.contains("org-near-limit"))
        .expect("RPD row of the near-limit key");
    assert!(high.contains("85.0%") && high.ends_with("HIGH"), "{high}");
    assert!(
        text.lines().all(|l| l.chars().count() <= 100),
        "fits 100 columns:\n{text}"
    );
    let total_cost: Decimal = records.iter().filter_map(|r| r.cost_usd).sum();
    let shown = format!(
        "cost {:.6} USD",
        total_cost.round_dp_with_strategy(6, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
    );
    assert!(text.contains(&shown), "{shown}:\n{text}");
    println!("{text}");

    // A range that selects nothing: said, exit 0; JSON with 0 calls.
    let empty = ["--since", "2001-01-01", "--until", "2001-01-02"];
    let out = report(&url, &empty);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("No calls in this range"), "{text}");
    let r = json_report(&url, &empty);
    assert_eq!(r["calls"], 0);
    assert_eq!(r["cost"]["by_model"], Value::Array(vec![]));
    assert_eq!(r["rpd"], Value::Array(vec![]));

    // A database without the schema: says to migrate.
    let out = report(&url, &["--all", "--database", "nowhere"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("claudewatch migrate"), "{err}");

    server.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unreachable_clickhouse_is_one_line_with_the_url() {
    // A port nothing listens on: bind one, learn it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let out = report(&url, &["--since", "7d"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("cannot reach ClickHouse at {url}")),
        "{err}"
    );
}

#[test]
fn bad_arguments_are_refused() {
    for (args, needle) in [
        (&["--since", "yesterday"][..], "--since"),
        (&["--since", "1h", "--until", "2h"][..], "must be before"),
        (&["--tier", "enterprise"][..], "--rpd"),
        (&["--all", "--since", "1h"][..], "cannot be used with"),
    ] {
        let out = report("http://127.0.0.1:9", args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
