#!/usr/bin/env bash
# Builds the coverage-guided fuzz targets of herald-core on stable Rust (the flags cargo-fuzz
# passes with `--sanitizer none`) and runs each for the given number of seconds (default 60),
# starting from the seeds in seeds/<target>. With cargo-fuzz installed,
# `cargo fuzz run --sanitizer none <target>` does the same for one target.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
target="$(rustc -vV | sed -n 's/^host: //p')"
RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing" \
  cargo build --release --target "$target" --bins
log="$(mktemp)"
for fuzz in push_request template signing; do
  mkdir -p "corpus/$fuzz"
  echo "-- $fuzz"
  status=0
  "target/$target/release/$fuzz" "corpus/$fuzz" "seeds/$fuzz" -max_total_time="$seconds" -print_final_stats=1 \
    >"$log" 2>&1 || status=$?
  grep -E "^stat::(number_of_executed_units|new_units_added)" "$log" || true
  if [ "$status" -ne 0 ]; then
    tail -n 40 "$log"
    exit "$status"
  fi
done
