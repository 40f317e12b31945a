#!/usr/bin/env bash
# Replays each fuzz target's committed corpus, then fuzzes each briefly. Called by .ci/run.
# Exits non-zero on a crash, or when nightly Rust (needed by libFuzzer's instrumentation) is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "fuzz/ci.sh: the nightly Rust toolchain is not installed (rustup toolchain install nightly); cannot fuzz" >&2
    exit 1
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked || cargo install cargo-fuzz
fi

SECONDS_EACH="${FUZZ_SECONDS:-25}"
# A crash inside libgcc's unwinder (what unwind_tables looks for) would make AddressSanitizer's
# report unwind through the same broken table and hang: it walks frame pointers instead.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}fast_unwind_on_fatal=1"
for t in load_bytes mutate_structure unwind_tables; do
    mkdir -p "fuzz/corpus/$t"
    echo "== $t: replaying fuzz/corpus/$t"
    cargo +nightly fuzz run "$t" "fuzz/corpus/$t" -- -runs=0 -rss_limit_mb=4096
    for crash in fuzz/regressions/"$t"-*; do
        [ -e "$crash" ] || continue
        echo "== $t: replaying $crash (a crash found and fixed)"
        cargo +nightly fuzz run "$t" "$crash" -- -runs=1 -rss_limit_mb=4096
    done
    echo "== $t: fuzzing for ${SECONDS_EACH}s"
    # New inputs go to a scratch directory: CI does not grow the committed corpus.
    scratch="$(mktemp -d)"
    cargo +nightly fuzz run "$t" "$scratch" "fuzz/corpus/$t" -- \
        -max_total_time="$SECONDS_EACH" -rss_limit_mb=4096 -timeout=10
    rm -rf "$scratch"
done
echo "fuzz/ci.sh: no crashes"
