#!/usr/bin/env bash
# `make run`: the whole system on embedded defaults, nothing to install.
# Starts the cloud (atrium, every part), the edge agent and the simulator, prints
# where to look, and stops everything cleanly on Ctrl-C. Every port moves with its
# ATRIUM_* variable, e.g. ATRIUM_MQTT_ADDR=127.0.0.1:18830 make run.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-bin}
DATA=${ATRIUM_DATA_DIR:-./data}
LOGS=${ATRIUM_LOG_DIR:-$DATA/logs}
mkdir -p "$DATA" "$LOGS"

hostport() { local a=$1; [[ $a == :* ]] && a="127.0.0.1$a"; echo "$a"; }
GATEWAY_ADDR=${ATRIUM_GATEWAY_ADDR:-:8000}
SENSOR_ADDR=${ATRIUM_SENSOR_ADDR:-:8001}
ROOM_ADDR=${ATRIUM_ROOM_ADDR:-:8002}
ANALYTICS_ADDR=${ATRIUM_ANALYTICS_ADDR:-:8003}
NOTIFICATION_ADDR=${ATRIUM_NOTIFICATION_ADDR:-:8004}
MQTT_ADDR=${ATRIUM_MQTT_ADDR:-:1883}
AGENT_HTTP=${ATRIUM_HTTP_ADDR:-127.0.0.1:9100}

# Before starting anything: which of these ports another program already holds
# (Mosquitto on :1883 is common on IoT machines), and the variable that moves each.
taken=()
for spec in "API gateway|ATRIUM_GATEWAY_ADDR|$GATEWAY_ADDR" "sensor service|ATRIUM_SENSOR_ADDR|$SENSOR_ADDR" \
  "room service|ATRIUM_ROOM_ADDR|$ROOM_ADDR" "analytics service|ATRIUM_ANALYTICS_ADDR|$ANALYTICS_ADDR" \
  "notification service|ATRIUM_NOTIFICATION_ADDR|$NOTIFICATION_ADDR" "agent's MQTT broker|ATRIUM_MQTT_ADDR|$MQTT_ADDR" \
  "agent's status server|ATRIUM_HTTP_ADDR|$AGENT_HTTP"; do
  IFS='|' read -r what var addr <<<"$spec"
  hp=$(hostport "$addr")
  if (echo >"/dev/tcp/${hp%:*}/${hp##*:}") 2>/dev/null; then
    taken+=("$(printf '  %-22s %-24s set %s to move it' "$hp" "($what)" "$var")")
    port=${hp##*:}; ((port < 55000)) && port=$((port + 10000))
    example=${example:-$var=127.0.0.1:$port}
  fi
done
if ((${#taken[@]} > 0)); then
  echo "make run: another program already listens on:" >&2
  printf '%s\n' "${taken[@]}" >&2
  echo "make run: stop it, or move Atrium's port, e.g. $example make run" >&2
  exit 1
fi
SENSOR_URL=http://$(hostport "$SENSOR_ADDR")
GATEWAY_URL=http://$(hostport "$GATEWAY_ADDR")
KEYS=${ATRIUM_KEYS:-$DATA/gateway-keys.json}
export ATRIUM_DATA_DIR=$DATA ATRIUM_LOG_FORMAT=${ATRIUM_LOG_FORMAT:-json}

pids=()
stop() {
  trap - INT TERM EXIT
  echo
  echo "make run: stopping (simulator, agent, cloud)…"
  for ((i=${#pids[@]}-1; i>=0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
  echo "make run: stopped. Data is kept in $DATA; logs in $LOGS."
}
trap stop INT TERM EXIT

# wait_http URL PID LOG: until the server behind URL accepts connections (plain bash,
# no curl needed: a fresh machine may have only Go). When the process PID ends first,
# its last line (the reason it stopped) is shown.
wait_http() {
  local hp=${1#http://}; hp=${hp%%/*}
  for _ in $(seq 1 200); do
    (echo >"/dev/tcp/${hp%:*}/${hp##*:}") 2>/dev/null && return 0
    if ! kill -0 "$2" 2>/dev/null; then
      echo "make run: failed to start: $(tail -n 1 "$3")" >&2; return 1
    fi
    sleep 0.1
  done
  echo "make run: $1 did not answer; see $3" >&2; return 1
}

# An API key for this demo, made once and kept in the data directory (0600), so
# make run can print it every time. Production keeps only hashes (atrium keys add).
if [[ ! -s $DATA/make-run.key ]]; then
  echo "make run: creating an API key for the demo (scopes read, ingest, admin)"
  (umask 077; "$BIN/atrium" keys add -name make-run -scopes read,ingest,admin -keys "$KEYS" 2>/dev/null >"$DATA/make-run.key")
fi
KEY=$(cat "$DATA/make-run.key")

echo "make run: starting the cloud (atrium: gateway and services) — log: $LOGS/atrium.log"
"$BIN/atrium" -keys "$KEYS" >"$LOGS/atrium.log" 2>&1 & pids+=($!)
wait_http "$SENSOR_URL/healthz" "${pids[-1]}" "$LOGS/atrium.log"
wait_http "$GATEWAY_URL/healthz" "${pids[-1]}" "$LOGS/atrium.log"

if [[ -x $BIN/atrium-agent ]]; then
  echo "make run: starting the edge agent (MQTT $MQTT_ADDR) — log: $LOGS/agent.log"
  "$BIN/atrium-agent" -allow-anonymous -mqtt-addr "$MQTT_ADDR" -cloud-url "$GATEWAY_URL" -token "$KEY" \
    -spool "$DATA/agent/spool.db" -site "${ATRIUM_SITE:-demo}" >"$LOGS/agent.log" 2>&1 & pids+=($!)
  wait_http "http://$(hostport "$AGENT_HTTP")/healthz" "${pids[-1]}" "$LOGS/agent.log"
fi
if [[ -x $BIN/atrium-sim ]]; then
  echo "make run: starting the simulator — log: $LOGS/sim.log"
  ATRIUM_MQTT_ADDR=$(hostport "$MQTT_ADDR") "$BIN/atrium-sim" -rooms "${ATRIUM_ROOMS:-3}" -sensors-per-room "${ATRIUM_SENSORS_PER_ROOM:-4}" \
    -interval "${ATRIUM_INTERVAL:-2s}" >"$LOGS/sim.log" 2>&1 & pids+=($!)
fi

DASHBOARD_URL=${GATEWAY_URL/127.0.0.1/localhost}
cat <<MSG

Atrium is running.
  dashboard        $DASHBOARD_URL   (paste the API key when it asks)
  API gateway      $GATEWAY_URL   (API key: $KEY)
                   try: curl -s -H "Authorization: Bearer $KEY" $GATEWAY_URL/sensors
  services         sensor $SENSOR_URL, room $(hostport "$ROOM_ADDR"), analytics $(hostport "$ANALYTICS_ADDR"), notification $(hostport "$NOTIFICATION_ADDR")
  agent status     http://$(hostport "$AGENT_HTTP")/metrics
  MQTT broker      $(hostport "$MQTT_ADDR")   (mosquitto_pub -h ${MQTT_ADDR%:*} -p ${MQTT_ADDR##*:} -t atrium/room-1/my-sensor/temperature -m 21.5)
  logs             $LOGS

Open $DASHBOARD_URL and paste the API key $KEY
Press Ctrl-C to stop.
MSG
wait -n "${pids[@]}" || true
echo "make run: a process exited; see $LOGS" >&2
