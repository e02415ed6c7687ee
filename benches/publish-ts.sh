#!/usr/bin/env bash
# Publishing a TypeScript transform against the same transform in JavaScript
# (docs/BENCHMARKS.md): `facade serve --demo` on a registry of its own; N publishes of the
# tv/home endpoint with resolvers-js/endpoints/tv/home.ts, then N with the JavaScript that
# strips to (the same code without its types), alternating; each publish a new version (a
# counter in a comment). Prints the median and p90 of each, as the admin API answered them.
#   benches/publish-ts.sh [BINARY] [N]      (default: target/release/facade, 30)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/facade}
N=${2:-30}
T=$(mktemp -d)
trap 'kill ${SERVER:-} 2>/dev/null || true; rm -rf "$T"' EXIT
. benches/common.sh
ports_free
TOKEN=fcd_bench_publish_ts
HASH=$(printf '%s' "$TOKEN" | sha256sum | cut -d' ' -f1)
FACADE_DATABASE__URL="sqlite://$T/f.db" FACADE_ADMIN__TOKEN_SHA256="[\"$HASH\"]" \
  "$BIN" serve --demo --listen 127.0.0.1:8099 > "$T/serve.log" 2>&1 &
SERVER=$!
wait_up localhost:8099/healthz 100 0.2
curl -s -o /dev/null -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
  -d '{"name":"bench","team":"bench"}' localhost:8099/admin/v1/clients
# The JavaScript: the TypeScript with its types stripped (what a publish runs).
python3 - "$T" <<'PY'
import json, re, sys
t = sys.argv[1]
ts = open("resolvers-js/endpoints/tv/home.ts").read()
js = ts.replace('import type { Ctx, Data } from "./home.types";\n', "")
js = js.replace("(data: Data, ctx: Ctx)", "(data, ctx)")
doc = open("resolvers-js/endpoints/tv/home.graphql").read()
for name, script in (("ts", ts), ("js", js)):
    json.dump({"document": doc, "script": script}, open(f"{t}/{name}.json", "w"))
PY
publish() {
  python3 -c 'import json,sys; b=json.load(open(sys.argv[1])); b["script"] += "\n// " + sys.argv[2] + "\n"; print(json.dumps(b))' "$T/$1.json" "$2" > "$T/body.json"
  curl -s -o "$T/out.json" -w '%{http_code} %{time_total}\n' -H "authorization: Bearer $TOKEN" \
    -H 'content-type: application/json' -d @"$T/body.json" localhost:8099/admin/v1/clients/bench/endpoints/home/versions
}
for i in $(seq 1 "$N"); do
  for kind in ts js; do
    read -r code secs < <(publish "$kind" "$kind-$i")
    [ "$code" = 201 ] || { echo "publish $kind $i: HTTP $code $(cat "$T/out.json")" >&2; exit 1; }
    echo "$kind $secs" >> "$T/times"
  done
done
for kind in ts js; do
  grep "^$kind " "$T/times" | awk '{print $2 * 1000}' | sort -n | awk -v k="$kind" '{a[NR]=$1} END {printf "%s: median %.2f ms, p90 %.2f ms (%d publishes)\n", k, a[int((NR+1)/2)], a[int(NR*0.9)], NR}'
done
