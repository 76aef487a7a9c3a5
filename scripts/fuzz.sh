#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for N seconds each, one after the
# other (nightly toolchain and cargo-fuzz needed: `cargo install cargo-fuzz`).
# Not part of scripts/test.sh. Crashes land in fuzz/artifacts/<target>/.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]     (default 60, all targets)
# SANITIZER=address scripts/fuzz.sh 60   to build with AddressSanitizer (the
# default is none: the gateway forbids unsafe code, and an ASan build of its
# dependencies takes much longer on a small machine).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT/fuzz"

secs="${1:-60}"
shift || true
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi
sanitizer="${SANITIZER:-none}"

failed=()
for t in "${targets[@]}"; do
    printf '==> fuzz %s for %ss\n' "$t" "$secs"
    mkdir -p "corpus/$t"
    if ! nice cargo +nightly fuzz run -s "$sanitizer" "$t" "corpus/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=1; then
        failed+=("$t")
    fi
done
if [[ ${#failed[@]} -gt 0 ]]; then
    printf 'FUZZ FAILED: %s (see fuzz/artifacts/)\n' "${failed[*]}"
    exit 1
fi
printf 'fuzz: %d targets ran %ss each, no crash\n' "${#targets[@]}" "$secs"
