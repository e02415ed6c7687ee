#!/usr/bin/env bash
# Instructions per federated benchmark query (docs/BENCHMARKS.md): `facade serve` on the
# benchmark's supergraph (benches/federation/) under callgrind with instrumentation switched
# on only around a batch of requests; the four subgraphs (`facade-bench subgraphs`) run in
# another process, not counted.
#   benches/callgrind-federation.sh [DIR] [REQUESTS]   (DIR holds facade and facade-bench;
#                                                      default target/release, 30)
# Needs valgrind and curl; ports 4200 and 8099 free. KEEP=FILE keeps the profile for
# callgrind_annotate.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-target/release}
N=${2:-30}
T=$(mktemp -d)
trap 'kill ${VG:-} ${SUB:-} 2>/dev/null || true; rm -rf "$T"' EXIT
. benches/common.sh
if curl -s -o /dev/null localhost:4200/_calls || curl -s -o /dev/null localhost:8099/healthz; then
  echo "ports 4200 or 8099 already serve: stop what runs there first" >&2
  exit 1
fi
"$DIR/facade-bench" subgraphs --listen 127.0.0.1:4200 > "$T/subgraphs.log" 2>&1 &
SUB=$!
wait_up localhost:4200/_calls 100 0.2
mkdir "$T/schema"
cp benches/federation/supergraph.graphql "$T/schema/"
FACADE_DATABASE__URL="sqlite://$T/f.db" FACADE_LIMITS__MAX_COST=100000000 FACADE_SCHEMA__WATCH=false \
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$T/cg.out.%p" \
  "$DIR/facade" serve --listen 127.0.0.1:8099 --schema "$T/schema" > "$T/serve.log" 2>&1 &
VG=$!
wait_up localhost:8099/healthz 600 0.5
BODY=$(python3 -c 'import json,sys;print(json.dumps({"query":open(sys.argv[1]).read()}))' benches/federation/query.graphql)
post() { curl -s -o /dev/null -w '%{size_download}\n' localhost:8099/graphql -H 'content-type: application/json' -d "$BODY"; }
callgrind_batch "$N" 10 "$T"
echo "instructions over $N federated queries: $TOTAL; per query: $((TOTAL / N))"
if [ -n "${KEEP:-}" ]; then cat "$T"/cg.out* > "$KEEP"; fi
