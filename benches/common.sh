# Shared by the benchmark scripts (sourced): the checks and start-up both need.

# Fails unless the demo backends' ports (7101-7106) and Facade's (8099) are free: backends
# already there would be measured instead, with whatever faults they have.
ports_free() {
  if curl -s -o /dev/null localhost:7101/profiles/1 || curl -s -o /dev/null localhost:8099/healthz; then
    echo "ports 7101-7106 or 8099 already serve: stop what runs there first" >&2
    exit 1
  fi
}

# Polls URL until it answers, at most TRIES times DELAY seconds apart.
wait_up() {
  local url=$1 tries=$2 delay=$3
  for _ in $(seq 1 "$tries"); do curl -s -o /dev/null "$url" && return 0; sleep "$delay"; done
  echo "$url did not answer" >&2
  exit 1
}

# Starts `BIN demo-backends` (log in LOG) and waits for it; its PID in DEMO.
start_demo() {
  "$1" demo-backends > "$2" 2>&1 &
  DEMO=$!
  wait_up localhost:7101/profiles/1 100 0.2
}

# Publishes the sample endpoints (resolvers-js/endpoints) to the Facade on :8099 whose
# registry is DB_URL, through the admin API with a token made for this run.
publish_samples() {
  local bin=$1 db_url=$2 token
  token=$(FACADE_DATABASE__URL="$db_url" "$bin" token create --admin --label bench | grep -o 'fcd_[A-Za-z0-9_]*' | head -1)
  for c in tv ios web; do
    curl -s -o /dev/null -H "authorization: Bearer $token" -H 'content-type: application/json' \
      -d "{\"name\":\"$c\",\"team\":\"$c\"}" localhost:8099/admin/v1/clients
  done
  "$bin" publish resolvers-js/endpoints --url http://127.0.0.1:8099 --token "$token" --reason bench > /dev/null
}

# Calls `post` (a function the script defines, printing the answer's size) WARM times, then
# N times with callgrind's instrumentation on in every process it traces (profiles in
# DIR/cg.out*); prints the answers' sizes and sets TOTAL to the instructions counted.
callgrind_batch() {
  local n=$1 warm=$2 dir=$3
  for _ in $(seq 1 "$warm"); do post > /dev/null; done
  callgrind_control -i on > /dev/null
  for _ in $(seq 1 "$n"); do post; done | sort | uniq -c | sed 's/^/response bytes: /'
  callgrind_control -i off > /dev/null
  callgrind_control -d > /dev/null
  TOTAL=$(cat "$dir"/cg.out* | awk '/^totals:/ {s += $2} END {print s}')
}
