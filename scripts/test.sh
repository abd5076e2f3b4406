#!/usr/bin/env bash
# Set up, then run the linters and the whole test suite (unit + integration on real
# containers). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
.venv/bin/ruff check infra tests loadtests
.venv/bin/ruff format --check infra tests loadtests
.venv/bin/mypy
shellcheck scripts/*.sh .ci/run redis/jobs/*.sh

# pytest reports on stdout; a copy is kept so that a failed run also names its failed
# tests on stderr, where a CI log that keeps only stderr's tail still shows them.
log="$(mktemp /tmp/redis-infra-pytest.XXXXXX)"
trap 'rm -f "$log"' EXIT
set +e
.venv/bin/pytest --durations=15 "$@" | tee "$log"
status=${PIPESTATUS[0]}
set -e
if [ "$status" -eq 5 ]; then
  echo "test: pytest collected no tests; that is a failure here" >&2
  exit 1
fi
if [ "$status" -ne 0 ]; then
  {
    echo "test: pytest exited $status; its summary:"
    sed -n '/short test summary info/,$p' "$log"
  } >&2
fi
exit "$status"
