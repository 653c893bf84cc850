#!/usr/bin/env bash
# Starts (or restarts) the training worker in the background, tracked like the stack's servers.
#   infra/worker.sh start | stop
set -euo pipefail
. "$(dirname "$0")/env.sh"
RUN="$RECSYS_STACK_DIR/run"; LOGS="$RECSYS_STACK_DIR/logs"
mkdir -p "$RUN" "$LOGS"

stop() {
  [[ -f "$RUN/worker.pid" ]] || return 0
  local pid; pid=$(cat "$RUN/worker.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$RUN/worker.pid"
}

start() {
  stop
  cd "$REPO_DIR"
  setsid node_modules/.bin/tsx worker/training-worker.ts >"$LOGS/worker.log" 2>&1 </dev/null &
  echo $! >"$RUN/worker.pid"
  for _ in $(seq 1 120); do
    grep -q "polling task queue" "$LOGS/worker.log" && { log "worker: running (log: $LOGS/worker.log)"; return; }
    kill -0 "$(cat "$RUN/worker.pid")" 2>/dev/null || { tail -n 20 "$LOGS/worker.log" >&2; die "worker failed to start; see $LOGS/worker.log"; }
    sleep 0.5
  done
  die "worker did not start within 60 s; see $LOGS/worker.log"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
