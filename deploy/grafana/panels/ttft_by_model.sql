-- Panel: TTFT by model
-- Time to first token per model family over the range, merged from the
-- t-digest rollup: samples, p50, p95, p99 and whether p95 meets the 2 s target.
-- The TTFT rollup has no service column: the service filter does not apply here.
SELECT
    family,
    samples,
    q[1] AS p50_ms,
    q[3] AS p95_ms,
    q[4] AS p99_ms,
    q[3] < 2000 AS p95_within_target
FROM
(
    SELECT
        if(model_family = '', '(unknown)', model_family) AS family,
        sum(samples) AS samples,
        quantilesTDigestMerge(0.5, 0.9, 0.95, 0.99)(ttft_ms) AS q
    FROM llm_ttft_hourly
    WHERE hour >= toStartOfHour($__fromTime, 'UTC') AND hour <= $__toTime
      AND $__conditionalAll(tenant IN (${tenant:singlequote}), $tenant)
      AND $__conditionalAll(model_family IN (${model:singlequote}), $model)
    GROUP BY family
)
ORDER BY p95_ms DESC, family
