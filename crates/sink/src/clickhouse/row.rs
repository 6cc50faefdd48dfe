//! One call record as a row of `llm_calls`: the RowBinary encoding the journal
//! keeps and sends as it is (hand-written, no allocation per row; the columns
//! and types it writes are [`COLUMNS`]), its decoding into [`CallRow`] (a row
//! ClickHouse refused, a row read back), and the way back to a [`CallRecord`].
//!
//! Mapping (see `docs/schema.md`): `tenant`, `service` and `model_family` are
//! sort-key columns and so not `Nullable`: a missing value is `''` (and `''`
//! reads back as `None`). `cost_usd` is `Decimal(38, 18)`: exact for every
//! price-table cost; a cost with more than 18 decimals is rounded half-even
//! to 18 (a billionth of a billionth of a dollar).

use std::collections::BTreeMap;

use claudewatch_model::{Blame, CallRecord, LimitKind, Outcome, Provider};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Decimal places of the `cost_usd` column.
pub const COST_SCALE: u32 = 18;

/// The columns of `llm_calls` in the order [`encode`] writes them, each with
/// the type its bytes are written as (the migration's type; see `header`).
pub const COLUMNS: [(&str, &str); 33] = [
    ("time_unix_nano", "DateTime64(9, 'UTC')"),
    ("tenant", "LowCardinality(String)"),
    ("service", "LowCardinality(String)"),
    ("environment", "LowCardinality(Nullable(String))"),
    ("organization_id", "LowCardinality(Nullable(String))"),
    ("trace_id", "Nullable(String)"),
    ("span_id", "Nullable(String)"),
    ("request_id", "Nullable(String)"),
    ("response_id", "Nullable(String)"),
    ("provider", "LowCardinality(Nullable(String))"),
    ("model", "LowCardinality(Nullable(String))"),
    ("model_family", "LowCardinality(String)"),
    ("stream", "Nullable(Bool)"),
    ("http_status", "Nullable(UInt16)"),
    ("error_type", "LowCardinality(Nullable(String))"),
    ("outcome", "LowCardinality(String)"),
    ("blame", "LowCardinality(Nullable(String))"),
    ("retryable", "Bool"),
    ("overload", "Bool"),
    ("limit_kind", "LowCardinality(Nullable(String))"),
    ("stop_reason", "LowCardinality(Nullable(String))"),
    ("input_tokens", "Nullable(UInt64)"),
    ("cache_read_tokens", "Nullable(UInt64)"),
    ("cache_write_tokens", "Nullable(UInt64)"),
    ("cache_write_1h_tokens", "Nullable(UInt64)"),
    ("output_tokens", "Nullable(UInt64)"),
    ("cost_usd", "Nullable(Decimal(38, 18))"),
    ("unpriced", "Bool"),
    ("ttft_ms", "Nullable(Float64)"),
    ("duration_ms", "Nullable(Float64)"),
    ("retry_attempt", "Nullable(UInt32)"),
    ("source", "LowCardinality(String)"),
    ("attributes", "Map(LowCardinality(String), String)"),
];

/// One row of `llm_calls`, field for field (same names, same order as the table).
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct CallRow {
    /// `DateTime64(9, 'UTC')`: nanoseconds since the epoch.
    pub time_unix_nano: i64,
    /// `''` when the record has none.
    pub tenant: String,
    /// `''` when the record has none.
    pub service: String,
    /// Deployment environment.
    pub environment: Option<String>,
    /// Anthropic organization id.
    pub organization_id: Option<String>,
    /// Trace id (hex).
    pub trace_id: Option<String>,
    /// Span id (hex).
    pub span_id: Option<String>,
    /// The API's request id.
    pub request_id: Option<String>,
    /// The response's message id.
    pub response_id: Option<String>,
    /// anthropic, bedrock or vertex.
    pub provider: Option<String>,
    /// Model id as sent.
    pub model: Option<String>,
    /// `''` when the record has none.
    pub model_family: String,
    /// Streamed or not.
    pub stream: Option<bool>,
    /// HTTP status of the last attempt.
    pub http_status: Option<u16>,
    /// API error type.
    pub error_type: Option<String>,
    /// Outcome name.
    pub outcome: String,
    /// Blame name.
    pub blame: Option<String>,
    /// Whether retrying can help.
    pub retryable: bool,
    /// Any of the overload forms.
    pub overload: bool,
    /// Which limit a 429 names.
    pub limit_kind: Option<String>,
    /// Why generation stopped.
    pub stop_reason: Option<String>,
    /// Uncached input tokens.
    pub input_tokens: Option<u64>,
    /// Cache-read tokens.
    pub cache_read_tokens: Option<u64>,
    /// Cache-write tokens (all TTLs).
    pub cache_write_tokens: Option<u64>,
    /// Cache-write tokens with a 1-hour TTL.
    pub cache_write_1h_tokens: Option<u64>,
    /// Output tokens.
    pub output_tokens: Option<u64>,
    /// `Decimal(38, 18)`: the cost in units of 10^-18 USD.
    pub cost_usd: Option<i128>,
    /// No price for the model.
    pub unpriced: bool,
    /// Time to first token, ms.
    pub ttft_ms: Option<f64>,
    /// Duration, ms.
    pub duration_ms: Option<f64>,
    /// Retries before this attempt.
    pub retry_attempt: Option<u32>,
    /// Instrumentation(s).
    pub source: String,
    /// Unmapped attributes.
    pub attributes: BTreeMap<String, String>,
}

/// [`CallRow`] borrowing its text from the journal's bytes: what the
/// decoder reads before copying.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRowRef<'a> {
    /// `DateTime64(9, 'UTC')`: nanoseconds since the epoch.
    pub time_unix_nano: i64,
    /// `''` when the record has none.
    pub tenant: &'a str,
    /// `''` when the record has none.
    pub service: &'a str,
    /// Deployment environment.
    pub environment: Option<&'a str>,
    /// Anthropic organization id.
    pub organization_id: Option<&'a str>,
    /// Trace id (hex).
    pub trace_id: Option<&'a str>,
    /// Span id (hex).
    pub span_id: Option<&'a str>,
    /// The API's request id.
    pub request_id: Option<&'a str>,
    /// The response's message id.
    pub response_id: Option<&'a str>,
    /// anthropic, bedrock or vertex.
    pub provider: Option<&'a str>,
    /// Model id as sent.
    pub model: Option<&'a str>,
    /// `''` when the record has none.
    pub model_family: &'a str,
    /// Streamed or not.
    pub stream: Option<bool>,
    /// HTTP status of the last attempt.
    pub http_status: Option<u16>,
    /// API error type.
    pub error_type: Option<&'a str>,
    /// Outcome name.
    pub outcome: &'a str,
    /// Blame name.
    pub blame: Option<&'a str>,
    /// Whether retrying can help.
    pub retryable: bool,
    /// Any of the overload forms.
    pub overload: bool,
    /// Which limit a 429 names.
    pub limit_kind: Option<&'a str>,
    /// Why generation stopped.
    pub stop_reason: Option<&'a str>,
    /// Uncached input tokens.
    pub input_tokens: Option<u64>,
    /// Cache-read tokens.
    pub cache_read_tokens: Option<u64>,
    /// Cache-write tokens (all TTLs).
    pub cache_write_tokens: Option<u64>,
    /// Cache-write tokens with a 1-hour TTL.
    pub cache_write_1h_tokens: Option<u64>,
    /// Output tokens.
    pub output_tokens: Option<u64>,
    /// `Decimal(38, 18)`: the cost in units of 10^-18 USD.
    pub cost_usd: Option<i128>,
    /// No price for the model.
    pub unpriced: bool,
    /// Time to first token, ms.
    pub ttft_ms: Option<f64>,
    /// Duration, ms.
    pub duration_ms: Option<f64>,
    /// Retries before this attempt.
    pub retry_attempt: Option<u32>,
    /// Instrumentation(s).
    pub source: &'a str,
    /// Unmapped attributes.
    pub attributes: Attributes<'a>,
}

/// The attributes of a [`CallRowRef`] in the journal's order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Attributes<'a>(pub Vec<(&'a str, &'a str)>);

/// Why a record cannot become a row (it goes to the dead-letter file instead).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowError {
    /// `time_unix_nano` beyond `DateTime64(9)`'s range (year 2262).
    #[error("time_unix_nano {0} is beyond DateTime64(9)'s range")]
    TimeOutOfRange(u64),
    /// A cost beyond `Decimal(38, 18)`'s range.
    #[error("cost_usd {0} is beyond Decimal(38, 18)'s range")]
    CostOutOfRange(String),
    /// Journal bytes that are not rows of this format (corruption or a bug).
    #[error("undecodable row data at byte {0}: {1}")]
    Corrupt(usize, &'static str),
}

/// The cost as a `Decimal(38, 18)` raw value.
pub fn cost_to_raw(cost: Decimal) -> Result<i128, RowError> {
    let mut c = cost;
    if c.scale() > COST_SCALE {
        c = c.round_dp(COST_SCALE);
    }
    let m = c.mantissa();
    let factor = 10i128.pow(COST_SCALE - c.scale());
    m.checked_mul(factor)
        .filter(|v| v.unsigned_abs() < 10u128.pow(38))
        .ok_or_else(|| RowError::CostOutOfRange(cost.to_string()))
}

/// A `Decimal(38, 18)` raw value as a decimal (normalised: no trailing zeros).
pub fn cost_from_raw(raw: i128) -> Decimal {
    // |raw| < 10^38 < 2^127 but Decimal holds 96 bits: split off whole units first.
    let unit = 10i128.pow(COST_SCALE);
    let whole = Decimal::from_i128_with_scale(raw / unit, 0);
    let frac = Decimal::from_i128_with_scale(raw % unit, COST_SCALE);
    (whole + frac).normalize()
}

#[inline]
/// Appends `v` as RowBinary's LEB128 varint.
pub(super) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends `s` as a RowBinary `String` (its length, then its bytes).
#[inline]
pub(super) fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

#[inline]
fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => {
            out.push(0);
            put_str(out, s);
        }
        None => out.push(1),
    }
}

#[inline]
fn put_opt_u64(out: &mut Vec<u8>, v: Option<u64>) {
    match v {
        Some(v) => {
            out.push(0);
            out.extend_from_slice(&v.to_le_bytes());
        }
        None => out.push(1),
    }
}

#[inline]
fn put_opt_f64(out: &mut Vec<u8>, v: Option<f64>) {
    match v {
        Some(v) => {
            out.push(0);
            out.extend_from_slice(&v.to_le_bytes());
        }
        None => out.push(1),
    }
}

/// Appends `r` to `out` as one RowBinary row of `llm_calls`. On error nothing
/// is appended.
pub fn encode(r: &CallRecord, out: &mut Vec<u8>) -> Result<(), RowError> {
    let time =
        i64::try_from(r.time_unix_nano).map_err(|_| RowError::TimeOutOfRange(r.time_unix_nano))?;
    let cost = r.cost_usd.map(cost_to_raw).transpose()?;
    out.extend_from_slice(&time.to_le_bytes());
    put_str(out, r.tenant.as_deref().unwrap_or(""));
    put_str(out, r.service.as_deref().unwrap_or(""));
    put_opt_str(out, r.environment.as_deref());
    put_opt_str(out, r.organization_id.as_deref());
    put_opt_str(out, r.trace_id.as_deref());
    put_opt_str(out, r.span_id.as_deref());
    put_opt_str(out, r.request_id.as_deref());
    put_opt_str(out, r.response_id.as_deref());
    put_opt_str(out, r.provider.map(Provider::as_str));
    put_opt_str(out, r.model.as_deref());
    put_str(out, r.model_family.as_deref().unwrap_or(""));
    match r.stream {
        Some(b) => out.extend_from_slice(&[0, u8::from(b)]),
        None => out.push(1),
    }
    match r.http_status {
        Some(s) => {
            out.push(0);
            out.extend_from_slice(&s.to_le_bytes());
        }
        None => out.push(1),
    }
    put_opt_str(out, r.error_type.as_deref());
    put_str(out, r.outcome.as_str());
    put_opt_str(out, r.blame.map(Blame::as_str));
    out.push(u8::from(r.retryable));
    out.push(u8::from(r.overload));
    put_opt_str(out, r.limit_kind.map(LimitKind::as_str));
    put_opt_str(out, r.stop_reason.as_deref());
    put_opt_u64(out, r.input_tokens);
    put_opt_u64(out, r.cache_read_tokens);
    put_opt_u64(out, r.cache_write_tokens);
    put_opt_u64(out, r.cache_write_1h_tokens);
    put_opt_u64(out, r.output_tokens);
    match cost {
        Some(c) => {
            out.push(0);
            out.extend_from_slice(&c.to_le_bytes());
        }
        None => out.push(1),
    }
    out.push(u8::from(r.unpriced));
    put_opt_f64(out, r.ttft_ms);
    put_opt_f64(out, r.duration_ms);
    match r.retry_attempt {
        Some(v) => {
            out.push(0);
            out.extend_from_slice(&v.to_le_bytes());
        }
        None => out.push(1),
    }
    put_str(out, &r.source);
    put_varint(out, r.attributes.len() as u64);
    for (k, v) in &r.attributes {
        put_str(out, k);
        put_str(out, v);
    }
    Ok(())
}

/// Reads RowBinary rows of `llm_calls`.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RowError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(RowError::Corrupt(self.at, "truncated"))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], RowError> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, RowError> {
        Ok(self.take(1)?[0])
    }
    fn bool(&mut self) -> Result<bool, RowError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(RowError::Corrupt(self.at - 1, "bad bool")),
        }
    }
    fn varint(&mut self) -> Result<u64, RowError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(RowError::Corrupt(self.at, "varint too long"))
    }
    fn string(&mut self) -> Result<&'a str, RowError> {
        let len =
            usize::try_from(self.varint()?).map_err(|_| RowError::Corrupt(self.at, "length"))?;
        let at = self.at;
        let s = self.take(len)?;
        std::str::from_utf8(s).map_err(|_| RowError::Corrupt(at, "string is not UTF-8"))
    }
    /// The Nullable marker: true when a value follows.
    fn present(&mut self) -> Result<bool, RowError> {
        match self.u8()? {
            0 => Ok(true),
            1 => Ok(false),
            _ => Err(RowError::Corrupt(self.at - 1, "bad Nullable marker")),
        }
    }
    fn opt<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, RowError>,
    ) -> Result<Option<T>, RowError> {
        if self.present()? {
            f(self).map(Some)
        } else {
            Ok(None)
        }
    }
    fn row(&mut self) -> Result<CallRowRef<'a>, RowError> {
        Ok(CallRowRef {
            time_unix_nano: i64::from_le_bytes(self.array()?),
            tenant: self.string()?,
            service: self.string()?,
            environment: self.opt(Self::string)?,
            organization_id: self.opt(Self::string)?,
            trace_id: self.opt(Self::string)?,
            span_id: self.opt(Self::string)?,
            request_id: self.opt(Self::string)?,
            response_id: self.opt(Self::string)?,
            provider: self.opt(Self::string)?,
            model: self.opt(Self::string)?,
            model_family: self.string()?,
            stream: self.opt(Self::bool)?,
            http_status: self.opt(|r| Ok(u16::from_le_bytes(r.array()?)))?,
            error_type: self.opt(Self::string)?,
            outcome: self.string()?,
            blame: self.opt(Self::string)?,
            retryable: self.bool()?,
            overload: self.bool()?,
            limit_kind: self.opt(Self::string)?,
            stop_reason: self.opt(Self::string)?,
            input_tokens: self.opt(|r| Ok(u64::from_le_bytes(r.array()?)))?,
            cache_read_tokens: self.opt(|r| Ok(u64::from_le_bytes(r.array()?)))?,
            cache_write_tokens: self.opt(|r| Ok(u64::from_le_bytes(r.array()?)))?,
            cache_write_1h_tokens: self.opt(|r| Ok(u64::from_le_bytes(r.array()?)))?,
            output_tokens: self.opt(|r| Ok(u64::from_le_bytes(r.array()?)))?,
            cost_usd: self.opt(|r| Ok(i128::from_le_bytes(r.array()?)))?,
            unpriced: self.bool()?,
            ttft_ms: self.opt(|r| Ok(f64::from_le_bytes(r.array()?)))?,
            duration_ms: self.opt(|r| Ok(f64::from_le_bytes(r.array()?)))?,
            retry_attempt: self.opt(|r| Ok(u32::from_le_bytes(r.array()?)))?,
            source: self.string()?,
            attributes: {
                let n = self.varint()?;
                let mut pairs = Vec::with_capacity(usize::try_from(n).unwrap_or(0).min(64));
                for _ in 0..n {
                    let k = self.string()?;
                    let v = self.string()?;
                    pairs.push((k, v));
                }
                Attributes(pairs)
            },
        })
    }
}

/// Where each row of `bytes` (written by [`encode`]) ends.
pub fn row_ends(bytes: &[u8]) -> Result<Vec<usize>, RowError> {
    let mut r = Reader { bytes, at: 0 };
    let mut ends = Vec::new();
    while r.at < bytes.len() {
        r.row()?;
        ends.push(r.at);
    }
    Ok(ends)
}

/// Decodes RowBinary rows written by [`encode`], appending them to `out`.
pub fn decode(bytes: &[u8], out: &mut Vec<CallRow>) -> Result<(), RowError> {
    let mut r = Reader { bytes, at: 0 };
    while r.at < bytes.len() {
        out.push(r.row()?.to_owned_row());
    }
    Ok(())
}

impl CallRowRef<'_> {
    /// The same row owning its text.
    pub fn to_owned_row(&self) -> CallRow {
        let text = |s: Option<&str>| s.map(str::to_owned);
        CallRow {
            time_unix_nano: self.time_unix_nano,
            tenant: self.tenant.to_owned(),
            service: self.service.to_owned(),
            environment: text(self.environment),
            organization_id: text(self.organization_id),
            trace_id: text(self.trace_id),
            span_id: text(self.span_id),
            request_id: text(self.request_id),
            response_id: text(self.response_id),
            provider: text(self.provider),
            model: text(self.model),
            model_family: self.model_family.to_owned(),
            stream: self.stream,
            http_status: self.http_status,
            error_type: text(self.error_type),
            outcome: self.outcome.to_owned(),
            blame: text(self.blame),
            retryable: self.retryable,
            overload: self.overload,
            limit_kind: text(self.limit_kind),
            stop_reason: text(self.stop_reason),
            input_tokens: self.input_tokens,
            cache_read_tokens: self.cache_read_tokens,
            cache_write_tokens: self.cache_write_tokens,
            cache_write_1h_tokens: self.cache_write_1h_tokens,
            output_tokens: self.output_tokens,
            cost_usd: self.cost_usd,
            unpriced: self.unpriced,
            ttft_ms: self.ttft_ms,
            duration_ms: self.duration_ms,
            retry_attempt: self.retry_attempt,
            source: self.source.to_owned(),
            attributes: self
                .attributes
                .0
                .iter()
                .map(|&(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        }
    }
}

fn parse_name<T: serde::de::DeserializeOwned>(s: Option<&str>) -> Option<T> {
    s.and_then(|s| serde_json::from_value(serde_json::Value::String(s.to_owned())).ok())
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

impl CallRow {
    /// The row of `r`.
    pub fn from_record(r: &CallRecord) -> Result<CallRow, RowError> {
        let mut buf = Vec::with_capacity(512);
        encode(r, &mut buf)?;
        let mut rows = Vec::with_capacity(1);
        decode(&buf, &mut rows)?;
        rows.pop().ok_or(RowError::Corrupt(0, "no row"))
    }

    /// The call record this row stores (`''` in a sort-key column reads as
    /// `None`; a vocabulary name this build does not know reads as `None`,
    /// or `Unknown` for the outcome).
    pub fn into_record(self) -> CallRecord {
        CallRecord {
            time_unix_nano: self.time_unix_nano.max(0) as u64,
            tenant: non_empty(self.tenant),
            service: non_empty(self.service),
            environment: self.environment,
            organization_id: self.organization_id,
            trace_id: self.trace_id,
            span_id: self.span_id,
            request_id: self.request_id,
            response_id: self.response_id,
            provider: parse_name(self.provider.as_deref()),
            model: self.model,
            model_family: non_empty(self.model_family),
            stream: self.stream,
            http_status: self.http_status,
            error_type: self.error_type,
            outcome: parse_name::<Outcome>(Some(&self.outcome)).unwrap_or(Outcome::Unknown),
            blame: parse_name(self.blame.as_deref()),
            retryable: self.retryable,
            overload: self.overload,
            limit_kind: parse_name(self.limit_kind.as_deref()),
            stop_reason: self.stop_reason,
            input_tokens: self.input_tokens,
            cache_read_tokens: self.cache_read_tokens,
            cache_write_tokens: self.cache_write_tokens,
            cache_write_1h_tokens: self.cache_write_1h_tokens,
            output_tokens: self.output_tokens,
            cost_usd: self.cost_usd.map(cost_from_raw),
            unpriced: self.unpriced,
            ttft_ms: self.ttft_ms,
            duration_ms: self.duration_ms,
            retry_attempt: self.retry_attempt,
            source: self.source,
            attributes: self.attributes.into_iter().collect(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn record() -> CallRecord {
        serde_json::from_str(include_str!("../../testdata/record.json")).unwrap()
    }

    #[test]
    fn a_record_round_trips_through_rowbinary() {
        let mut r = record();
        r.attributes.insert("k", "v é");
        r.limit_kind = Some(LimitKind::OutputTokens);
        r.blame = Some(Blame::Quota);
        r.cost_usd = Some(Decimal::from_str("0.0000000125").unwrap());
        let row = CallRow::from_record(&r).unwrap();
        assert_eq!(row.cost_usd, Some(12_500_000_000));
        assert_eq!(row.clone().into_record(), r);
    }

    #[test]
    fn attributes_decode_as_the_sorted_map_they_were() {
        let mut r = record();
        r.attributes.clear();
        r.attributes.insert("b", "2");
        r.attributes.insert("a", "1 é");
        let mut buf = Vec::new();
        encode(&r, &mut buf).unwrap();
        let mut rows = Vec::new();
        decode(&buf, &mut rows).unwrap();
        assert_eq!(rows, vec![CallRow::from_record(&r).unwrap()]);
        let keys: Vec<&str> = rows[0].attributes.keys().map(String::as_str).collect();
        assert_eq!(keys, ["a", "b"]);
    }

    #[test]
    fn costs_are_exact_and_bounded() {
        for s in [
            "0",
            "0.004875",
            "-1.5",
            "12345678901234567890.123456789012345678",
        ] {
            let d = Decimal::from_str(s).unwrap();
            assert_eq!(cost_from_raw(cost_to_raw(d).unwrap()), d, "{s}");
        }
        assert!(cost_to_raw(Decimal::from_str("100000000000000000000").unwrap()).is_err());
        let rounded = cost_to_raw(Decimal::from_str("0.0000000000000000015").unwrap()).unwrap();
        assert_eq!(rounded, 2);
    }

    #[test]
    fn out_of_range_times_are_refused_without_writing() {
        let mut r = record();
        r.time_unix_nano = u64::MAX;
        let mut buf = vec![7];
        assert!(matches!(
            encode(&r, &mut buf),
            Err(RowError::TimeOutOfRange(_))
        ));
        assert_eq!(buf, vec![7]);
    }

    #[test]
    fn truncated_data_is_an_error() {
        let mut buf = Vec::new();
        encode(&record(), &mut buf).unwrap();
        let mut rows = Vec::new();
        assert!(decode(&buf[..buf.len() - 1], &mut rows).is_err());
    }

    #[test]
    fn the_columns_are_the_rows_fields_in_order() {
        let names: Vec<&str> = COLUMNS.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, <CallRow as clickhouse::Row>::COLUMN_NAMES);
    }

    #[test]
    fn row_ends_finds_each_row_and_refuses_a_torn_one() {
        let mut buf = Vec::new();
        let mut r = record();
        encode(&r, &mut buf).unwrap();
        let first = buf.len();
        r.attributes.insert("k", "v");
        encode(&r, &mut buf).unwrap();
        assert_eq!(row_ends(&buf).unwrap(), vec![first, buf.len()]);
        assert!(row_ends(&buf[..buf.len() - 1]).is_err());
    }
}
