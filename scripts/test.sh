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
log="$(mktemp "${TMPDIR:-/tmp}/redis-infra-pytest.XXXXXX")"
trap 'rm -f "$log"' EXIT
color=()
if [ -t 1 ]; then color=(--color=yes); fi  # through tee pytest would see no terminal
set +e
# tee -i: a Ctrl-C stops pytest (which reports it, exit 2), not the copy.
.venv/bin/pytest --durations=15 "${color[@]}" "$@" | tee -i "$log"
status=${PIPESTATUS[0]}
set -e
if [ "$status" -eq 5 ]; then
  echo "test: pytest collected no tests; that is a failure here" >&2
  exit 1
fi
if [ "$status" -ne 0 ]; then
  {
    echo "test: pytest exited $status; its summary:"
    # From the last summary header: a failing test's captured output may hold an inner
    # pytest run's summary too.
    tac "$log" | sed '/short test summary info/q' | tac
  } >&2
fi
exit "$status"
