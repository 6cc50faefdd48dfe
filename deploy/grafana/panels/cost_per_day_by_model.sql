-- Panel: Cost per day by model
-- Exact cost in USD per UTC day and model family, from the hourly rollup
-- (whole days: the first day of the range is counted from its midnight).
-- Calls whose cost is unknown add nothing; the cost-per-request table counts them.
SELECT
    toStartOfDay(hour, 'UTC') AS time,
    if(model_family = '', '(unknown)', model_family) AS family,
    sum(cost_usd) AS usd
FROM llm_calls_hourly
WHERE hour >= toStartOfDay($__fromTime, 'UTC') AND hour <= $__toTime
  AND $__conditionalAll(tenant IN (${tenant:singlequote}), $tenant)
  AND $__conditionalAll(service IN (${service:singlequote}), $service)
  AND $__conditionalAll(model_family IN (${model:singlequote}), $model)
GROUP BY time, family
ORDER BY time, family
