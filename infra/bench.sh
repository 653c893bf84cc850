#!/usr/bin/env bash
# `make bench`: every benchmark, figures printed (never asserted).
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$REPO_DIR"
inter=$(bash infra/fetch-movielens.sh)
node_modules/.bin/tsx bench/etl.ts 3
node_modules/.bin/tsx bench/training.ts 3
# Multi-node: two network-namespace nodes vs one node x 2 vs one process, and the provisioning saga's step times.
node_modules/.bin/tsx bench/multi-node.ts 3
node_modules/.bin/tsx bench/pipeline.ts "$inter"
# At ML-1M scale, every family: wall time by step and the orchestration share (aim: two-tower under 5 min, <5%).
node_modules/.bin/tsx bench/pipeline.ts "$inter" ml-1m-synthetic all
# Quality first: it caches the trained models (~/.cache/recsys/bench/quality) that quantization reuses.
node_modules/.bin/tsx bench/quality.ts "$inter"
node_modules/.bin/tsx bench/quantization.ts "$inter"
# The ODE solver table (GRU vs Euler vs RK4, under time noise) and the cascade/router table (budgets vs quality/latency).
node_modules/.bin/tsx bench/ode-solvers.ts "$inter"
node_modules/.bin/tsx bench/cascade-router.ts "$inter"
# Retrieval at 100k and 1M items: exact in-graph top-K vs exactTopK vs the HNSW index (and on quality's trained models).
node_modules/.bin/tsx bench/retrieval.ts
# Serving: needs no stack (local ONNX graphs, loopback only); the Python peer runs from its own venv.
bash infra/install-bench.sh
node_modules/.bin/tsx bench/serving.ts 5
# Online path: Redis history vs request vs dataset, HTTP vs gRPC, event ingestion; its own redis-server (no stack).
node_modules/.bin/tsx bench/online-path.ts 5
# Drift: detection curve on simulated traffic summaries (no stack), and the cost of one window at 10k/100k/1M requests.
node_modules/.bin/tsx bench/drift-detection.ts 20
node_modules/.bin/tsx bench/drift-window.ts 3
