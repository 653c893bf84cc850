#!/usr/bin/env bash
# `make demo` after the stack is up: real MovieLens-100K through continuousTraining, end to end.
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$REPO_DIR"

t0=$SECONDS
log "data: MovieLens-100K from the RecBole package"
inter=$(bash infra/fetch-movielens.sh)
log "worker: starting the training worker"
bash infra/worker.sh start
t1=$SECONDS

log "training: recsys train (watch it in the Web UI: http://127.0.0.1:$TEMPORAL_UI_PORT)"
cli/bin/recsys train --model two-tower-ml-100k --dataset ml-100k --source "$inter" --format recbole \
  --etl '{"ratingRange":[1,5]}' --nproc 2 --wait
t2=$SECONDS

cat <<MSG

Demo finished: data + worker $((t1 - t0)) s, continuousTraining $((t2 - t1)) s.
  Temporal Web UI  http://127.0.0.1:$TEMPORAL_UI_PORT  (filter: RecsysModel="two-tower-ml-100k")
  MLflow           $MLFLOW_TRACKING_URI  (Models → two-tower-ml-100k)
  Object store     $RECSYS_S3_ENDPOINT  (bucket recsys: datasets/, training/)
The stack and the worker keep running; stop them with: make stack-down
MSG
