#!/usr/bin/env bash
# The main job on a fresh machine: install dependencies, bring up the local stack (two PostgreSQL
# servers + Kafka), and run a live two-way sync demo until Ctrl-C (or --duration N).
# Usage: npm run demo [-- --duration 30]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/node-env.sh
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
./bin/pgbisync.js dev up
exec ./bin/pgbisync.js dev demo "$@"
