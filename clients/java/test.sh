#!/usr/bin/env bash
# Builds the Java client (Java 8 source level, no dependency) and runs its JUnit 5 tests
# against the real herald binary. HERALD_BIN names the binary; JUNIT_JAR the JUnit platform
# console (Debian's junit5: /usr/share/java/junit-platform-console-standalone.jar).
set -euo pipefail
cd "$(dirname "$0")"
: "${HERALD_BIN:?HERALD_BIN must name the herald binary}"
JUNIT_JAR="${JUNIT_JAR:-/usr/share/java/junit-platform-console-standalone.jar}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
javac --release 8 -Xlint:all,-options -Werror -d "$out/main" $(find src/main -name '*.java')
# The example device too, so that it cannot rot.
javac --release 8 -Xlint:all,-options -Werror -cp "$out/main" -d "$out/example" examples/Device.java
javac -Xlint:all -cp "$out/main:$JUNIT_JAR" -d "$out/test" $(find src/test -name '*.java')
java -jar "$JUNIT_JAR" --disable-banner --details=tree --fail-if-no-tests \
  -cp "$out/main:$out/test" --select-package dev.herald.client
