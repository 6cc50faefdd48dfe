-- Panel: TTFT p50 / p95 vs 2 s target
-- Time to first token of streamed calls per hour, merged from the t-digest
-- rollup (approximate quantiles). The panel draws the 2 s p95 target. The
-- TTFT rollup has no service column: the service filter does not apply here.
SELECT
    hour AS time,
    q[1] AS p50_ms,
    q[3] AS p95_ms
FROM
(
    SELECT hour, quantilesTDigestMerge(0.5, 0.9, 0.95, 0.99)(ttft_ms) AS q
    FROM llm_ttft_hourly
    WHERE hour >= toStartOfHour($__fromTime, 'UTC') AND hour <= $__toTime
      AND $__conditionalAll(tenant IN (${tenant:singlequote}), $tenant)
      AND $__conditionalAll(model_family IN (${model:singlequote}), $model)
    GROUP BY hour
)
ORDER BY time
