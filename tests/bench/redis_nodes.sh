#!/usr/bin/env bash
# One node against two nodes on one Redis (issue 6): the same fan-out load
# through `loadgen`, subscribers on node A only, then spread over A and B
# (publishing through A's API either way), and the Redis CPU cost per 1,000
# publications read from `INFO cpu` (used_cpu_sys + used_cpu_user) of a
# redis-server this script starts on a free port (never the shared one).
#
# Usage: tests/bench/redis_nodes.sh [--profile debug|release] [--runs N]
#                                   [--extra "loadgen flags"]
#   --profile   which build in $CARGO_TARGET_DIR (or target/) to run (debug)
#   --runs N    repeat each setup N times; every run is printed (1)
#   --extra     loadgen flags for every run (default: 500 subscribers on one
#               channel, 200 msg/s for 10 s; a publication fans out to all)
# Channels are in a `bench` namespace with history (size 100, TTL 300 s), so
# each publish runs the engine's Lua script (XADD + PUBLISH), as in production.
# Prints one line per run: setup, deliveries/s, p99 ms, completeness,
# publications, Redis CPU ms per 1,000 publications; then `uptime`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PROFILE=debug
RUNS=1
EXTRA="--connections 500 --channels 1 --rate 200 --duration-secs 10"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --profile) PROFILE="$2"; shift 2 ;;
        --runs) RUNS="$2"; shift 2 ;;
        --extra) EXTRA="$2"; shift 2 ;;
        *) echo "unknown argument: $1" >&2; exit 64 ;;
    esac
done
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
SWITCHBOARD="$TARGET_DIR/$PROFILE/switchboard"
LOADGEN="$TARGET_DIR/$PROFILE/loadgen"
[[ -x "$SWITCHBOARD" && -x "$LOADGEN" ]] || {
    echo "build first: cargo build --$PROFILE -p switchboard --bin switchboard -p switchboard-e2e --bin loadgen" >&2
    exit 1
}

WORK="$(mktemp -d /tmp/switchboard-redis-bench.XXXXXX)"
PIDS=()
cleanup() {
    set +e
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    sleep 0.5
    for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 1 300); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on 127.0.0.1:$1" >&2
    return 1
}
ulimit -n 20000

REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --save "" --appendonly no --dir "$WORK" >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
wait_port "$REDIS_PORT"
redis_cpu() {
    redis-cli -p "$REDIS_PORT" INFO cpu | tr -d '\r' |
        awk -F: '/^used_cpu_sys:/ {s=$2} /^used_cpu_user:/ {u=$2} END {printf "%.6f", s+u}'
}

SECRET="bench-secret-$RANDOM$RANDOM"
KEY="bench-key-$RANDOM$RANDOM"
start_node() { # name port
    cat >"$WORK/$1.toml" <<EOF
[server]
listen = "127.0.0.1:$2"
max_connections = 20000
[client]
queue_max_bytes = 67108864
max_commands_per_sec = 0
[auth]
token_hmac_secret = "$SECRET"
[api]
key = "$KEY"
[engine]
type = "redis"
redis_url = "redis://127.0.0.1:$REDIS_PORT"
redis_prefix = "bench"
[[channels.namespaces]]
name = "bench"
history_size = 100
history_ttl_secs = 300
EOF
    RUST_LOG=warn "$SWITCHBOARD" serve --config "$WORK/$1.toml" >"$WORK/$1.log" 2>&1 &
    PIDS+=($!)
    echo $! >"$WORK/$1.pid"
    wait_port "$2"
}
A_PORT=$(free_port)
B_PORT=$(free_port)
start_node a "$A_PORT"
start_node b "$B_PORT"

loadgen() { # publisher ws-url-args... ; prints the JSON report
    local publisher="$1"
    shift
    # shellcheck disable=SC2086 # EXTRA is a list of flags
    "$LOADGEN" --target switchboard-redis --protocol switchboard "$@" \
        --hmac-secret "$SECRET" --publisher "$publisher" --pub-url "http://127.0.0.1:$A_PORT/api/publish" \
        --api-key "$KEY" --channel-prefix bench:c --server-pid "$(cat "$WORK/a.pid")" --quiet $EXTRA
}

run() { # setup ws-url-args...
    local setup="$1"
    shift
    local b0 b1 before after json
    # The same run without publishing: what connecting, subscribing (one
    # read script per subscriber), idling and the nodes' background work
    # cost Redis. Subtracted, so what remains is the publications' cost.
    b0=$(redis_cpu)
    loadgen none "$@" >/dev/null
    b1=$(redis_cpu)
    before=$(redis_cpu)
    json=$(loadgen api "$@")
    after=$(redis_cpu)
    echo "$json" >>"$WORK/results.jsonl"
    python3 - "$setup" "$before" "$after" "$json" "$b0" "$b1" <<'PY'
import json, sys
setup, before, after, r = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), json.loads(sys.argv[4])
baseline = float(sys.argv[6]) - float(sys.argv[5])
pubs = r["published"]
used = (after - before) - baseline
per_k = used * 1000.0 / pubs * 1000.0 if pubs else float("nan")
print(f"{setup:9} deliveries/s {r['deliveries_per_sec']:>10,.0f}  p99 {r['latency']['p99_ms']:>8.1f} ms"
      f"  completeness {r['completeness']:.4f}  published {pubs}"
      f"  redis cpu {per_k:.1f} ms per 1,000 publications (run {(after - before) * 1000:.0f} ms, baseline {baseline * 1000:.0f} ms)")
PY
}

for _ in $(seq 1 "$RUNS"); do
    run one-node --ws-url "ws://127.0.0.1:$A_PORT/connection/websocket"
    run two-nodes --ws-url "ws://127.0.0.1:$A_PORT/connection/websocket" --ws-url "ws://127.0.0.1:$B_PORT/connection/websocket"
done
echo "profile $PROFILE; loadgen flags: $EXTRA"
uptime
