#!/usr/bin/env bash
# Builds the Rust example plugins (plugins/, their own cargo workspace) as
# WebAssembly components and runs their unit tests natively:
#   1. cargo build --release            -> plugins/target/wasm32-wasip2/release/*.wasm
#   2. cargo test --target <host>       the plugins' logic, on the host doubles
#   3. cargo clippy --target <host>     lint-clean, tests included
# Needs: cargo and the wasm32-wasip2 target (rustup target add wasm32-wasip2).
# Usage: ./scripts/build-plugins.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT/plugins"
# The gateway's tests load the components from plugins/target, whatever
# target directory the caller uses for the main workspace.
export CARGO_TARGET_DIR="$ROOT/plugins/target"

say() { printf '==> %s\n' "$*"; }

host="$(rustc -vV | sed -n 's/^host: //p')"

say "plugins: cargo fmt --all -- --check"
cargo fmt --all -- --check

say "plugins: cargo build --release (wasm32-wasip2)"
cargo build --release

missing=0
for crate in */Cargo.toml; do
    name="$(dirname "$crate")"
    wasm="target/wasm32-wasip2/release/${name//-/_}.wasm"
    if [[ -f "$wasm" ]]; then
        printf '    %-48s %8d bytes\n' "$wasm" "$(stat -c %s "$wasm")"
    else
        echo "missing component: $wasm" >&2
        missing=1
    fi
done
[[ "$missing" == 0 ]]

say "plugins: cargo clippy --workspace --all-targets --target $host -- -D warnings"
cargo clippy --workspace --all-targets --target "$host" -- -D warnings

say "plugins: cargo test --workspace --target $host"
cargo test --workspace --target "$host"
