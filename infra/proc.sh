#!/usr/bin/env bash
# Starts and stops the platform's own long-running processes (worker, serving) in the background, each in its own
# process group, tracked by a pid file beside the stack's servers.
#   infra/proc.sh start NAME READY_REGEX -- command...   # restarts NAME if running; waits for READY_REGEX in its log
#   infra/proc.sh stop NAME
set -euo pipefail
. "$(dirname "$0")/env.sh"
RUN="$RECSYS_STACK_DIR/run"; LOGS="$RECSYS_STACK_DIR/logs"
mkdir -p "$RUN" "$LOGS"

stop() {
  local name=$1 pidfile="$RUN/$1.pid"
  [[ -f "$pidfile" ]] || return 0
  local pid; pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || true
    # 20 s: a serving replica drains and ships its request log within 15 s (serving/shutdown-budget.ts SHUTDOWN_BUDGET_MS).
    for _ in $(seq 1 80); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    log "$name: stopped"
  fi
  rm -f "$pidfile"
}

start() {
  local name=$1 ready=$2; shift 3
  stop "$name"
  cd "$REPO_DIR"
  # The process records its own pid: it leads its own session and process group, so stop can signal the group.
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$RUN/$name.pid" "$@" >"$LOGS/$name.log" 2>&1 </dev/null &
  for _ in $(seq 1 240); do
    grep -qE "$ready" "$LOGS/$name.log" 2>/dev/null && { log "$name: running (log: $LOGS/$name.log)"; return; }
    if [[ -f "$RUN/$name.pid" ]] && ! kill -0 "$(cat "$RUN/$name.pid")" 2>/dev/null; then
      tail -n 20 "$LOGS/$name.log" >&2
      die "$name failed to start; see $LOGS/$name.log"
    fi
    sleep 0.5
  done
  die "$name did not get ready within 120 s; see $LOGS/$name.log"
}

case "${1:-}" in
  start) [[ $# -ge 4 && $4 == -- ]] || { echo "usage: $0 start NAME READY_REGEX -- command..." >&2; exit 2; }; start "$2" "$3" "${@:4}" ;;
  stop) [[ $# -eq 2 ]] || { echo "usage: $0 stop NAME" >&2; exit 2; }; stop "$2" ;;
  *) echo "usage: $0 start NAME READY_REGEX -- command... | stop NAME" >&2; exit 2 ;;
esac
