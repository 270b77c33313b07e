#!/usr/bin/env bash
# Runs herald-core's fuzz targets for the given number of seconds each (default 60), from
# the seeds in seeds/<target>. With cargo-fuzz installed, `cargo fuzz run --sanitizer none
# <target>` runs one.
set -euo pipefail
cd "$(dirname "$0")"
exec ../../../.ci/fuzz . "${1:-60}" push_request template signing
