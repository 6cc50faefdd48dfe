#!/bin/sh
# The storage benchmark (not a test): `claudewatch loadgen` -> `claudewatch
# serve` with the ClickHouse sink -> the local ClickHouse (deploy/local), with
# zero loss checked (rows stored = calls acknowledged); then the ceiling: the
# same rows, exported as RowBinary, inserted raw into a second database with
# the same schema and rollups, in one HTTP insert, on the same server in the
# same run. For the breakdown, the same rows raw once more in the sink's
# batches of 50,000 (what ClickHouse itself pays for a stream of batches).
# Results: target/bench-clickhouse/results.txt.
#
# The whole run is repeated BENCH_ROUNDS times (default 3; fresh databases,
# spool and journal each round) and summarised by the median ratio: on a
# shared VM a single ratio moved by 0.1 from one run to the next.
#
# The load generator builds and encodes all its requests before the clock
# starts (`loadgen --prebuild`), as the raw insert's rows are made before
# its clock: in production the clients run elsewhere, here they would take
# the receiver's and the engine's CPU. BENCH_PREBUILD=0 generates while it
# sends instead.
#
# BIN: the binary; make bench-clickhouse passes the production build
# (target/pgo/claudewatch, deploy/pgo), or with BENCH_BUILD=release target/release.
#
# Usage: bench/clickhouse.sh [CALLS]   (make bench-clickhouse; default 600000:
# the pipeline's fill, about 1 s before the first batch is full, and its
# drain, the 2 s merge window after the last request, stay a fixed cost)
set -eu
CALLS=${1:-600000}
ROUNDS=${BENCH_ROUNDS:-3}
BIN=${BIN:-target/release/claudewatch}
PREBUILD=""; [ "${BENCH_PREBUILD:-1}" = 0 ] || PREBUILD=--prebuild
OUT=target/bench-clickhouse
PORT=18123
HTTP=127.0.0.1:14318
CH=http://127.0.0.1:$PORT
rm -rf "$OUT"
mkdir -p "$OUT"
RESULTS="$OUT/results.txt"
RATIOS="$OUT/ratios.txt" # round, end to end, raw, batched rows/s, zero-loss verdict: the summary's input
: >"$RESULTS"
: >"$RATIOS"
say() { echo "$*" | tee -a "$RESULTS"; }
q() { curl -sf "$CH/" --data-binary "$1"; }
now() { date +%s.%N; }
merges_done() { # waits (at most 2 min) until no merge runs for three polls in a row
  quiet=0; i=0
  while [ $quiet -lt 3 ] && [ $i -lt 600 ]; do
    if [ "$(q "SELECT count() FROM system.merges")" = 0 ]; then quiet=$((quiet + 1)); else quiet=0; fi
    i=$((i + 1)); sleep 0.2
  done
}
cpu() { # CPU seconds (user + system) used so far by process $1
  python3 -c 'import os,sys; f=open(f"/proc/{sys.argv[1]}/stat").read().rsplit(")",1)[1].split(); print((int(f[11])+int(f[12]))/os.sysconf("SC_CLK_TCK"))' "$1"
}

sh deploy/local/venv.sh
PYTHONPATH=deploy/local target/local-clickhouse/venv/bin/python -m chserver --port $PORT \
  --data "$OUT/ch" 2>"$OUT/chserver.log" &
CHPID=$!
SERVE=""
trap 'kill $SERVE $CHPID 2>/dev/null || true' EXIT
i=0
until curl -sf "$CH/ping" >/dev/null 2>&1; do
  i=$((i + 1)); [ $i -lt 300 ] || { echo "chserver did not start" >&2; exit 1; }
  sleep 0.1
done
run_round() { # R: one end-to-end run, its ceiling and its breakdown, in databases of its own
# (the body is not indented: it holds here-documents)
E2E=e2e_$R RAW=raw_$R BATCHED=batched_$R RUN=$OUT/round$R
mkdir -p "$RUN"
merges_done # the last round's databases are dropped; nothing runs behind this one
"$BIN" migrate --url "$CH" --database "$E2E" --ttl-days 0 2>>"$OUT/migrate.log"
"$BIN" migrate --url "$CH" --database "$RAW" --ttl-days 0 2>>"$OUT/migrate.log"

CLAUDEWATCH_SINK__KIND=clickhouse CLAUDEWATCH_SINK__CLICKHOUSE__URL=$CH \
CLAUDEWATCH_SINK__CLICKHOUSE__DATABASE=$E2E CLAUDEWATCH_SINK__CLICKHOUSE__TTL_DAYS=0 \
CLAUDEWATCH_SINK__CLICKHOUSE__JOURNAL_DIR=$RUN/journal \
CLAUDEWATCH_SINK__CLICKHOUSE__DEAD_LETTER_PATH=$RUN/dead.jsonl \
  "$BIN" serve --http-listen "$HTTP" --grpc-listen 127.0.0.1:0 --spool-dir "$RUN/spool" \
  --log-format json 2>>"$OUT/serve.log" &
SERVE=$!
i=0
until curl -sf "http://$HTTP/readyz" >/dev/null 2>&1; do
  i=$((i + 1)); [ $i -lt 100 ] || { echo "serve did not start" >&2; exit 1; }
  sleep 0.1
done

say "round $R of $ROUNDS"
ch_cpu0=$(cpu $CHPID)
timed() { # runs "$@", its user and system CPU seconds in $RUN/loadgen.cpu (when /usr/bin/time exists)
  if [ -x /usr/bin/time ]; then /usr/bin/time -f '%U %S' -o "$RUN/loadgen.cpu" "$@"; else echo "0 0" >"$RUN/loadgen.cpu"; "$@"; fi
}
# Rows stored over time, for the rate while rows are being stored (the steady
# state, without the pipeline's fill and drain).
( while :; do echo "$(now) $(q "SELECT count() FROM $E2E.llm_calls")"; sleep 0.5; done ) >"$RUN/stored.txt" 2>/dev/null &
POLL=$!
trap 'kill $SERVE $CHPID $POLL 2>/dev/null || true' EXIT
timed "$BIN" loadgen --quiet --count "$CALLS" --seed 11 --endpoint "http://$HTTP" --concurrency 8 $PREBUILD \
  --summary-json "$RUN/loadgen.json" 2>"$RUN/loadgen.log"
acked=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["calls_acked"])' "$RUN/loadgen.json")
# The clock starts when the load generator starts sending (after its prebuild).
start=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["started_unix_s"])' "$RUN/loadgen.json")
stored=0
until [ "$stored" -ge "$acked" ]; do
  sleep 0.05
  stored=$(q "SELECT count() FROM $E2E.llm_calls")
done
end=$(now)
kill $POLL 2>/dev/null || true
ch_cpu1=$(cpu $CHPID)
serve_cpu=$(cpu $SERVE)
kill -TERM "$SERVE"; wait "$SERVE" || true; SERVE=""
stored=$(q "SELECT count() FROM $E2E.llm_calls")
hourly=$(q "SELECT sum(calls) FROM $E2E.llm_calls_hourly")
verdict=ok; [ "$stored" = "$acked" ] && [ "$hourly" = "$acked" ] || verdict=MISMATCH
e2e=$(python3 -c "print(round($acked / ($end - $start)))")
say "$(printf 'end to end:  %8d rows/s  (%d calls acked, %d rows stored, %d in the hourly rollup: %s)' "$e2e" "$acked" "$stored" "$hourly" "$verdict")"
# Steady state: rows stored per second between the first poll that saw rows
# (the first batch has filled) and the last one before every row was stored
# (the merge window's drain), so without the pipeline's fill and drain.
steady=$(python3 - "$RUN/stored.txt" "$acked" <<'PY'
import sys
rows = [tuple(map(float, l.split())) for l in open(sys.argv[1]) if len(l.split()) == 2]
inside = [(t, n) for t, n in rows if 0 < n < float(sys.argv[2])]
print(round((inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])) if len(inside) > 1 and inside[-1][0] > inside[0][0] else 0)
PY
)
say "$(printf 'while storing: %6d rows/s  (stored per second from the first poll that saw rows to the last before all were)' "$steady")"
lg_cpu=$(awk '{ print $1 + $2 }' "$RUN/loadgen.cpu")
lg_note=""; [ -z "$PREBUILD" ] || lg_note=" (its prebuild included)"
say "$(python3 -c "print(f'  CPU seconds: serve {$serve_cpu:.1f}, local ClickHouse {$ch_cpu1 - $ch_cpu0:.1f}, loadgen {$lg_cpu:.1f}$lg_note; wall {$end - $start:.1f} s')")"

# The ceiling: the same rows, raw, in one insert into the same schema and
# rollups; first the end-to-end database's background merges finish, so that
# they do not take CPU from the ceiling.
merges_done
curl -sf "$CH/" --data-binary "SELECT * FROM $E2E.llm_calls FORMAT RowBinary" -o "$RUN/rows.bin"
ch_cpu0=$(cpu $CHPID)
start=$(now)
curl -sf "$CH/?query=INSERT%20INTO%20$RAW.llm_calls%20FORMAT%20RowBinary" --data-binary "@$RUN/rows.bin" >/dev/null
end=$(now)
ch_cpu1=$(cpu $CHPID)
raw_rows=$(q "SELECT count() FROM $RAW.llm_calls")
raw=$(python3 -c "print(round($raw_rows / ($end - $start)))")
say "$(printf 'raw insert:  %8d rows/s  (%d rows, %s MB of RowBinary, one insert)' "$raw" "$raw_rows" "$(python3 -c "import os; print(round(os.path.getsize('$RUN/rows.bin') / 1e6, 1))")")"
say "$(python3 -c "print(f'  CPU seconds: local ClickHouse {$ch_cpu1 - $ch_cpu0:.1f}; wall {$end - $start:.1f} s')")"
say "$(python3 -c "print(f'ratio end to end / raw: {$e2e / $raw:.2f} (goal: at least 0.7); while storing / raw: {$steady / $raw:.2f}')")"

# For the breakdown (not the goal's ceiling): the same rows raw again, but in
# the sink's batches (50,000 rows, each with its deduplication token, one
# after the other) into a third database: what ClickHouse itself costs for
# a stream of batches, apart from claudewatch.
"$BIN" migrate --url "$CH" --database "$BATCHED" --ttl-days 0 2>>"$OUT/migrate.log"
n=0
while [ $((n * 50000)) -lt "$raw_rows" ]; do
  q "SELECT * FROM $E2E.llm_calls ORDER BY time_unix_nano, span_id LIMIT 50000 OFFSET $((n * 50000)) FORMAT RowBinary" >"$RUN/batch.$n.bin"
  n=$((n + 1))
done
merges_done
ch_cpu0=$(cpu $CHPID)
start=$(now)
k=0
while [ $k -lt $n ]; do
  curl -sf "$CH/?query=INSERT%20INTO%20$BATCHED.llm_calls%20FORMAT%20RowBinary&insert_deduplicate=1&deduplicate_blocks_in_dependent_materialized_views=1&insert_deduplication_token=bench-$R-$k" \
    --data-binary "@$RUN/batch.$k.bin" >/dev/null
  k=$((k + 1))
done
end=$(now)
ch_cpu1=$(cpu $CHPID)
batched_rows=$(q "SELECT count() FROM $BATCHED.llm_calls")
batched=$(python3 -c "print(round($batched_rows / ($end - $start)))")
say "$(printf 'raw batches: %8d rows/s  (%d rows in %d inserts of at most 50,000, one after the other; breakdown only)' "$batched" "$batched_rows" "$n")"
say "$(python3 -c "print(f'  CPU seconds: local ClickHouse {$ch_cpu1 - $ch_cpu0:.1f}; wall {$end - $start:.1f} s; end to end / raw batches: {$e2e / $batched:.2f}')")"
echo "$R $e2e $raw $batched $verdict" >>"$RATIOS"
rm -rf "$RUN" # 1-2 GB of spool, journal and row files
for db in "$E2E" "$RAW" "$BATCHED"; do q "DROP DATABASE $db SYNC" >/dev/null; done
}

how="requests built while sending"; [ -z "$PREBUILD" ] || how="requests built before the clock"
say "storage benchmark: $CALLS calls, loadgen ($how) -> serve -> local ClickHouse ($(nproc) cores shared), $ROUNDS rounds, $(date -u +%FT%TZ)"
R=1
while [ "$R" -le "$ROUNDS" ]; do
  run_round
  R=$((R + 1))
done
say "summary over $ROUNDS rounds (median, range):"
python3 - "$RATIOS" <<'PY' | tee -a "$RESULTS"
import statistics, sys
lines = [l.split() for l in open(sys.argv[1]) if l.strip()]
runs = [tuple(map(float, f[1:4])) for f in lines]
bad = [f[0] for f in lines if f[4] != "ok"]
print("  stored = acknowledged, rollup included: " + ("every round" if not bad else "MISMATCH in round " + ", ".join(bad)))
def line(name, values, fmt):
    return "  %-34s %s  (%s-%s)" % (name, fmt % statistics.median(values), fmt % min(values), fmt % max(values))
print(line("end to end, rows/s", [e for e, r, b in runs], "%.0f"))
print(line("raw insert (the ceiling), rows/s", [r for e, r, b in runs], "%.0f"))
ratios = [e / r for e, r, b in runs]
print(line("end to end / raw", ratios, "%.2f") + "  goal 0.7: " + ("met" if statistics.median(ratios) >= 0.7 else "NOT met"))
print(line("end to end / raw batches", [e / b for e, r, b in runs], "%.2f"))
PY
