#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (default 600 s each, two at a time on two cores),
# starting from and adding to the committed corpus in fuzz/corpus/. Needs cargo-fuzz
# (`cargo install cargo-fuzz`); on a stable toolchain RUSTC_BOOTSTRAP=1 lets it pass the
# instrumentation flags, and no sanitizer is used. Prints each target's last status line
# (executions, coverage) and fails if a target found a crash (kept in fuzz/artifacts/).
#   fuzz/run.sh [SECONDS] [TARGET…]
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-600}"; shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(sdl_loader route_template document_analysis graphql_http_request backend_body)
export RUSTC_BOOTSTRAP=1
cargo fuzz build -s none
mkdir -p logs
run() {
  local t=$1
  cargo fuzz run -s none "$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=4096 -print_final_stats=1 \
    > "logs/$t.log" 2>&1 && echo "$t: ok" || echo "$t: FAILED (see fuzz/logs/$t.log and fuzz/artifacts/$t)"
}
status=0
for ((i = 0; i < ${#targets[@]}; i += 2)); do
  run "${targets[i]}" &
  [ $((i + 1)) -lt ${#targets[@]} ] && run "${targets[i + 1]}" &
  wait
done
for t in "${targets[@]}"; do
  grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb|^#[0-9]+.*DONE" "logs/$t.log" | sed "s/^/$t: /" || true
  if ls "artifacts/$t"/crash-* >/dev/null 2>&1; then status=1; echo "$t: crashes: $(ls artifacts/$t/crash-* | wc -l)"; fi
done
exit $status
