#!/usr/bin/env bash
# Runs every check and test of the workspace: the plugin components and their
# unit tests (scripts/build-plugins.sh), formatting, clippy, and
# `cargo test --workspace` (unit, property and end-to-end tests, including the
# centrifuge JS SDK and the cent Python client suites).
#
# It first installs what the SDK suites need when missing or out of date:
#   tests/sdk/js/node_modules       `npm ci` from the committed lockfile
#   tests/browser/node_modules      `npm ci` (playwright-core, centrifuge)
#   /usr/bin/chromium               Debian's chromium with apt (needs root)
#   tests/sdk/python/.venv          a venv with requirements.txt installed
# and builds the JavaScript and Python plugins (scripts/build-lang-plugins.sh).
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

# --- Browser: playwright-core and the centrifuge UMD bundle, and Chromium ----
BROWSER_DIR="tests/browser"
browser_stamp="$BROWSER_DIR/node_modules/.switchboard-lock.sha256"
browser_want="$(sha256sum "$BROWSER_DIR/package-lock.json" | cut -d' ' -f1)"
if [[ ! -f "$browser_stamp" || "$(cat "$browser_stamp")" != "$browser_want" ]]; then
    say "npm ci in $BROWSER_DIR"
    (cd "$BROWSER_DIR" && npm ci --no-audit --no-fund --ignore-scripts)
    echo "$browser_want" > "$browser_stamp"
fi
# playwright-core drives Debian's chromium: its own browser download does not
# work on these machines.
if [[ ! -x /usr/bin/chromium ]]; then
    if [[ "$(id -u)" != 0 ]]; then
        echo "error: /usr/bin/chromium missing; install Debian's chromium (apt-get install chromium) as root" >&2
        exit 1
    fi
    say "apt-get install chromium"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
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

# The output stays on screen; a copy is summed so the run closes on one line
# with the totals over all test binaries, plugin tests included (the last
# binary cargo runs is a doc-test target that often has 0 tests).
log="$(mktemp)"
trap 'rm -f "$log"' EXIT

# --- Plugins: WebAssembly components and their unit tests --------------------
# Before the workspace tests, which load the built components.
./scripts/build-plugins.sh 2>&1 | tee "$log"

# --- Plugins in JavaScript and Python: built from source, logic tests run -----
say "scripts/build-lang-plugins.sh"
"$ROOT/scripts/build-lang-plugins.sh"

# --- Rust --------------------------------------------------------------------
say "cargo fmt --all -- --check"
cargo fmt --all -- --check

say "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

say "cargo test --workspace"
cargo test --workspace 2>&1 | tee -a "$log"

# The criterion benches are not run here, but they must keep building in the
# profile they run in: this is the run's one release build (wasmtime in
# release takes about 20 minutes on 2 quiet cores). After the tests, so their
# results come first.
say "cargo bench --workspace --no-run"
cargo bench --workspace --no-run
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
