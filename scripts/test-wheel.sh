#!/usr/bin/env bash
# Use the project the way someone who installs the wheel would: build it, install it
# into a fresh virtualenv in a temporary folder outside the checkout, and from there
# run image build, render, up, verify, a short SLO load run and down of a single node.
# Needs the Docker engine (scripts/setup.sh starts it). Cleans up after itself.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d /tmp/redis-infra-wheel.XXXXXX)"
name="wheel-$$"
cleanup() {
  if [ -x "$work/venv/bin/redis-infra" ]; then
    (cd "$work" && "$work/venv/bin/redis-infra" down --name "$name" >/dev/null 2>&1) || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# From a copy of the tracked files only: a build/ folder left in the checkout by an
# earlier build could otherwise slip stale modules into the wheel.
mkdir "$work/src"
(cd "$repo" && git ls-files -z | xargs -0 cp -P --parents -t "$work/src")
"$repo/.venv/bin/pip" wheel -q --no-deps --wheel-dir "$work/dist" "$work/src"
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q --disable-pip-version-check "$work"/dist/redis_infra-*.whl 2>&1 \
  | { grep -v "^WARNING: Location .* is ignored" || true; }

cd "$work"  # nothing of the checkout is reachable from here
export REDIS_INFRA_STATE_HOME="$work/state"
cli="$work/venv/bin/redis-infra"
step() { echo "wheel: $*"; "$@"; }
step "$cli" image build
step "$cli" render --topology sentinel --name "$name" --out "$work/rendered"
test -s "$work/rendered/$name-data-0/redis.conf" && test -s "$work/rendered/$name-sentinel-0/sentinel.conf"
step "$cli" up --topology single --name "$name"
step "$cli" verify --name "$name"
step "$cli" load --name "$name" --profile mixed --users 10 --duration 4 --slo slo-ci.yaml \
  --out "$work/load"
step "$cli" down --name "$name"
echo "wheel: every command ran from the installed wheel ($(ls "$work"/dist))"
