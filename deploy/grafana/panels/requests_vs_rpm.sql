-- Panel: Requests per minute vs tier RPM
-- Requests (every HTTP call, failed ones and retries included) per UTC minute
-- per quota key (organization id, else tenant) and model family, in percent
-- of the selected tier's RPM (tiers 1-4: 50, 1000, 2000, 4000). 100 = at the limit.
SELECT
    toStartOfMinute(toDateTime(time_unix_nano)) AS time,
    coalesce(nullIf(organization_id, ''), nullIf(tenant, ''), '(unattributed)') AS quota_key,
    if(model_family = '', '(unknown)', model_family) AS family,
    count() * 100 / [50, 1000, 2000, 4000][${tier}] AS pct_of_rpm
FROM llm_calls
WHERE $__timeFilter_ms(time_unix_nano)
  AND $__conditionalAll(tenant IN (${tenant:singlequote}), $tenant)
  AND $__conditionalAll(service IN (${service:singlequote}), $service)
  AND $__conditionalAll(model_family IN (${model:singlequote}), $model)
GROUP BY time, quota_key, family
ORDER BY time, quota_key, family
