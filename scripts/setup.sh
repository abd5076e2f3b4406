#!/usr/bin/env bash
# Everything the project needs on a Debian machine, idempotent:
#   Debian packages (Python venv, Redis tools for the image, busybox for its jobs,
#   the shell linter for the shell programs, and Node.js for the ioredis client check),
#   a Docker engine, the project's virtualenv with pinned dependencies, and the
#   local Redis image built from Debian's packages.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(python3-venv redis-tools busybox-static ca-certificates openssl shellcheck)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
apt_install() {  # PACKAGE...: as root, or stop naming what is missing
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing Debian packages $*; run this script as root (sudo)" >&2
    exit 1
  fi
  echo "setup: installing $*"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "$@" >/dev/null
}
if [ ${#missing[@]} -gt 0 ]; then
  apt_install "${missing[@]}"
fi

# Node.js may come from Debian or another vendor (which bundles npm): ask for the
# commands, not for package names.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  apt_install nodejs npm
fi
clients=tests/clients/ioredis
if [ ! -d "$clients/node_modules/ioredis" ] || [ "$clients/package-lock.json" -nt "$clients/node_modules" ]; then
  echo "setup: installing the pinned ioredis for the client check"
  npm ci --prefix "$clients" --no-audit --no-fund --silent
  touch "$clients/node_modules"
fi

bash scripts/ensure-docker.sh

if [ ! -x .venv/bin/redis-infra ] || [ pyproject.toml -nt .venv/.installed ]; then
  echo "setup: creating .venv with the pinned dependencies"
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e ".[dev]"
  touch .venv/.installed
fi

if ! .venv/bin/python -c "import docker, sys; docker.from_env().images.get('redis-infra/redis:7.0.15')" 2>/dev/null; then
  .venv/bin/redis-infra image build
fi
echo "setup: done"
