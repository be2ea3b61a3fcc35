#!/usr/bin/env bash
# Starts a one-node Slurm cluster on this machine (munged, slurmctld and slurmd, by hand: no
# systemd) and runs the MPI tests and cluster_map under `srun`, then stops it all.
#
#   sudo scripts/slurm.sh [--pmix]
#
# - tests/mpi.rs and cluster_map, built against MPICH (target/), under
#   `srun --mpi=pmi2 --kill-on-bad-exit=1`;
# - the same build under `srun --mpi=none` is refused before main (the launcher and the library
#   do not match);
# - with --pmix, after scripts/openmpi.sh: tests/mpi.rs and cluster_map built against Open MPI 5
#   (target/openmpi) under `srun --mpi=pmix` (Slurm's PMIx server, Debian's libpmix 4.2).
#
# Needs root (slurmd runs jobs as any user). Installs slurm-wlm and munge with apt-get when
# slurmctld is missing. The cluster lives in a temporary directory: its own munge key and
# socket, slurm.conf (this host's name and CPU count, from `slurmd -C`), state and logs, and
# ports 16817/16818, so a Slurm already on the machine is left alone. Exit status 77: no
# apt-get to install Slurm with, or `slurmd -C` cannot describe this host. Anything else that
# goes wrong fails. Everything it starts is ended on exit, by pid.
#
# Bounds: each srun by `timeout --foreground` (srun ends its step when told to), each cargo test
# by the test's own limit on its launcher; the whole script by its caller's `timeout`. The
# daemons run in sessions of their own, so that the caller's timeout, which signals this
# script's process group, leaves them to the cleanup, which stops them in order after
# cancelling what still runs.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
pmix=no
[[ ${1:-} == --pmix ]] && pmix=yes

if [[ $(id -u) != 0 ]]; then
    echo "starting slurmd needs root" >&2
    exit 2
fi
# libpmix-dev: Slurm's mpi/pmix plugin loads pmix2/lib/libpmix.so, which only it provides.
installed=$(dpkg-query -W -f '${Status}\n' slurm-wlm munge libpmix-dev 2>/dev/null \
    | grep -c '^install ok installed$' || true)
if [[ $installed != 3 ]]; then
    if ! command -v apt-get > /dev/null; then
        echo "no apt-get here to install Slurm and munge with" >&2
        exit 77
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        slurm-wlm munge libpmix-dev > /dev/null
fi
binary=$root/target/release/examples/cluster_map
if [[ ! -x $binary ]]; then
    echo "no $binary: build it with cargo build --release --features mpi --example cluster_map" >&2
    exit 2
fi

work=$(mktemp -d /tmp/mp-slurm.XXXXXX)
chmod 755 "$work"
started=()
# The slurmstepd processes that were here before: any other is this cluster's.
before_steps=" $(pgrep -x slurmstepd | tr "\n" " " || true) "
cleanup() {
    local status=$? pid ranks
    # A caller's timeout signals twice (this script, then its group): once is enough.
    trap '' TERM INT
    # Jobs still running (after a timeout): cancelled, then given a few seconds to end.
    if [[ -n ${SLURM_CONF:-} ]] && [[ -n $(squeue -h 2>/dev/null) ]]; then
        scancel --quiet --user=root 2>/dev/null || true
        for _ in $(seq 50); do
            [[ -z $(squeue -h 2>/dev/null) ]] && break
            sleep 0.1
        done
    fi
    # slurmd, slurmctld, then munged (the others need it to stop cleanly).
    for ((i = ${#started[@]} - 1; i >= 0; i--)); do
        pid=${started[i]}
        kill "$pid" 2>/dev/null || continue
        timeout 10 tail --pid="$pid" -f /dev/null || kill -9 "$pid" 2>/dev/null || true
    done
    # A step daemon left behind, and the ranks it started.
    for pid in $(pgrep -x slurmstepd || true); do
        [[ $before_steps == *" $pid "* ]] && continue
        mapfile -t ranks < <(pgrep -P "$pid" || true)
        kill -9 "$pid" "${ranks[@]}" 2>/dev/null || true
    done
    if [[ $status != 0 ]]; then
        for log in "$work"/*.log; do
            [[ -s $log ]] || continue
            echo "--- $log (last lines)" >&2
            tail -n 20 "$log" >&2
        done
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

# munge: a key and a daemon of this cluster's own.
mungekey --create --keyfile="$work/munge.key" 2>/dev/null \
    || dd if=/dev/urandom of="$work/munge.key" bs=1 count=1024 status=none
chmod 600 "$work/munge.key"
setsid munged --foreground --force --socket="$work/munge.socket" --key-file="$work/munge.key" \
    --pid-file="$work/munged.pid" --log-file="$work/munged.log" \
    --seed-file="$work/munged.seed" 2>> "$work/munged.log" &
started+=($!)

host=$(hostname -s)
node=$(slurmd -C | head -n 1)
if [[ $node != "NodeName=$host "* ]]; then
    echo "slurmd -C does not describe this host ($host): $node" >&2
    exit 77
fi
mkdir -p "$work/state" "$work/spool"
cat > "$work/slurm.conf" <<CONF
ClusterName=mp
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$work/munge.socket
CredType=cred/munge
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/ctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
ReturnToService=2
MpiDefault=none
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=mp Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$work/slurm.conf

for _ in $(seq 50); do
    [[ -S $work/munge.socket ]] && break
    sleep 0.1
done
setsid slurmctld -D -i -f "$SLURM_CONF" > "$work/slurmctld.out" 2>&1 &
started+=($!)
setsid slurmd -D -N "$host" -f "$SLURM_CONF" > "$work/slurmd.out" 2>&1 &
started+=($!)

up=""
for _ in $(seq 300); do
    state=$(sinfo -h -n "$host" -o %T 2>/dev/null || true)
    if [[ $state == idle ]]; then
        up=yes
        break
    fi
    if ! kill -0 "${started[2]}" 2>/dev/null; then
        echo "slurmd exited:" >&2
        cat "$work/slurmd.out" >&2 || true
        exit 1
    fi
    sleep 0.1
done
if [[ -z $up ]]; then
    echo "the cluster did not come up in 30 s (node state: ${state:-unknown})" >&2
    exit 1
fi
echo "one-node Slurm cluster up: $(sinfo -h -o '%P %D %c %T')"

# 3 ranks on fewer cores, as the other launchers do with oversubscribe.
srun=(srun --overcommit --kill-on-bad-exit=1)

echo "--- tests/mpi.rs (MPICH) under srun --mpi=pmi2"
MP_TEST_LAUNCHER="${srun[*]} --mpi=pmi2" cargo test -q --features mpi --test mpi

echo "--- cluster_map (MPICH) under srun --mpi=pmi2 -n 3"
timeout --foreground 120 "${srun[@]}" --mpi=pmi2 -n 3 "$binary"

echo "--- the MPICH build under srun --mpi=none is refused before main"
if out=$(timeout --foreground 120 "${srun[@]}" --mpi=none -n 3 "$binary" 2>&1); then
    echo "$out"
    echo "FAILED: an MPICH build under srun --mpi=none should have been refused" >&2
    exit 1
fi
grep -q "the launcher and the library do not match" <<< "$out" || {
    echo "$out"
    echo "FAILED: refused, but not for the launcher/library mismatch" >&2
    exit 1
}
echo "refused, as it should be"

if [[ $pmix == yes ]]; then
    ompi_binary=$root/target/openmpi/debug/examples/cluster_map
    if [[ ! -x $ompi_binary || ! -e $root/target/openmpi/env.sh ]]; then
        echo "no $ompi_binary: run scripts/openmpi.sh first" >&2
        exit 2
    fi
    echo "--- cluster_map (Open MPI 5) under srun --mpi=pmix -n 3"
    timeout --foreground 120 "${srun[@]}" --mpi=pmix -n 3 "$ompi_binary"
    echo "--- tests/mpi.rs (Open MPI 5) under srun --mpi=pmix"
    (
        # shellcheck source=/dev/null
        source "$root/target/openmpi/env.sh"
        MP_TEST_LAUNCHER="${srun[*]} --mpi=pmix" cargo test -q --features mpi --test mpi
    )
fi
echo "Slurm: passed"
