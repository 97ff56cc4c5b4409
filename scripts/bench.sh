#!/usr/bin/env bash
# `npm run bench`: brings up a stack of its own (ports 25500/25501/25502/25503, Kafka Connect's REST API
# on 25504 when the debezium scenario runs; state .state/bench, so the shared dev stack is never
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
# The default lies below Linux's ephemeral ports (32768-60999): an outgoing connection can hold one of
# those for a moment, and `dev up` then finds the port taken though nothing listens.
base=${BENCH_PORT_BASE:-25500}
ports=(--db1-port "$base" --db2-port $((base + 1)) --kafka-port $((base + 2))
  --kafka-controller-port $((base + 3)))
connect_port=$((base + 4))
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
