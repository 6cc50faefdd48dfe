//! Assembling the call record of one merged call: classification, tokens,
//! cost and TTFT.
//!
//! Two phases: everything that only reads the observations is computed from a
//! [`Merged`] view; then the owned strings are moved (not copied) out of the
//! observations into the record.

use rustc_hash::FxHashMap as HashMap;

use claudewatch_model::{CallRecord, Decimal, Outcome};

use crate::classify::{classify, ErrorEvidence};
use crate::merge::{first_text, hex_id, take_identity, Merged};
use crate::model_id::{self, ModelId};
use crate::observation::{Observation, Usage};
use crate::pricing::{BillableTokens, PriceTable};

/// Model ids already normalised in this batch (a handful of distinct ids
/// serve thousands of calls).
#[derive(Debug, Default)]
pub struct ModelCache(HashMap<String, Option<ModelId>>);

impl ModelCache {
    /// The normalised id of `raw`, computed once per distinct spelling.
    pub fn normalize(&mut self, raw: &str) -> Option<&ModelId> {
        if !self.0.contains_key(raw) {
            self.0.insert(raw.to_owned(), model_id::normalize(raw));
        }
        self.0.get(raw).and_then(Option::as_ref)
    }
}

/// Builds the record of one call, consuming its observations' owned fields.
pub fn assemble(
    obs: &mut [Observation],
    group: &[usize],
    prices: &PriceTable,
    tenant: Option<&str>,
    models: &mut ModelCache,
) -> CallRecord {
    let (mut r, order) = {
        let m = Merged::new(obs, group);
        (read_phase(&m, prices, tenant, models), m.order.clone())
    };
    take_identity(obs, &order, &mut r);
    let request_model = first_text(obs, &order, |o| &o.request_model);
    r.model = request_model.or_else(|| first_text(obs, &order, |o| &o.response_model));
    r
}

fn read_phase(
    m: &Merged<'_>,
    prices: &PriceTable,
    tenant: Option<&str>,
    models: &mut ModelCache,
) -> CallRecord {
    let stream = m.stream();
    let c = classify(&ErrorEvidence {
        http_status: m.http_status(),
        api_error_type: m.pick(|o| o.api_error_type.as_deref()),
        exception_type: m.pick(|o| o.exception_type.as_deref()),
        message: m.pick(|o| o.error_message.as_deref()),
        failed: m.failed(),
        stream,
    });

    let response_model = m.pick(|o| o.response_model.as_deref());
    let request_model = m.pick(|o| o.request_model.as_deref());
    let normalized = response_model
        .and_then(|s| models.normalize(s).cloned())
        .or_else(|| request_model.and_then(|s| models.normalize(s).cloned()));
    let has_model = request_model.is_some() || response_model.is_some();

    let usage = Usage {
        input_uncached: m.pick(|o| o.usage.input_uncached),
        cache_read: m.pick(|o| o.usage.cache_read),
        cache_write: m.pick(|o| o.usage.cache_write),
        cache_write_1h: m.pick(|o| o.usage.cache_write_1h),
        output: m.pick(|o| o.usage.output),
    };
    let time_unix_nano = m.start_unix_nano();
    let batch = m.pick(|o| o.batch).unwrap_or(false);
    let family = normalized.as_ref().map(|n| n.family.as_str());
    let (cost_usd, unpriced) = cost(
        c.outcome,
        c.http_status.is_some_and(|s| s >= 400),
        family,
        has_model,
        &usage,
        time_unix_nano,
        batch,
        prices,
    );
    let primary = m.primary();

    let mut r = CallRecord {
        time_unix_nano,
        tenant: tenant.map(str::to_owned),
        service: None,
        environment: None,
        organization_id: None,
        trace_id: primary
            .and_then(|p| p.trace_id)
            .or_else(|| m.pick(|o| o.trace_id))
            .map(|t| hex_id(&t)),
        span_id: primary
            .and_then(|p| p.span_id)
            .or_else(|| m.pick(|o| o.span_id))
            .map(|s| hex_id(&s)),
        request_id: None,
        response_id: None,
        provider: m
            .provider()
            .or_else(|| normalized.as_ref().and_then(|n| n.provider)),
        model: None,
        model_family: normalized.map(|n| n.family),
        stream,
        http_status: c.http_status,
        error_type: c.error_type,
        outcome: c.outcome,
        blame: c.outcome.blame(),
        retryable: c.outcome.retryable(),
        overload: c.overload,
        limit_kind: c.limit_kind,
        stop_reason: None,
        input_tokens: usage.input_uncached,
        cache_read_tokens: usage.cache_read,
        cache_write_tokens: usage.cache_write,
        cache_write_1h_tokens: usage.cache_write_1h,
        output_tokens: usage.output,
        cost_usd,
        unpriced,
        // TTFT exists only for streams, and only from a real measurement.
        ttft_ms: if stream == Some(true) {
            m.ttft().map(|t| round_ms(t.ms))
        } else {
            None
        },
        duration_ms: m.duration_ms().map(round_ms),
        retry_attempt: m.retry_attempt(),
        source: m.source(),
        attributes: Default::default(),
    };
    if r.http_status.is_some_and(|s| s >= 400) {
        // An HTTP error reports no usage: the API bills nothing. (Without an
        // HTTP answer, a timeout or a lost connection, the usage is unknown.)
        for t in [
            &mut r.input_tokens,
            &mut r.cache_read_tokens,
            &mut r.cache_write_tokens,
            &mut r.output_tokens,
        ] {
            if t.is_none() {
                *t = Some(0);
            }
        }
    }
    r
}

/// Cost rules: HTTP errors cost nothing; successes and failed streams pay
/// for what they used; an unknown model is unpriced; an unknown billable
/// count makes the cost unknown (never a made-up 0).
#[allow(clippy::too_many_arguments)]
fn cost(
    outcome: Outcome,
    http_error: bool,
    family: Option<&str>,
    has_model: bool,
    usage: &Usage,
    time_unix_nano: u64,
    batch: bool,
    prices: &PriceTable,
) -> (Option<Decimal>, bool) {
    if http_error {
        return (Some(Decimal::ZERO), false);
    }
    if outcome != Outcome::Success && !usage.any() {
        // No HTTP answer (timeout, lost connection) or an unknown end, and no
        // usage: whether the API billed is unknown.
        return (None, false);
    }
    let Some(family) = family else {
        return (None, has_model);
    };
    let (Some(input), Some(output)) = (usage.input_uncached, usage.output) else {
        return (None, prices.price(family, time_unix_nano).is_none());
    };
    let cache_write = usage.cache_write.unwrap_or(0);
    let tokens = BillableTokens {
        input,
        cache_read: usage.cache_read.unwrap_or(0),
        cache_write,
        cache_write_1h: usage.cache_write_1h.unwrap_or(0).min(cache_write),
        output,
    };
    match prices.cost(family, time_unix_nano, tokens, batch) {
        Some(c) => (Some(c), false),
        None => (None, true),
    }
}

/// Milliseconds to microsecond precision.
fn round_ms(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use crate::observation::{Convention, EvidenceKind, Observation};
    use crate::{records_of, EnrichConfig};
    use claudewatch_model::Outcome;

    fn failed_sdk_span(exception: &str, status: Option<u16>) -> Observation {
        Observation {
            kind: Some(EvidenceKind::SdkSpan),
            convention: Some(Convention::AnthropicSdk),
            request_model: Some("claude-sonnet-4-5".into()),
            exception_type: Some(exception.into()),
            http_status: status,
            failed: true,
            start_unix_nano: 1_795_393_612_000_000_000,
            ..Observation::default()
        }
    }

    #[test]
    fn without_an_http_answer_tokens_and_cost_are_unknown_not_zero() {
        for (exception, outcome) in [
            ("APITimeoutError", Outcome::Timeout),
            ("APIConnectionError", Outcome::ConnectionError),
        ] {
            let mut obs = vec![failed_sdk_span(exception, None)];
            let r = records_of(&mut obs, &EnrichConfig::default()).remove(0);
            assert_eq!(r.outcome, outcome);
            assert_eq!(r.input_tokens, None, "{exception}");
            assert_eq!(r.output_tokens, None, "{exception}");
            assert_eq!(r.cost_usd, None, "{exception}");
        }
    }

    #[test]
    fn an_http_error_bills_nothing() {
        let mut obs = vec![failed_sdk_span("RateLimitError", Some(429))];
        let r = records_of(&mut obs, &EnrichConfig::default()).remove(0);
        assert_eq!(r.outcome, Outcome::RateLimited);
        assert_eq!((r.input_tokens, r.output_tokens), (Some(0), Some(0)));
        assert_eq!(r.cost_usd, Some(rust_decimal::Decimal::ZERO));
    }
}
