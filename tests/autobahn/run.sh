#!/usr/bin/env bash
# WebSocket conformance: Autobahn|Testsuite's fuzzingclient, cases 1-10
# (everything but compression), against the gateway's echo endpoint
# (`server.debug_echo_path`). Not part of scripts/test.sh.
#
# The suite needs Python 2.7, which current Debian no longer ships: this
# script fetches Debian bullseye's python2.7 packages with apt-get (same
# mirror as the machine's own sources, bullseye suite) into a scratch
# folder, unpacks them there with dpkg-deb, bootstraps pip from bullseye's
# python-pip-whl and installs `autobahntestsuite` from PyPI. Nothing is
# installed system-wide.
#
# Exit codes: 0 every case OK / NON-STRICT / INFORMATIONAL with an OK close;
# 1 some case failed; 77 SKIPPED (the toolchain could not be set up here):
# never read 77 as a pass.
#
# Usage: tests/autobahn/run.sh            scratch: target/autobahn (AUTOBAHN_DIR)
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
S="${AUTOBAHN_DIR:-$ROOT/target/autobahn}"
PORT="${AUTOBAHN_PORT:-9001}"
mkdir -p "$S"
LOG="$S/setup.log"
: > "$LOG"

skip() {
    printf '\n*****************************************************************\n' >&2
    printf 'SKIPPED: Autobahn conformance NOT run: %s\n' "$*" >&2
    printf 'SKIPPED: this is not a pass (details: %s)\n' "$LOG" >&2
    printf '*****************************************************************\n' >&2
    exit 77
}
step() { printf '==> %s\n' "$*"; }

# --- 1. Python 2.7 from bullseye, unpacked into $S/root -----------------
PY="$S/root/usr/bin/python2.7"
if [[ ! -x "$PY" ]]; then
    step "fetching bullseye python2.7 packages"
    # The machine's own Debian mirror, with the bullseye suite.
    mirror="$(grep -hoE '^(deb |URIs: )[^ ]*' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources \
        /etc/apt/sources.list.d/*.list 2>/dev/null | grep -vi security | head -1 | awk '{print $2}')"
    [[ -n "$mirror" ]] || skip "no Debian mirror found in the apt sources"
    mkdir -p "$S/apt/state/lists/partial" "$S/apt/cache/archives/partial" "$S/debs" "$S/root"
    echo "deb $mirror bullseye main" > "$S/apt/sources.list"
    apt_opts=(-o "Dir::State=$S/apt/state" -o "Dir::Cache=$S/apt/cache" -o "Dir::Etc::SourceList=$S/apt/sources.list"
        -o "Dir::Etc::SourceParts=/dev/null" -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")
    apt-get "${apt_opts[@]}" update >> "$LOG" 2>&1 || skip "apt-get update for bullseye failed"
    # The other libraries python2.7 links (libdb5.3, libreadline8, sqlite,
    # ncurses) keep their sonames in current Debian and come from the host.
    pkgs=(python2.7 python2.7-minimal libpython2.7-minimal libpython2.7-stdlib python-pip-whl libssl1.1 libffi7
        python2.7-dev libpython2.7-dev)
    (cd "$S/debs" && apt-get "${apt_opts[@]}" download "${pkgs[@]}") >> "$LOG" 2>&1 ||
        skip "bullseye python2.7 packages could not be downloaded"
    for deb in "$S"/debs/*.deb; do dpkg-deb -x "$deb" "$S/root" >> "$LOG" 2>&1 || skip "dpkg-deb -x $deb failed"; done
fi
export LD_LIBRARY_PATH="$S/root/usr/lib/x86_64-linux-gnu:$S/root/lib/x86_64-linux-gnu"
export PYTHONHOME="$S/root/usr"
"$PY" -c 'import ssl, ctypes, sqlite3' >> "$LOG" 2>&1 || skip "the unpacked python2.7 does not run"

# --- 2. pip and autobahntestsuite into $S/site --------------------------
SITE="$S/site"
export PYTHONPATH="$SITE"
# A --target install leaves namespace packages (zope) to .pth files, which
# only a site directory reads.
mkdir -p "$SITE"
echo "import site; site.addsitedir('$SITE')" > "$SITE/sitecustomize.py"
if ! "$PY" -c 'import autobahntestsuite' >> "$LOG" 2>&1; then
    step "installing autobahntestsuite (python 2.7)"
    pip_whl="$(ls "$S"/root/usr/share/python-wheels/pip-*.whl 2>/dev/null | head -1)"
    [[ -n "$pip_whl" ]] || skip "no pip wheel in python-pip-whl"
    # Debian's pip runs from its wheel, where pip cannot start build
    # helpers: install a plain pip (the last for 2.7), setuptools and wheel.
    PYTHONPATH="$(ls "$S"/root/usr/share/python-wheels/*.whl | tr '\n' ':')" \
        "$PY" -m pip install --disable-pip-version-check --no-cache-dir --target "$S/pip" \
        'pip==20.3.4' 'setuptools<45' 'wheel<0.38' >> "$LOG" 2>&1 || skip "pip could not bootstrap under python 2.7"
    # wsaccel and Twisted build C extensions against the unpacked headers.
    export CFLAGS="-I$S/root/usr/include -I$S/root/usr/include/python2.7 -I$S/root/usr/include/x86_64-linux-gnu/python2.7"
    PYTHONPATH="$S/pip:$SITE" "$PY" -m pip install --disable-pip-version-check --no-cache-dir --target "$SITE" \
        --no-build-isolation 'wsaccel<0.6.4' autobahntestsuite >> "$LOG" 2>&1 ||
        skip "pip could not install autobahntestsuite under python 2.7"
fi
"$PY" -c 'import autobahntestsuite.wstest' >> "$LOG" 2>&1 || skip "autobahntestsuite does not import"

# --- 3. The gateway with the echo endpoint ------------------------------
step "starting the gateway with server.debug_echo_path on 127.0.0.1:$PORT"
cat > "$S/gateway.toml" <<TOML
[server]
listen = "127.0.0.1:$PORT"
debug_echo_path = "/debug/echo"

[client]
# Case 9 sends messages of up to 16 MiB, and the echo writes them back.
max_frame_bytes = 20000000
ws_write_buffer_bytes = 20000000
TOML
(cd "$ROOT" && cargo build -q -p switchboard) >> "$LOG" 2>&1 || { echo "gateway build failed" >&2; exit 1; }
"${CARGO_TARGET_DIR:-$ROOT/target}/debug/switchboard" serve --config "$S/gateway.toml" >> "$LOG" 2>&1 &
gw=$!
trap 'kill "$gw" 2>/dev/null' EXIT
for _ in $(seq 50); do curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break; sleep 0.2; done

# --- 4. fuzzingclient, cases 1-10 ----------------------------------------
cat > "$S/fuzzingclient.json" <<JSON
{"outdir": "$S/reports", "servers": [{"agent": "switchboard", "url": "ws://127.0.0.1:$PORT/debug/echo"}],
 "cases": ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "8.*", "9.*", "10.*"], "exclude-cases": [],
 "exclude-agent-cases": {}}
JSON
step "running wstest -m fuzzingclient"
(cd "$S" && "$PY" -m autobahntestsuite.wstest -m fuzzingclient -s "$S/fuzzingclient.json") >> "$LOG" 2>&1 ||
    { echo "wstest failed to run (see $LOG)" >&2; exit 1; }

# --- 5. The verdict --------------------------------------------------------
env -u PYTHONHOME -u PYTHONPATH -u LD_LIBRARY_PATH python3 - "$S/reports/index.json" <<'PY'
import json, sys
index = json.load(open(sys.argv[1]))["switchboard"]
ok = {"OK", "NON-STRICT", "INFORMATIONAL"}
bad = {c: r for c, r in index.items() if r["behavior"] not in ok or r["behaviorClose"] not in ok | {"UNIMPLEMENTED"}}
print(f"autobahn: {len(index) - len(bad)} of {len(index)} cases OK/NON-STRICT/INFORMATIONAL")
for c, r in sorted(bad.items()):
    print(f"  FAILED {c}: behavior {r['behavior']}, close {r['behaviorClose']}")
sys.exit(1 if bad else 0)
PY
