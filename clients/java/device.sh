#!/usr/bin/env bash
# Builds the Java client and runs the command-line example device (examples/Device.java)
# with the arguments given: --http URL --mqtt-host H --mqtt-port P --app ID --app-key KEY
# [--store FILE] [--count N].
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
javac --release 8 -Xlint:all,-options -Werror -d "$out" $(find "$here/src/main" "$here/examples" -name '*.java')
java -cp "$out" Device "$@"
