#!/usr/bin/env bash
# Runs every check and test of the workspace: formatting, clippy, building
# the benchmarks (`cargo bench --no-run`), and `cargo test --workspace` (unit,
# property and end-to-end tests, including the centrifuge JS SDK and the cent
# Python client suites).
#
# It first installs what the SDK suites need when missing or out of date:
#   tests/sdk/js/node_modules       `npm ci` from the committed lockfile
#   tests/sdk/python/.venv          a venv with requirements.txt installed
# Needs: cargo, node + npm, python3 (with venv). Usage: ./scripts/test.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

say() { printf '==> %s\n' "$*"; }

# --- Node: the centrifuge SDK and ws, pinned by package-lock.json ----------
JS_DIR="tests/sdk/js"
js_stamp="$JS_DIR/node_modules/.switchboard-lock.sha256"
js_want="$(sha256sum "$JS_DIR/package-lock.json" | cut -d' ' -f1)"
if [[ ! -f "$js_stamp" || "$(cat "$js_stamp")" != "$js_want" ]]; then
    say "npm ci in $JS_DIR"
    (cd "$JS_DIR" && npm ci --no-audit --no-fund --ignore-scripts)
    echo "$js_want" > "$js_stamp"
fi

# --- Python: the cent client, pinned by requirements.txt --------------------
PY_DIR="tests/sdk/python"
py_stamp="$PY_DIR/.venv/.switchboard-requirements.sha256"
py_want="$(sha256sum "$PY_DIR/requirements.txt" | cut -d' ' -f1)"
if [[ ! -x "$PY_DIR/.venv/bin/python" || ! -f "$py_stamp" || "$(cat "$py_stamp")" != "$py_want" ]]; then
    say "venv in $PY_DIR/.venv"
    python3 -m venv "$PY_DIR/.venv"
    "$PY_DIR/.venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$PY_DIR/requirements.txt"
    echo "$py_want" > "$py_stamp"
fi
export SWITCHBOARD_PY="${SWITCHBOARD_PY:-$ROOT/$PY_DIR/.venv/bin/python}"

# --- Rust --------------------------------------------------------------------
say "cargo fmt --all -- --check"
cargo fmt --all -- --check

say "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

# Benchmarks are not run here, only built, so they keep compiling.
say "cargo bench --workspace --no-run"
cargo bench --workspace --no-run

say "cargo test --workspace"
# The output stays on screen; a copy is summed so the run closes on one line
# with the totals over all test binaries (the last binary cargo runs is a
# doc-test target that often has 0 tests).
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo test --workspace 2>&1 | tee "$log"
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
