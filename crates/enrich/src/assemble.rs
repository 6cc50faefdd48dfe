//! Assembling the call record of one merged call: classification, tokens,
//! cost and TTFT.

use claudewatch_model::{CallRecord, Decimal, Outcome};

use crate::classify::{classify, ErrorEvidence};
use crate::merge::{identity, Merged};
use crate::model_id;
use crate::pricing::{BillableTokens, PriceTable};

/// Builds the record of one call.
pub fn assemble(m: &Merged<'_>, prices: &PriceTable, tenant: Option<&str>) -> CallRecord {
    let stream = m.stream();
    let http_status = m.http_status();
    let api_error_type = m.pick(|o| o.api_error_type.as_deref());
    let exception_type = m.pick(|o| o.exception_type.as_deref());
    let message = m.pick(|o| o.error_message.as_deref());
    let c = classify(&ErrorEvidence {
        http_status,
        api_error_type,
        exception_type,
        message,
        failed: m.failed(),
        stream,
    });

    let request_model = m.pick(|o| o.request_model.clone());
    let response_model = m.pick(|o| o.response_model.clone());
    let normalized = response_model
        .as_deref()
        .and_then(model_id::normalize)
        .or_else(|| request_model.as_deref().and_then(model_id::normalize));
    let model = request_model.or(response_model);

    let usage = crate::observation::Usage {
        input_uncached: m.pick(|o| o.usage.input_uncached),
        cache_read: m.pick(|o| o.usage.cache_read),
        cache_write: m.pick(|o| o.usage.cache_write),
        cache_write_1h: m.pick(|o| o.usage.cache_write_1h),
        output: m.pick(|o| o.usage.output),
    };
    let time_unix_nano = m.start_unix_nano();
    let batch = m.pick(|o| o.batch).unwrap_or(false);

    let (cost_usd, unpriced) = cost(
        c.outcome,
        normalized.as_ref().map(|n| n.family.as_str()),
        model.is_some(),
        &usage,
        time_unix_nano,
        batch,
        prices,
    );

    let provider = m
        .provider()
        .or_else(|| normalized.as_ref().and_then(|n| n.provider));
    let mut r = CallRecord {
        time_unix_nano,
        tenant: tenant.map(str::to_owned),
        service: None,
        environment: None,
        organization_id: None,
        trace_id: None,
        span_id: None,
        request_id: None,
        response_id: None,
        provider,
        model,
        model_family: normalized.map(|n| n.family),
        stream,
        http_status: c.http_status,
        error_type: c.error_type,
        outcome: c.outcome,
        blame: c.outcome.blame(),
        retryable: c.outcome.retryable(),
        overload: c.overload,
        limit_kind: c.limit_kind,
        stop_reason: m.pick(|o| o.stop_reason.clone()),
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
        attributes: m.attributes(),
    };
    identity(m, &mut r);
    if r.outcome.is_error() && r.outcome != Outcome::StreamError {
        // An HTTP error reports no usage: the API bills nothing.
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
fn cost(
    outcome: Outcome,
    family: Option<&str>,
    has_model: bool,
    usage: &crate::observation::Usage,
    time_unix_nano: u64,
    batch: bool,
    prices: &PriceTable,
) -> (Option<Decimal>, bool) {
    let billable = matches!(
        outcome,
        Outcome::Success | Outcome::StreamError | Outcome::Unknown
    );
    if !billable {
        return (Some(Decimal::ZERO), false);
    }
    if outcome == Outcome::Unknown && !usage.any() {
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
