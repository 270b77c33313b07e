#!/usr/bin/env bash
# Builds the coverage-guided fuzz target on stable Rust (the flags cargo-fuzz passes with
# `--sanitizer none`) and runs it for the given number of seconds (default 60).
# With cargo-fuzz installed, `cargo fuzz run --sanitizer none decode` does the same.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
target="$(rustc -vV | sed -n 's/^host: //p')"
RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing" \
  cargo build --release --target "$target" --bin decode
mkdir -p corpus/decode
"target/$target/release/decode" corpus/decode -max_total_time="$seconds" -print_final_stats=1
