#!/usr/bin/env bash
# Runs the MQTT decoder's fuzz targets (the decoder alone, and behind WebSocket framing) for
# the given number of seconds each (default 60). With cargo-fuzz installed, `cargo fuzz run
# --sanitizer none decode` runs one.
set -euo pipefail
cd "$(dirname "$0")"
exec ../../../.ci/fuzz . "${1:-60}" decode websocket
