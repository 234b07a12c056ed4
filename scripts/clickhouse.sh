#!/usr/bin/env bash
# Install (Debian's clickhouse-server) and start ClickHouse on 127.0.0.1:9000 (native
# protocol) for the analytics service's integration tests and benchmarks, unless it
# already answers. Idempotent: safe to run again. Debian/Ubuntu, as root.
#
#   scripts/clickhouse.sh
#   export ATRIUM_TEST_CLICKHOUSE_URL=clickhouse://127.0.0.1:9000/analytics_test
set -euo pipefail

port_open() { (echo >"/dev/tcp/$1/$2") 2>/dev/null; }

if port_open 127.0.0.1 9000; then
  echo "clickhouse: up on 127.0.0.1:9000"
  exit 0
fi

if ! command -v clickhouse-server >/dev/null 2>&1; then
  echo "clickhouse: installing clickhouse-server and clickhouse-client"
  if [[ ! -f /var/lib/apt/periodic/atrium-updated ]]; then
    apt-get update -qq && mkdir -p /var/lib/apt/periodic && touch /var/lib/apt/periodic/atrium-updated
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clickhouse-server clickhouse-client >/dev/null
fi

# The server runs as its own user; its data and log directories must be its own.
install -d -o clickhouse -g clickhouse /var/lib/clickhouse /var/log/clickhouse-server /var/run/clickhouse-server
echo "clickhouse: starting"
su -s /bin/sh clickhouse -c \
  "cd /var/lib/clickhouse && clickhouse-server --config-file=/etc/clickhouse-server/config.xml --pid-file=/var/run/clickhouse-server/clickhouse-server.pid --daemon"

for _ in $(seq 1 120); do
  if port_open 127.0.0.1 9000 && clickhouse-client --host 127.0.0.1 --query "SELECT 1" >/dev/null 2>&1; then
    echo "clickhouse: up on 127.0.0.1:9000"
    exit 0
  fi
  sleep 1
done
echo "clickhouse: did not start; see /var/log/clickhouse-server/clickhouse-server.err.log" >&2
exit 1
