#!/usr/bin/env bash
# Profiles Switchboard under one loadgen scenario with `perf` (software
# cpu-clock sampling, which works in VMs without hardware counters) and counts
# its write syscalls. Prints the top symbols; keeps perf.data in target/bench.
#
# Usage: tests/bench/profile.sh [PRESET] [SECONDS]   (default fanout-1k 8)
# Needs perf (Debian: linux-perf) and root or perf_event_paranoid <= 1.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
PRESET="${1:-fanout-1k}"
SECS="${2:-8}"
[[ "$SECS" =~ ^[0-9]+$ && "$SECS" -le 30 ]] || { echo "SECONDS must be 1..30" >&2; exit 64; }

cargo build --release -q -p switchboard --bin switchboard -p switchboard-e2e --bin loadgen
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
OUT="$TARGET_DIR/bench"
mkdir -p "$OUT"
WORK="$(mktemp -d /tmp/switchboard-profile.XXXXXX)"
SB_PID=""
cleanup() {
    [[ -n "$SB_PID" ]] && kill "$SB_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
cat >"$WORK/switchboard.toml" <<EOF
[server]
listen = "127.0.0.1:$PORT"
max_connections = 20000
[client]
queue_max_bytes = 67108864
max_commands_per_sec = 0
[auth]
token_hmac_secret = "profile-secret"
[api]
key = "profile-key"
[[channels.namespaces]]
name = "fan"
EOF
ulimit -n 20000
RUST_LOG=warn "$TARGET_DIR/release/switchboard" serve --config "$WORK/switchboard.toml" >"$WORK/log" 2>&1 &
SB_PID=$!
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done

"$TARGET_DIR/release/loadgen" --preset "$PRESET" --quiet --server-pid "$SB_PID" \
    --ws-url "ws://127.0.0.1:$PORT/connection/websocket" --pub-url "http://127.0.0.1:$PORT/api/publish" \
    --hmac-secret profile-secret --api-key profile-key --channel-prefix fan:c \
    --duration-secs $((SECS * 2 + 2)) >"$OUT/profile-$PRESET.json" 2>"$OUT/profile-$PRESET.txt" &
LG=$!
# Skip the connect phase; sample the middle of the publishing phase.
sleep 4
perf record -q -e cpu-clock -F 997 -p "$SB_PID" -o "$OUT/perf-$PRESET.data" -- sleep "$SECS" 2>/dev/null
perf stat -e 'syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_sendto,syscalls:sys_enter_read,syscalls:sys_enter_recvfrom,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_futex' \
    -p "$SB_PID" -- sleep 2 2>&1 | grep -E 'syscalls|elapsed' || true
wait "$LG" || true
cat "$OUT/profile-$PRESET.txt"
echo "--- top symbols (self time) ---"
perf report -i "$OUT/perf-$PRESET.data" --no-children --sort dso,symbol --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -40
echo "--- by shared object ---"
perf report -i "$OUT/perf-$PRESET.data" --no-children --sort dso --stdio 2>/dev/null | grep -E '%' | head -8
