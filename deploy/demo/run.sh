#!/usr/bin/env bash
# `make run`: the whole product on this machine. Starts the local ClickHouse
# (deploy/local), migrates it, starts `claudewatch serve` with the ClickHouse
# sink, drives demo traffic through it (the real Anthropic Python SDK against
# a fake Claude API, then the load generator: steady traffic, a burst of 529
# overloads, one organisation climbing towards its daily request quota),
# prints `claudewatch report` and where to look, and keeps everything up
# until Ctrl-C, which stops it all cleanly (serve drains into ClickHouse).
#
# Environment (all optional):
#   DEMO_CLICKHOUSE_PORT=8123 DEMO_HTTP_PORT=4318 DEMO_GRPC_PORT=4317 DEMO_FAKE_PORT=18080
#   DEMO_SECONDS=10        length of the steady phase
#   DEMO_RATE=2000         spans/s of the load generator
#   DEMO_QUOTA_CALLS=24000 calls of the quota climb (one organisation)
#   DEMO_TIER=2            the tier `report` compares requests per day with
#   DEMO_ONCE=1            stop after the report instead of waiting for Ctrl-C
#   DEMO_KEEP=1            keep target/demo's ClickHouse data from the last run
#   DEMO_PYTHON=path       a python that already has deploy/demo/requirements.txt
#   DEMO_BIN=path          a claudewatch binary to use instead of building one
#   DEMO_STATE=dir         logs and data (default target/demo)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

bin=${DEMO_BIN:-$root/target/release/claudewatch}
state=${DEMO_STATE:-$root/target/demo}
shown=${state#"$root"/}
ch_port=${DEMO_CLICKHOUSE_PORT:-8123}
http_port=${DEMO_HTTP_PORT:-4318}
grpc_port=${DEMO_GRPC_PORT:-4317}
fake_port=${DEMO_FAKE_PORT:-18080}
seconds=${DEMO_SECONDS:-10}
rate=${DEMO_RATE:-2000}
quota_calls=${DEMO_QUOTA_CALLS:-24000}
tier=${DEMO_TIER:-2}
ch_url=http://127.0.0.1:$ch_port
otlp_url=http://127.0.0.1:$http_port

export CLAUDEWATCH_SERVER__HTTP_LISTEN=127.0.0.1:$http_port
export CLAUDEWATCH_SERVER__GRPC_LISTEN=127.0.0.1:$grpc_port
export CLAUDEWATCH_SINK__CLICKHOUSE__URL=$ch_url
export CLAUDEWATCH_SPOOL__DIR=$state/spool
export CLAUDEWATCH_SINK__CLICKHOUSE__JOURNAL_DIR=$state/journal
export CLAUDEWATCH_SINK__CLICKHOUSE__DEAD_LETTER_PATH=$state/dead-letters.jsonl
config=$here/claudewatch.toml

started=$(date +%s)
step() { printf '\n\033[1m==> [%3ss] %s\033[0m\n' "$(($(date +%s) - started))" "$*"; }
note() { printf '    %s\n' "$*"; }
die() { printf '\nmake run: %s\n' "$*" >&2; exit 1; }

# ---- the processes this script owns, stopped in reverse order on exit ------
serve_pid="" fake_pid="" ch_pid="" trickle_pid=""
stop_pid() { # pid name seconds
    local pid=$1 name=$2 secs=$3
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq $((secs * 10))); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    note "$name did not stop within ${secs}s: killing it"
    kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
    local code=$?
    trap - EXIT INT TERM
    [ -n "$serve_pid$fake_pid$ch_pid$trickle_pid" ] || exit "$code"
    step "stopping: traffic, serve (drains into ClickHouse), the fake API, ClickHouse"
    stop_pid "$trickle_pid" "the traffic" 5
    stop_pid "$serve_pid" "serve" 40
    stop_pid "$fake_pid" "the fake API" 5
    stop_pid "$ch_pid" "ClickHouse" 30
    note "stopped; logs and data stay in $shown/"
    exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Children run in their own session: Ctrl-C reaches this script only, which
# stops them in order (serve must drain before ClickHouse goes).
spawn() { setsid "$@" </dev/null & }

port_free() {
    python3 - "$1" <<'EOF'
import socket, sys
s = socket.socket()
# As the servers do: connections of a previous run in TIME_WAIT do not hold the port.
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
EOF
}
wait_http() { # url what pid log
    local url=$1 what=$2 pid=$3 log=$4
    for _ in $(seq 600); do
        python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' "$url" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || { tail -20 "$log" >&2; die "$what exited (log: $log)"; }
        sleep 0.1
    done
    tail -20 "$log" >&2
    die "$what did not answer at $url within 60 s (log: $log)"
}

# ---- 1. set up ---------------------------------------------------------------
command -v python3 >/dev/null || die "python3 (3.10 or newer, with venv) is needed"
python3 -c 'import sys, venv; sys.exit(sys.version_info < (3, 10))' \
    || die "python3 is $(python3 -V 2>&1); 3.10 or newer with the venv module is needed"
for p in "$ch_port:DEMO_CLICKHOUSE_PORT" "$http_port:DEMO_HTTP_PORT" "$grpc_port:DEMO_GRPC_PORT" "$fake_port:DEMO_FAKE_PORT"; do
    port_free "${p%%:*}" || die "port ${p%%:*} is taken; choose another with ${p#*:}=PORT (or stop what uses it)"
done

if [ -z "${DEMO_BIN:-}" ]; then
    step "building claudewatch (release)"
    cargo build --release --locked -p claudewatch 2>&1 | tail -1 | sed 's/^ */    /'
fi

step "Python environments (first run: a minute or two of pip)"
sh "$root/deploy/local/venv.sh"
note "local ClickHouse: target/local-clickhouse/venv"
if [ -n "${DEMO_PYTHON:-}" ]; then
    sdk_python=$DEMO_PYTHON
else
    venv=$root/target/demo-venv
    if ! { [ -x "$venv/bin/python" ] && cmp -s "$venv/requirements.txt" "$here/requirements.txt"; }; then
        note "creating $venv (the Anthropic SDK and the OpenTelemetry SDK)"
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
        cp "$here/requirements.txt" "$venv/requirements.txt"
    fi
    sdk_python=$venv/bin/python
fi
note "Anthropic SDK: $("$sdk_python" -c 'import anthropic; print(anthropic.__version__)')"

mkdir -p "$state"
if [ -z "${DEMO_KEEP:-}" ]; then
    rm -rf "$state/clickhouse" "$state/spool" "$state/journal" "$state/dead-letters.jsonl"
fi

# ---- 2. ClickHouse, schema, serve, fake API ----------------------------------
step "starting the local ClickHouse on $ch_url (data: $shown/clickhouse)"
spawn env PYTHONPATH="$root/deploy/local" "$root/target/local-clickhouse/venv/bin/python" -m chserver \
    --port "$ch_port" --data "$state/clickhouse" >"$state/clickhouse.log" 2>&1
ch_pid=$!
wait_http "$ch_url/ping" "the local ClickHouse" "$ch_pid" "$state/clickhouse.log"

step "claudewatch migrate"
"$bin" migrate --config "$config" 2>&1 | sed 's/^/    /'
stored_calls() {
    python3 -c 'import sys, urllib.request; print(int(urllib.request.urlopen(sys.argv[1], data=b"SELECT count() FROM claudewatch.llm_calls").read()))' "$ch_url/" 2>/dev/null || echo 0
}
baseline=$(stored_calls)

step "starting claudewatch serve: OTLP/HTTP $otlp_url, OTLP/gRPC 127.0.0.1:$grpc_port"
spawn "$bin" serve --config "$config" >"$state/serve.log" 2>&1
serve_pid=$!
wait_http "$otlp_url/readyz" "claudewatch serve" "$serve_pid" "$state/serve.log"
note "log: $shown/serve.log; metrics: $otlp_url/metrics"

spawn python3 "$here/fake_anthropic.py" --port "$fake_port" --client demo \
    --ground-truth "$state/ground_truth.jsonl" >"$state/fake-api.log" 2>&1
fake_pid=$!
wait_http "http://127.0.0.1:$fake_port/_fake/health" "the fake Claude API" "$fake_pid" "$state/fake-api.log"

# ---- 3. traffic --------------------------------------------------------------
step "the real Anthropic SDK: 13 calls (successes, cache, streams, 429, 529, a retried 529, 400, 401, a retired model, 500, a stream cut by a 529) against the fake API"
: >"$state/ground_truth.jsonl"
OTEL_EXPORTER_OTLP_ENDPOINT=$otlp_url OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf \
    "$sdk_python" -W ignore "$here/scenario.py" --client anthropic-native \
    --base-url "http://127.0.0.1:$fake_port" --otlp "$otlp_url" \
    --ground-truth "$state/ground_truth.jsonl" --pause 0.1 >"$state/sdk-calls.jsonl" 2>"$state/sdk.log" \
    || { tail -20 "$state/sdk.log" >&2; die "the SDK scenarios failed (log: $shown/sdk.log)"; }
note "$(wc -l <"$state/sdk-calls.jsonl") SDK calls made; the fake API's record of them: $shown/ground_truth.jsonl"

loadgen() { "$bin" loadgen --endpoint "$otlp_url" --concurrency 4 --threads 1 "$@"; }
step "load generator: ${seconds}s of steady traffic at $rate spans/s (five conventions, five models, streams, errors)"
loadgen --rate "$rate" --duration "${seconds}s" --summary-json "$state/steady.json"
step "load generator: a 529 burst (70 % of calls overloaded for 8 s)"
loadgen --rate "$rate" --duration 8s --overloaded-percent 70 --summary-json "$state/burst.json"
step "load generator: one organisation climbs towards its daily request quota ($quota_calls calls)"
loadgen --rate $((rate * 2)) --count "$quota_calls" --organizations 1 --summary-json "$state/quota.json"

acked=$(python3 - "$state" <<'EOF'
import json, sys
print(sum(json.load(open(f"{sys.argv[1]}/{n}.json"))["calls_acked"] for n in ("steady", "burst", "quota")))
EOF
)
sdk_calls=$(wc -l <"$state/sdk-calls.jsonl")
expected=$((baseline + acked + sdk_calls))
step "waiting for ClickHouse to hold all $expected calls (merge window, journal, insert)"
for _ in $(seq 300); do
    stored=$(stored_calls)
    printf '\r    %s of %s stored' "$stored" "$expected"
    [ "$stored" -ge "$expected" ] && break
    sleep 0.2
done
echo
[ "$stored" -eq "$expected" ] \
    || die "ClickHouse holds $stored calls, $expected were acknowledged (see $shown/serve.log)"
note "every acknowledged call is stored, once ($((stored - baseline)) new calls)"

# ---- 4. what to look at ------------------------------------------------------
step "claudewatch report --since 1h --tier $tier"
"$bin" report --config "$config" --since 1h --tier "$tier" || note "(report failed; see above)"

step "where to look"
note "ClickHouse:  $ch_url   (database claudewatch: llm_calls, llm_calls_hourly, llm_ttft_hourly, llm_requests_daily)"
note "serve:       $otlp_url/metrics (Prometheus), log $shown/serve.log"
note "Grafana:     deploy/grafana/README.md (provisioned ClickHouse data source and dashboards)"
note "more:        $bin report --help"
note ""
note "try:"
cat <<EOF
    curl -s $ch_url --data-binary "SELECT outcome, count() AS calls, sum(cost_usd) AS usd FROM claudewatch.llm_calls GROUP BY outcome ORDER BY calls DESC FORMAT PrettyCompact"
    curl -s $ch_url --data-binary "SELECT model_family, round(sum(cost_usd), 4) AS usd, sum(input_tokens) AS input, sum(output_tokens) AS output FROM claudewatch.llm_calls_hourly GROUP BY model_family ORDER BY usd DESC FORMAT PrettyCompact"
    curl -s $ch_url --data-binary "SELECT model_family, quantilesTDigestMerge(0.5, 0.95)(ttft_ms) AS ttft_p50_p95 FROM claudewatch.llm_ttft_hourly GROUP BY model_family FORMAT PrettyCompact"
    curl -s $ch_url --data-binary "SELECT day, organization_id, model_family, sum(requests) AS requests FROM claudewatch.llm_requests_daily GROUP BY ALL ORDER BY requests DESC LIMIT 5 FORMAT PrettyCompact"
    $bin loadgen --endpoint $otlp_url --duration 30s --rate 1000     # more traffic
EOF

if [ -n "${DEMO_ONCE:-}" ]; then
    exit 0
fi
step "running; a trickle of traffic keeps the dashboards moving. Ctrl-C stops everything."
spawn "$bin" loadgen --endpoint "$otlp_url" --rate 100 --duration 24h --quiet --threads 1 >"$state/trickle.log" 2>&1
trickle_pid=$!
wait "$trickle_pid"
