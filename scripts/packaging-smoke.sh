#!/usr/bin/env bash
# Smoke test of the packaging (docs/deployment.md), as far as a machine without a container engine or
# systemd as init can check it:
#  1. `npm pack` + `npm install -g` into a temporary prefix: the `pgbisync` command runs on Node 24; on an
#     older Node (/usr/bin/node here) it hands over to $PGBISYNC_NODE or prints a one-line fix.
#  2. The image's file set (Dockerfile + .dockerignore: package*.json, bin/, src/ without tests) with the
#     production dependencies only loads every command; `docker build` + run when an engine is present.
#  3. deploy/kubernetes.yaml: two replicas, probes on endpoints the daemon serves, its pgbisync.yaml loads
#     with the Secret's values; `kubectl apply --dry-run=server` when a cluster is reachable.
#  4. deploy/pgbisync.service: `systemd-analyze verify` when present; else its required keys.
# Prints one line per check and exits 1 if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/node-env.sh
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failed=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; failed=1; }
check() { # description, command...
  local what="$1"; shift
  if out="$("$@" 2>&1)"; then ok "$what"; else bad "$what: $(echo "$out" | tail -3)"; fi
}
version="$(node -p 'require("./package.json").version')"

# 1. npm pack and a global install.
npm pack --silent --pack-destination "$work" >/dev/null
tgz="$(ls "$work"/pgbisync-*.tgz)"
check "npm install -g of $(basename "$tgz")" npm install -g --prefix "$work/prefix" --prefer-offline \
  --ignore-scripts --no-audit --no-fund --loglevel=error "$tgz"
bin="$work/prefix/bin/pgbisync"
check "pgbisync --version on Node $(node -v) prints $version" bash -c "[ \"\$('$bin' --version)\" = '$version' ]"
launcher="$work/prefix/lib/node_modules/pgbisync/bin/pgbisync.js"
old=/usr/bin/node
if [ -x "$old" ] && [ "$("$old" -p 'process.versions.node.split(".")[0]')" -lt 24 ]; then
  check "on $("$old" -v) without a Node 24: a one-line fix, exit 1" bash -c \
    "out=\$(env -u PGBISYNC_NODE '$old' '$launcher' --version 2>&1); [ \$? = 1 ] && [ \$(echo \"\$out\" | wc -l) = 1 ] && echo \"\$out\" | grep -q 'needs Node.js 24'"
  check "on $("$old" -v) with PGBISYNC_NODE: hands over and runs" bash -c \
    "[ \"\$(PGBISYNC_NODE='$(command -v node)' '$old' '$launcher' --version)\" = '$version' ]"
else
  echo "skip no Node older than 24 at $old"
fi

# 2. The image's contents.
image="$work/image"
mkdir -p "$image"
cp package.json package-lock.json "$image/"
cp -r bin src "$image/"
find "$image/src" -name '*.test.ts' -delete
rm -rf "$image/src/testing"
check "production dependencies install (npm ci --omit=dev)" bash -c \
  "cd '$image' && npm ci --omit=dev --ignore-scripts --prefer-offline --no-audit --no-fund --loglevel=error"
check "the image's files load every command (pgbisync --help, run --help)" bash -c \
  "cd '$image' && node bin/pgbisync.js --help | grep -q status && node bin/pgbisync.js run --help | grep -q -- --http-port"
check "Dockerfile copies what was checked" bash -c \
  "grep -q '^COPY bin ./bin' Dockerfile && grep -q '^COPY src ./src' Dockerfile && grep -q 'npm ci --omit=dev' Dockerfile && grep -q '^FROM node:24' Dockerfile"
if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  check "docker build" docker build -q -t pgbisync-smoke .
  check "docker run pgbisync --version" bash -c "[ \"\$(docker run --rm pgbisync-smoke --version)\" = '$version' ]"
else
  echo "skip no container engine: the image was checked through its file set"
fi

# 3. The Kubernetes manifest.
check "deploy/kubernetes.yaml: 2 replicas, probes on served paths, its config loads" node --input-type=module -e "
  import { parseAllDocuments } from 'yaml';
  import { readFileSync } from 'node:fs';
  import { parseConfig } from './src/config/load.ts';
  const docs = parseAllDocuments(readFileSync('deploy/kubernetes.yaml', 'utf8')).map((d) => d.toJS());
  const kind = (k) => docs.find((d) => d.kind === k);
  const deployment = kind('Deployment');
  if (deployment.spec.replicas !== 2) throw new Error('replicas: ' + deployment.spec.replicas);
  const c = deployment.spec.template.spec.containers[0];
  const served = readFileSync('src/daemon/http-server.ts', 'utf8');
  for (const probe of [c.readinessProbe, c.livenessProbe])
    if (!served.includes(\"'\" + probe.httpGet.path + \"'\")) throw new Error('not served: ' + probe.httpGet.path);
  const config = parseConfig(kind('ConfigMap').data['pgbisync.yaml'], 'configmap', kind('Secret').stringData);
  if (config.http.host !== '0.0.0.0') throw new Error('http.host must be 0.0.0.0 for the probes');
  if (!c.env.some((e) => e.name === 'PGBISYNC_INSTANCE')) throw new Error('PGBISYNC_INSTANCE not set');
  if (!kind('PodDisruptionBudget')) throw new Error('no PodDisruptionBudget');
"
if command -v kubectl >/dev/null && kubectl cluster-info >/dev/null 2>&1; then
  check "kubectl apply --dry-run=server" kubectl apply --dry-run=server -f deploy/kubernetes.yaml
else
  echo "skip no Kubernetes cluster reachable: the manifest was checked by its contents"
fi

# 4. The systemd unit.
if command -v systemd-analyze >/dev/null && [ -d /run/systemd/system ]; then
  check "systemd-analyze verify" systemd-analyze verify deploy/pgbisync.service
else
  echo "skip no systemd here: checking the unit's keys"
fi
check "pgbisync.service: EnvironmentFile, ExecStart run, restart, SIGTERM" bash -c \
  "grep -q '^EnvironmentFile=/etc/pgbisync/pgbisync.env' deploy/pgbisync.service && grep -q '^ExecStart=.*pgbisync run -c /etc/pgbisync/pgbisync.yaml' deploy/pgbisync.service && grep -q '^Restart=always' deploy/pgbisync.service && grep -q '^KillSignal=SIGTERM' deploy/pgbisync.service"
check "pgbisync.env.example: the variables the docs name" bash -c \
  "grep -q '^PGBISYNC_INSTANCE=' deploy/pgbisync.env.example && grep -q '^PGBISYNC_PREFER=' deploy/pgbisync.env.example"

exit "$failed"
