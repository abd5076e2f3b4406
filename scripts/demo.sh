#!/usr/bin/env bash
# The main job: set up, deploy a topology and prove it works.
#   bash scripts/demo.sh [single|sentinel|cluster] [name]
set -euo pipefail
cd "$(dirname "$0")/.."
topology="${1:-single}"
name="${2:-demo}"

bash scripts/setup.sh
.venv/bin/redis-infra up --topology "$topology" --name "$name"
.venv/bin/redis-infra verify --name "$name"
.venv/bin/redis-infra status --name "$name"
echo
echo "It stays up. Remove it with: .venv/bin/redis-infra down --name $name"
