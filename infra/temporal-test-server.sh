#!/usr/bin/env bash
# Temporal's Java time-skipping test server (io.temporal:temporal-test-server, installed by infra/install.sh), as the
# executable @temporalio/testing runs for TestWorkflowEnvironment.createTimeSkipping() with
# `server: { executable: { type: 'existing-path', path: <this script> } }`. The SDK's core spawns it as
# `<this> <port> [extraArgs]` (the test server takes `<port> [--enable-time-skipping]`), polls the port for 5 s, and
# stops it by killing this process: hence `exec`, so that the kill reaches the JVM. The server's output (SLF4J
# notices) goes to a log file, not to the test run. `--check` only says whether the server is installed.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"

lib="$TEMPORAL_TEST_SERVER_DIR/lib"
if [[ ! -f "$lib/temporal-test-server-$TEMPORAL_TEST_SERVER_VERSION.jar" ]]; then
  echo "Temporal test server $TEMPORAL_TEST_SERVER_VERSION is not installed in $lib: run infra/install.sh" >&2
  exit 1
fi
command -v java >/dev/null || { echo 'java is not on PATH: run infra/install.sh' >&2; exit 1; }
[[ "${1:-}" != --check ]] || exit 0

log_file="${TEMPORAL_TEST_SERVER_LOG:-${TMPDIR:-/tmp}/recsys-temporal-test-server.log}"
# A small, short-lived server: the serial GC and the client compiler start fastest.
exec java -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xss512k -cp "$lib/*" io.temporal.testserver.TestServer "$@" \
  >>"$log_file" 2>&1
