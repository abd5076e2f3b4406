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
export PYTHONUNBUFFERED=1  # through tee, a command's stdout and stderr keep their order
step() {  # COMMAND...: run it; a failure also goes to stderr, with the command's last lines
  echo "wheel: $*"
  local status
  set +e
  "$@" 2>&1 | tee -i "$work/step.log"
  status=${PIPESTATUS[0]}
  set -e
  if [ "$status" -ne 0 ]; then
    { echo "wheel: $* exited $status; its last lines:"; tail -n 40 "$work/step.log"; } >&2
    exit "$status"
  fi
}
step "$cli" image build
step "$cli" render --topology sentinel --name "$name" --out "$work/rendered"
test -s "$work/rendered/$name-data-0/redis.conf" && test -s "$work/rendered/$name-sentinel-0/sentinel.conf"
step "$cli" up --topology single --name "$name"
step "$cli" verify --name "$name"
step "$cli" load --name "$name" --profile mixed --users 10 --duration 4 --slo slo-ci.yaml \
  --out "$work/load"
step "$cli" down --name "$name"

# An application's suite outside the repository gets the fixtures from the wheel alone.
"$work/venv/bin/pip" install -q --disable-pip-version-check "pytest==9.2.0"
mkdir "$work/app-tests"
cat > "$work/app-tests/test_app.py" <<'PY'
def test_a_session_on_a_hardened_single_node(redis_single):
    redis_single.set("app:session:1", "alice", ex=1800)
    assert redis_single.get("app:session:1") == b"alice"


def test_the_app_survives_a_sentinel_failover(redis_sentinel, redis_sentinel_deployment):
    group = redis_sentinel_deployment
    redis_sentinel.set("app:cart:1", "book")
    assert redis_sentinel.wait(2, 5000) == 2
    old = group.master()
    group.kill(old)
    try:
        assert group.wait_for_new_master(old, timeout_s=60) != old
    finally:
        group.start_node(old)
    assert redis_sentinel.get("app:cart:1") == b"book"
PY
owned() {  # every container, network and volume a test deployment made
  {
    docker container ls -aq --filter label=redis-infra.test-owner | sed 's/^/container /'
    docker network ls -q --filter label=redis-infra.test-owner | sed 's/^/network /'
    docker volume ls -q --filter label=redis-infra.test-owner | sed 's/^/volume /'
  } | sort
}
before="$(owned)"
(cd "$work/app-tests" && step "$work/venv/bin/pytest" -p redis_infra -q test_app.py)
after="$(owned)"
if [ "$after" != "$before" ]; then
  echo "wheel: the fixtures left resources behind:" >&2
  comm -13 <(echo "$before") <(echo "$after") >&2
  exit 1
fi
echo "wheel: every command ran from the installed wheel ($(ls "$work"/dist)), and its pytest plugin served an outside suite"
