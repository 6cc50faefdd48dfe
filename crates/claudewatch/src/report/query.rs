//! The report's queries and the rows they return.
//!
//! A time range is read from the rollups for the whole hours it covers and
//! from `llm_calls` for the partial hours at its edges ([`plan`]), so every
//! figure is exact for any range while the bulk comes from the small tables:
//!
//! | query | tables |
//! |---|---|
//! | [`FactRow`]: calls, overloads, unpriced, cost, unknown cost by service × model family × outcome | `llm_calls_hourly` + edges of `llm_calls` |
//! | [`TtftRow`]: TTFT quantiles by model family | `llm_ttft_hourly` (t-digest states) + states of the edges of `llm_calls` |
//! | [`DailyRow`]: requests and 429s per UTC day, quota key, model family | `llm_requests_daily` (whole days the range touches) |
//! | [`ModelRow`]: calls, 404s, unpriced calls by model id | `llm_calls` (the range) |
//!
//! Money is read as `toString(Decimal)` and parsed exactly by the caller.

use std::time::Duration;

use serde::Deserialize;

use super::time::{format_date, HOUR_NS, SECOND_NS};

/// The time range of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// The whole table.
    All,
    /// `[since_ns, until_ns)`, nanoseconds since the Unix epoch.
    Between {
        /// Inclusive start.
        since_ns: i64,
        /// Exclusive end.
        until_ns: i64,
    },
}

/// Which hours of the rollups a range reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hours {
    /// Every hour.
    All,
    /// Hours starting in `[from_s, to_s)`, seconds since the epoch.
    Span {
        /// First hour (inclusive).
        from_s: i64,
        /// End (exclusive).
        to_s: i64,
    },
}

/// Where a range's figures come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The rollups' whole hours, if any.
    pub hours: Option<Hours>,
    /// Intervals `[from_ns, to_ns)` of `llm_calls` outside those hours.
    pub edges: Vec<(i64, i64)>,
}

/// Splits `range` into whole hours (rollups) and the partial hours at its
/// edges (`llm_calls`).
pub fn plan(range: Range) -> Plan {
    let Range::Between { since_ns, until_ns } = range else {
        return Plan {
            hours: Some(Hours::All),
            edges: Vec::new(),
        };
    };
    if since_ns >= until_ns {
        return Plan {
            hours: None,
            edges: Vec::new(),
        };
    }
    let first_hour = since_ns.div_euclid(HOUR_NS) * HOUR_NS
        + if since_ns.rem_euclid(HOUR_NS) == 0 {
            0
        } else {
            HOUR_NS
        };
    let last_hour = until_ns.div_euclid(HOUR_NS) * HOUR_NS;
    if first_hour >= last_hour {
        return Plan {
            hours: None,
            edges: vec![(since_ns, until_ns)],
        };
    }
    let edges = [(since_ns, first_hour), (last_hour, until_ns)]
        .into_iter()
        .filter(|(a, b)| a < b)
        .collect();
    Plan {
        hours: Some(Hours::Span {
            from_s: first_hour / SECOND_NS,
            to_s: last_hour / SECOND_NS,
        }),
        edges,
    }
}

/// `DateTime('UTC')` holds seconds up to 2106: bounds beyond are clamped.
fn datetime(secs: i64) -> String {
    format!("toDateTime({}, 'UTC')", secs.clamp(0, i64::from(u32::MAX)))
}

fn instant(ns: i64) -> String {
    format!("fromUnixTimestamp64Nano(toInt64({ns}), 'UTC')")
}

fn hours_condition(hours: Hours) -> String {
    match hours {
        Hours::All => "1".into(),
        Hours::Span { from_s, to_s } => format!(
            "h.hour >= {} AND h.hour < {}",
            datetime(from_s),
            datetime(to_s)
        ),
    }
}

fn interval_condition(intervals: &[(i64, i64)]) -> String {
    intervals
        .iter()
        .map(|(a, b)| {
            format!(
                "(c.time_unix_nano >= {} AND c.time_unix_nano < {})",
                instant(*a),
                instant(*b)
            )
        })
        .collect::<Vec<_>>()
        .join(" OR ")
}

fn tenant_condition(alias: &str, tenant: bool) -> String {
    if tenant {
        format!(" AND {alias}.tenant = {{tenant:String}}")
    } else {
        String::new()
    }
}

/// One (service, model family, outcome) of the range.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Deserialize)]
pub struct FactRow {
    /// `service.name` (`''`: unknown).
    pub service: String,
    /// Model family (`''`: unknown).
    pub model_family: String,
    /// Outcome (snake_case).
    pub outcome: String,
    /// Calls.
    pub calls: u64,
    /// Calls flagged as overload (any of the three forms).
    pub overloads: u64,
    /// Calls whose model has no price.
    pub unpriced_calls: u64,
    /// Sum of the known costs, a decimal string.
    pub cost_usd: String,
    /// Calls whose cost is unknown (`NULL`).
    pub cost_unknown: u64,
}

/// The cost, call and outcome facts of a plan.
pub fn facts_sql(plan: &Plan, tenant: bool) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(hours) = plan.hours {
        parts.push(format!(
            "SELECT h.service AS service, h.model_family AS model_family, h.outcome AS outcome, \
             h.calls AS calls, h.overloads AS overloads, h.unpriced_calls AS unpriced_calls, \
             h.cost_usd AS cost_usd, h.cost_unknown AS cost_unknown \
             FROM llm_calls_hourly AS h WHERE {}{}",
            hours_condition(hours),
            tenant_condition("h", tenant)
        ));
    }
    if !plan.edges.is_empty() {
        parts.push(format!(
            "SELECT c.service AS service, c.model_family AS model_family, c.outcome AS outcome, \
             count() AS calls, countIf(c.overload) AS overloads, countIf(c.unpriced) AS unpriced_calls, \
             sum(ifNull(c.cost_usd, toDecimal128(0, 18))) AS cost_usd, \
             countIf(c.cost_usd IS NULL) AS cost_unknown \
             FROM llm_calls AS c WHERE ({}){} GROUP BY service, model_family, outcome",
            interval_condition(&plan.edges),
            tenant_condition("c", tenant)
        ));
    }
    if parts.is_empty() {
        return None;
    }
    Some(format!(
        "SELECT u.service AS service, u.model_family AS model_family, u.outcome AS outcome, \
         toUInt64(sum(u.calls)) AS calls, toUInt64(sum(u.overloads)) AS overloads, \
         toUInt64(sum(u.unpriced_calls)) AS unpriced_calls, toString(sum(u.cost_usd)) AS cost_usd, \
         toUInt64(sum(u.cost_unknown)) AS cost_unknown \
         FROM ({}) AS u GROUP BY service, model_family, outcome \
         ORDER BY service, model_family, outcome",
        parts.join(" UNION ALL ")
    ))
}

/// TTFT quantiles (0.5, 0.9, 0.95, 0.99) of one model family.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Deserialize)]
pub struct TtftRow {
    /// Model family (`''`: unknown).
    pub model_family: String,
    /// Calls with a measured TTFT.
    pub samples: u64,
    /// p50, p90, p95, p99 in milliseconds (t-digest estimates, which
    /// ClickHouse computes in `Float32`).
    pub ttft_q: Vec<f32>,
}

/// TTFT quantiles by model family: the rollup's t-digest states merged with
/// states built from the edges, so the range's quantiles are one digest.
pub fn ttft_sql(plan: &Plan, tenant: bool) -> Option<String> {
    const Q: &str = "0.5, 0.9, 0.95, 0.99";
    let mut parts = Vec::new();
    if let Some(hours) = plan.hours {
        parts.push(format!(
            "SELECT h.model_family AS model_family, toUInt64(h.samples) AS samples, h.ttft_ms AS state \
             FROM llm_ttft_hourly AS h WHERE {}{}",
            hours_condition(hours),
            tenant_condition("h", tenant)
        ));
    }
    if !plan.edges.is_empty() {
        parts.push(format!(
            "SELECT c.model_family AS model_family, count() AS samples, \
             quantilesTDigestState({Q})(assumeNotNull(c.ttft_ms)) AS state \
             FROM llm_calls AS c WHERE c.ttft_ms IS NOT NULL AND ({}){} GROUP BY model_family",
            interval_condition(&plan.edges),
            tenant_condition("c", tenant)
        ));
    }
    if parts.is_empty() {
        return None;
    }
    Some(format!(
        "SELECT t.model_family AS model_family, toUInt64(sum(t.samples)) AS samples, \
         quantilesTDigestMerge({Q})(t.state) AS ttft_q \
         FROM ({}) AS t GROUP BY model_family ORDER BY model_family",
        parts.join(" UNION ALL ")
    ))
}

/// Requests of one UTC day, quota key and model family.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Deserialize)]
pub struct DailyRow {
    /// `YYYY-MM-DD`.
    pub day: String,
    /// The organization id, else the tenant (`''`: neither known).
    pub quota_key: String,
    /// 1 when `quota_key` is an organization id.
    pub by_org: u8,
    /// Model family (`''`: unknown).
    pub model_family: String,
    /// Requests (every HTTP call counts, retries too).
    pub requests: u64,
    /// Of which 429s.
    pub rate_limited: u64,
}

/// Requests per UTC day of every day `range` touches (whole days: RPD is a
/// daily quota), per quota key (organization, else tenant) and model family.
pub fn daily_sql(range: Range, tenant: bool) -> String {
    let days = match range {
        Range::All => "1".to_owned(),
        Range::Between { since_ns, until_ns } => format!(
            "d.day >= toDate('{}') AND d.day <= toDate('{}')",
            format_date(since_ns),
            format_date((until_ns - 1).max(since_ns))
        ),
    };
    format!(
        "SELECT toString(d.day) AS day, \
         if(d.organization_id != '', d.organization_id, d.tenant) AS quota_key, \
         toUInt8(d.organization_id != '') AS by_org, d.model_family AS model_family, \
         toUInt64(sum(d.requests)) AS requests, toUInt64(sum(d.rate_limited)) AS rate_limited \
         FROM llm_requests_daily AS d WHERE {days}{} \
         GROUP BY day, quota_key, by_org, model_family ORDER BY day, quota_key, model_family",
        tenant_condition("d", tenant)
    )
}

/// Calls of one model id in the range.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Deserialize)]
pub struct ModelRow {
    /// The model id as sent (`''`: unknown).
    pub model_id: String,
    /// Its family (`''`: unknown).
    pub family: String,
    /// Calls.
    pub calls: u64,
    /// 404 `not_found` calls.
    pub not_found: u64,
    /// Calls flagged unpriced whose cost is `NULL`.
    pub unpriced_calls: u64,
}

/// Calls, 404s and unpriced calls by model id (detail only `llm_calls` has).
pub fn models_sql(range: Range, tenant: bool) -> String {
    let within = match range {
        Range::All => "1".to_owned(),
        Range::Between { since_ns, until_ns } => interval_condition(&[(since_ns, until_ns)]),
    };
    format!(
        "SELECT ifNull(c.model, '') AS model_id, c.model_family AS family, count() AS calls, \
         countIf(c.outcome = 'not_found') AS not_found, \
         countIf(c.unpriced AND c.cost_usd IS NULL) AS unpriced_calls \
         FROM llm_calls AS c WHERE ({within}){} \
         GROUP BY model_id, family ORDER BY model_id, family",
        tenant_condition("c", tenant)
    )
}

/// A ClickHouse database to report on.
pub struct Source {
    /// Client on the database.
    pub client: clickhouse::Client,
    /// The server's URL (for messages).
    pub url: String,
    /// The database (for messages).
    pub database: String,
    /// Longest wait for one query.
    pub timeout: Duration,
}

impl Source {
    /// Runs `sql` (with `{tenant:String}` bound when `tenant` is given) and
    /// returns its rows; errors name the URL, and say when the server is
    /// unreachable or the schema missing.
    pub async fn fetch<T>(
        &self,
        what: &str,
        sql: &str,
        tenant: Option<&str>,
    ) -> anyhow::Result<Vec<T>>
    where
        T: clickhouse::RowOwned + clickhouse::RowRead,
    {
        let mut query = self.client.query(sql);
        if let Some(t) = tenant {
            query = query.param("tenant", t);
        }
        let answer = tokio::time::timeout(self.timeout, query.fetch_all::<T>()).await;
        let Ok(answer) = answer else {
            anyhow::bail!(
                "ClickHouse at {} did not answer within {} s ({what})",
                self.url,
                self.timeout.as_secs_f64()
            );
        };
        answer.map_err(|e| {
            let text = e.to_string();
            match e {
                clickhouse::error::Error::Network(_) | clickhouse::error::Error::TimedOut => {
                    // The innermost cause says it best ("Connection refused").
                    let mut cause: &dyn std::error::Error = &e;
                    while let Some(next) = cause.source() {
                        cause = next;
                    }
                    anyhow::anyhow!("cannot reach ClickHouse at {}: {cause}", self.url)
                }
                _ if ["UNKNOWN_TABLE", "UNKNOWN_DATABASE"]
                    .iter()
                    .any(|code| text.contains(code)) =>
                {
                    anyhow::anyhow!(
                        "database {} at {} has no claudewatch tables (run `claudewatch migrate`): {}",
                        self.database,
                        self.url,
                        text.trim()
                    )
                }
                _ => anyhow::Error::new(e).context(format!(
                    "querying {what} in database {} at {}",
                    self.database, self.url
                )),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = HOUR_NS;

    #[test]
    fn whole_hours_from_rollups_edges_from_detail() {
        let t0 = 1_795_392_000 * SECOND_NS; // 2026-11-23T00:00:00Z
        assert_eq!(
            plan(Range::All),
            Plan {
                hours: Some(Hours::All),
                edges: vec![]
            }
        );
        // 00:30 .. 03:15: hours 01:00..03:00 from the rollups, two edges.
        assert_eq!(
            plan(Range::Between {
                since_ns: t0 + H / 2,
                until_ns: t0 + 3 * H + H / 4
            }),
            Plan {
                hours: Some(Hours::Span {
                    from_s: (t0 + H) / SECOND_NS,
                    to_s: (t0 + 3 * H) / SECOND_NS
                }),
                edges: vec![(t0 + H / 2, t0 + H), (t0 + 3 * H, t0 + 3 * H + H / 4)]
            }
        );
        // Aligned bounds: no edge at all.
        assert_eq!(
            plan(Range::Between {
                since_ns: t0,
                until_ns: t0 + 24 * H
            }),
            Plan {
                hours: Some(Hours::Span {
                    from_s: t0 / SECOND_NS,
                    to_s: (t0 + 24 * H) / SECOND_NS
                }),
                edges: vec![]
            }
        );
        // Within one hour, or across one boundary without a whole hour: detail only.
        for (a, b) in [(t0 + 1, t0 + H - 1), (t0 + H / 2, t0 + H + H / 2)] {
            assert_eq!(
                plan(Range::Between {
                    since_ns: a,
                    until_ns: b
                }),
                Plan {
                    hours: None,
                    edges: vec![(a, b)]
                }
            );
        }
        assert_eq!(
            plan(Range::Between {
                since_ns: t0,
                until_ns: t0
            }),
            Plan {
                hours: None,
                edges: vec![]
            }
        );
    }

    #[test]
    fn sql_has_the_tenant_parameter_only_when_asked() {
        let p = plan(Range::Between {
            since_ns: H / 2,
            until_ns: 5 * H + 1,
        });
        let with = facts_sql(&p, true).unwrap_or_default();
        assert_eq!(with.matches("{tenant:String}").count(), 2, "{with}");
        let without = facts_sql(&p, false).unwrap_or_default();
        assert!(!without.contains("tenant:"), "{without}");
        assert!(facts_sql(
            &plan(Range::Between {
                since_ns: 1,
                until_ns: 1
            }),
            false
        )
        .is_none());
        assert!(ttft_sql(&plan(Range::All), false)
            .unwrap_or_default()
            .contains("quantilesTDigestMerge"));
        assert!(daily_sql(
            Range::Between {
                since_ns: 1_795_392_000 * SECOND_NS,
                until_ns: 1_795_392_000 * SECOND_NS + 24 * H
            },
            false
        )
        .contains("d.day >= toDate('2026-11-23') AND d.day <= toDate('2026-11-23')"));
    }
}
