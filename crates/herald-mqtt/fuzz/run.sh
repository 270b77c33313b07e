#!/usr/bin/env bash
# Runs the MQTT decoder's fuzz target for the given number of seconds (default 60). With
# cargo-fuzz installed, `cargo fuzz run --sanitizer none decode` does the same.
set -euo pipefail
cd "$(dirname "$0")"
exec ../../../.ci/fuzz . "${1:-60}" decode
