#!/usr/bin/env bash
# `npm run bench`: brings up a stack of its own (ports 56432/56433/56092/56093, Kafka Connect's REST API
# on 56094 when the debezium scenario runs; state .state/bench, so the shared dev stack is never
# touched), runs bench/main.ts and stops the stack again.
# BENCH_PORT_BASE=p moves the stack to ports p (db1), p+1 (db2), p+2 (Kafka), p+3 (Kafka controller) and
# p+4 (Connect), so that two checkouts can run the bench at once; BENCH_STATE_DIR changes the state folder.
# Sizes: BENCH_SCALE and friends (bench/settings.ts); BENCH_ONLY selects scenarios: Kafka Connect with the
# Debezium connectors is started only when the debezium scenario is selected (it is by default).
# BENCH_KEEP_STACK=1 leaves the stack running.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/node-env.sh
state="${BENCH_STATE_DIR:-.state/bench}"
if [ -n "${BENCH_PORT_BASE:-}" ]; then
  base=$BENCH_PORT_BASE
  ports=(--db1-port "$base" --db2-port $((base + 1)) --kafka-port $((base + 2))
    --kafka-controller-port $((base + 3)))
  connect_port=$((base + 4))
else
  ports=(--db1-port 56432 --db2-port 56433 --kafka-port 56092 --kafka-controller-port 56093)
  connect_port=56094
fi
connect=()
case ",${BENCH_ONLY:-debezium}," in
  *,debezium,*) connect=(--connect --connect-port "$connect_port") ;;
esac

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi

stop_stack() {
  if [ "${BENCH_KEEP_STACK:-0}" != 1 ]; then
    ./bin/pgbisync.js dev down --state-dir "$state" >/dev/null 2>&1 || echo "bench: dev down failed" >&2
  fi
}
trap stop_stack EXIT
./bin/pgbisync.js dev up --state-dir "$state" "${ports[@]}" "${connect[@]}" >/dev/null
node bench/main.ts --state-dir "$state"
