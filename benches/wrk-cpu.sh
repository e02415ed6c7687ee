#!/usr/bin/env bash
# CPU per home query under load (docs/benchmarks-history.md §23): `facade serve` and the demo backends
# in two processes, `wrk -t1 -cC` posting the home query for 10 s after 3 s not counted; the
# CPU each process used over that window (/proc/PID/stat) divided by the requests answered,
# and Facade's context switches per request (all its threads, /proc/PID/task/*/status).
# DEVICE=1: `GET /v1/tv/home?profileId=N` instead (the sample endpoint with its transform,
# published first; profileId varied over 1..1000), Facade's CPU counting its script workers.
# Compare binaries by alternating them: the machine's speed drifts by ±10 % within minutes.
#   benches/wrk-cpu.sh [BINARY] [CONNECTIONS]      (default: target/release/facade, 50)
# Needs wrk, curl and python3; ports 7101-7106 and 8099 free.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/facade}
C=${2:-50}
T=$(mktemp -d)
trap 'kill ${SRV:-} ${DEMO:-} 2>/dev/null || true; rm -rf "$T"' EXIT
. benches/common.sh
ports_free
start_demo "$BIN" "$T/demo.log"
# The door's per-client limit (5,000/s by default) would answer 429 past it: lifted here.
FACADE_LIMITS__CLIENT_RATE_PER_SEC=${FACADE_LIMITS__CLIENT_RATE_PER_SEC:-10000000} FACADE_LIMITS__CLIENT_BURST=${FACADE_LIMITS__CLIENT_BURST:-10000000} \
  FACADE_DATABASE__URL="sqlite://$T/f.db" RUST_LOG=warn "$BIN" serve --listen 127.0.0.1:8099 > "$T/serve.log" 2>&1 &
SRV=$!
wait_up localhost:8099/healthz 100 0.2
python3 - resolvers-js/endpoints/tv/home.graphql > "$T/post.lua" <<'PY'
import json, sys
body = json.dumps({"query": open(sys.argv[1]).read(), "variables": {"profileId": "1"}})
print('wrk.method = "POST"\nwrk.headers["content-type"] = "application/json"\nwrk.body = ' + json.dumps(body))
PY
URL=http://127.0.0.1:8099/graphql
if [ -n "${DEVICE:-}" ]; then
  publish_samples "$BIN" "sqlite://$T/f.db"
  printf 'request = function()\n  return wrk.format("GET", "/v1/tv/home?profileId=" .. math.random(1, 1000))\nend\n' > "$T/post.lua"
  URL=http://127.0.0.1:8099
fi
wrk -t1 -c"$C" -d3s -s "$T/post.lua" "$URL" > /dev/null
# Facade's CPU: the server and its script workers (its child processes).
ticks() { for p in "$@"; do awk '{print $14 + $15}' "/proc/$p/stat"; done | awk '{s += $1} END {print s}'; }
switches() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {s += $2} END {print s}'; }
WORKERS=$(pgrep -P "$SRV" -f script-worker | tr '\n' ' ' || true)
f0=$(ticks $SRV $WORKERS); w0=$(ticks $WORKERS); d0=$(ticks $DEMO); s0=$(switches $SRV)
out=$(wrk -t1 -c"$C" -d10s --latency -s "$T/post.lua" "$URL")
f1=$(ticks $SRV $WORKERS); w1=$(ticks $WORKERS); d1=$(ticks $DEMO); s1=$(switches $SRV)
n=$(echo "$out" | awk '/requests in/ {print $1}')
rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
bad=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
# Ticks are 10 ms (USER_HZ 100): µs per request = ticks × 10,000 / requests.
echo "RPS $rps, p99 $p99${bad:+, non-2xx $bad}; CPU per request: Facade $(( (f1 - f0) * 10000 / n )) µs (script workers $(( (w1 - w0) * 10000 / n )) µs), demo backends $(( (d1 - d0) * 10000 / n )) µs; Facade context switches per request $(( (s1 - s0) * 100 / n ))/100"
