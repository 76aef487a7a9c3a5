#!/usr/bin/env bash
# Builds the JavaScript moderation plugin into a WebAssembly component:
#   dist/moderation.wasm   (gitignored)
#
# 1. `node --test test/moderation.test.js`: the plugin's logic, without a component runtime.
# 2. componentize-qjs (QuickJS, pinned in package-lock.json) builds the
#    component for the world in wit/moderation.wit: it exports
#    switchboard:plugin/lifecycle and publish-hook and imports no host
#    interface. `--stub-wasi` turns every WASI import into a trap inside the
#    component, so it imports no WASI either; `--sync` avoids the async ABI.
# 3. Checks the component imports nothing but switchboard:plugin/types.
# 4. Runs the built component under Node (transpiled by jco) against the
#    same expectations as the gateway test (smoke/component.mjs).
#
# Needs node + npm; runs `npm ci` when node_modules is missing or stale.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

say() { printf '==> [moderation-js] %s\n' "$*"; }

stamp="node_modules/.switchboard-lock.sha256"
want="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    say "npm ci"
    npm ci --no-audit --no-fund --ignore-scripts
    echo "$want" > "$stamp"
fi

say "node --test test/moderation.test.js"
node --test --test-reporter=spec test/moderation.test.js

mkdir -p dist
say "componentize-qjs → dist/moderation.wasm"
start=$SECONDS
node_modules/.bin/componentize-qjs --sync --stub-wasi --opt-size \
    --wit wit --world moderation --js moderation.js --output dist/moderation.wasm >/dev/null
say "built $(stat -c %s dist/moderation.wasm) bytes in $((SECONDS - start)) s"

imports="$(node_modules/.bin/jco wit dist/moderation.wasm | sed -n 's/^ *import \([^;]*\);/\1/p')"
say "imports: $(echo $imports)"
if [[ "$imports" != "switchboard:plugin/types@0.1.0" ]]; then
    echo "dist/moderation.wasm must import only switchboard:plugin/types@0.1.0, got: $imports" >&2
    exit 1
fi

say "component smoke test (jco transpile + node)"
rm -rf dist/js
node_modules/.bin/jco transpile dist/moderation.wasm --name moderation --out-dir dist/js --quiet
echo '{"type":"module"}' > dist/js/package.json
# Node < 22 runs the QuickJS core modules only with extended-const enabled.
node_flags=()
if (( $(node -p 'process.versions.node.split(".")[0]') < 22 )); then
    node_flags+=(--experimental-wasm-extended-const)
fi
node "${node_flags[@]}" smoke/component.mjs
