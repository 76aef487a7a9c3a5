#!/usr/bin/env bash
# Builds the Python enrich plugin into a WebAssembly component:
#   dist/enrich.wasm   (gitignored)
#
# 1. `python -m unittest test_transform`: the logic, under plain CPython.
# 2. componentize-py (pinned in requirements.txt, installed into
#    plugins/python/.venv) builds the component for the world in
#    wit/enrich.wit: exports switchboard:plugin/lifecycle and publish-hook,
#    imports the host clock. `--stub-wasi` turns every WASI import into a
#    trap inside the component, so it imports no WASI. Skipped when the
#    inputs are unchanged since the last build.
# 3. Checks the component imports only switchboard:plugin/clock and types.
# 4. Runs the built component under Node (transpiled by jco) when jco is
#    available: $JCO, or the JS moderation plugin's node_modules.
#
# Needs python3 (with venv); node for step 3 and 4.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

say() { printf '==> [enrich-py] %s\n' "$*"; }

VENV="../.venv"
stamp="$VENV/.switchboard-requirements.sha256"
want="$(sha256sum requirements.txt | cut -d' ' -f1)"
if [[ ! -x "$VENV/bin/python" || ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    say "venv in plugins/python/.venv"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.txt
    echo "$want" > "$stamp"
fi

say "python -m unittest test_transform"
"$VENV/bin/python" -m unittest -v test_transform

mkdir -p dist
inputs="$(cat build.sh app.py transform.py wit/*.wit wit/deps/switchboard-plugin/*.wit requirements.txt | sha256sum | cut -d' ' -f1)"
if [[ -f dist/enrich.wasm && -f dist/.inputs.sha256 && "$(cat dist/.inputs.sha256)" == "$inputs" ]]; then
    say "dist/enrich.wasm is up to date"
else
    say "componentize-py → dist/enrich.wasm"
    start=$SECONDS
    rm -f dist/.inputs.sha256
    # Only the plugin's modules go in (not tests, smoke files or dist/).
    rm -rf dist/src && mkdir -p dist/src && cp app.py transform.py dist/src/
    "$VENV/bin/componentize-py" --quiet -d wit -w enrich componentize --stub-wasi -p dist/src app -o dist/enrich.wasm
    echo "$inputs" > dist/.inputs.sha256
    say "built $(stat -c %s dist/enrich.wasm) bytes in $((SECONDS - start)) s"
fi

JCO="${JCO:-../../js/moderation/node_modules/.bin/jco}"
if [[ ! -x "$JCO" ]]; then
    say "no jco ($JCO): import check and component smoke test skipped"
    exit 0
fi
imports="$("$JCO" wit dist/enrich.wasm | sed -n 's/^ *import \([^;]*\);/\1/p' | sort)"
say "imports: $(echo $imports)"
if [[ "$imports" != $'switchboard:plugin/clock@0.1.0\nswitchboard:plugin/types@0.1.0' ]]; then
    echo "dist/enrich.wasm must import only switchboard:plugin/clock and types, got: $imports" >&2
    exit 1
fi

say "component smoke test (jco transpile + node)"
rm -rf dist/js
"$JCO" transpile dist/enrich.wasm --name enrich --out-dir dist/js --quiet \
    --map 'switchboard:plugin/clock@0.1.0=../../smoke/clock.js'
echo '{"type":"module"}' > dist/js/package.json
node_flags=()
if (( $(node -p 'process.versions.node.split(".")[0]') < 22 )); then
    node_flags+=(--experimental-wasm-extended-const)
fi
node "${node_flags[@]}" smoke/component.mjs
