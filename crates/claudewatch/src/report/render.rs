//! A [`Report`] as text (aligned tables for a 100-column terminal) or JSON.

use std::fmt::Write as _;

use rust_decimal::{Decimal, RoundingStrategy};

use super::Report;

/// The report as one pretty-printed JSON object (the [`Report`] fields).
pub fn json(report: &Report) -> anyhow::Result<String> {
    let mut text = serde_json::to_string_pretty(report)?;
    text.push('\n');
    Ok(text)
}

/// Money with 6 decimals (display only: JSON keeps the exact value).
pub fn money(d: Decimal) -> String {
    format!(
        "{:.6}",
        d.round_dp_with_strategy(6, RoundingStrategy::MidpointAwayFromZero)
    )
}

/// A percentage with one decimal.
pub fn percent(p: f64) -> String {
    format!("{p:.1}%")
}

/// A count with thousands separators.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let first = match digits.len() % 3 {
        0 => 3.min(digits.len()),
        r => r,
    };
    let (head, mut rest) = digits.split_at(first);
    let mut out = head.to_owned();
    while rest.len() >= 3 {
        out.push(',');
        out.push_str(&rest[..3]);
        rest = &rest[3..];
    }
    out
}

fn ms(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.1}")
    } else {
        "-".into()
    }
}

fn or<'a>(name: &'a Option<String>, unknown: &'a str) -> &'a str {
    name.as_deref().unwrap_or(unknown)
}

/// One column of a [`Table`].
struct Col {
    head: &'static str,
    right: bool,
    max: usize,
}

const fn left(head: &'static str, max: usize) -> Col {
    Col {
        head,
        right: false,
        max,
    }
}

const fn right(head: &'static str) -> Col {
    Col {
        head,
        right: true,
        max: 16,
    }
}

/// Aligned columns: widths from the content, capped per column (longer cells
/// end with `…`), two spaces between columns, a rule under the header and
/// above the total.
struct Table {
    cols: Vec<Col>,
    rows: Vec<Vec<String>>,
    total: Option<Vec<String>>,
}

impl Table {
    fn new(cols: Vec<Col>) -> Table {
        Table {
            cols,
            rows: Vec::new(),
            total: None,
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn write(&self, out: &mut String) {
        let fit = |cell: &str, max: usize| -> String {
            if cell.chars().count() <= max {
                cell.to_owned()
            } else {
                let mut s: String = cell.chars().take(max.saturating_sub(1)).collect();
                s.push('…');
                s
            }
        };
        let all: Vec<Vec<String>> = std::iter::once(
            self.cols
                .iter()
                .map(|c| c.head.to_owned())
                .collect::<Vec<_>>(),
        )
        .chain(self.rows.iter().cloned())
        .chain(self.total.iter().cloned())
        .map(|r| {
            r.iter()
                .zip(&self.cols)
                .map(|(cell, col)| fit(cell, col.max))
                .collect()
        })
        .collect();
        let widths: Vec<usize> = (0..self.cols.len())
            .map(|i| {
                all.iter()
                    .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |out: &mut String, cells: &[String]| {
            let mut text = String::from("  ");
            for (i, col) in self.cols.iter().enumerate() {
                let cell = cells.get(i).map_or("", String::as_str);
                let pad = widths[i].saturating_sub(cell.chars().count());
                if i > 0 {
                    text.push_str("  ");
                }
                if col.right {
                    text.push_str(&" ".repeat(pad));
                    text.push_str(cell);
                } else {
                    text.push_str(cell);
                    text.push_str(&" ".repeat(pad));
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        let rule = |out: &mut String| {
            let width = widths.iter().sum::<usize>() + 2 * widths.len().saturating_sub(1);
            out.push_str("  ");
            out.push_str(&"-".repeat(width));
            out.push('\n');
        };
        let rows = all.len() - 1 - usize::from(self.total.is_some());
        line(out, &all[0]);
        rule(out);
        for r in &all[1..=rows] {
            line(out, r);
        }
        if self.total.is_some() {
            rule(out);
            line(out, &all[rows + 1]);
        }
    }
}

/// The report as text.
pub fn text(r: &Report) -> String {
    let mut out = String::new();
    let range = if r.range.all {
        "all time".to_owned()
    } else {
        format!(
            "{} to {} (UTC)",
            r.range.since.as_deref().map_or("?".into(), short_time),
            r.range.until.as_deref().map_or("?".into(), short_time)
        )
    };
    let tenant = r
        .tenant
        .as_deref()
        .map_or("all tenants".to_owned(), |t| format!("tenant {t:?}"));
    let _ = writeln!(
        out,
        "claudewatch report: {range}, database {}, {tenant}",
        r.database
    );
    if r.calls == 0 {
        let _ = writeln!(
            out,
            "\nNo calls in this range: nothing to report (try a wider --since, or --all)."
        );
        return out;
    }
    let t = &r.cost.total;
    let _ = writeln!(
        out,
        "{} calls; cost {} USD; not in it: {} calls of unknown cost, of which {} unpriced",
        count(r.calls),
        money(t.cost_usd),
        count(t.cost_unknown_calls),
        count(t.unpriced_calls)
    );

    for (title, head, lines, unknown) in [
        (
            "COST BY MODEL (USD)",
            "model",
            &r.cost.by_model,
            "(unknown)",
        ),
        (
            "COST BY SERVICE (USD)",
            "service",
            &r.cost.by_service,
            "(none)",
        ),
    ] {
        let _ = writeln!(out, "\n{title}");
        let mut table = Table::new(vec![
            left(head, 40),
            right("calls"),
            right("cost"),
            right("unpriced"),
            right("cost unknown"),
        ]);
        let cells = |name: &str, l: &super::CostLine| {
            vec![
                name.to_owned(),
                count(l.calls),
                money(l.cost_usd),
                count(l.unpriced_calls),
                count(l.cost_unknown_calls),
            ]
        };
        for l in lines {
            table.row(cells(or(&l.name, unknown), l));
        }
        table.total = Some(cells("total", t));
        table.write(&mut out);
    }
    let _ = writeln!(
        out,
        "  Unpriced calls have no cost and are never counted as 0; \"cost unknown\" also counts\n  \
         calls whose billable tokens were lost (e.g. a stream cut mid-way)."
    );

    let _ = writeln!(out, "\nOUTCOMES");
    let mut table = Table::new(vec![left("outcome", 24), right("calls"), right("share")]);
    for o in &r.outcomes {
        table.row(vec![
            o.outcome.clone(),
            count(o.calls),
            percent(o.share_pct),
        ]);
    }
    table.write(&mut out);

    let _ = writeln!(
        out,
        "\nERROR RATES BY MODEL (429 = your own quota: back off or upgrade; 529 = platform overload)"
    );
    let mut table = Table::new(vec![
        left("model", 24),
        right("calls"),
        right("errors"),
        right("error %"),
        right("429"),
        right("429 %"),
        right("529"),
        right("529 %"),
        right("overload*"),
    ]);
    let cells = |name: &str, l: &super::ErrorLine| {
        vec![
            name.to_owned(),
            count(l.calls),
            count(l.errors),
            percent(l.error_pct),
            count(l.rate_limited_429),
            percent(l.rate_limited_pct),
            count(l.overloaded_529),
            percent(l.overloaded_pct),
            count(l.overload_signals),
        ]
    };
    for l in &r.errors.by_model {
        table.row(cells(or(&l.name, "(unknown)"), l));
    }
    table.total = Some(cells("total", &r.errors.total));
    table.write(&mut out);
    let _ = writeln!(
        out,
        "  * calls with any overload signal: a 529, a stream dying overloaded, a 500 \"Overloaded\"."
    );

    let _ = writeln!(
        out,
        "\nTTFT (streaming calls; target p95 < {} ms)",
        ms(r.ttft_target_ms).trim_end_matches(".0")
    );
    if r.ttft.is_empty() {
        let _ = writeln!(out, "  no call with a measured TTFT");
    } else {
        let mut table = Table::new(vec![
            left("model", 24),
            right("samples"),
            right("p50 ms"),
            right("p95 ms"),
            right("p99 ms"),
            left("p95 vs target", 16),
        ]);
        for l in &r.ttft {
            table.row(vec![
                or(&l.name, "(unknown)").to_owned(),
                count(l.samples),
                ms(l.p50_ms),
                ms(l.p95_ms),
                ms(l.p99_ms),
                if l.above_target { "ABOVE" } else { "ok" }.to_owned(),
            ]);
        }
        table.write(&mut out);
    }

    let _ = writeln!(
        out,
        "\nREQUESTS PER UTC DAY vs tier {} RPD {} (organization, else tenant; whole days)",
        r.tier,
        count(r.rpd_limit)
    );
    let mut table = Table::new(vec![
        left("day", 10),
        left("quota key", 36),
        left("model", 17),
        right("requests"),
        right("429"),
        right("used"),
        left("", 4),
    ]);
    for l in &r.rpd {
        let key = match (l.quota_kind, &l.quota_key) {
            ("tenant", Some(k)) => format!("tenant:{k}"),
            (_, Some(k)) => k.clone(),
            (_, None) => "(none)".into(),
        };
        table.row(vec![
            l.day.clone(),
            key,
            or(&l.model_family, "(unknown)").to_owned(),
            count(l.requests),
            count(l.rate_limited),
            percent(l.used_pct),
            if l.used_pct >= 100.0 {
                "FULL"
            } else if l.near_limit {
                "HIGH"
            } else {
                ""
            }
            .to_owned(),
        ]);
    }
    table.write(&mut out);
    let _ = writeln!(
        out,
        "  HIGH: at least 80 % of the day's RPD used; FULL: all of it (429s follow)."
    );

    let _ = writeln!(out, "\nUNPRICED MODELS (cost NULL, not in the price table)");
    if r.unpriced_models.is_empty() {
        let _ = writeln!(out, "  none");
    } else {
        let mut table = Table::new(vec![
            left("model id", 48),
            left("family", 24),
            right("calls"),
        ]);
        for l in &r.unpriced_models {
            table.row(vec![
                or(&l.model, "(unknown)").to_owned(),
                or(&l.model_family, "(unknown)").to_owned(),
                count(l.calls),
            ]);
        }
        table.write(&mut out);
    }

    let _ = writeln!(
        out,
        "\nCALLS TO RETIRED MODELS (404 not_found by model id, and known retired families)"
    );
    if r.retired_models.is_empty() {
        let _ = writeln!(out, "  none");
    } else {
        let mut table = Table::new(vec![
            left("model id", 40),
            left("family", 18),
            right("calls"),
            right("404"),
            left("retired family", 16),
        ]);
        for l in &r.retired_models {
            table.row(vec![
                or(&l.model, "(unknown)").to_owned(),
                or(&l.model_family, "(unknown)").to_owned(),
                count(l.calls),
                count(l.not_found_calls),
                l.retired_family.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        table.write(&mut out);
    }
    out
}

/// `2026-11-23T08:00:00.123456789Z` to `2026-11-23T08:00:00Z`.
fn short_time(rfc3339: &str) -> String {
    match rfc3339.split_once('.') {
        Some((head, _)) => format!("{head}Z"),
        None => rfc3339.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn numbers() {
        assert_eq!(money(Decimal::from_str("0.0143544").unwrap()), "0.014354");
        assert_eq!(money(Decimal::from_str("0.0000005").unwrap()), "0.000001");
        assert_eq!(money(Decimal::from_str("12").unwrap()), "12.000000");
        assert_eq!(percent(85.04), "85.0%");
        assert_eq!(percent(2.0 / 3.0 * 100.0), "66.7%");
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_000), "1,000");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(short_time("2026-11-23T08:00:00.5Z"), "2026-11-23T08:00:00Z");
    }

    #[test]
    fn tables_align_and_truncate() {
        let mut t = Table::new(vec![left("name", 6), right("n")]);
        t.row(vec!["a".into(), "1".into()]);
        t.row(vec!["abcdefgh".into(), "1,000".into()]);
        t.total = Some(vec!["total".into(), "1,001".into()]);
        let mut out = String::new();
        t.write(&mut out);
        assert_eq!(
            out,
            "  name        n\n  -------------\n  a           1\n  abcde…  1,000\n  -------------\n  total   1,001\n"
        );
    }
}
