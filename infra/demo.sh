#!/usr/bin/env bash
# `make demo` after the stack is up: the real MovieLens-100K through continuous training and staged rollouts.
#   v1: the first 90% of the log (by time) → continuousTraining (validate, train, evaluate, quantize, gates) → rollout:
#       staging load test → no champion yet, so no canary → approval → champion; production serves it
#   v2: the whole log, as when new data arrives → validated against v1's data, gated against v1 → rollout: staging →
#       canary 5% → 25% → 50% under simulated traffic with automated analysis → approval → champion
#   the loop closed: a drift monitor on production (10 s windows here, an hour by default) takes v2's first windows as
#       its baseline; the simulator then shifts what users ask for (popularity shift); the monitor confirms drift in
#       3 of 4 windows and starts `retrain-<model>` (trigger drift), planned from v2's recipe with the production feedback
#       appended as training data → new dataset version → gates → rollout → approval → new champion; the monitor
#       re-baselines on it. Then a nightly retraining schedule is created (Temporal Schedules).
# Approval is a human decision: with a terminal the demo asks; without one (CI, scripts) it says so and approves.
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$REPO_DIR"
MODEL=two-tower-ml-100k
RECSYS=cli/bin/recsys
WORK="$RECSYS_STACK_DIR/demo"
mkdir -p "$WORK"

t0=$SECONDS
log "data: MovieLens-100K from the RecBole package"
inter=$(bash infra/fetch-movielens.sh)
early="${inter%.inter}.first90.inter"
if [[ ! -s "$early" ]]; then
  # The first 90% of the interactions by time (ties broken by user and item, so the file is the same every time).
  rows=$(($(wc -l <"$inter") - 1))
  head -n 1 "$inter" >"$early.partial"
  tail -n +2 "$inter" | sort -t$'\t' -k4,4n -k1,1 -k2,2 >"$early.sorted"
  head -n $((rows * 9 / 10)) "$early.sorted" >>"$early.partial"
  rm -f "$early.sorted"
  mv "$early.partial" "$early"
fi

# The demo's serving used to be one `recsys serve` on :50051; production replicas use that port now.
bash infra/proc.sh stop serving
log "worker: starting the worker"
bash infra/proc.sh start worker "polling task queue" -- node_modules/.bin/tsx worker/training-worker.ts
t1=$SECONDS

# Trains one dataset version; prints the model version whose rollout it started (nothing when none was started).
train() {
  local source=$1 out="$WORK/train-$2.log"
  log "training $2: recsys train (watch it in the Web UI: http://127.0.0.1:$TEMPORAL_UI_PORT)" >&2
  $RECSYS train --model "$MODEL" --dataset ml-100k --source "$source" --format recbole --etl '{"ratingRange":[1,5]}' \
    --nproc 2 --gates infra/demo/gates.json --rollout-config infra/demo/rollout.json \
    --validation infra/demo/validation.json --wait | tee "$out" >&2
  grep -oE "^Rollout: +rollout-$MODEL-v[0-9]+" "$out" | sed -E 's/.*-v([0-9]+)$/\1/' || true
}

# Follows a rollout, taking each decision it asks for (or letting the person at the terminal take it), to its end.
steer() {
  local version=$1 shown=0 said
  for (( ; ; )); do
    $RECSYS rollout watch "$MODEL" "$version" --until decision --skip "$shown" | tee "$WORK/watch.log" >&2
    shown=$((shown + $(wc -l <"$WORK/watch.log") - 1))
    said=$(tail -n 1 "$WORK/watch.log")
    [[ "$said" == waiting:* ]] || return 0
    cat >&2 <<MSG

Rollout of $MODEL v$version is waiting for a decision (${said#waiting: }). Decide in the Temporal Web UI
(http://127.0.0.1:$TEMPORAL_UI_PORT, workflow rollout-$MODEL-v$version, "Send an Update": approve or reject with
{"by": "...", "reason": "..."}) or with the CLI:
  $RECSYS rollout approve $MODEL $version --reason "..."     $RECSYS rollout reject $MODEL $version --reason "..."
MSG
    if [[ -t 0 ]]; then
      local answer=""
      read -r -p "Approve v$version from here? [y/N] (or decide in the Web UI; this waits) " answer || true
      if [[ "$answer" =~ ^[Yy] ]]; then
        $RECSYS rollout approve "$MODEL" "$version" --reason "approved at the make demo prompt" || true
      elif [[ -n "$answer" ]]; then
        $RECSYS rollout reject "$MODEL" "$version" --reason "rejected at the make demo prompt" || true
      fi
    else
      log "no terminal: approving v$version automatically, as the person running the demo would"
      $RECSYS rollout approve "$MODEL" "$version" --by "make demo (no terminal)" \
        --reason "demo run without a terminal: automatic approval" || true
    fi
    # Wait for the decision to be taken (in the Web UI, at the prompt or above) before watching on.
    until ! $RECSYS rollout status "$MODEL" "$version" 2>/dev/null | grep -q "^$MODEL v$version.*: ${said#waiting: }\$"; do
      sleep 1
    done
  done
}

# Production traffic for canaries: held-out users replayed as 2,000 pseudonymous users (needs production up).
traffic() {
  (exec 3<>/dev/tcp/127.0.0.1/50051) 2>/dev/null || return 0
  bash infra/proc.sh start simulate "^Replaying" -- $RECSYS simulate --env production --model "$MODEL" --qps 100 \
    --seconds 900 --population 2000
}

# v1 bootstraps a champion; once the model has one (a second `make demo`), only the newer data is rolled out.
has_champion() {
  curl -fsS "$MLFLOW_TRACKING_URI/api/2.0/mlflow/registered-models/alias?name=$MODEL&alias=champion" >/dev/null 2>&1
}

if has_champion; then
  log "v1: $MODEL already has a champion (an earlier demo); rolling out the newer data only"
else
  v1=$(train "$early" v1-first90)
  [[ -n "$v1" ]] && steer "$v1"
fi
t2=$SECONDS

traffic
v2=$(train "$inter" v2-full)
[[ -n "$v2" ]] && steer "$v2"
t3=$SECONDS

# --- the loop closed: drift on production → retrain on served feedback → rollout ------------------------------------
v3=""
if ! has_champion; then
  log "drift: $MODEL has no champion (its trainings were rejected): nothing is served to watch; skipping the loop"
  t_inject=$SECONDS t_retrain=$SECONDS t_champion=$SECONDS
else
log "drift: monitoring $MODEL on production (recsys drift start; Web UI: drift-monitor-$MODEL-production)"
# The held-out users under their own ids now: their feedback then belongs to users the dataset knows (the
# pseudonymous population of the canaries has no history in the data, so its clicks would teach the retrain nothing).
bash infra/proc.sh stop simulate
bash infra/proc.sh start simulate "^Replaying" -- $RECSYS simulate --env production --model "$MODEL" --qps 100 \
  --seconds 900
$RECSYS drift start "$MODEL" --config @infra/demo/drift.json
$RECSYS drift wait "$MODEL" --for baseline --timeout 240
log "drift: injecting a popularity shift into production traffic (recsys simulate --scenario popularity-shift)"
bash infra/proc.sh stop simulate
t_inject=$SECONDS
bash infra/proc.sh start simulate "^Replaying" -- $RECSYS simulate --env production --model "$MODEL" --qps 100 \
  --seconds 1200 --scenario popularity-shift --shift 0.6
$RECSYS drift wait "$MODEL" --for retrain --timeout 300 | tee "$WORK/drift-wait.log"
t_retrain=$SECONDS
# The retrain's plan has taken the feedback by now; its canary wants traffic spread over many ids again.
sleep 5
bash infra/proc.sh stop simulate
bash infra/proc.sh start simulate "^Replaying" -- $RECSYS simulate --env production --model "$MODEL" --qps 100 \
  --seconds 1200 --population 2000 --scenario popularity-shift --shift 0.6
$RECSYS drift report "$MODEL"
log "retrain: retrain-$MODEL (trigger drift) on the champion's data plus the served feedback"
# A retrain that fails (data validation) or is rejected by the gates starts no rollout: the demo says so and goes on.
$RECSYS status "retrain-$MODEL" --wait | tee "$WORK/retrain.log" || log "retrain-$MODEL failed (above)"
v3=$(grep -oE "^Rollout: +rollout-$MODEL-v[0-9]+" "$WORK/retrain.log" | sed -E 's/.*-v([0-9]+)$/\1/' || true)
[[ -n "$v3" ]] && steer "$v3"
[[ -n "$v3" ]] || log "retrain-$MODEL started no rollout: $(grep -E '^Outcome:' "$WORK/retrain.log" || echo 'it failed')"
t_champion=$SECONDS
bash infra/proc.sh stop simulate
$RECSYS drift status "$MODEL"
fi

log "schedule: nightly retraining with Temporal Schedules (overlap skip: never two trainings of $MODEL at once)"
$RECSYS schedule create "$MODEL" --every 24h --jitter 30m --note "nightly retrain (make demo)"
$RECSYS schedule list
t4=$SECONDS

log "serving: production answers with the champion"
$RECSYS rollout history "$MODEL"

# --- the online path: recommendations that change with each interaction (Redis), over gRPC and HTTP/JSON -----------
PROD=127.0.0.1:50051
PROD_HTTP=http://127.0.0.1:8081
user=196
log "online path: user $user asks with no history: the server reads it (online store, else the dataset)"
$RECSYS recommend --user "$user" --k 5 --address "$PROD"
$RECSYS recommend --user "$user" --k 5 --address "$PROD" --json >"$WORK/online-before.json"
read -r rid items < <(node -e 'const r = require(process.argv[1]);
  console.log(r.request_id, r.items.slice(0, 3).map((i) => i.item_id).join(" "))' "$WORK/online-before.json")
log "online path: user $user clicks the first three (recsys event, gRPC Feedback, request_id $rid)"
for item in $items; do $RECSYS event --user "$user" --item "$item" --type click --request-id "$rid" --address "$PROD"; done
log "online path: the next recommendations use those clicks (history source: online store)"
$RECSYS recommend --user "$user" --k 5 --address "$PROD"
log "online path: the same over HTTP/JSON with curl ($PROD_HTTP, OpenAPI at $PROD_HTTP/v1/openapi.json)"
user=405
curl -sS "$PROD_HTTP/v1/recommend" -H 'content-type: application/json' -d "{\"user_id\": \"$user\", \"k\": 5}" |
  tee "$WORK/online-http-before.json"
echo
item=$(node -e 'console.log(require(process.argv[1]).items[0].item_id)' "$WORK/online-http-before.json")
curl -sS "$PROD_HTTP/v1/events" -H 'content-type: application/json' \
  -d "{\"user_id\": \"$user\", \"item_id\": \"$item\", \"event\": \"FEEDBACK_EVENT_PURCHASE\"}"
echo
curl -sS "$PROD_HTTP/v1/recommend" -H 'content-type: application/json' -d "{\"user_id\": \"$user\", \"k\": 5}"
echo

# --- the production training path, on this machine: two "nodes" (network namespaces), provisioned and released -------
log "cluster: training across two nodes (network namespaces: tofu apply, ansible over ssh, torchrun --nnodes 2)"
cluster_wf="train-$MODEL-cluster-$(date -u +%Y%m%dT%H%M%SZ)"
$RECSYS train --model "$MODEL-cluster" --dataset ml-100k --source "$early" --format recbole \
  --etl '{"ratingRange":[1,5]}' --validation infra/demo/validation.json --epochs 3 --no-rollout \
  --target local-cluster --nodes 2 --max-lease-hours 1 --id "$cluster_wf" --wait | tail -n 12
log "cluster: the saga's steps and cost clock (every node released: nothing is left running)"
$RECSYS cluster status "provision-$cluster_wf"
$RECSYS cluster sweeper --every 15m
t5=$SECONDS

cat <<MSG

Demo finished: data + worker $((t1 - t0)) s, v1 training + rollout $((t2 - t1)) s, v2 training + rollout $((t3 - t2)) s,
drift loop + schedule $((t4 - t3)) s, online path + two-node training $((t5 - t4)) s. The loop: drift injected at +0 s → confirmed and retrain started at +$((t_retrain - t_inject)) s
→ $(if [[ -n "$v3" ]]; then echo "new champion v$v3"; else echo "retrain ended without a rollout"; fi) at +$((t_champion - t_inject)) s.
  Drift            $RECSYS drift status $MODEL    $RECSYS drift report $MODEL
  Web UI search    RecsysModel="$MODEL" AND RecsysTrigger="drift"   (the retrain and its rollout)
  Schedules        $RECSYS schedule list    (Web UI: http://127.0.0.1:$TEMPORAL_UI_PORT/namespaces/default/schedules)
  Temporal Web UI  http://127.0.0.1:$TEMPORAL_UI_PORT  (filter: RecsysModel="$MODEL")
  MLflow           $MLFLOW_TRACKING_URI  (Models → $MODEL: aliases champion / challenger, gate and rollout tags)
  Object store     $RECSYS_S3_ENDPOINT  (bucket recsys: datasets/, training/, serving-logs/, drift/, feedback/)
  Recommend        $RECSYS recommend --user 196 --k 10   (production, gRPC 127.0.0.1:50051; --http for $PROD_HTTP)
  Events           $RECSYS event --user 196 --item 50 --type click   (into the online store, Redis $REDIS_URL)
  HTTP/JSON        curl $PROD_HTTP/v1/recommend -H 'content-type: application/json' -d '{"user_id": "196", "k": 5}'
  Prometheus       $PROMETHEUS_URL/graph   (recsys:requests:rate1m, recsys:request_errors:ratio_rate1m, ...)
  Rollouts         $RECSYS rollout history $MODEL
  Clusters         $RECSYS cluster status provision-$cluster_wf   (Web UI: RecsysClusterPhase, RecsysNodeHours)
The stack, the worker and the production replicas keep running; stop them all with: make stack-down
MSG
