#!/usr/bin/env bash
# Runs pgbisync's test suites. Usage: scripts/test.sh [unit|pg|kafka|connect|torture|all] (default all).
#   unit   pure tests (*.test.ts without .pg/.kafka)
#   pg     tests that need real PostgreSQL (*.pg.test.ts) and kafka: real Kafka too (*.kafka.test.ts);
#          both run once per PostgreSQL major (18 from npm, 15 from the machine) on a stack that this script
#          starts with `pgbisync dev up` and stops afterwards.
#   connect interop with the real Debezium connectors (*.connect.test.ts) on a stack started with
#          `dev up --connect` (Kafka Connect too), on one PostgreSQL major: PGBISYNC_TEST_CONNECT_PG_MAJOR
#          (default 15).
#   torture the randomized fault-injecting torture test (torture/, scripts/torture.sh) on a stack of its own:
#          seeds PGBISYNC_TEST_TORTURE_SEEDS (default "1 2 3"), PGBISYNC_TEST_TORTURE_SECONDS each (default 60),
#          every fault kind, the workload kinds of PGBISYNC_TEST_TORTURE_WORKLOAD (default all), PGBISYNC_TEST_TORTURE_INSTANCES
#          `pgbisync run` instances (default 1; 2: kills and freezes hit one, the other takes over); each seed
#          counts as a test.
# Ends with one line "tests: N passed, N failed" summed over every run.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/node-env.sh
suite="${1:-all}"
majors="${PGBISYNC_TEST_PG_MAJORS:-18 15}"

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi

results="$(mktemp -d)"
trap 'rm -rf "$results"' EXIT
status=0

list() { # list test files of a kind: unit | pg | kafka
  case "$1" in
    unit) find src bench -name '*.test.ts' ! -name '*.pg.test.ts' ! -name '*.kafka.test.ts' ! -name '*.connect.test.ts' 2>/dev/null | sort ;;
    pg) find src torture bench -name '*.pg.test.ts' | sort ;;
    kafka) find src -name '*.kafka.test.ts' | sort ;;
    connect) find src -name '*.connect.test.ts' | sort ;;
  esac
}

run_node_tests() { # name, concurrency, files...
  local name="$1" concurrency="$2"; shift 2
  [ "$#" -gt 0 ] || return 0
  echo "=== $name: $# files"
  # exit-watch: a file whose process stays alive after its last test fails, naming what it left open.
  if ! node --test --test-concurrency="$concurrency" --test-timeout=600000 --import ./src/testing/exit-watch.ts \
      --test-reporter=spec --test-reporter-destination=stdout \
      --test-reporter=tap --test-reporter-destination="$results/$name.tap" "$@"; then
    status=1
  fi
}

if [ "$suite" = unit ] || [ "$suite" = all ]; then
  mapfile -t files < <(list unit)
  run_node_tests unit "${PGBISYNC_TEST_CONCURRENCY:-2}" "${files[@]}"
fi

# Stacks listen on port_base + 10 * major onwards; set it to run two checkouts at once. Below Linux's
# ephemeral range (32768-60999 by default): a port there can be taken for a moment by any outgoing
# connection's local end, and `dev up` then refuses it (seen once in CI).
port_base="${PGBISYNC_TEST_PORT_BASE:-26000}"

start_stack() { # major, state folder, first port, extra dev-up flags...: starts it and exports its addresses
  local major="$1" state="$2" p="$3"; shift 3
  if ! ./bin/pgbisync.js dev up --pg "$major" --state-dir "$state" \
    --db1-port "$p" --db2-port $((p + 1)) --kafka-port $((p + 2)) --kafka-controller-port $((p + 3)) "$@" >/dev/null; then
    # Whatever did start must not outlive the run.
    ./bin/pgbisync.js dev down --state-dir "$state" --destroy >/dev/null 2>&1 || true
    return 1
  fi
  local stack
  stack="$(./bin/pgbisync.js dev status --json --state-dir "$state")"
  export PGBISYNC_TEST_PG_MAJOR="$major"
  export PGBISYNC_TEST_DB1_URL; PGBISYNC_TEST_DB1_URL="$(node -e 'const s=JSON.parse(process.argv[1]);console.log(s.nodes[0].url)' "$stack")"
  export PGBISYNC_TEST_DB2_URL; PGBISYNC_TEST_DB2_URL="$(node -e 'const s=JSON.parse(process.argv[1]);console.log(s.nodes[1].url)' "$stack")"
  export PGBISYNC_TEST_PG_URL="$PGBISYNC_TEST_DB1_URL"
  export PGBISYNC_TEST_KAFKA_BROKERS; PGBISYNC_TEST_KAFKA_BROKERS="$(node -e 'const s=JSON.parse(process.argv[1]);console.log(s.kafka.brokers.join(","))' "$stack")"
  export PGBISYNC_TEST_CONNECT_URL; PGBISYNC_TEST_CONNECT_URL="$(node -e 'const s=JSON.parse(process.argv[1]);console.log(s.connect?.url ?? "")' "$stack")"
  # With --secure: the CA, the TLS-only PostgreSQL role and the SASL_SSL listener (src/testing/test-env.ts).
  export PGBISYNC_TEST_SECURE; PGBISYNC_TEST_SECURE="$(node -e 'const s=JSON.parse(process.argv[1]);console.log(s.secure ? JSON.stringify(s.secure) : "")' "$stack")"
}

if [ "$suite" = pg ] || [ "$suite" = kafka ] || [ "$suite" = all ]; then
  kinds="pg kafka"; [ "$suite" = pg ] && kinds="pg"; [ "$suite" = kafka ] && kinds="kafka"
  for major in $majors; do
    state="$PWD/.state/test-pg$major"
    # --secure: TLS and SCRAM for one PostgreSQL role and a SASL_SSL Kafka listener on p+4, beside the
    # trusted plaintext access every other test uses (src/daemon/tls-sync.kafka.test.ts).
    p=$((port_base + major * 10))
    start_stack "$major" "$state" "$p" --secure --kafka-secure-port $((p + 4))
    for kind in $kinds; do
      mapfile -t files < <(list "$kind")
      # Kafka suites check that WAL stops moving once the sync is idle: WAL is per server, so their
      # files run one at a time.
      c="${PGBISYNC_TEST_CONCURRENCY:-2}"; [ "$kind" = kafka ] && c=1
      run_node_tests "$kind-pg$major" "$c" "${files[@]}"
    done
    ./bin/pgbisync.js dev down --state-dir "$state" --destroy >/dev/null 2>&1 || status=1
  done
fi

if [ "$suite" = connect ] || [ "$suite" = all ]; then
  # One major only: these suites prove interop with Debezium's components, not PostgreSQL versions.
  major="${PGBISYNC_TEST_CONNECT_PG_MAJOR:-15}"
  state="$PWD/.state/test-connect-pg$major"
  p=$((port_base + major * 10 + 5)) # db1, db2, Kafka, controller on p..p+3, Connect's REST API on p+4
  start_stack "$major" "$state" "$p" --connect --connect-port $((p + 4))
  mapfile -t files < <(list connect)
  run_node_tests "connect-pg$major" 1 "${files[@]}"
  ./bin/pgbisync.js dev down --state-dir "$state" --destroy >/dev/null 2>&1 || status=1
fi

torture_passed=0; torture_failed=0
if [ "$suite" = torture ] || [ "$suite" = all ]; then
  echo "=== torture: seeds ${PGBISYNC_TEST_TORTURE_SEEDS:-1 2 3}"
  out="$results/torture.out"
  TORTURE_PORT_BASE=$((port_base + 300)) TORTURE_STATE_DIR="$PWD/.state/test-torture" \
    bash scripts/torture.sh --seeds "${PGBISYNC_TEST_TORTURE_SEEDS:-1 2 3}" \
    --duration "${PGBISYNC_TEST_TORTURE_SECONDS:-60}" --faults all \
    --instances "${PGBISYNC_TEST_TORTURE_INSTANCES:-1}" \
    --workload "${PGBISYNC_TEST_TORTURE_WORKLOAD:-all}" 2>"$results/torture.err" | tee "$out" || status=1
  line="$(grep -E '^torture: [0-9]+ passed, [0-9]+ failed' "$out" | tail -1)"
  if [ -z "$line" ]; then
    echo "torture: no result line; its log ends:"; tail -40 "$results/torture.err"; torture_failed=1; status=1
  else
    torture_passed=$(echo "$line" | awk '{print $2}'); torture_failed=$(echo "$line" | awk '{print $4}')
    if [ "$torture_failed" -ne 0 ]; then
      # Per failed seed, from its part of the log: its findings (with their keys' histories), then its
      # faults; a seed that failed without findings (the harness threw) shows the end of its part.
      for seed in $(grep -E '^torture seed [0-9]+: FAIL' "$out" | awk '{print $3}' | tr -d ':'); do
        part="$(awk -v s="$seed" '/\] seed [0-9]+, /{on = ($4 == s",")} on' "$results/torture.err")"
        echo "torture seed $seed findings:"
        if echo "$part" | grep -qE '\] FAIL '; then
          echo "$part" | grep -E '\] (FAIL |    )' | head -80
        else
          echo "$part" | tail -40
        fi
        echo "torture seed $seed faults:"; echo "$part" | grep -E 'fault:' | head -60 || true
      done
      status=1
    fi
  fi
  ./bin/pgbisync.js dev down --state-dir "$PWD/.state/test-torture" --destroy >/dev/null 2>&1 || true
fi

passed=$torture_passed; failed=$torture_failed; todo=0
for tap in "$results"/*.tap; do
  [ -f "$tap" ] || continue
  p=$(grep -E '^# pass ' "$tap" | tail -1 | awk '{print $3}'); f=$(grep -E '^# fail ' "$tap" | tail -1 | awk '{print $3}')
  t=$(grep -E '^# todo ' "$tap" | tail -1 | awk '{print $3}')
  passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0})); todo=$((todo + ${t:-0}))
done
if [ "$todo" -gt 0 ]; then
  echo "tests: $passed passed, $failed failed, $todo todo (known failures, named with # TODO above)"
else
  echo "tests: $passed passed, $failed failed, $todo todo"
fi
[ "$failed" -eq 0 ] || status=1
exit "$status"
