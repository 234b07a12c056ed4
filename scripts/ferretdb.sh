#!/usr/bin/env bash
# Start FerretDB (a MongoDB wire-protocol server, Apache-2.0) on 127.0.0.1:27017,
# backed by PostgreSQL on 127.0.0.1:5432, for the MongoDB adapters' integration
# tests and benchmarks, unless something already answers there. Idempotent: safe
# to run again. Debian/Ubuntu, as root (as CI runs).
#
#   scripts/ferretdb.sh
#   export ATRIUM_TEST_MONGODB_URL=mongodb://127.0.0.1:27017/
#
# MongoDB itself is not packaged for Debian; FerretDB 1.24 speaks its wire
# protocol over PostgreSQL. It is built from tools/ferretdb (its own Go module,
# so Atrium's go.mod does not carry FerretDB's dependencies) into
# ${ATRIUM_CACHE:-$HOME/.cache/atrium}/ferretdb. Environment:
#   FERRETDB_LISTEN          listen address (default 127.0.0.1:27017)
#   FERRETDB_POSTGRESQL_URL  backend database (default postgres://127.0.0.1:5432/ferretdb)
set -euo pipefail
cd "$(dirname "$0")/.."

listen="${FERRETDB_LISTEN:-127.0.0.1:27017}"
host="${listen%:*}"
port="${listen##*:}"
pg_url="${FERRETDB_POSTGRESQL_URL:-postgres://127.0.0.1:5432/ferretdb}"
cache="${ATRIUM_CACHE:-$HOME/.cache/atrium}/ferretdb"
log="$cache/ferretdb.log"

port_open() { (echo >"/dev/tcp/$1/$2") 2>/dev/null; }

# A TCP port alone could be anything: ping runs the MongoDB "ping" command.
if port_open "$host" "$port"; then
  if (cd tools/ferretdb && go run ./ping "mongodb://$listen/") >/dev/null 2>&1; then
    echo "ferretdb: MongoDB wire protocol up on $listen"
    exit 0
  fi
  pid=$(cat "$cache/ferretdb.pid" 2>/dev/null || true)
  if [[ -n $pid ]] && ps -p "$pid" -o comm= 2>/dev/null | grep -q ferretdb; then
    # Ours, but not answering (e.g. wedged by an earlier run): start it afresh.
    echo "ferretdb: our server on $listen does not answer; restarting it"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do port_open "$host" "$port" || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do port_open "$host" "$port" || break; sleep 0.5; done
  else
    echo "ferretdb: $listen is taken by something that does not speak the MongoDB protocol" >&2
    exit 1
  fi
fi

# PostgreSQL: start the Debian cluster when its port is closed.
if ! port_open 127.0.0.1 5432; then
  echo "ferretdb: starting PostgreSQL"
  if command -v pg_lsclusters >/dev/null 2>&1; then
    pg_lsclusters --no-header | while read -r ver name _; do
      pg_ctlcluster "$ver" "$name" start || true
    done
  else
    service postgresql start || true
  fi
  for _ in $(seq 1 60); do port_open 127.0.0.1 5432 && break; sleep 1; done
  port_open 127.0.0.1 5432 || { echo "ferretdb: PostgreSQL is not running on 127.0.0.1:5432" >&2; exit 1; }
fi

# The backend database, created once.
pg_db="${pg_url##*/}"
pg_db="${pg_db%%\?*}"
pg_base="${pg_url%/*}/postgres"
if ! psql "$pg_base" -Atqc "SELECT 1 FROM pg_database WHERE datname = '$pg_db'" | grep -q 1; then
  echo "ferretdb: creating PostgreSQL database $pg_db"
  psql "$pg_base" -qc "CREATE DATABASE \"$pg_db\"" >/dev/null
fi

mkdir -p "$cache"
echo "ferretdb: building tools/ferretdb"
(cd tools/ferretdb && go build -o "$cache/ferretdb" . && go build -o "$cache/ferretdb-ping" ./ping)

echo "ferretdb: starting on $listen (log: $log)"
FERRETDB_LISTEN="$listen" FERRETDB_POSTGRESQL_URL="$pg_url" nohup "$cache/ferretdb" >"$log" 2>&1 &
echo $! >"$cache/ferretdb.pid"

for _ in $(seq 1 60); do
  if "$cache/ferretdb-ping" "mongodb://$listen/" >/dev/null 2>&1; then
    echo "ferretdb: MongoDB wire protocol up on $listen"
    exit 0
  fi
  kill -0 "$(cat "$cache/ferretdb.pid")" 2>/dev/null || break
  sleep 1
done
echo "ferretdb: did not start; last lines of $log:" >&2
tail -n 30 "$log" >&2 || true
exit 1
