#!/usr/bin/env bash
# Fuzz the parsers and kernels of quantlens-core: every target in rust/quantlens-core/fuzz
# for SECONDS each (default 15), seeded by scripts/make_fuzz_seeds.py.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# cargo-fuzz passes nightly-only flags (-Zsanitizer=...); RUSTC_BOOTSTRAP=1 lets the stable
# toolchain accept them, so no nightly is needed. The kernels (unsafe SIMD) run under
# AddressSanitizer; the parsers, safe Rust, run without it for speed. Any crash, leak of
# more than 2 GiB, or input taking over 10 s fails the run; the input is saved under
# rust/quantlens-core/fuzz/artifacts/TARGET/ (add it to
# rust/quantlens-core/tests/data/fuzz-regressions/TARGET/ once fixed).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-15}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(gguf_header gguf_split safetensors pytorch_zip pickle dequant)
fi
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
python3 scripts/make_fuzz_seeds.py
cd rust/quantlens-core
export RUSTC_BOOTSTRAP=1
unset CARGO_TARGET_DIR
for target in "${targets[@]}"; do
    if [ "$target" = dequant ]; then
        build=(-s address --target-dir fuzz/target)
    else
        build=(-s none --target-dir fuzz/target-nosan)
    fi
    echo "== fuzz $target for ${seconds}s"
    cargo fuzz run -a "${build[@]}" "$target" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 2>&1 \
        | grep -E '^(#[0-9]+[[:space:]]+DONE|Done|stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+==|SUMMARY|thread .* panicked|artifact_prefix)' \
        || { echo "fuzz target $target failed"; exit 1; }
done
