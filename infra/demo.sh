#!/usr/bin/env bash
# `make demo` after the stack is up: real MovieLens-100K through continuousTraining, end to end.
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$REPO_DIR"

t0=$SECONDS
log "data: MovieLens-100K from the RecBole package"
inter=$(bash infra/fetch-movielens.sh)
log "worker: starting the training worker"
bash infra/proc.sh start worker "polling task queue" -- node_modules/.bin/tsx worker/training-worker.ts
t1=$SECONDS

log "training: recsys train (watch it in the Web UI: http://127.0.0.1:$TEMPORAL_UI_PORT)"
cli/bin/recsys train --model two-tower-ml-100k --dataset ml-100k --source "$inter" --format recbole \
  --etl '{"ratingRange":[1,5]}' --nproc 2 --wait
t2=$SECONDS

log "serving: the champion over gRPC on 127.0.0.1:50051"
bash infra/proc.sh start serving "^Serving " -- cli/bin/recsys serve --model two-tower-ml-100k --alias champion --port 50051
cli/bin/recsys recommend --user 196 --k 10 --address 127.0.0.1:50051
t3=$SECONDS

cat <<MSG

Demo finished: data + worker $((t1 - t0)) s, continuousTraining $((t2 - t1)) s, serving $((t3 - t2)) s.
  Temporal Web UI  http://127.0.0.1:$TEMPORAL_UI_PORT  (filter: RecsysModel="two-tower-ml-100k")
  MLflow           $MLFLOW_TRACKING_URI  (Models → two-tower-ml-100k)
  Object store     $RECSYS_S3_ENDPOINT  (bucket recsys: datasets/, training/)
  Recommend        cli/bin/recsys recommend --user 196 --history 50,172 --k 10   (gRPC 127.0.0.1:50051)
The stack, the worker and the server keep running; stop them all with: make stack-down
MSG
