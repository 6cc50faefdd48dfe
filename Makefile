# claudewatch — the two commands a newcomer needs:
#   make run    local ClickHouse + claudewatch serve + demo traffic, then a report (Ctrl-C stops)
#   make test   the whole test suite (what CI runs)

SHARED ?= $(abspath ../shared)
CARGO  ?= cargo
export CLAUDEWATCH_SHARED := $(SHARED)

.PHONY: all build build-pgo run run-fixtures test test-realclients bench-serve bench-clickhouse lint bench bench-instructions fuzz clean

all: build

build:
	$(CARGO) build --release --locked

## build-pgo: the production build (deploy/pgo/build.sh): profile-guided, fat LTO, into
## target/pgo/claudewatch; about 20 % more spans/s than `build`, about 12 minutes from scratch.
build-pgo:
	sh deploy/pgo/build.sh

# The benchmarks measure the production build; BENCH_BUILD=release measures `build`'s binary.
BENCH_BUILD ?= pgo
ifeq ($(BENCH_BUILD),release)
BENCH_DEP := build
BENCH_BIN := target/release/claudewatch
else
BENCH_DEP := build-pgo
BENCH_BIN := target/pgo/claudewatch
endif

## run: the whole product here: local ClickHouse + migrate + serve + demo traffic (the real
## Anthropic SDK against a fake Claude API, the load generator with a 529 burst and a quota
## climb), then `claudewatch report`; Ctrl-C stops everything (deploy/demo/run.sh).
run:
	bash deploy/demo/run.sh

## run-fixtures: enrich every real-client capture in ../shared/fixtures and show the call records.
run-fixtures: build
	@for dir in $(SHARED)/fixtures/*/; do \
	  client=$$(basename $$dir); \
	  echo "== $$client"; \
	  files=$$(ls $$dir[0-9]*.pb $$dir[0-9]*.json 2>/dev/null); \
	  ./target/release/claudewatch enrich $$files 2>&1 >target/$$client.jsonl | sed 's/^/   /'; \
	  python3 -c 'import json,sys; [print("   ", r["outcome"].ljust(16), str(r["http_status"]).ljust(4), (r["model_family"] or "-").ljust(18), "cost", r["cost_usd"], "ttft", r["ttft_ms"]) for r in map(json.loads, open(sys.argv[1]))]' target/$$client.jsonl 2>/dev/null || cat target/$$client.jsonl; \
	done
	@echo "Records written to target/<client>.jsonl; try: ./target/release/claudewatch enrich --help"

## test: unit, property, CLI and fixture ground-truth tests.
test:
	$(CARGO) test --workspace --locked

## test-realclients: the real Anthropic SDK, Traceloop and OpenLIT -> serve (HTTP and gRPC) -> ground truth, with progress.
test-realclients:
	$(CARGO) test -p claudewatch --test realclients --locked -- --nocapture

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

## bench: criterion benchmarks of decode and decode+enrich (one core).
bench:
	taskset -c 0 $(CARGO) bench -p claudewatch-enrich --bench pipeline

## bench-serve: loadgen against serve pinned to one core, per protocol (BENCH_CONCURRENCY HTTP exporters, default 32, BENCH_GRPC_CONCURRENCY gRPC ones, default 48,
## at full speed; 16 at 50,000 spans/s); serve's CPU share and µs per span, the generator's CPU share; enrich on the same payload as the ceiling.
## The full-speed cases and the ceiling run in BENCH_ROUNDS interleaved rounds (default 3), summarised by median and range.
bench-serve: $(BENCH_DEP)
	BIN=$(BENCH_BIN) sh bench/serve.sh $(BENCH_SECONDS)

## bench-instructions: instructions per span (callgrind; repeatable, unlike wall time on a shared VM).
bench-instructions:
	$(CARGO) bench -p claudewatch-enrich --bench instructions --no-run
	@bin=$$(ls -t target/release/deps/instructions-* | grep -v '\.d$$' | head -1); \
	base=$$(valgrind --tool=callgrind --callgrind-out-file=/dev/null $$bin none 2>&1 | grep -oE 'Collected : [0-9]+' | grep -oE '[0-9]+'); \
	for m in prost scan enrich prost-enrich window; do \
	  n=$$(valgrind --tool=callgrind --callgrind-out-file=/dev/null $$bin $$m 2>&1 | grep -oE 'Collected : [0-9]+' | grep -oE '[0-9]+'); \
	  echo "$$m: $$(( (n - base) / 20000 )) instructions/span"; \
	done

## bench-clickhouse: loadgen -> serve -> local ClickHouse rows/s (zero loss checked) vs the same rows inserted raw,
## in BENCH_ROUNDS rounds (default 3) summarised by the median ratio; the load generator builds its requests before
## the clock starts (BENCH_PREBUILD=0: while it sends).
bench-clickhouse: $(BENCH_DEP)
	BIN=$(BENCH_BIN) sh bench/clickhouse.sh $(BENCH_CALLS)

## fuzz: run each decoder fuzz target for FUZZ_SECONDS (needs cargo-fuzz).
FUZZ_SECONDS ?= 60
BENCH_SECONDS ?= 15
# 600k calls: long enough that the fixed delay before the last rows can land
# (merge window + batch age, about 3 s) does not dominate the rate.
BENCH_CALLS ?= 600000
fuzz:
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd fuzz && for t in decode_protobuf decode_json enrich_any zero_copy_equivalence http_body; do \
	  RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; done

clean:
	$(CARGO) clean

# ---- local ClickHouse (deploy/local): ClickHouse's engine from chdb-core behind its HTTP interface ----
LOCAL_CLICKHOUSE_PORT ?= 8123
LOCAL_CLICKHOUSE_DATA ?= target/local-clickhouse/data

.PHONY: local-clickhouse-venv local-clickhouse local-clickhouse-test

## local-clickhouse-venv: create target/local-clickhouse/venv from deploy/local/requirements.txt (no-op while it matches).
local-clickhouse-venv:
	sh deploy/local/venv.sh

## local-clickhouse: run the local ClickHouse in the foreground on 127.0.0.1:$(LOCAL_CLICKHOUSE_PORT), data in $(LOCAL_CLICKHOUSE_DATA).
local-clickhouse: local-clickhouse-venv
	cd deploy/local && exec $(CURDIR)/target/local-clickhouse/venv/bin/python -m chserver \
	  --data $(abspath $(LOCAL_CLICKHOUSE_DATA)) --port $(LOCAL_CLICKHOUSE_PORT)

## local-clickhouse-test: the server's Python unit tests, then the clickhouse crate's end-to-end test against it.
local-clickhouse-test: local-clickhouse-venv
	cd deploy/local && $(CURDIR)/target/local-clickhouse/venv/bin/python -m unittest discover -s .
	$(CARGO) test -p claudewatch-sink --test local_clickhouse --locked
# ---- end of local ClickHouse ----
