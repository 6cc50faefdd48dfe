-- Panel: Cost per day by service
-- Exact cost in USD per UTC day and calling service, from the hourly rollup
-- (whole days: the first day of the range is counted from its midnight).
SELECT
    toStartOfDay(hour, 'UTC') AS time,
    if(service = '', '(unknown)', service) AS service_name,
    sum(cost_usd) AS usd
FROM llm_calls_hourly
WHERE hour >= toStartOfDay($__fromTime, 'UTC') AND hour <= $__toTime
  AND $__conditionalAll(tenant IN (${tenant:singlequote}), $tenant)
  AND $__conditionalAll(service IN (${service:singlequote}), $service)
  AND $__conditionalAll(model_family IN (${model:singlequote}), $model)
GROUP BY time, service_name
ORDER BY time, service_name
