#!/usr/bin/env bash
# Load figures per topology: the mixed profile (1 and 2 worker processes), redis-benchmark
# next to the harness, and for Sentinel the latency timeline around a kill-master.
# JSON and plots go to reports/load-<topology>/.
#   bash scripts/measure-load.sh [users] [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
users="${1:-50}"; seconds="${2:-30}"
for kind in single sentinel cluster; do
  name="measure-l-${kind}"
  out="reports/load-${kind}"
  mkdir -p "$out"
  extra=()
  [ "$kind" = sentinel ] && extra=(--set sentinel.down_after_ms=1000)
  .venv/bin/redis-infra up --topology "$kind" --name "$name" "${extra[@]}" >/dev/null
  .venv/bin/redis-infra load --name "$name" --users "$users" --duration "$seconds" \
    --out "$out/mixed-1" --json "$out/mixed-1.json" | grep -v "^ " || true
  .venv/bin/redis-infra load --name "$name" --users "$users" --duration "$seconds" --processes 2 \
    --out "$out/mixed-2" --json "$out/mixed-2.json" | grep -v "^ " || true
  .venv/bin/redis-infra bench --name "$name" --clients "$users" --duration 15 \
    --out "$out/bench" --json "$out/bench.json" | tail -1
  if [ "$kind" = sentinel ]; then
    .venv/bin/redis-infra load --name "$name" --users "$users" --duration 45 --drill kill-master \
      --drill-after 10 --out "$out/failover" --json "$out/failover.json" | tail -1
  fi
  .venv/bin/redis-infra down --name "$name" >/dev/null
done
