# Sourced by the infra scripts: where things live and how the local stack is addressed.
# Everything installed lives outside the checkout so a fresh clone reuses it.
INFRA_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$INFRA_DIR/.." && pwd)"
# shellcheck source=versions.env
. "$INFRA_DIR/versions.env"

export RECSYS_CACHE="${RECSYS_CACHE:-$HOME/.cache/recsys}"
export RECSYS_STACK_DIR="${RECSYS_STACK_DIR:-$RECSYS_CACHE/stack}"
export RECSYS_VENV="${RECSYS_VENV:-$RECSYS_CACHE/venv}"
export RECSYS_PYTHON="${RECSYS_PYTHON:-$RECSYS_VENV/bin/python}"
export TEMPORAL_BIN="$RECSYS_CACHE/tools/temporal-$TEMPORAL_CLI_VERSION/temporal"
export VERSITYGW_BIN="$RECSYS_CACHE/tools/versitygw-$VERSITYGW_VERSION/versitygw"
# The Java time-skipping test server (jars) and its launcher, for tests/workflows.
export TEMPORAL_TEST_SERVER_DIR="$RECSYS_CACHE/tools/temporal-test-server-$TEMPORAL_TEST_SERVER_VERSION"
export TEMPORAL_TEST_SERVER_BIN="$INFRA_DIR/temporal-test-server.sh"

export TEMPORAL_ADDRESS="${TEMPORAL_ADDRESS:-127.0.0.1:7233}"
export TEMPORAL_UI_PORT="${TEMPORAL_UI_PORT:-8233}"
export S3_PORT="${S3_PORT:-7070}"
export MLFLOW_PORT="${MLFLOW_PORT:-5000}"
export REDIS_PORT="${REDIS_PORT:-6379}"
export PROMETHEUS_PORT="${PROMETHEUS_PORT:-9090}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:$REDIS_PORT}"
export PROMETHEUS_URL="${PROMETHEUS_URL:-http://127.0.0.1:$PROMETHEUS_PORT}"
export RECSYS_S3_ENDPOINT="${RECSYS_S3_ENDPOINT:-http://127.0.0.1:$S3_PORT}"
export MLFLOW_TRACKING_URI="${MLFLOW_TRACKING_URI:-http://127.0.0.1:$MLFLOW_PORT}"
# Local-only credentials of the local object store (it listens on 127.0.0.1 only).
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-recsys}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-recsys-local-secret}"
export AWS_REGION="${AWS_REGION:-us-east-1}"
# The pinned AWS SDK runs on Node 20; its notice about future releases needing Node 22 is noise in every command.
export AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=true

log() { printf '\033[1m[recsys]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[31m[recsys] error:\033[0m %s\n' "$*" >&2; exit 1; }
