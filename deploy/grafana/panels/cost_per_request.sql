-- Panel: Cost per request
-- Per model family over the range, from the hourly rollup: requests, those
-- whose cost is known (failed calls cost 0 and count), total cost, the mean
-- cost of a request and the cost per successful request (all spend, failed
-- streams included, over the successes). Unknown costs are never taken as 0.
SELECT
    if(model_family = '', '(unknown)', model_family) AS family,
    sum(calls) AS requests,
    sum(calls - cost_unknown) AS priced_requests,
    sum(cost_unknown) AS unknown_cost,
    sum(cost_usd) AS usd,
    sum(cost_usd) / nullIf(sum(calls - cost_unknown), 0) AS usd_per_request,
    sum(cost_usd) / nullIf(sumIf(calls - cost_unknown, outcome = 'success'), 0) AS usd_per_success
FROM llm_calls_hourly
WHERE hour >= toStartOfHour($__fromTime, 'UTC') AND hour <= $__toTime
  AND $__conditionalAll(tenant IN (${tenant:singlequote}), $tenant)
  AND $__conditionalAll(service IN (${service:singlequote}), $service)
  AND $__conditionalAll(model_family IN (${model:singlequote}), $model)
GROUP BY family
ORDER BY usd DESC, family
