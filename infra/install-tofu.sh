#!/usr/bin/env bash
# Idempotent installer of OpenTofu and the OpenStack provider for the terraform/ roots, both built from the Go module
# proxy (the only source reachable here), cached by version under $RECSYS_CACHE/tools:
#   tofu-<version>/tofu        the CLI (tofu's go.mod has a `replace`, so `go install` fails: build a copy of its module)
#   tofu-mirror/<host>/terraform-provider-openstack/openstack/<version>/linux_amd64/terraform-provider-openstack_v<v>
#                              an unpacked filesystem mirror, so `tofu init` installs the provider offline
#   tofu.rc                    the CLI config pointing at that mirror (TF_CLI_CONFIG_FILE), with direct installs off
# Run it (`bash infra/install-tofu.sh`) or source it: either way it installs, and a sourcing shell keeps TOFU_BIN,
# TOFU_MIRROR_DIR and TOFU_CLI_CONFIG_FILE.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then set -euo pipefail; fi
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"

export TOFU_BIN="$RECSYS_CACHE/tools/tofu-$OPENTOFU_VERSION/tofu"
export TOFU_MIRROR_DIR="$RECSYS_CACHE/tools/tofu-mirror"
export TOFU_CLI_CONFIG_FILE="$RECSYS_CACHE/tools/tofu.rc"
OPENSTACK_PROVIDER_SOURCE=terraform-provider-openstack/openstack

# Builds a main package of a module version from a writable copy of the module (a `replace` directive or a read-only
# module cache rules out `go install`); Go's module and build caches are shared with the other tools.
go_build_module() { # module version package output [ldflags]
  local module=$1 version=$2 package=$3 output=$4 ldflags=${5:-}
  command -v go >/dev/null || die "Go is required to build $module@v$version"
  local work dir
  work=$(mktemp -d)
  # Outside any module, so the download neither reads nor writes a go.mod.
  dir=$(cd "$work" && go mod download -json "$module@v$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p') \
    || { rm -rf "$work"; die "go mod download $module@v$version failed"; }
  [[ -n $dir && -d $dir ]] || { rm -rf "$work"; die "go mod download $module@v$version printed no module directory"; }
  cp -r "$dir" "$work/src" && chmod -R u+w "$work/src"
  mkdir -p "$(dirname "$output")"
  (cd "$work/src" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $ldflags" -o "$output.tmp" "$package") \
    || { rm -rf "$work" "$output.tmp"; die "building $module@v$version ($package) failed"; }
  mv "$output.tmp" "$output"
  rm -rf "$work"
}

install_tofu_cli() {
  if [[ -x $TOFU_BIN ]]; then return; fi
  log "tofu $OPENTOFU_VERSION: building from the Go module proxy (first time only, about 5 minutes on 2 cores)..."
  go_build_module github.com/opentofu/opentofu "$OPENTOFU_VERSION" ./cmd/tofu "$TOFU_BIN" \
    "-X 'github.com/opentofu/opentofu/version.dev=no'"
  "$TOFU_BIN" version | grep -q "^OpenTofu v$OPENTOFU_VERSION\$" || die "$TOFU_BIN is not OpenTofu v$OPENTOFU_VERSION"
}

# The registry host of a provider source without a host, as this tofu resolves it (`tofu providers` prints the fully
# qualified address, e.g. provider[<host>/terraform-provider-openstack/openstack]), so no host name is hard-coded.
default_registry_host() {
  local work out
  work=$(mktemp -d)
  printf 'terraform {\n  required_providers {\n    openstack = { source = "%s" }\n  }\n}\n' \
    "$OPENSTACK_PROVIDER_SOURCE" >"$work/main.tf"
  out=$(cd "$work" && TF_CLI_CONFIG_FILE=/dev/null TF_DATA_DIR="$work/.data" "$TOFU_BIN" providers 2>&1) || true
  rm -rf "$work"
  sed -n "s|.*provider\[\([^]/]*\)/$OPENSTACK_PROVIDER_SOURCE\].*|\1|p" <<<"$out" | head -n 1
}

install_openstack_provider() {
  local host platform
  host=$(default_registry_host)
  [[ -n $host ]] || die "could not read tofu's default registry host from \`$TOFU_BIN providers\`"
  # The platform directory of the mirror, in Go's names (linux_amd64), without needing Go once everything is built.
  platform="$(uname -s | tr '[:upper:]' '[:lower:]')_$(uname -m | sed 's/^x86_64$/amd64/; s/^aarch64$/arm64/')"
  local version=$OPENSTACK_PROVIDER_VERSION
  local binary="$TOFU_MIRROR_DIR/$host/$OPENSTACK_PROVIDER_SOURCE/$version/$platform/terraform-provider-openstack_v$version"
  if [[ ! -x $binary ]]; then
    log "openstack provider $version: building from the Go module proxy (first time only, about a minute)..."
    go_build_module github.com/terraform-provider-openstack/terraform-provider-openstack/v3 "$version" . "$binary"
  fi
  # Direct installs are excluded: `tofu init` finds the provider in the mirror or fails fast instead of reaching out.
  cat >"$TOFU_CLI_CONFIG_FILE.tmp" <<RC
# Written by infra/install-tofu.sh: providers come from the local filesystem mirror only (offline).
provider_installation {
  filesystem_mirror {
    path    = "$TOFU_MIRROR_DIR"
    include = ["$host/$OPENSTACK_PROVIDER_SOURCE"]
  }
  direct {
    exclude = ["*/*/*"]
  }
}
RC
  mv "$TOFU_CLI_CONFIG_FILE.tmp" "$TOFU_CLI_CONFIG_FILE"
}

mkdir -p "$RECSYS_CACHE/tools"
install_tofu_cli
install_openstack_provider
log "tofu $OPENTOFU_VERSION: installed ($TOFU_BIN, openstack provider $OPENSTACK_PROVIDER_VERSION in $TOFU_MIRROR_DIR)"
