#!/usr/bin/env bash
# Every test: the Rust workspace and the Python suite with the SIMD kernels this CPU selects,
# then the kernel suites again with QUANTLENS_FORCE_SCALAR=1 (the reference kernels), then
# the core crate's tests for aarch64 under qemu where the cross tools are installed.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== Rust tests (native kernels)"
cargo test --workspace
echo "== Python tests (native kernels)"
python3 -m pytest

echo "== Rust and Python tests (QUANTLENS_FORCE_SCALAR=1)"
QUANTLENS_FORCE_SCALAR=1 cargo test --workspace
# Only the suites that decode blocks: the rest never reaches a kernel.
QUANTLENS_FORCE_SCALAR=1 python3 -m pytest -q tests/test_dequantize.py tests/test_gguf_corpus.py \
    tests/test_gguf_differential.py tests/test_torch_dequant.py tests/test_weight_files.py \
    tests/test_integrations_transformers.py

if rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu \
    && command -v qemu-aarch64-static >/dev/null && command -v aarch64-linux-gnu-gcc >/dev/null; then
    echo "== Rust core tests on aarch64 (NEON kernels, under qemu)"
    cargo test -p quantlens-core --target aarch64-unknown-linux-gnu
else
    echo "== NOT RUN: aarch64 core tests need the aarch64-unknown-linux-gnu target," \
        "qemu-aarch64-static and aarch64-linux-gnu-gcc (.ci/run installs them)"
fi
