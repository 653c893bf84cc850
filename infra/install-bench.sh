#!/usr/bin/env bash
# Idempotent installer of the serving benchmark's Python peer (bench/python-peer): its own venv, so grpcio and the
# peer's pins never touch the platform's venv. Skipped when the lock has not changed since the last install.
set -euo pipefail
. "$(dirname "$0")/env.sh"

export RECSYS_BENCH_VENV="${RECSYS_BENCH_VENV:-$RECSYS_CACHE/bench-venv}"
lock="$REPO_DIR/bench/python-peer/requirements.lock"
stamp="$(cat "$lock" <(python3 --version) | sha256sum | cut -c1-16)"
if [[ -x "$RECSYS_BENCH_VENV/bin/python" && "$(cat "$RECSYS_BENCH_VENV/.recsys-lock" 2>/dev/null)" == "$stamp" ]]; then
  log "bench venv: up to date ($RECSYS_BENCH_VENV)"
  exit 0
fi
log "bench venv: installing bench/python-peer/requirements.lock into $RECSYS_BENCH_VENV"
[[ -x "$RECSYS_BENCH_VENV/bin/python" ]] || python3 -m venv "$RECSYS_BENCH_VENV"
"$RECSYS_BENCH_VENV/bin/pip" install --quiet --disable-pip-version-check -r "$lock"
echo "$stamp" >"$RECSYS_BENCH_VENV/.recsys-lock"
