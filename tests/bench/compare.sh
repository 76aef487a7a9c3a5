#!/usr/bin/env bash
# Side-by-side benchmark: Switchboard, nchan and NATS on this machine, driven
# by the same load tool (`loadgen`, tests/src/bin/loadgen.rs), one scenario at
# a time, everything on 127.0.0.1. Writes the result table into BENCHMARKS.md
# between the `compare:begin` / `compare:end` markers, and the raw JSON lines
# next to it in target/bench/.
#
# Usage: tests/bench/compare.sh [--runs N] [--scenarios "idle fanout-1k ..."]
#                               [--servers "switchboard nchan nats"] [--no-write]
#
#   --runs N       repeat every scenario N times; the table shows medians (1)
#   --scenarios    any of: idle connect-rate fanout-1k fanout-5k channels plugins
#                  (all). `plugins` is fanout-1k through a 3-plugin publish
#                  pipeline (moderation → pii-redact → enrich, the example
#                  plugins in plugins/); Switchboard only, as nchan and NATS
#                  have no plugins.
#   --servers      any of: switchboard nchan nats (all)
#   --no-write     print the table instead of updating BENCHMARKS.md
#   --extra ARGS   more loadgen flags for every run, e.g. a shorter smoke run:
#                  --extra "--duration-secs 3 --connections 500"
#
# Installs nginx with libnginx-mod-nchan and nats-server from Debian when they
# are missing (needs root). Builds Switchboard and loadgen in release mode,
# and for `plugins` the three example plugins (wasm32-wasip2, plugins/target).
# Bounded: every load run has a hard timeout, the whole default run takes
# about 6 minutes per repetition, and the trap stops every server it started.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

RUNS=1
SCENARIOS="idle connect-rate fanout-1k fanout-5k channels plugins"
SERVERS="switchboard nchan nats"
WRITE=1
EXTRA=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --runs) RUNS="$2"; shift 2 ;;
        --scenarios) SCENARIOS="$2"; shift 2 ;;
        --servers) SERVERS="$2"; shift 2 ;;
        --no-write) WRITE=0; shift ;;
        --extra) EXTRA="$2"; shift 2 ;;
        *) echo "unknown argument: $1" >&2; exit 64 ;;
    esac
done
[[ "$RUNS" =~ ^[1-9]$ ]] || { echo "--runs must be 1..9" >&2; exit 64; }

say() { printf '==> %s\n' "$*" >&2; }

# --- Peers from Debian -------------------------------------------------------
need=()
command -v nginx >/dev/null || need+=(nginx)
[[ -f /usr/lib/nginx/modules/ngx_nchan_module.so ]] || need+=(libnginx-mod-nchan)
command -v nats-server >/dev/null || need+=(nats-server)
if [[ ${#need[@]} -gt 0 ]]; then
    say "apt-get install ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# --- Build ---------------------------------------------------------------------
say "cargo build --release (switchboard, loadgen)"
cargo build --release -q -p switchboard --bin switchboard -p switchboard-e2e --bin loadgen
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
SWITCHBOARD="$TARGET_DIR/release/switchboard"
LOADGEN="$TARGET_DIR/release/loadgen"
PLUGIN_NAMES=(moderation pii-redact enrich)
if [[ " $SCENARIOS " == *" plugins "* ]]; then
    say "cargo build --release (plugins: ${PLUGIN_NAMES[*]})"
    (cd plugins && CARGO_TARGET_DIR="$ROOT/plugins/target" cargo build --release -q "${PLUGIN_NAMES[@]/#/-p}")
fi

# --- Servers -------------------------------------------------------------------
WORK="$(mktemp -d /tmp/switchboard-bench.XXXXXX)"
PIDS=()
NGINX_CONF=""
cleanup() {
    set +e
    [[ -n "$NGINX_CONF" && -f "$WORK/nginx/nginx.pid" ]] && kill "$(cat "$WORK/nginx/nginx.pid")" 2>/dev/null
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    sleep 0.5
    for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    # Switchboard compiles its plugins before it listens: allow a minute.
    for _ in $(seq 1 600); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on 127.0.0.1:$1" >&2
    return 1
}
ulimit -n 20000

SB_PORT=$(free_port)
SB_SECRET="bench-secret-$RANDOM$RANDOM"
SB_KEY="bench-key-$RANDOM$RANDOM"
cat >"$WORK/switchboard.toml" <<EOF
[server]
listen = "127.0.0.1:$SB_PORT"
max_connections = 20000
[client]
# Generous, so a fan-out burst is measured rather than cut off with 3008.
queue_max_bytes = 67108864
max_commands_per_sec = 0
[auth]
token_hmac_secret = "$SB_SECRET"
[api]
key = "$SB_KEY"
# Fan-out channels: no history, no presence, no join/leave.
[[channels.namespaces]]
name = "fan"
EOF
if [[ " $SCENARIOS " == *" plugins "* ]]; then
    # The plugins scenario: the same fan-out through three plugins. The
    # payload ({"lg":[...],"p":"xx..."}) passes all three: no blocked word,
    # no personal data; enrich adds received_at. timeout_ms is raised from 5
    # so that a loaded machine measures throughput, not the guests' budget.
    cat >>"$WORK/switchboard.toml" <<EOF
[[channels.namespaces]]
name = "plug"
publish_pipeline = ["moderation", "pii-redact", "enrich"]
[plugin_runtime]
cache_dir = "$TARGET_DIR/bench/plugin-cache"
[[plugins]]
name = "moderation"
path = "$ROOT/plugins/target/wasm32-wasip2/release/moderation.wasm"
timeout_ms = 100
config = { block = ["badword"], mask = ["darn"] }
[[plugins]]
name = "pii-redact"
path = "$ROOT/plugins/target/wasm32-wasip2/release/pii_redact.wasm"
timeout_ms = 100
[[plugins]]
name = "enrich"
path = "$ROOT/plugins/target/wasm32-wasip2/release/enrich.wasm"
timeout_ms = 100
EOF
fi

NCHAN_PORT=$(free_port)
mkdir -p "$WORK/nginx/logs"
NGINX_CONF="$WORK/nginx/nginx.conf"
cat >"$NGINX_CONF" <<EOF
load_module /usr/lib/nginx/modules/ngx_nchan_module.so;
worker_processes auto;
worker_rlimit_nofile 20000;
pid nginx.pid;
error_log logs/error.log warn;
events { worker_connections 20000; }
http {
  access_log off;
  client_body_temp_path tmp_body;
  proxy_temp_path tmp_proxy;
  fastcgi_temp_path tmp_fcgi;
  uwsgi_temp_path tmp_uwsgi;
  scgi_temp_path tmp_scgi;
  server {
    listen 127.0.0.1:$NCHAN_PORT;
    # Subscribers start at the newest message, like the other servers:
    # nchan's default (oldest) would replay a previous scenario's buffer.
    location ~ ^/sub/(\w+)\$ { nchan_subscriber websocket; nchan_channel_id \$1; nchan_subscriber_first_message newest; }
    location ~ ^/pub/(\w+)\$ { nchan_publisher; nchan_channel_id \$1; }
  }
}
EOF

NATS_PORT=$(free_port)
NATS_WS_PORT=$(free_port)
cat >"$WORK/nats.conf" <<EOF
listen: "127.0.0.1:$NATS_PORT"
websocket { listen: "127.0.0.1:$NATS_WS_PORT", no_tls: true }
EOF

declare -A SERVER_PIDS
for server in $SERVERS; do
    case "$server" in
        switchboard)
            RUST_LOG=warn "$SWITCHBOARD" serve --config "$WORK/switchboard.toml" >"$WORK/switchboard.log" 2>&1 &
            PIDS+=($!); SERVER_PIDS[switchboard]="--server-pid $!"
            wait_port "$SB_PORT" ;;
        nchan)
            nginx -p "$WORK/nginx" -c "$NGINX_CONF"
            wait_port "$NCHAN_PORT"
            master=$(cat "$WORK/nginx/nginx.pid")
            SERVER_PIDS[nchan]="--server-pid $master $(for p in $(pgrep -P "$master"); do printf -- '--server-pid %s ' "$p"; done)" ;;
        nats)
            nats-server -c "$WORK/nats.conf" >"$WORK/nats.log" 2>&1 &
            PIDS+=($!); SERVER_PIDS[nats]="--server-pid $!"
            wait_port "$NATS_WS_PORT" ;;
        *) echo "unknown server: $server" >&2; exit 64 ;;
    esac
done

# The same tool and preset for every server; only how to reach it differs.
# target_args SERVER SCENARIO
target_args() {
    local ns=fan
    [[ $2 == plugins ]] && ns=plug
    case "$1" in
        switchboard) echo "--protocol switchboard --ws-url ws://127.0.0.1:$SB_PORT/connection/websocket --hmac-secret $SB_SECRET --publisher api --pub-url http://127.0.0.1:$SB_PORT/api/publish --api-key $SB_KEY --channel-prefix $ns:c" ;;
        nchan) echo "--protocol raw --ws-url ws://127.0.0.1:$NCHAN_PORT/sub/{ch} --publisher http --pub-url http://127.0.0.1:$NCHAN_PORT/pub/{ch} --channel-prefix c" ;;
        nats) echo "--protocol raw --ws-url ws://127.0.0.1:$NATS_WS_PORT/ --ready-match PONG --publisher nats --pub-url nats://127.0.0.1:$NATS_PORT --channel-prefix c" ;;
    esac
}
NATS_FIRST='CONNECT {"verbose":false,"pedantic":false}\r\nSUB {ch} {i}\r\nPING\r\n'

OUT_DIR="$TARGET_DIR/bench"
mkdir -p "$OUT_DIR"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
JSONL="$OUT_DIR/compare-$STAMP.jsonl"
COMMANDS="$OUT_DIR/compare-$STAMP.commands"
: >"$JSONL"
: >"$COMMANDS"

for run in $(seq 1 "$RUNS"); do
    for scenario in $SCENARIOS; do
        for server in $SERVERS; do
            # nchan and NATS have no plugins: plugins is Switchboard's own
            # ratio against its plugin-free fanout-1k.
            [[ $scenario == plugins && $server != switchboard ]] && continue
            # Idle connections from the previous run must be gone before memory is read.
            sleep 2
            load1="$(cut -d' ' -f1 /proc/loadavg)"
            args="--preset $scenario --target $server $(target_args "$server" "$scenario") ${SERVER_PIDS[$server]} --quiet $EXTRA"
            printf '%s %s\n' "$(basename "$LOADGEN")" "$args$([[ $server == nats ]] && printf " --first-frame '%s'" "$NATS_FIRST")" >>"$COMMANDS"
            say "run $run/$RUNS: $scenario on $server (load $load1)"
            # shellcheck disable=SC2086 # args is a word list by design
            if [[ $server == nats ]]; then
                line="$(timeout 150 "$LOADGEN" $args --first-frame "$NATS_FIRST" | tail -n 1)" || line=""
            else
                line="$(timeout 150 "$LOADGEN" $args | tail -n 1)" || line=""
            fi
            if [[ "$line" != "{"* ]]; then
                say "no report from $scenario on $server"
                line="{\"target\":\"$server\",\"scenario\":\"$scenario\",\"failed\":true}"
            fi
            printf '%s\n' "${line%\}},\"run\":$run,\"load1\":$load1}" >>"$JSONL"
        done
    done
done

say "raw results: $JSONL"
HEADER="Run $(date -u '+%Y-%m-%d %H:%M UTC') on $(nproc) cores ($(uname -r)), $RUNS run(s) per cell, medians shown; load average (1 min) before each run in the last column."
TABLE="$(python3 "$ROOT/tests/bench/report.py" "$JSONL" "$COMMANDS" "$HEADER")"
if [[ $WRITE -eq 1 ]]; then
    python3 - "$ROOT/BENCHMARKS.md" "$TABLE" <<'PY'
import sys
path, table = sys.argv[1], sys.argv[2]
try:
    text = open(path).read()
except FileNotFoundError:
    text = "# Benchmarks\n\n<!-- compare:begin -->\n<!-- compare:end -->\n"
begin, end = "<!-- compare:begin -->", "<!-- compare:end -->"
if begin not in text or end not in text:
    text += f"\n{begin}\n{end}\n"
head, rest = text.split(begin, 1)
_, tail = rest.split(end, 1)
open(path, "w").write(f"{head}{begin}\n{table}\n{end}{tail}")
PY
    say "BENCHMARKS.md updated"
else
    printf '%s\n' "$TABLE"
fi
