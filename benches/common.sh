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
