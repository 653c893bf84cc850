#!/usr/bin/env bash
# The local stack: Temporal dev server (+ Web UI), the versitygw object store, the MLflow server, Redis (the online
# feature store) and Prometheus (the serving tier's metrics), all on 127.0.0.1, all state under one data directory
# ($RECSYS_STACK_DIR). `up` is idempotent: a server that is already healthy is kept.
# `down` stops only the processes this script started (tracked by pid files).
#
#   infra/stack.sh up | down | status
set -euo pipefail
. "$(dirname "$0")/env.sh"

RUN="$RECSYS_STACK_DIR/run"
LOGS="$RECSYS_STACK_DIR/logs"
# name=type (lib/search-attributes.ts): the Web UI filters and shows workflows by them.
SEARCH_ATTRIBUTES=(RecsysModel=Keyword RecsysModelVersion=Keyword RecsysDatasetVersion=Keyword RecsysStage=Keyword
  RecsysTrigger=Keyword RecsysDrift=Keyword RecsysClusterPhase=Keyword RecsysClusterNodes=Int RecsysNodeHours=Double)
BUCKETS=(recsys mlflow)

pid_alive() { [[ -f "$RUN/$1.pid" ]] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

s3_healthy() { curl -s -o /dev/null -m 2 "$RECSYS_S3_ENDPOINT/"; }
temporal_healthy() { "$TEMPORAL_BIN" operator cluster health --address "$TEMPORAL_ADDRESS" 2>/dev/null | grep -q SERVING; }
mlflow_healthy() { curl -sf -m 2 "$MLFLOW_TRACKING_URI/health" >/dev/null; }
redis_healthy() { [[ $(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]; }
prometheus_healthy() { curl -sf -m 2 "$PROMETHEUS_URL/-/ready" >/dev/null; }

# start NAME PORT HEALTH_FN -- command...: run detached in its own process group, wait until healthy.
start() {
  local name=$1 port=$2 health=$3; shift 4
  if $health; then log "$name: already running on 127.0.0.1:$port"; return; fi
  if port_open "$port"; then die "$name: port 127.0.0.1:$port is taken by another process and does not answer as $name"; fi
  log "$name: starting on 127.0.0.1:$port (log: $LOGS/$name.log)"
  setsid "$@" >"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
  local waited=0
  until $health; do
    if ! pid_alive "$name"; then
      tail -n 20 "$LOGS/$name.log" >&2 || true
      die "$name failed to start; see $LOGS/$name.log"
    fi
    ((waited++ > 120)) && die "$name did not become healthy within 60 s; see $LOGS/$name.log"
    sleep 0.5
  done
  log "$name: healthy"
}

s3_curl() { # S3 needs the payload hash header; curl's sigv4 signer does not add it itself.
  curl -s -o /dev/null -w '%{http_code}' -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
    --aws-sigv4 "aws:amz:$AWS_REGION:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" "$@"
}

create_buckets() {
  for bucket in "${BUCKETS[@]}"; do
    local code
    code=$(s3_curl "$RECSYS_S3_ENDPOINT/$bucket")
    [[ $code == 200 ]] && continue
    code=$(s3_curl -X PUT "$RECSYS_S3_ENDPOINT/$bucket")
    [[ $code == 200 ]] || die "object store: creating bucket '$bucket' failed (HTTP $code); see $LOGS/versitygw.log"
    log "object store: created bucket $bucket"
  done
}

# Prometheus scrapes the serving replicas the fleet writes into prometheus/targets/*.json (file-based service
# discovery: fleet/scrape-targets.ts), every second so that a canary step of a few seconds has samples, and evaluates
# infra/prometheus/rules.yml (per-version rate, error ratio, p99, click-through).
write_prometheus_config() {
  local dir="$RECSYS_STACK_DIR/prometheus"
  mkdir -p "$dir/targets" "$dir/data"
  cp "$INFRA_DIR/prometheus/rules.yml" "$dir/rules.yml"
  cat >"$dir/prometheus.yml" <<YAML
# Written by infra/stack.sh: edit that script, not this file.
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 5s
rule_files:
  - $dir/rules.yml
scrape_configs:
  - job_name: recsys-serving
    file_sd_configs:
      - files: ['$dir/targets/*.json']
        refresh_interval: 5s
YAML
  promtool check config "$dir/prometheus.yml" >/dev/null || die "prometheus: $dir/prometheus.yml does not check"
}

up() {
  [[ -x $TEMPORAL_BIN && -x $VERSITYGW_BIN && -x $RECSYS_PYTHON ]] || die "the stack is not installed: run make setup"
  command -v redis-server >/dev/null && command -v prometheus >/dev/null ||
    die "redis-server or prometheus is missing: run make setup (it installs Debian's packages)"
  mkdir -p "$RUN" "$LOGS" "$RECSYS_STACK_DIR/s3" "$RECSYS_STACK_DIR/s3-iam" "$RECSYS_STACK_DIR/mlflow"

  start versitygw "$S3_PORT" s3_healthy -- env ROOT_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" \
    ROOT_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" "$VERSITYGW_BIN" --port "127.0.0.1:$S3_PORT" \
    --iam-dir "$RECSYS_STACK_DIR/s3-iam" posix "$RECSYS_STACK_DIR/s3"
  create_buckets

  local sa_args=()
  for sa in "${SEARCH_ATTRIBUTES[@]}"; do sa_args+=(--search-attribute "$sa"); done
  start temporal "${TEMPORAL_ADDRESS##*:}" temporal_healthy -- "$TEMPORAL_BIN" server start-dev \
    --ip 127.0.0.1 --port "${TEMPORAL_ADDRESS##*:}" --ui-port "$TEMPORAL_UI_PORT" \
    --db-filename "$RECSYS_STACK_DIR/temporal.db" --log-level warn "${sa_args[@]}"
  # start-dev registers --search-attribute only in a new database: add the ones a newer checkout needs to an old one.
  local registered
  registered=$("$TEMPORAL_BIN" operator search-attribute list --address "$TEMPORAL_ADDRESS" 2>/dev/null || true)
  for sa in "${SEARCH_ATTRIBUTES[@]}"; do
    grep -qw "${sa%=*}" <<<"$registered" ||
      "$TEMPORAL_BIN" operator search-attribute create --address "$TEMPORAL_ADDRESS" --name "${sa%=*}" \
        --type "${sa#*=}" >/dev/null
  done

  start mlflow "$MLFLOW_PORT" mlflow_healthy -- env MLFLOW_S3_ENDPOINT_URL="$RECSYS_S3_ENDPOINT" \
    MLFLOW_BOTO_CLIENT_ADDRESSING_STYLE=path "$RECSYS_VENV/bin/mlflow" server --host 127.0.0.1 \
    --port "$MLFLOW_PORT" --workers 2 --backend-store-uri "sqlite:///$RECSYS_STACK_DIR/mlflow/mlflow.db" \
    --artifacts-destination s3://mlflow/artifacts --serve-artifacts

  mkdir -p "$RECSYS_STACK_DIR/redis"
  start redis "$REDIS_PORT" redis_healthy -- redis-server --bind 127.0.0.1 --port "$REDIS_PORT" \
    --dir "$RECSYS_STACK_DIR/redis" --appendonly yes --appendfsync everysec --save '' --daemonize no

  write_prometheus_config
  start prometheus "$PROMETHEUS_PORT" prometheus_healthy -- prometheus \
    --config.file "$RECSYS_STACK_DIR/prometheus/prometheus.yml" --storage.tsdb.path "$RECSYS_STACK_DIR/prometheus/data" \
    --storage.tsdb.retention.time 15d --web.listen-address "127.0.0.1:$PROMETHEUS_PORT" --web.enable-lifecycle
  # A running Prometheus keeps the config it started with: reload it (the rules may come from another checkout).
  curl -sf -m 5 -X POST "$PROMETHEUS_URL/-/reload" >/dev/null || die "prometheus: reloading its configuration failed"

  log "stack is up: Temporal $TEMPORAL_ADDRESS, Web UI http://127.0.0.1:$TEMPORAL_UI_PORT," \
    "MLflow $MLFLOW_TRACKING_URI, object store $RECSYS_S3_ENDPOINT, Redis $REDIS_URL," \
    "Prometheus $PROMETHEUS_URL/graph (data: $RECSYS_STACK_DIR)"
}

down() {
  bash "$INFRA_DIR/proc.sh" stop simulate
  bash "$INFRA_DIR/proc.sh" stop serving
  # Serving replicas of the staging/production environments (activities/deploy.ts).
  for f in "$RUN"/env-*.pid; do [[ -e "$f" ]] && bash "$INFRA_DIR/proc.sh" stop "$(basename "$f" .pid)"; done
  bash "$INFRA_DIR/proc.sh" stop worker
  for name in prometheus redis mlflow temporal versitygw; do
    pid_alive "$name" || { rm -f "$RUN/$name.pid"; continue; }
    local pid; pid=$(cat "$RUN/$name.pid")
    log "$name: stopping (pid $pid)"
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    rm -f "$RUN/$name.pid"
  done
}

status() {
  local rc=0
  s3_healthy && log "object store: up ($RECSYS_S3_ENDPOINT)" || { log "object store: down"; rc=1; }
  temporal_healthy && log "temporal: up ($TEMPORAL_ADDRESS, UI http://127.0.0.1:$TEMPORAL_UI_PORT)" || { log "temporal: down"; rc=1; }
  mlflow_healthy && log "mlflow: up ($MLFLOW_TRACKING_URI)" || { log "mlflow: down"; rc=1; }
  redis_healthy && log "redis: up ($REDIS_URL)" || { log "redis: down"; rc=1; }
  prometheus_healthy && log "prometheus: up ($PROMETHEUS_URL/graph)" || { log "prometheus: down"; rc=1; }
  return $rc
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
