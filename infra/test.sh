#!/usr/bin/env bash
# The test command: static checks, unit tests, the Python model tests, then integration tests against the real
# local stack (started here if it is not running, and stopped afterwards only if this script started it).
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$REPO_DIR"

started_stack=0
if ! bash infra/stack.sh status >/dev/null 2>&1; then
  started_stack=1
  trap 'bash infra/stack.sh down' EXIT
fi
bash infra/stack.sh up

results="$(mktemp -d)"
failed=0
step() { log "== $1"; }

step "static checks: tsc, eslint, prettier"
npx tsc -p tsconfig.json
npx eslint --max-warnings 0 .
npx prettier --check . >/dev/null

step "python model tests (pytest)"
OMP_NUM_THREADS=1 GLOO_SOCKET_IFNAME=lo "$RECSYS_PYTHON" -m pytest tests/models -q -p no:cacheprovider \
  --junitxml="$results/pytest.xml" || failed=1

step "unit + integration tests (jest)"
npx jest --ci --runInBand --json --outputFile="$results/jest.json" || failed=1

# One closing line across both runners.
node -e '
  const fs = require("fs");
  const dir = process.argv[1];
  let passed = 0, failed = 0, skipped = 0;
  try { const j = JSON.parse(fs.readFileSync(dir + "/jest.json", "utf8"));
        passed += j.numPassedTests; failed += j.numFailedTests; skipped += j.numPendingTests + j.numTodoTests; } catch { failed += 1; }
  try { const x = fs.readFileSync(dir + "/pytest.xml", "utf8");
        const a = (n) => [...x.matchAll(new RegExp("<testsuite [^>]*" + n + "=\"(\\d+)\"", "g"))].reduce((s, m) => s + Number(m[1]), 0);
        const total = a("tests"), f = a("failures") + a("errors"), s = a("skipped");
        passed += total - f - s; failed += f; skipped += s; } catch { failed += 1; }
  console.log(`tests: ${passed} passed, ${failed} failed` + (skipped ? `, ${skipped} skipped` : ""));
' "$results"
exit $failed
