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

status=0
.venv/bin/pytest --durations=15 "$@" || status=$?
if [ "$status" -eq 5 ]; then
  echo "test: pytest collected no tests; that is a failure here" >&2
  exit 1
fi
exit "$status"
