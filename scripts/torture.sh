#!/usr/bin/env bash
# `npm run torture -- [--seed N] [--duration S] [--nodes 2|3] [--faults list] [--workload list]`: brings up a
# stack of its own (PostgreSQL TORTURE_PG_MAJOR, default 18, on ports p and p+1, Kafka on p+2 and p+3 and a
# listener on p+4 advertising p+5, where the torture's fault proxy to the broker listens, with
# p = TORTURE_PORT_BASE, default 24100; state .state/torture; on PostgreSQL 17+ a streaming standby of the
# first server on p+6, for the failover fault, unless TORTURE_STANDBY=0), runs torture/main.ts once per seed and stops
# the stack again (TORTURE_KEEP_STACK=1 leaves it running). Several seeds: --seeds "1 2 3" (each run gets the
# other arguments). Ends with "torture: N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/node-env.sh
state="${TORTURE_STATE_DIR:-.state/torture}"
p="${TORTURE_PORT_BASE:-24100}"
major="${TORTURE_PG_MAJOR:-18}"

seeds=""
args=()
for a in "$@"; do
  # Before any stack starts: a --help next to a running torture must not touch its stack.
  if [ "$a" = --help ] || [ "$a" = -h ]; then exec node torture/main.ts --help; fi
done
while [ "$#" -gt 0 ]; do
  case "$1" in
    --seeds) seeds="$2"; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
stop_stack() {
  if [ "${TORTURE_KEEP_STACK:-0}" != 1 ]; then
    ./bin/pgbisync.js dev down --state-dir "$state" >/dev/null 2>&1 || echo "torture: dev down failed" >&2
  fi
}
trap stop_stack EXIT
standby=()
if [ "$major" -ge 17 ] && [ "${TORTURE_STANDBY:-1}" != 0 ]; then standby=(--standby --standby-port $((p + 6))); fi
./bin/pgbisync.js dev up --pg "$major" --state-dir "$state" --db1-port "$p" --db2-port $((p + 1)) \
  --kafka-port $((p + 2)) --kafka-controller-port $((p + 3)) --kafka-proxied-port $((p + 4)) "${standby[@]}" >/dev/null

# The clock-skew fault's clock-offset library (torture/clock-offset.c), built with the machine's C compiler.
cc -shared -fPIC -O2 -o "$state/clock-offset.so" torture/clock-offset.c -ldl 2>/dev/null ||
  echo "torture: no C compiler here: the clock-skew fault is skipped" >&2

passed=0; failed=0
if [ -z "$seeds" ]; then
  if node torture/main.ts --state-dir "$state" "${args[@]}"; then passed=1; else failed=1; fi
else
  for seed in $seeds; do
    if node torture/main.ts --state-dir "$state" --seed "$seed" "${args[@]}"; then
      passed=$((passed + 1)); else failed=$((failed + 1)); fi
  done
fi
echo "torture: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
