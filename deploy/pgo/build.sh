#!/bin/sh
# The production build of claudewatch: profile-guided (PGO), with fat LTO and
# one codegen unit (the `dist` profile in Cargo.toml). Output:
# target/pgo/claudewatch. About 20 % more spans/s than `cargo build --release`
# on the serve benchmark (see deploy/pgo/README.md); the price is two full
# builds and a minute of training, about 12 minutes from scratch.
#
#   1. build an instrumented binary (target/pgo/instrumented);
#   2. train it: the load generator's traffic through `enrich` and through
#      `serve` over OTLP/HTTP and gRPC, with and without gzip, into the
#      JSON-lines sink and into the local ClickHouse (deploy/local); the
#      real-client captures in ../shared/fixtures too when they are there
#      (OTLP/JSON, logs and metrics);
#   3. merge the profiles with llvm-profdata (rustup's llvm-tools component,
#      installed when missing) and build again with them (target/pgo/optimized).
#
# Code that training never runs is optimized for size, so the training covers
# every path the product takes under load. Set PGO_CLICKHOUSE=0 to skip the
# ClickHouse part (it needs the local server's Python environment).
#
# Usage: deploy/pgo/build.sh   (make build-pgo)
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
PGO=target/pgo
TRAIN=$PGO/train
PROFILES=$PGO/profiles
SHARED=${CLAUDEWATCH_SHARED:-$root/../shared}
CARGO=${CARGO:-cargo}
step() { echo "pgo: $*" >&2; }

# llvm-profdata of the toolchain that builds (it must match rustc's LLVM).
sysroot=$(rustc --print sysroot)
host=$(rustc -vV | sed -n 's/^host: //p')
PROFDATA=$sysroot/lib/rustlib/$host/bin/llvm-profdata
if [ ! -x "$PROFDATA" ]; then
  step "installing rustup's llvm-tools component (for llvm-profdata)"
  rustup component add llvm-tools >&2 || {
    echo "pgo: llvm-profdata not found at $PROFDATA and rustup could not install llvm-tools;" >&2
    echo "pgo: build without PGO instead: cargo build --release (target/release/claudewatch)" >&2
    exit 1
  }
fi

step "1/3 instrumented build (target/pgo/instrumented)"
rm -rf "$PROFILES" "$TRAIN"
mkdir -p "$PROFILES" "$TRAIN"
# --target: RUSTFLAGS then apply to claudewatch's code only, not to build
# scripts and proc macros (which would write profiles of their own).
RUSTFLAGS="-Cprofile-generate=$root/$PROFILES" CARGO_TARGET_DIR=$PGO/instrumented \
  $CARGO build --profile dist --locked -p claudewatch --target "$host"
BIN=$PGO/instrumented/$host/dist/claudewatch
# Every process writes its own profile.
export LLVM_PROFILE_FILE="$root/$PROFILES/%p-%m.profraw"

step "2/3 training"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_http() { # url: waits (at most 30 s) for a 200
  i=0
  until curl -sf "$1" >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -lt 300 ] || { echo "pgo: $1 did not answer" >&2; exit 1; }
    sleep 0.1
  done
}
SERVE=""
CH=""
trap 'kill $SERVE $CH 2>/dev/null || true' EXIT

# enrich: decoding and enrichment of the generator's mix, from files.
"$BIN" loadgen --count 50000 --seed 3 --write-dir "$TRAIN/bodies" 2>/dev/null
"$BIN" enrich "$TRAIN"/bodies/*.pb >/dev/null 2>&1
if [ -d "$SHARED/fixtures" ]; then
  step "  real-client captures from $SHARED/fixtures (OTLP/JSON, logs, metrics)"
  for i in 1 2 3 4 5 6 7 8 9 10; do
    for dir in "$SHARED"/fixtures/*/; do
      files=$(ls "$dir"[0-9]*.pb "$dir"[0-9]*.json 2>/dev/null || true)
      [ -z "$files" ] || "$BIN" enrich $files >/dev/null 2>&1 || true
    done
  done
else
  step "  $SHARED/fixtures not found: OTLP/JSON, logs and metrics are trained less"
fi

# serve with the JSON-lines sink: every transport the load generator has.
http=$(free_port)
grpc=$(free_port)
"$BIN" serve --http-listen "127.0.0.1:$http" --grpc-listen "127.0.0.1:$grpc" --jsonl /dev/null \
  --no-fsync --spool-dir "$TRAIN/spool" --log-format json 2>"$TRAIN/serve.log" &
SERVE=$!
wait_http "http://127.0.0.1:$http/readyz"
for args in "http/protobuf $http" "http/protobuf $http --gzip" "http/json $http" \
  "grpc $grpc" "grpc $grpc --gzip"; do
  set -- $args
  proto=$1 port=$2
  shift 2
  step "  serve <- loadgen --protocol $proto $*"
  "$BIN" loadgen --quiet --duration 3s --concurrency 16 --protocol "$proto" \
    --endpoint "http://127.0.0.1:$port" "$@" 2>>"$TRAIN/loadgen.log"
done
kill -TERM "$SERVE"
wait "$SERVE" || true
SERVE=""

# serve with the ClickHouse sink, into the local ClickHouse.
if [ "${PGO_CLICKHOUSE:-1}" != 0 ]; then
  sh deploy/local/venv.sh
  port=$(free_port)
  PYTHONPATH=deploy/local target/local-clickhouse/venv/bin/python -m chserver --port "$port" \
    --data "$TRAIN/ch" 2>"$TRAIN/chserver.log" &
  CH=$!
  url=http://127.0.0.1:$port
  wait_http "$url/ping"
  "$BIN" migrate --url "$url" --database pgo --ttl-days 0 2>>"$TRAIN/migrate.log"
  CLAUDEWATCH_SINK__KIND=clickhouse CLAUDEWATCH_SINK__CLICKHOUSE__URL=$url \
  CLAUDEWATCH_SINK__CLICKHOUSE__DATABASE=pgo CLAUDEWATCH_SINK__CLICKHOUSE__TTL_DAYS=0 \
  CLAUDEWATCH_SINK__CLICKHOUSE__JOURNAL_DIR=$TRAIN/journal \
  CLAUDEWATCH_SINK__CLICKHOUSE__DEAD_LETTER_PATH=$TRAIN/dead.jsonl \
    "$BIN" serve --http-listen "127.0.0.1:$http" --grpc-listen 127.0.0.1:0 \
    --spool-dir "$TRAIN/spool-ch" --log-format json 2>"$TRAIN/serve-ch.log" &
  SERVE=$!
  wait_http "http://127.0.0.1:$http/readyz"
  step "  serve (ClickHouse sink) <- loadgen"
  "$BIN" loadgen --quiet --count 150000 --concurrency 8 --endpoint "http://127.0.0.1:$http" \
    --summary-json "$TRAIN/loadgen-ch.json" 2>>"$TRAIN/loadgen.log"
  acked=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["calls_acked"])' "$TRAIN/loadgen-ch.json")
  i=0
  until [ "$(curl -sf "$url/" --data-binary 'SELECT count() FROM pgo.llm_calls')" = "$acked" ]; do
    i=$((i + 1)); [ $i -lt 600 ] || { echo "pgo: ClickHouse did not get every row" >&2; exit 1; }
    sleep 0.1
  done
  "$BIN" report --url "$url" --database pgo --since 1h >/dev/null 2>&1 || true
  kill -TERM "$SERVE"
  wait "$SERVE" || true
  SERVE=""
  kill "$CH"
  wait "$CH" 2>/dev/null || true
  CH=""
fi

step "3/3 optimized build (target/pgo/optimized)"
"$PROFDATA" merge -o "$PGO/merged.profdata" "$PROFILES"/*.profraw
RUSTFLAGS="-Cprofile-use=$root/$PGO/merged.profdata" CARGO_TARGET_DIR=$PGO/optimized \
  $CARGO build --profile dist --locked -p claudewatch --target "$host"
cp "$PGO/optimized/$host/dist/claudewatch" "$PGO/claudewatch"
rm -rf "$TRAIN"
step "done: $PGO/claudewatch"
