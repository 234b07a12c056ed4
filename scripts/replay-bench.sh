#!/usr/bin/env bash
# Replay at full speed, end to end: atrium-sim → atrium-agent → sensor service, the
# three built programs on loopback. Prints readings/s counted from the simulator's
# start until the agent's spool is empty and the sensor service has accepted every
# reading.
#
#   scripts/replay-bench.sh DATA_DIR [atrium-sim flags…]
#
# DATA_DIR holds the UCI Occupancy Detection data set (datatest.txt,
# datatraining.txt, datatest2.txt; Candanedo & Feldheim, UCI ML Repository 357,
# CC BY 4.0). The script writes a generic replay CSV of two devices in two rooms
# from it: 16,000 minutes × 5 readings (temperature, humidity, light, co2,
# occupancy) each, 160,000 readings. Device a has the first 16,000 rows in time
# order; device b, at the same timestamps, the rows 4,560 later. Extra flags go to
# atrium-sim, e.g. -inflight 1 for one publish in flight per device.
# Needs Go, curl and python3. BIN (default: a temporary directory) receives the
# builds; KEEP=1 keeps the working directory.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $# -ge 1 && -d $1 ]] || { echo "usage: $0 DATA_DIR [atrium-sim flags…]" >&2; exit 2; }
DATA=$1; shift
WORK=$(mktemp -d)
BIN=${BIN:-$WORK/bin}
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  [[ ${KEEP:-0} == 1 ]] && echo "working directory kept: $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_tcp() { for _ in $(seq 1 300); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

echo "building atrium, atrium-agent, atrium-sim…" >&2
mkdir -p "$BIN"
CGO_ENABLED=0 go build -trimpath -o "$BIN/" ./cmd/atrium ./cmd/atrium-agent ./cmd/atrium-sim

CSV=$WORK/replay.csv
for f in datatest.txt datatraining.txt datatest2.txt; do
  [[ -r $DATA/$f ]] || { echo "missing $DATA/$f" >&2; exit 2; }
  tail -n +2 "$DATA/$f"
done | tr -d '"\r' | awk -F, -v rows=16000 -v shift=4560 '
  { t[NR] = $2; v[NR, 1] = $3; v[NR, 2] = $4; v[NR, 3] = $5; v[NR, 4] = $6; v[NR, 5] = $8 }
  END {
    if (NR < rows + shift) { print "data set too short: " NR " rows" > "/dev/stderr"; exit 1 }
    split("temperature humidity light co2 occupancy", ty, " ")
    split("Cel %RH lx ppm count", un, " ")
    print "timestamp,sensor_id,room_id,type,value,unit"
    for (i = 1; i <= rows; i++) {
      ts = t[i]; sub(/ /, "T", ts); ts = ts "Z"
      for (k = 1; k <= 5; k++) print ts ",uci-a,uci-room-a," ty[k] "," v[i, k] "," un[k]
      for (k = 1; k <= 5; k++) print ts ",uci-b,uci-room-b," ty[k] "," v[i + shift, k] "," un[k]
    }
  }' >"$CSV"
TOTAL=$(( $(wc -l <"$CSV") - 1 ))

SP=$(free_port); MP=$(free_port); HP=$(free_port)
"$BIN/atrium" -target=sensor -sensor-addr 127.0.0.1:$SP -data-dir "$WORK/cloud" >"$WORK/sensor.log" 2>&1 & pids+=($!)
"$BIN/atrium-agent" -allow-anonymous -mqtt-addr 127.0.0.1:$MP -http-addr 127.0.0.1:$HP \
  -cloud-url http://127.0.0.1:$SP -spool "$WORK/spool.db" -site replay-bench >"$WORK/agent.log" 2>&1 & pids+=($!)
wait_tcp $SP && wait_tcp $MP && wait_tcp $HP || { echo "a program did not start; logs in $WORK" >&2; KEEP=1; exit 1; }

accepted() { curl -s http://127.0.0.1:$SP/metrics | awk '/^atrium_sensor_readings_total\{outcome="accepted"\}/ {print $2+0}'; }
spooled() { curl -s http://127.0.0.1:$HP/status | python3 -c 'import sys,json; print(json.load(sys.stdin)["spool"]["Readings"])'; }

echo "replaying $TOTAL readings of 2 devices at -speed max…" >&2
# CPU seconds (user + system) a process has used so far.
cpu_of() { awk -v t="$(getconf CLK_TCK)" '{print ($14 + $15) / t}' "/proc/$1/stat"; }
cpu0=$(python3 -c "print($(cpu_of ${pids[0]}) + $(cpu_of ${pids[1]}))")
start=$(date +%s.%N)
TIMEFORMAT='%U %S'
{ time "$BIN/atrium-sim" -broker tcp://127.0.0.1:$MP -replay "$CSV" -speed max -progress off -summary json -drain 10m "$@" \
  >"$WORK/summary.json" 2>"$WORK/sim.log"; } 2>"$WORK/sim.cpu"
sim_end=$(date +%s.%N)
while :; do
  a=$(accepted); s=$(spooled)
  [[ ${a:-0} -ge $TOTAL && $s == 0 ]] && break
  sleep 0.05
done
end=$(date +%s.%N)
cpu1=$(python3 -c "print($(cpu_of ${pids[0]}) + $(cpu_of ${pids[1]}))")
read -r sim_user sim_sys <"$WORK/sim.cpu"
python3 - "$WORK/summary.json" "$TOTAL" "$start" "$sim_end" "$end" "$a" "$cpu0" "$cpu1" "$sim_user" "$sim_sys" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1])); total = int(sys.argv[2])
start, sim_end, end, acc = float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
cloud_agent = float(sys.argv[8]) - float(sys.argv[7]); sim = float(sys.argv[9]) + float(sys.argv[10])
m = s["messages"]
print(f"readings {total}, accepted by the sensor service {acc}, expected stored {s['expect']['stored']}")
print(f"messages published {m['published']}, failed {m['failed']}, resent {m['resent']}")
print(f"simulator done after {sim_end - start:.2f} s; spool empty and all stored after {end - start:.2f} s")
print(f"CPU: simulator {sim:.1f} s, agent and sensor service {cloud_agent:.1f} s: {(sim + cloud_agent) / total * 1e6:.0f} CPU-µs per reading"
      f" (at most {2 * total / (sim + cloud_agent):,.0f} readings/s on 2 free cores)")
print(f"end to end: {total / (end - start):,.0f} readings/s")
EOF
