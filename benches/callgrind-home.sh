#!/usr/bin/env bash
# Instructions per home query (docs/BENCHMARKS.md): `facade serve` and its script workers
# (child processes, traced too) under callgrind with instrumentation switched on only around a
# batch of requests; the demo backends run in another process, not counted. Repeatable to ~0.2 %.
#   benches/callgrind-home.sh [BINARY] [REQUESTS]      (default: target/release/facade, 50)
# Needs valgrind and curl; ports 7101-7106 and 8099 free. KEEP=FILE keeps the profile;
# DEVICE=1 measures GET /v1/tv/home (the published endpoint, with its transform).
# CG_OPTS adds callgrind options, e.g. "--separate-threads=yes" (a total per thread) or
# "--dump-instr=yes" (cost per instruction). The script workers' share is printed apart.
# ARTWORK_FAULTS sets the artwork backend's demo faults first, e.g. '{"errorRate":1.0}' (every
# artwork call fails: the home query answers 200 errors once the breaker is open).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/facade}
N=${2:-50}
T=$(mktemp -d)
trap 'kill ${VG:-} ${DEMO:-} 2>/dev/null || true; rm -rf "$T"' EXIT
. benches/common.sh
ports_free
start_demo "$BIN" "$T/demo.log"
if [ -n "${ARTWORK_FAULTS:-}" ]; then
  curl -sf -o /dev/null -H 'content-type: application/json' -d "$ARTWORK_FAULTS" localhost:7104/_demo/faults
fi
# Scripts get a long deadline: under valgrind everything runs ~50x slower.
FACADE_SCRIPTS__DEADLINE_MS=10000 FACADE_DATABASE__URL="sqlite://$T/f.db" \
  valgrind --tool=callgrind --instr-atstart=no --trace-children=yes ${CG_OPTS:-} --callgrind-out-file="$T/cg.out.%p" \
  "$BIN" serve --listen 127.0.0.1:8099 > "$T/serve.log" 2>&1 &
VG=$!
wait_up localhost:8099/healthz 600 0.5
if [ -n "${DEVICE:-}" ]; then
  publish_samples "$BIN" "sqlite://$T/f.db"
fi
BODY=$(python3 -c 'import json,sys;print(json.dumps({"query":open(sys.argv[1]).read(),"variables":{"profileId":"1"}}))' \
  resolvers-js/endpoints/tv/home.graphql)
# DEVICE=1: the device call by ID with the tv/home transform instead of the ad-hoc query.
if [ -n "${DEVICE:-}" ]; then
  post() { curl -s -o /dev/null -w '%{size_download}\n' 'localhost:8099/v1/tv/home?profileId=1'; }
else
  post() { curl -s -o /dev/null -w '%{size_download}\n' localhost:8099/graphql -H 'content-type: application/json' -d "$BODY"; }
fi
# Every process under callgrind: the server and its script workers.
callgrind_batch "$N" 20 "$T"
WORKERS=$( (grep -l "script-worker" "$T"/cg.out* 2>/dev/null || true) | xargs -r cat | awk '/^totals:/ {s += $2} END {print s + 0}')
echo "instructions over $N home queries: $TOTAL; per query: $((TOTAL / N)) (script workers: $((WORKERS / N)))"
# KEEP=FILE keeps the profile for callgrind_annotate; KEEP_DIR=DIR keeps one file per process
# (the server's, each script worker's), which callgrind_annotate reads one at a time.
if [ -n "${KEEP:-}" ]; then cat "$T"/cg.out* > "$KEEP"; fi
if [ -n "${KEEP_DIR:-}" ]; then mkdir -p "$KEEP_DIR" && cp "$T"/cg.out* "$KEEP_DIR"/; fi
