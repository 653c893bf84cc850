#!/usr/bin/env bash
# `make bench`: every benchmark, figures printed (never asserted).
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$REPO_DIR"
inter=$(bash infra/fetch-movielens.sh)
node_modules/.bin/tsx bench/etl.ts 3
node_modules/.bin/tsx bench/training.ts 3
node_modules/.bin/tsx bench/pipeline.ts "$inter"
