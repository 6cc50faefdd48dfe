-- Panel: Deprecated-model calls
-- Calls that got 404 not_found (usually a retired model id) and calls to
-- retired model families: claude-1, claude-instant, claude-2 (2.0, 2.1),
-- claude-3-sonnet, claude-3-opus, claude-3-5-sonnet. Ids the normaliser gives
-- no family (claude-2.1, claude-v2 ...) are matched on the model id as sent.
SELECT
    service,
    ifNull(model, '') AS model_id,
    if(model_family = '', '(unknown)', model_family) AS family,
    count() AS calls,
    countIf(outcome = 'not_found') AS not_found_404,
    max(time_unix_nano) AS last_seen
FROM llm_calls
WHERE $__timeFilter_ms(time_unix_nano)
  AND (
        outcome = 'not_found'
        OR model_family IN ('claude-1', 'claude-instant', 'claude-2', 'claude-2-0', 'claude-2-1',
                            'claude-3-sonnet', 'claude-3-opus', 'claude-3-5-sonnet')
        OR (model_family = '' AND match(lower(ifNull(model, '')), 'claude-(instant|v?[12]([^0-9]|$))'))
      )
  AND $__conditionalAll(tenant IN (${tenant:singlequote}), $tenant)
  AND $__conditionalAll(service IN (${service:singlequote}), $service)
  AND $__conditionalAll(model_family IN (${model:singlequote}), $model)
GROUP BY service, model_id, family
ORDER BY calls DESC, service, model_id
