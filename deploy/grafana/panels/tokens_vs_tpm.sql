-- Panel: Tokens per minute vs tier TPM
-- Tokens per UTC minute per quota key (organization id, else tenant) and
-- model family, in percent of the selected tier's TPM (tiers 1-4: 40k, 80k,
-- 160k, 400k). Counted: uncached input + cache writes + output; cache reads
-- are left out, as the API does for most models. 100 = at the limit.
SELECT
    toStartOfMinute(toDateTime(time_unix_nano)) AS time,
    coalesce(nullIf(organization_id, ''), nullIf(tenant, ''), '(unattributed)') AS quota_key,
    if(model_family = '', '(unknown)', model_family) AS family,
    sum(ifNull(input_tokens, 0) + ifNull(cache_write_tokens, 0) + ifNull(output_tokens, 0)) * 100
        / [40000, 80000, 160000, 400000][${tier}] AS pct_of_tpm
FROM llm_calls
WHERE $__timeFilter_ms(time_unix_nano)
  AND $__conditionalAll(tenant IN (${tenant:singlequote}), $tenant)
  AND $__conditionalAll(service IN (${service:singlequote}), $service)
  AND $__conditionalAll(model_family IN (${model:singlequote}), $model)
GROUP BY time, quota_key, family
ORDER BY time, quota_key, family
