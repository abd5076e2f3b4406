#!/usr/bin/env bash
# Figures for the Cluster topology: bring-up (median of 5), every drill N times with
# the given overrides, and scale-out of a cluster holding 100,000 keys. JSON reports
# go to reports/cluster-<label>/.
#   bash scripts/measure-cluster.sh <label> <runs> [--set key=value ...]
set -euo pipefail
cd "$(dirname "$0")/.."
label="$1"; runs="$2"; shift 2
name="measure-c-${label}"
out="reports/cluster-${label}"
scenarios="${SCENARIOS:-kill-master pause-master partition-master restart-node restart-all}"
mkdir -p "$out"
.venv/bin/redis-infra measure-up --topology cluster --runs 5 --json "$out/bring-up.json" "$@"
.venv/bin/redis-infra up --topology cluster --name "$name" "$@" >/dev/null
trap '.venv/bin/redis-infra down --name "$name" >/dev/null' EXIT
for scenario in $scenarios; do
  .venv/bin/redis-infra drill --name "$name" --scenario "$scenario" --runs "$runs" \
    --json "$out/$scenario.json" | grep -E "^(medians|$scenario)" || true
done
.venv/bin/redis-infra measure-scale --name "$name" --masters 4 --keys 100000 --json "$out/scale-out.json"
