#!/usr/bin/env bash
# Make sure a Docker engine answers: install Debian's docker.io if there is none,
# then start dockerd (systemd where it runs, else in the background). Idempotent.
set -euo pipefail

engine_up() { docker info >/dev/null 2>&1 || python3 - <<'PY' 2>/dev/null
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect("/var/run/docker.sock"); s.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
    sys.exit(0 if b"OK" in s.recv(256) else 1)
except OSError:
    sys.exit(1)
PY
}

if engine_up; then
  echo "docker engine: running"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "docker engine: not running, and starting it needs root (run this script with sudo)" >&2
  exit 1
fi
if ! command -v dockerd >/dev/null 2>&1; then
  echo "docker engine: installing Debian's docker.io"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker.io >/dev/null
fi
if command -v systemctl >/dev/null 2>&1 && systemctl is-system-running >/dev/null 2>&1; then
  systemctl start docker
else
  # No init system (containers, CI sandboxes): run the daemon in the background.
  # Without the userland proxy, published ports are plain NAT: loopback clients get
  # ~1.8x the requests per connection (measured; see README, "Load").
  nohup dockerd --userland-proxy=false >/var/log/redis-infra-dockerd.log 2>&1 &
fi
for _ in $(seq 1 60); do
  if engine_up; then
    echo "docker engine: started"
    exit 0
  fi
  sleep 0.5
done
echo "docker engine: did not start; see /var/log/redis-infra-dockerd.log" >&2
exit 1
