#!/usr/bin/env bash
# Start the engines Atrium's integration tests use, when they are not already
# running. Idempotent: safe to run again. Debian/Ubuntu, as root (as CI runs).
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }
port_open() { (echo >"/dev/tcp/$1/$2") 2>/dev/null; }
apt_install() {
  if [[ ! -f /var/lib/apt/periodic/atrium-updated ]]; then
    apt-get update -qq && mkdir -p /var/lib/apt/periodic && touch /var/lib/apt/periodic/atrium-updated
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# MQTT command-line clients, used by the agent's tests as a real peer.
if ! have mosquitto_pub; then
  echo "engines: installing mosquitto-clients"
  apt_install mosquitto-clients
fi

# RabbitMQ on 127.0.0.1:5672 (guest/guest).
if ! port_open 127.0.0.1 5672; then
  if ! have rabbitmq-server; then
    echo "engines: installing rabbitmq-server"
    apt_install rabbitmq-server
  fi
  echo "engines: starting RabbitMQ"
  rabbitmq-server -detached >/dev/null 2>&1 || true
  timeout 120 rabbitmqctl await_startup >/dev/null 2>&1 || true
  for _ in $(seq 1 120); do port_open 127.0.0.1 5672 && break; sleep 1; done
fi
port_open 127.0.0.1 5672 || { echo "engines: RabbitMQ did not start" >&2; exit 1; }
echo "engines: RabbitMQ up on 127.0.0.1:5672"

# ClickHouse on 127.0.0.1:9000 (analytics at scale).
"$(dirname "$0")/clickhouse.sh"

# A MongoDB-wire server on 127.0.0.1:27017 (FerretDB on PostgreSQL), when the project has it.
if [[ -x "$(dirname "$0")/ferretdb.sh" ]]; then
  "$(dirname "$0")/ferretdb.sh"
fi

# Headless Chromium for the dashboard's browser test, when the project has it.
if [[ -x "$(dirname "$0")/chromium.sh" ]]; then
  "$(dirname "$0")/chromium.sh"
fi
