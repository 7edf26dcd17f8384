#!/usr/bin/env bash
# Runs the fuzz targets: fuzz/run.sh [TARGET] [SECONDS]. Every target when TARGET is empty or "all".
set -euo pipefail
cd "$(dirname "$0")"
target="${1:-all}"
seconds="${2:-30}"
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
# cargo-fuzz passes nightly-only flags; the stable toolchain accepts them with RUSTC_BOOTSTRAP.
export RUSTC_BOOTSTRAP=1
targets=("$target")
[ "$target" = all ] && mapfile -t targets < <(cargo fuzz list)
for t in "${targets[@]}"; do
    echo "== fuzz $t for ${seconds}s"
    mkdir -p "corpus/$t"
    cp -n seeds/* "corpus/$t/" 2>/dev/null || true
    cargo fuzz run --sanitizer none "$t" "corpus/$t" -- -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536
done
