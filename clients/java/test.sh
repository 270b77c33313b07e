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
# A test CA and a certificate for localhost, for the TLS test.
tls="$out/tls"; mkdir -p "$tls"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=herald-test-ca \
  -keyout "$tls/ca.key" -out "$tls/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
  -keyout "$tls/key.pem" -out "$tls/cert.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$tls/san"
openssl x509 -req -in "$tls/cert.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial -days 2 \
  -extfile "$tls/san" -out "$tls/cert.pem" 2>/dev/null
export HERALD_TEST_TLS_DIR="$tls"
javac --release 8 -Xlint:all,-options -Werror -d "$out/main" $(find src/main -name '*.java')
# The example device too, so that it cannot rot.
javac --release 8 -Xlint:all,-options -Werror -cp "$out/main" -d "$out/example" examples/Device.java
javac -Xlint:all -cp "$out/main:$JUNIT_JAR" -d "$out/test" $(find src/test -name '*.java')
java -jar "$JUNIT_JAR" --disable-banner --details=tree --fail-if-no-tests \
  -cp "$out/main:$out/test" --select-package dev.herald.client
