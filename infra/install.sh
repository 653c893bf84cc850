#!/usr/bin/env bash
# Idempotent installer of everything the platform runs on: Node dependencies, the Temporal CLI (dev server + Web UI),
# the versitygw object store and the Python environment. Each part is skipped when its pin is already installed.
set -euo pipefail
. "$(dirname "$0")/env.sh"

install_go_tool() { # name module version [ldflags]
  local name=$1 module=$2 version=$3 ldflags=${4:-}
  local dir="$RECSYS_CACHE/tools/$name-$version"
  if [[ -x "$dir/$name" ]]; then log "$name $version: installed"; return; fi
  command -v go >/dev/null || die "Go is required to build $name (go install $module@v$version)"
  log "$name $version: building from the Go module proxy (first time only, a few minutes)..."
  mkdir -p "$dir.tmp"
  GOBIN="$dir.tmp" CGO_ENABLED=0 go install -ldflags "-s -w $ldflags" "$module@v$version" \
    || die "building $name failed"
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
}

install_node() {
  cd "$REPO_DIR"
  # The registry reachable here serves only this platform's optional binaries (swc, duckdb, ...), which `npm ci`
  # rejects as a lock mismatch; `npm install --no-save` installs the locked versions without rewriting the lock.
  if [[ -f node_modules/.package-lock.json && node_modules/.package-lock.json -nt package-lock.json ]]; then
    log "node modules: up to date"
  else
    log "node modules: installing from package-lock.json..."
    npm install --no-save --no-audit --no-fund --loglevel=error
  fi
}

install_python() {
  local lock="$REPO_DIR/models/requirements.lock"
  local stamp
  stamp="$(cat "$lock" <(python3 --version) | sha256sum | cut -c1-16)"
  if [[ -x "$RECSYS_PYTHON" && "$(cat "$RECSYS_VENV/.recsys-lock" 2>/dev/null)" == "$stamp" ]]; then
    log "python env: up to date ($RECSYS_VENV)"; return
  fi
  log "python env: installing models/requirements.lock into $RECSYS_VENV"
  log "  (PyTorch ships CUDA wheels: a 3-4 GB download the first time, cached by pip afterwards)"
  [[ -x "$RECSYS_PYTHON" ]] || python3 -m venv "$RECSYS_VENV"
  "$RECSYS_VENV/bin/pip" install --progress-bar on --disable-pip-version-check -r "$lock"
  echo "$stamp" >"$RECSYS_VENV/.recsys-lock"
}

mkdir -p "$RECSYS_CACHE"
install_node
install_go_tool temporal github.com/temporalio/cli/cmd/temporal "$TEMPORAL_CLI_VERSION" \
  "-X github.com/temporalio/cli/temporalcli.Version=$TEMPORAL_CLI_VERSION"
install_go_tool versitygw github.com/versity/versitygw/cmd/versitygw "$VERSITYGW_VERSION"
install_python
log "install: done"
