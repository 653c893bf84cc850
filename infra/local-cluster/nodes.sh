#!/usr/bin/env bash
# The local-cluster target's "machines": one network namespace per node, joined by a bridge in the root namespace,
# each running its own sshd on its address, so that ansible and torchrun reach them exactly as they reach Chameleon
# nodes (over SSH and a real NIC, never loopback). Needs root (ip netns, veth, bridge). Every command is idempotent.
#
#   nodes.sh up <cluster-id> <index> <prefix> <pubkey-file>   one node (creates the bridge when missing)
#   nodes.sh down <cluster-id> <index>                        one node (removes the bridge with the last node)
#   nodes.sh sweep <cluster-id>                               everything of a cluster, whatever state it is in
#   nodes.sh list                                             the cluster ids that have namespaces or a bridge
#
# Names: namespace rsc-<id>-<i>, bridge rsb<id>, veth rsv<id>n<i> (host side) and eth0 inside the node. The bridge
# holds <prefix>.1/24, node i <prefix>.<10+i>/24. Node files (sshd config, host key, pid) live under
# $RECSYS_CLUSTERS_DIR/<id>/netns/ (default ~/.cache/recsys/clusters), and the node's /etc/hosts is
# /etc/netns/<ns>/hosts (and resolv.conf), which `ip netns exec` mounts over /etc's for sshd and everything it starts.
set -euo pipefail

CLUSTERS_DIR=${RECSYS_CLUSTERS_DIR:-$HOME/.cache/recsys/clusters}

die() {
  echo "nodes.sh: $*" >&2
  exit 1
}

check_id() {
  [[ $1 =~ ^[a-z0-9]{1,8}$ ]] || die "cluster id must match ^[a-z0-9]{1,8}\$, got '$1'"
}
check_index() {
  [[ $1 =~ ^[0-9]$ ]] || die "node index must be 0-9, got '$1'"
}

ns_of() { echo "rsc-$1-$2"; }
bridge_of() { echo "rsb$1"; }
veth_of() { echo "rsv$1n$2"; }
node_dir() { echo "$CLUSTERS_DIR/$1/netns/node$2"; }

namespaces_of() {
  ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^rsc-$1-[0-9]$" || true
}

# Parallel `tofu apply` creates nodes at once: one lock per cluster around bridge and namespace changes.
# The lock file lives outside the directories sweep removes, so every caller locks the same file.
with_lock() {
  mkdir -p "$CLUSTERS_DIR/.locks"
  exec 9>"$CLUSTERS_DIR/.locks/$1.lock"
  flock -w 60 9 || die "cluster $1: timed out waiting for the lock"
}

up() {
  local id=$1 i=$2 prefix=$3 pubkey=$4
  check_id "$id"
  check_index "$i"
  [[ $prefix =~ ^10\.([0-9]{1,3})\.([0-9]{1,3})$ ]] || die "prefix must be 10.<a>.<b> (a private /24), got '$prefix'"
  [[ -r $pubkey ]] || die "public key file $pubkey is not readable"
  [[ -x /usr/sbin/sshd ]] || die "/usr/sbin/sshd is missing (Debian's openssh-server; make setup installs it)"
  local ns veth bridge dir addr
  ns=$(ns_of "$id" "$i")
  veth=$(veth_of "$id" "$i")
  bridge=$(bridge_of "$id")
  dir=$(node_dir "$id" "$i")
  addr="$prefix.$((10 + i))"
  with_lock "$id"

  # `replace`, not `add`: an up interrupted between creating a link and addressing it is completed by the next one.
  ip link show "$bridge" >/dev/null 2>&1 || ip link add "$bridge" type bridge
  ip addr replace "$prefix.1/24" dev "$bridge"
  ip link set "$bridge" up

  mkdir -p "/etc/netns/$ns" "$dir"
  [[ -e /etc/netns/$ns/hosts ]] || cp /etc/hosts "/etc/netns/$ns/hosts"
  # No name server inside a node: lookups fail at once instead of timing out on the host's (unreachable) resolver.
  echo '# local-cluster node: names come from /etc/hosts only' >"/etc/netns/$ns/resolv.conf"
  ip netns list | awk '{print $1}' | grep -qx "$ns" || ip netns add "$ns"
  if ! ip netns exec "$ns" ip link show eth0 >/dev/null 2>&1; then
    ip link del "$veth" 2>/dev/null || true
    ip netns exec "$ns" ip link del "${veth}p" 2>/dev/null || true
    ip link add "$veth" type veth peer name "${veth}p"
    ip link set "${veth}p" netns "$ns"
    ip netns exec "$ns" ip link set "${veth}p" name eth0
  fi
  ip netns exec "$ns" ip addr replace "$addr/24" dev eth0
  ip link set "$veth" master "$bridge"
  ip link set "$veth" up
  ip netns exec "$ns" ip link set lo up
  ip netns exec "$ns" ip link set eth0 up
  ip netns exec "$ns" ip route replace default via "$prefix.1"

  [[ -e $dir/ssh_host_ed25519_key ]] || ssh-keygen -q -t ed25519 -N '' -C "$ns" -f "$dir/ssh_host_ed25519_key"
  install -m 600 "$pubkey" "$dir/authorized_keys"
  cat >"$dir/sshd_config" <<EOF
ListenAddress $addr:22
HostKey $dir/ssh_host_ed25519_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $dir/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
MaxStartups 50:30:100
MaxSessions 50
Subsystem sftp /usr/lib/openssh/sftp-server
EOF
  mkdir -p /run/sshd
  local pid=''
  [[ -s $dir/sshd.pid ]] && pid=$(cat "$dir/sshd.pid")
  if [[ -z $pid ]] || ! kill -0 "$pid" 2>/dev/null; then
    ip netns exec "$ns" /usr/sbin/sshd -f "$dir/sshd_config" || die "sshd in $ns did not start"
  fi
  local tries=0
  until ip netns exec "$ns" bash -c "exec 3<>/dev/tcp/$addr/22" 2>/dev/null; do
    ((++tries < 50)) || die "sshd in $ns is not accepting on $addr:22"
    sleep 0.1
  done
  echo "node $i of cluster $id: $ns at $addr (bridge $bridge)"
}

kill_namespace_processes() {
  local ns=$1 pids
  pids=$(ip netns pids "$ns" 2>/dev/null || true)
  [[ -z $pids ]] && return 0
  # shellcheck disable=SC2086 # a list of pids
  kill -TERM $pids 2>/dev/null || true
  for _ in $(seq 20); do
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    [[ -z $pids ]] && return 0
    sleep 0.1
  done
  # shellcheck disable=SC2086
  kill -KILL $pids 2>/dev/null || true
}

remove_node() {
  local id=$1 i=$2 ns veth
  ns=$(ns_of "$id" "$i")
  veth=$(veth_of "$id" "$i")
  if ip netns list | awk '{print $1}' | grep -qx "$ns"; then
    kill_namespace_processes "$ns"
    ip netns del "$ns"
  fi
  ip link del "$veth" 2>/dev/null || true
  rm -rf "/etc/netns/$ns" "$(node_dir "$id" "$i")"
}

remove_bridge_if_unused() {
  local id=$1
  [[ -z $(namespaces_of "$id") ]] || return 0
  ip link del "$(bridge_of "$id")" 2>/dev/null || true
}

down() {
  local id=$1 i=$2
  check_id "$id"
  check_index "$i"
  with_lock "$id"
  remove_node "$id" "$i"
  remove_bridge_if_unused "$id"
  echo "node $i of cluster $id: removed"
}

sweep() {
  local id=$1 ns
  check_id "$id"
  with_lock "$id"
  for ns in $(namespaces_of "$id"); do remove_node "$id" "${ns##*-}"; done
  # veths left by a node whose namespace is already gone
  for veth in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E "^rsv${id}n[0-9]$" || true); do
    ip link del "$veth" 2>/dev/null || true
  done
  remove_bridge_if_unused "$id"
  rm -rf "$CLUSTERS_DIR/$id/netns"
  rm -f "$CLUSTERS_DIR/.locks/$id.lock"
  echo "cluster $id: swept"
}

list() {
  {
    ip netns list 2>/dev/null | awk '{print $1}' | sed -nE 's/^rsc-([a-z0-9]{1,8})-[0-9]$/\1/p'
    ip -o link show type bridge 2>/dev/null | awk -F': ' '{print $2}' | sed -nE 's/^rsb([a-z0-9]{1,8})$/\1/p'
  } | sort -u
}

[[ $(id -u) -eq 0 ]] || die "needs root (network namespaces, veth pairs, a bridge)"
cmd=${1:-}
case $cmd in
up) (($# == 5)) || die "usage: nodes.sh up <cluster-id> <index> <prefix> <pubkey-file>" && up "$2" "$3" "$4" "$5" ;;
down) (($# == 3)) || die "usage: nodes.sh down <cluster-id> <index>" && down "$2" "$3" ;;
sweep) (($# == 2)) || die "usage: nodes.sh sweep <cluster-id>" && sweep "$2" ;;
list) list ;;
*) die "usage: nodes.sh up|down|sweep|list ... (got '${cmd}')" ;;
esac
