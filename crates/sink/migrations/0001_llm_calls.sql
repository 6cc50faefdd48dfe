-- claudewatch schema, version 1: the call records and their rollups.
-- Placeholders replaced by `claudewatch migrate`: {{database}}, {{ttl}} (a TTL
-- clause or nothing). Every statement is idempotent (IF NOT EXISTS), so a
-- migration cut short by a crash is simply run again.

-- One row per call record; the columns are the record's JSON fields.
CREATE TABLE IF NOT EXISTS {{database}}.llm_calls
(
    time_unix_nano        DateTime64(9, 'UTC')             CODEC(Delta, ZSTD(1)),
    tenant                LowCardinality(String),
    service               LowCardinality(String),
    environment           LowCardinality(Nullable(String)),
    organization_id       LowCardinality(Nullable(String)),
    trace_id              Nullable(String)                 CODEC(ZSTD(1)),
    span_id               Nullable(String)                 CODEC(ZSTD(1)),
    request_id            Nullable(String)                 CODEC(ZSTD(1)),
    response_id           Nullable(String)                 CODEC(ZSTD(1)),
    provider              LowCardinality(Nullable(String)),
    model                 LowCardinality(Nullable(String)),
    model_family          LowCardinality(String),
    stream                Nullable(Bool),
    http_status           Nullable(UInt16),
    error_type            LowCardinality(Nullable(String)),
    outcome               LowCardinality(String),
    blame                 LowCardinality(Nullable(String)),
    retryable             Bool,
    overload              Bool,
    limit_kind            LowCardinality(Nullable(String)),
    stop_reason           LowCardinality(Nullable(String)),
    input_tokens          Nullable(UInt64)                 CODEC(ZSTD(1)),
    cache_read_tokens     Nullable(UInt64)                 CODEC(ZSTD(1)),
    cache_write_tokens    Nullable(UInt64)                 CODEC(ZSTD(1)),
    cache_write_1h_tokens Nullable(UInt64)                 CODEC(ZSTD(1)),
    output_tokens         Nullable(UInt64)                 CODEC(ZSTD(1)),
    cost_usd              Nullable(Decimal(38, 18))        CODEC(ZSTD(1)),
    unpriced              Bool,
    ttft_ms               Nullable(Float64)                CODEC(ZSTD(1)),
    duration_ms           Nullable(Float64)                CODEC(ZSTD(1)),
    retry_attempt         Nullable(UInt32)                 CODEC(ZSTD(1)),
    source                LowCardinality(String),
    attributes            Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    INDEX idx_request_id request_id TYPE bloom_filter(0.01) GRANULARITY 4,
    INDEX idx_trace_id trace_id TYPE bloom_filter(0.01) GRANULARITY 4,
    CONSTRAINT time_is_plausible CHECK time_unix_nano >= toDateTime64('2000-01-01 00:00:00', 9, 'UTC')
)
ENGINE = MergeTree
PARTITION BY toDate(time_unix_nano)
ORDER BY (tenant, service, model_family, time_unix_nano)
{{ttl}}
SETTINGS non_replicated_deduplication_window = 10000, index_granularity = 8192;

-- Cost, calls, tokens and outcomes per hour by tenant, service and model.
-- Sums of Nullable columns count what is known; `*_unknown` count the NULLs.
CREATE TABLE IF NOT EXISTS {{database}}.llm_calls_hourly
(
    hour                  DateTime('UTC'),
    tenant                LowCardinality(String),
    service               LowCardinality(String),
    model_family          LowCardinality(String),
    outcome               LowCardinality(String),
    calls                 UInt64,
    overloads             UInt64,
    unpriced_calls        UInt64,
    input_tokens          UInt64,
    cache_read_tokens     UInt64,
    cache_write_tokens    UInt64,
    output_tokens         UInt64,
    tokens_unknown        UInt64,
    cost_usd              Decimal(38, 18),
    cost_unknown          UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (tenant, service, model_family, hour, outcome)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{database}}.llm_calls_hourly_mv
TO {{database}}.llm_calls_hourly AS
SELECT
    toStartOfHour(c.time_unix_nano)                            AS hour,
    c.tenant AS tenant, c.service AS service, c.model_family AS model_family, c.outcome AS outcome,
    count()                                                    AS calls,
    countIf(c.overload)                                        AS overloads,
    countIf(c.unpriced)                                        AS unpriced_calls,
    sum(ifNull(c.input_tokens, 0))                             AS input_tokens,
    sum(ifNull(c.cache_read_tokens, 0))                        AS cache_read_tokens,
    sum(ifNull(c.cache_write_tokens, 0))                       AS cache_write_tokens,
    sum(ifNull(c.output_tokens, 0))                            AS output_tokens,
    countIf(c.input_tokens IS NULL OR c.output_tokens IS NULL) AS tokens_unknown,
    sum(ifNull(c.cost_usd, toDecimal128(0, 18)))               AS cost_usd,
    countIf(c.cost_usd IS NULL)                                AS cost_unknown
FROM {{database}}.llm_calls AS c
GROUP BY hour, tenant, service, model_family, outcome;

-- TTFT quantiles per hour by tenant and model (streams that measured one).
CREATE TABLE IF NOT EXISTS {{database}}.llm_ttft_hourly
(
    hour                  DateTime('UTC'),
    tenant                LowCardinality(String),
    model_family          LowCardinality(String),
    samples               SimpleAggregateFunction(sum, UInt64),
    ttft_ms               AggregateFunction(quantilesTDigest(0.5, 0.9, 0.95, 0.99), Float64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (tenant, model_family, hour)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{database}}.llm_ttft_hourly_mv
TO {{database}}.llm_ttft_hourly AS
SELECT
    toStartOfHour(c.time_unix_nano)                             AS hour,
    c.tenant AS tenant, c.model_family AS model_family,
    count()                                                     AS samples,
    quantilesTDigestState(0.5, 0.9, 0.95, 0.99)(assumeNotNull(c.ttft_ms)) AS ttft_ms
FROM {{database}}.llm_calls AS c
WHERE c.ttft_ms IS NOT NULL
GROUP BY hour, tenant, model_family;

-- Requests per UTC day per tenant, organization and model (RPD quotas).
CREATE TABLE IF NOT EXISTS {{database}}.llm_requests_daily
(
    day                   Date,
    tenant                LowCardinality(String),
    organization_id       LowCardinality(String),
    model_family          LowCardinality(String),
    requests              UInt64,
    rate_limited          UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (tenant, organization_id, model_family, day)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{database}}.llm_requests_daily_mv
TO {{database}}.llm_requests_daily AS
SELECT
    toDate(c.time_unix_nano, 'UTC')          AS day,
    c.tenant                                 AS tenant,
    ifNull(c.organization_id, '')            AS organization_id,
    c.model_family                           AS model_family,
    count()                                  AS requests,
    countIf(c.outcome = 'rate_limited')      AS rate_limited
FROM {{database}}.llm_calls AS c
GROUP BY day, tenant, organization_id, model_family;
