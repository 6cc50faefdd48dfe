-- Panel: Top errors
-- Failed calls over the range by outcome, HTTP status, API error type and
-- model family, most frequent first, with the services hit and the last one seen.
SELECT
    outcome,
    http_status,
    ifNull(error_type, '') AS api_error,
    if(model_family = '', '(unknown)', model_family) AS family,
    count() AS calls,
    uniqExact(service) AS services,
    max(time_unix_nano) AS last_seen
FROM llm_calls
WHERE $__timeFilter_ms(time_unix_nano)
  AND outcome != 'success'
  AND $__conditionalAll(tenant IN (${tenant:singlequote}), $tenant)
  AND $__conditionalAll(service IN (${service:singlequote}), $service)
  AND $__conditionalAll(model_family IN (${model:singlequote}), $model)
GROUP BY outcome, http_status, api_error, family
ORDER BY calls DESC, outcome, family, api_error
LIMIT 20
