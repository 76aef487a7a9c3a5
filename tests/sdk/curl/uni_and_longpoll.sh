#!/usr/bin/env bash
# curl against a running gateway: the one-way HTTP stream and long-polling,
# exactly as the README shows them. Needs only bash, curl, grep and sed.
#
# Env: SWITCHBOARD_HTTP_URL (http://host:port), SWITCHBOARD_API_KEY,
#      SWITCHBOARD_TOKEN (a connection token whose `channels` claim holds
#      SWITCHBOARD_CHANNEL), SWITCHBOARD_CHANNEL, SWITCHBOARD_USER (its `sub`).
# Prints "[curl] OK" and exits 0 on success; exits 1 with a message otherwise.
set -euo pipefail

URL="${SWITCHBOARD_HTTP_URL:?}"
KEY="${SWITCHBOARD_API_KEY:?}"
TOKEN="${SWITCHBOARD_TOKEN:?}"
CHANNEL="${SWITCHBOARD_CHANNEL:?}"
USER_ID="${SWITCHBOARD_USER:?}"

work="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

fail() { echo "[curl] FAILED: $*" >&2; exit 1; }
api() { curl -sS --max-time 5 -H "X-API-Key: $KEY" -H 'Content-Type: application/json' -d "$2" "$URL/api/$1"; }

# Waits (up to 5 s) until FILE contains PATTERN.
wait_for() {
    local file="$1" pattern="$2"
    for _ in $(seq 1 100); do
        grep -q -- "$pattern" "$file" 2>/dev/null && return 0
        sleep 0.05
    done
    fail "no '$pattern' in $file: $(cat "$file" 2>/dev/null)"
}

# --- uni_http_stream ----------------------------------------------------------
echo "[curl] uni_http_stream"
curl -sS -N --max-time 10 -X POST -d "{\"token\":\"$TOKEN\"}" \
    "$URL/connection/uni_http_stream" > "$work/uni.ndjson" &
stream_pid=$!
wait_for "$work/uni.ndjson" '^{"connect":'
api publish "{\"channel\":\"$CHANNEL\",\"data\":{\"via\":\"curl\"}}" > /dev/null
wait_for "$work/uni.ndjson" "^{\"channel\":\"$CHANNEL\",\"pub\":{\"data\":{\"via\":\"curl\"}"
api disconnect "{\"user\":\"$USER_ID\"}" > /dev/null
wait "$stream_pid" || fail "curl on uni_http_stream exited with $?"
tail -n 1 "$work/uni.ndjson" | grep -q '^{"disconnect":{"code":3503' \
    || fail "the stream did not end with a disconnect: $(tail -n 1 "$work/uni.ndjson")"

# --- long-polling -------------------------------------------------------------
echo "[curl] long_poll"
open="$(curl -sS --max-time 10 -X POST -d "{\"id\":1,\"connect\":{\"token\":\"$TOKEN\"}}" "$URL/connection/long_poll")"
session="$(sed -n 's/^{"session":"\([^"]*\)".*/\1/p' <<<"$open")"
node="$(sed -n 's/^{"session":"[^"]*","node":"\([^"]*\)".*/\1/p' <<<"$open")"
[[ -n "$session" && -n "$node" ]] || fail "no session in $open"
grep -q '"seq":1,' <<<"$open" || fail "first batch is not seq 1: $open"
grep -q '"messages":\[{"id":1,"connect":' <<<"$open" || fail "no connect reply: $open"

curl -sS --max-time 10 -X POST -d "{\"session\":\"$session\",\"node\":\"$node\",\"seq\":1}" \
    "$URL/connection/long_poll" > "$work/poll2.json" &
poll_pid=$!
api publish "{\"channel\":\"$CHANNEL\",\"data\":{\"poll\":1}}" > /dev/null
wait "$poll_pid" || fail "poll exited with $?"
grep -q '"seq":2,' "$work/poll2.json" || fail "second batch is not seq 2: $(cat "$work/poll2.json")"
grep -q '"pub":{"data":{"poll":1}' "$work/poll2.json" || fail "no publication: $(cat "$work/poll2.json")"

# Commands go to /emulation; the reply comes with the next poll.
status="$(curl -sS -o /dev/null -w '%{http_code}' --max-time 5 -X POST \
    -d "{\"session\":\"$session\",\"node\":\"$node\",\"data\":\"{\\\"id\\\":2,\\\"ping\\\":{}}\"}" "$URL/emulation")"
[[ "$status" == 204 ]] || fail "/emulation answered $status"
poll3="$(curl -sS --max-time 10 -X POST -d "{\"session\":\"$session\",\"node\":\"$node\",\"seq\":2}" "$URL/connection/long_poll")"
grep -q '"seq":3,"messages":\[{"id":2,"ping":{}}\]' <<<"$poll3" || fail "no ping reply: $poll3"

status="$(curl -sS -o /dev/null -w '%{http_code}' --max-time 5 -X POST \
    -d '{"session":"nope","node":"","data":"{}"}' "$URL/emulation")"
[[ "$status" == 404 ]] || fail "/emulation for an unknown session answered $status"

echo "[curl] OK"
