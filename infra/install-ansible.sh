#!/usr/bin/env bash
# Idempotent installer of the controller's ansible (ansible-core and ansible-lint, which configure and check the
# training nodes of ansible/): its own venv, installed from ansible/requirements.lock with every transitive package
# pinned by hash. Skipped when the lock has not changed since the last install.
set -euo pipefail
. "$(dirname "$0")/env.sh"

export RECSYS_ANSIBLE_VENV="${RECSYS_ANSIBLE_VENV:-$RECSYS_CACHE/ansible-venv}"
lock="$REPO_DIR/ansible/requirements.lock"

# versions.env names the pins; the lock is what installs them: the two must not drift apart.
for pin in "ansible-core==$ANSIBLE_CORE_VERSION" "ansible-lint==$ANSIBLE_LINT_VERSION"; do
  grep -q "^$pin " "$lock" || die "$lock does not pin $pin (infra/versions.env); regenerate it (see ansible/requirements.in)"
done

stamp="$(cat "$lock" <(python3 --version) | sha256sum | cut -c1-16)"
if [[ -x "$RECSYS_ANSIBLE_VENV/bin/ansible-playbook" && "$(cat "$RECSYS_ANSIBLE_VENV/.recsys-lock" 2>/dev/null)" == "$stamp" ]]; then
  log "ansible venv: up to date ($RECSYS_ANSIBLE_VENV)"
  exit 0
fi
log "ansible venv: installing ansible/requirements.lock (ansible-core $ANSIBLE_CORE_VERSION) into $RECSYS_ANSIBLE_VENV"
# A fresh venv on every lock change, so a package the new lock dropped does not linger.
rm -rf "$RECSYS_ANSIBLE_VENV"
python3 -m venv "$RECSYS_ANSIBLE_VENV"
"$RECSYS_ANSIBLE_VENV/bin/pip" install --quiet --disable-pip-version-check --require-hashes -r "$lock"
echo "$stamp" >"$RECSYS_ANSIBLE_VENV/.recsys-lock"
version="$("$RECSYS_ANSIBLE_VENV/bin/ansible-playbook" --version)"
log "ansible venv: ${version%%$'\n'*}"
