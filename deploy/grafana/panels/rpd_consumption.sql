-- Panel: RPD consumption vs tier
-- Requests per UTC day per quota key (organization id, else tenant) against
-- the selected tier's RPD (tiers 1-4: 1000, 10000, 100000, 500000), from the
-- daily rollup. Every HTTP call counts, retries and 429s included. The daily
-- rollup has no service column: the service filter does not apply here.
SELECT
    day,
    coalesce(nullIf(organization_id, ''), nullIf(tenant, ''), '(unattributed)') AS quota_key,
    sum(requests) AS day_requests,
    sum(rate_limited) AS day_rate_limited,
    [1000, 10000, 100000, 500000][${tier}] AS rpd_limit,
    sum(requests) * 100 / rpd_limit AS pct_of_rpd
FROM llm_requests_daily
WHERE day >= toDate($__fromTime, 'UTC') AND day <= toDate($__toTime, 'UTC')
  AND $__conditionalAll(tenant IN (${tenant:singlequote}), $tenant)
  AND $__conditionalAll(model_family IN (${model:singlequote}), $model)
GROUP BY day, quota_key
ORDER BY day DESC, day_requests DESC, quota_key
