#!/usr/bin/env bash
# Builds the non-Rust example plugins from source and runs their tests:
#   plugins/js/moderation/dist/moderation.wasm   JavaScript (componentize-qjs)
#   plugins/python/enrich/dist/enrich.wasm       Python (componentize-py)
#
# Each plugin's build.sh installs its pinned toolchain when missing or out of
# date (`npm ci` from the committed package-lock.json into node_modules; a
# venv at plugins/python/.venv from requirements.txt; both stamped with the
# lockfile's hash like scripts/test.sh does for the SDK suites), runs the
# logic tests (node --test, python -m unittest), builds the component, checks
# its imports, and runs the component itself under Node (jco transpile).
# Needs node + npm and python3 (with venv). Usage: ./scripts/build-lang-plugins.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# JavaScript first: its node_modules provides jco, which the Python build
# uses to check and smoke-test its component.
"$ROOT/plugins/js/moderation/build.sh"
JCO="$ROOT/plugins/js/moderation/node_modules/.bin/jco" "$ROOT/plugins/python/enrich/build.sh"
