#!/usr/bin/env bash
# Failover figures for the Sentinel topology: deploy with the given overrides, run every
# drill N times, write per-run reports and medians to reports/sentinel-<label>/.
#   bash scripts/measure-sentinel.sh <label> <runs> [--set key=value ...]
set -euo pipefail
cd "$(dirname "$0")/.."
label="$1"; runs="$2"; shift 2
name="measure-${label}"
out="reports/sentinel-${label}"
scenarios="${SCENARIOS:-kill-master pause-master partition-master kill-sentinels restart-master}"
mkdir -p "$out"
.venv/bin/redis-infra up --topology sentinel --name "$name" "$@" >/dev/null
trap '.venv/bin/redis-infra down --name "$name" >/dev/null' EXIT
for scenario in $scenarios; do
  .venv/bin/redis-infra drill --name "$name" --scenario "$scenario" --runs "$runs" \
    --json "$out/$scenario.json" | grep -E "^(medians|$scenario)" || true
done
