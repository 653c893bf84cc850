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

install_temporal_test_server() {
  # Temporal's Java time-skipping test server for tests/workflows (infra/temporal-test-server.sh launches it): the
  # jar and its runtime dependencies from Maven Central, in the cache; Maven keeps its own copy in ~/.m2.
  local version=$TEMPORAL_TEST_SERVER_VERSION
  local dir=$TEMPORAL_TEST_SERVER_DIR
  if [[ -f "$dir/lib/temporal-test-server-$version.jar" ]]; then log "temporal-test-server $version: installed"; return; fi
  if ! command -v java >/dev/null || ! command -v mvn >/dev/null; then
    log "temporal-test-server: java or mvn missing, installing Debian's openjdk-17-jre-headless and maven (apt-get)"
    local sudo=''
    [[ $(id -u) -eq 0 ]] || sudo=sudo
    $sudo apt-get update -q && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q openjdk-17-jre-headless maven \
      || die "installing java and maven failed (apt-get install -y openjdk-17-jre-headless maven)"
  fi
  log "temporal-test-server $version: fetching it and its dependencies from Maven Central (first time only)..."
  rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
  mvn -B -f "$INFRA_DIR/temporal-test-server.pom.xml" -Dtemporal.test.server.version="$version" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$dir.tmp/lib" >"$dir.tmp/mvn.log" 2>&1 \
    || { tail -n 30 "$dir.tmp/mvn.log" >&2; die "fetching io.temporal:temporal-test-server:$version with mvn failed"; }
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
}

install_debian_servers() {
  # Redis (the online feature store) and Prometheus (the serving tier's metrics) run from Debian's packages, started
  # by infra/stack.sh on 127.0.0.1 with their data under the stack directory; sshd (openssh-server) runs inside the
  # local-cluster target's network namespaces only. A policy-rc.d that refuses every start keeps the packages' own
  # services from starting system-wide (on 6379/9090/22) during the install.
  local missing=()
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v prometheus >/dev/null || missing+=(prometheus)
  [[ -x /usr/sbin/sshd ]] || missing+=(openssh-server)
  if ((${#missing[@]} == 0)); then check_debian_servers; return; fi
  log "installing Debian's ${missing[*]} (apt-get)"
  local sudo=''
  [[ $(id -u) -eq 0 ]] || sudo=sudo
  local policy=/usr/sbin/policy-rc.d own_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null && $sudo chmod +x "$policy" && own_policy=1
  fi
  local rc=0
  $sudo apt-get update -q && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    "${missing[@]}" || rc=$?
  ((own_policy)) && $sudo rm -f "$policy"
  ((rc == 0)) || die "installing ${missing[*]} failed (apt-get install -y ${missing[*]})"
  check_debian_servers
}

# Debian security updates move the patch level, so the pins are the release lines bookworm ships.
check_debian_servers() {
  local redis prom
  redis=$(redis-server --version | grep -o 'v=[0-9.]*' | cut -c3-)
  prom=$(prometheus --version 2>&1 | grep -o 'version [0-9.]*' | head -1 | cut -c9-)
  [[ $redis == "$REDIS_SERIES".* ]] || die "redis-server $redis is installed; the stack needs $REDIS_SERIES.x (Debian's redis-server)"
  [[ $prom == "$PROMETHEUS_SERIES".* ]] || die "prometheus $prom is installed; the stack needs $PROMETHEUS_SERIES.x (Debian's prometheus)"
  log "redis-server $redis, prometheus $prom: installed"
}

mkdir -p "$RECSYS_CACHE"
install_debian_servers
install_node
install_go_tool temporal github.com/temporalio/cli/cmd/temporal "$TEMPORAL_CLI_VERSION" \
  "-X github.com/temporalio/cli/temporalcli.Version=$TEMPORAL_CLI_VERSION"
install_go_tool versitygw github.com/versity/versitygw/cmd/versitygw "$VERSITYGW_VERSION"
install_python
install_temporal_test_server
# The production training path: OpenTofu + the OpenStack provider (built from source, offline mirror) and ansible.
bash "$REPO_DIR/infra/install-tofu.sh"
bash "$REPO_DIR/infra/install-ansible.sh"
log "install: done"
