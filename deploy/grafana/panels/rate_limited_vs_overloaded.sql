-- Panel: 429 rate_limited vs 529 overloaded
-- Calls per minute, side by side: 429 rate_limited (your own quota: scale down
-- or upgrade the tier) and 529 overloaded (Anthropic-wide capacity), plus the
-- overload signal in all its forms (529, mid-stream overloaded_error, 500 Overloaded).
SELECT
    $__timeInterval(time_unix_nano) AS time,
    countIf(outcome = 'rate_limited') * 60 / $__interval_s AS rate_limited_429,
    countIf(outcome = 'overloaded') * 60 / $__interval_s AS overloaded_529,
    countIf(overload) * 60 / $__interval_s AS overload_any
FROM llm_calls
WHERE $__timeFilter_ms(time_unix_nano)
  AND $__conditionalAll(tenant IN (${tenant:singlequote}), $tenant)
  AND $__conditionalAll(service IN (${service:singlequote}), $service)
  AND $__conditionalAll(model_family IN (${model:singlequote}), $model)
GROUP BY time
ORDER BY time
