#!/usr/bin/env bash
# Load figures per topology, side by side with their anchors in the same run:
#   capacity (closed loop, bench and mixed profiles, 1 and 2 worker processes),
#   `bench`: redis-benchmark at the same concurrency and one request at a time, and
#   redis-py paced at the SLO rate, next to ours; an SLO run at a fixed rate (1 and
#   2 processes) and the seed's SLO file on the mixed profile; for Sentinel, the latency timeline around a kill-master from an
#   open-loop and from a closed-loop run, with the data nodes' replication log lines
#   (what the nodes did while throughput was down).
# Each run's full output is in reports/load-<topology>/<run>.txt, its figures in
# <run>.json; the summary lines are printed here.
#   bash scripts/measure-load.sh [users] [seconds] [rate]
set -euo pipefail
cd "$(dirname "$0")/.."
users="${1:-50}"; seconds="${2:-20}"; rate="${3:-3000}"
cli=.venv/bin/redis-infra

run() {  # run <out-dir> <label> <redis-infra args...>: output to a file, summary here
  local out="$1" label="$2"; shift 2
  local code=0
  "$cli" "$@" --out "$out/$label" --json "$out/$label.json" >"$out/$label.txt" 2>&1 || code=$?
  echo "== $label (exit $code)"
  grep -E "^(capacity|SLO) run|^  (generator|verdict|kill-master|response)|^    - |^(GET|SET|ratios)" \
    "$out/$label.txt" || tail -5 "$out/$label.txt"
}

for kind in single sentinel cluster; do
  name="measure-l-${kind}"
  out="reports/load-${kind}"
  mkdir -p "$out"
  extra=()
  [ "$kind" = sentinel ] && extra=(--set sentinel.down_after_ms=1000)
  echo "### $kind"
  "$cli" up --topology "$kind" --name "$name" "${extra[@]}" >/dev/null
  for profile in bench mixed; do
    for processes in 1 2; do
      run "$out" "capacity-$profile-$processes" load --name "$name" --profile "$profile" \
        --users "$users" --processes "$processes" --duration "$seconds"
    done
  done
  for processes in 1 2; do
    run "$out" "slo-bench-$processes" load --name "$name" --profile bench --users 20 \
      --processes "$processes" --rate "$rate" --duration "$seconds"
  done
  # The README's SLO command: the seed's targets at the rate their file states.
  run "$out" slo-mixed-2 load --name "$name" --profile mixed --users 50 --processes 2 \
    --slo loadtests/slo.yaml --duration "$seconds"
  run "$out" bench bench --name "$name" --clients "$users" --duration "$seconds" --rate "$rate"
  if [ "$kind" = sentinel ]; then
    run "$out" failover load --name "$name" --profile mixed --users 20 --rate 1000 \
      --duration 45 --drill kill-master --drill-after 10
    since="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    run "$out" failover-closed load --name "$name" --profile mixed --users 20 --duration 45 \
      --drill kill-master --drill-after 10
    for node in 0 1 2; do
      docker logs --since "$since" "$name-data-$node" 2>&1 \
        | grep -E "Full resync|Partial resynchronization|MASTER <-> REPLICA sync|Background (saving|RDB transfer)|Synchronization with replica|AOF rewrite|Loading" \
        | sed "s/^/data-$node: /" || true
    done | tee "$out/failover-closed-replication.txt"
  fi
  "$cli" down --name "$name" >/dev/null
done
