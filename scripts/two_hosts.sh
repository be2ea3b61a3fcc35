#!/usr/bin/env bash
# Runs the cluster_map example as one MPI job over two "hosts" on this machine: two network
# namespaces joined by a veth pair (10.77.0.1 and 10.77.0.2), each with its own hostname, so
# that tasks cross TCP between two addresses as they would between two machines.
#
#   sudo scripts/two_hosts.sh [path/to/cluster_map]
#
# Exit status 77: this machine does not allow network namespaces. Needs root, iproute2, util-linux (unshare) and MPICH's mpiexec (hydra). Rank 0 and rank 1
# run on host-a, rank 2 on host-b. The script fails unless both hosts ran tasks and the bytes
# between them crossed the veth link (TCP). Everything it creates is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

binary=${1:-target/release/examples/cluster_map}
if [[ ! -x $binary ]]; then
    echo "no $binary: build it with cargo build --release --features mpi --example cluster_map" >&2
    exit 2
fi
binary=$(realpath "$binary")
if [[ $(id -u) != 0 ]]; then
    echo "creating network namespaces needs root" >&2
    exit 2
fi

a=mp-host-a
b=mp-host-b
cleanup() {
    ip netns del "$a" 2>/dev/null || true
    ip netns del "$b" 2>/dev/null || true
    rm -f "${launcher:-}" /tmp/mp-host-a.boot_id /tmp/mp-host-b.boot_id
}
trap cleanup EXIT
cleanup

if ! ip netns add "$a"; then
    echo "cannot create a network namespace here (a container without CAP_SYS_ADMIN?)" >&2
    exit 77
fi
ip netns add "$b"
ip link add mp-veth-a type veth peer name mp-veth-b
ip link set mp-veth-a netns "$a"
ip link set mp-veth-b netns "$b"
ip -n "$a" addr add 10.77.0.1/24 dev mp-veth-a
ip -n "$b" addr add 10.77.0.2/24 dev mp-veth-b
for ns in "$a" "$b"; do
    ip -n "$ns" link set lo up
done
ip -n "$a" link set mp-veth-a up
ip -n "$b" link set mp-veth-b up
# The link works before MPI is asked to use it.
ip netns exec "$a" bash -c "exec 3<>/dev/tcp/10.77.0.2/1" 2>/dev/null || true

# hydra starts its proxy on each other host the way it would with ssh: `launcher -x HOST
# COMMAND`. Here that means entering the host's namespace, with the host's name. mpiexec itself
# runs on host-a and starts host-a's proxy directly.
launcher=$(mktemp /tmp/mp-launcher.XXXXXX)
cat > "$launcher" <<'LAUNCH'
#!/usr/bin/env bash
# hydra's ssh launcher passes ssh options (-x) before the host, then the command as ssh
# would send it: words for a shell to parse.
while [[ $1 == -* ]]; do shift; done
host=$1
shift
case $host in
    10.77.0.1) ns=mp-host-a ;;
    10.77.0.2) ns=mp-host-b ;;
    *) echo "unknown host $host" >&2; exit 1 ;;
esac
exec ip netns exec "$ns" unshare --uts --mount sh -c \
    "hostname $ns; mount --bind /tmp/$ns.boot_id /proc/sys/kernel/random/boot_id; exec $*"
LAUNCH
chmod +x "$launcher"

status=0
# Each host has its own boot id too: UCX takes processes with one boot id for one machine,
# and would connect them through shared memory instead of the network.
for ns in "$a" "$b"; do
    cat /proc/sys/kernel/random/uuid > "/tmp/$ns.boot_id"
done
output=$(ip netns exec "$a" unshare --uts --mount sh -c \
    'hostname mp-host-a; mount --bind /tmp/mp-host-a.boot_id /proc/sys/kernel/random/boot_id; exec "$@"' sh \
    timeout 60 mpiexec -launcher ssh -launcher-exec "$launcher" \
    -hosts 10.77.0.1:2,10.77.0.2:1 -n 3 \
    "$binary" 2>&1) || status=$?
echo "$output"
if [[ $status != 0 ]]; then
    echo "FAILED: mpiexec exited with $status" >&2
    exit 1
fi
for host in mp-host-a mp-host-b; do
    if ! grep -q "on $host: [1-9]" <<< "$output"; then
        echo "FAILED: no tasks ran on $host" >&2
        exit 1
    fi
done
# What crossed the link: host-b received its tasks and sent their results over TCP.
received=$(ip netns exec "$b" cat /sys/class/net/mp-veth-b/statistics/rx_bytes)
sent=$(ip netns exec "$b" cat /sys/class/net/mp-veth-b/statistics/tx_bytes)
echo "host-b's link: $received bytes received, $sent bytes sent"
if (( received < 10000 || sent < 10000 )); then
    echo "FAILED: too little crossed the link for the tasks host-b ran" >&2
    exit 1
fi
echo "two hosts: passed"
