#!/usr/bin/env bash
# Builds the MPI tests and cluster_map against Debian's Open MPI 4.1 (openmpi-bin,
# libopenmpi-dev) and runs them under its `mpirun.openmpi` (ORTE). Then checks that the MPICH
# build under mpirun.openmpi, and this build under MPICH's mpirun, are refused before main.
#
#   scripts/openmpi4.sh
#
# Installs the packages with apt-get when mpicc.openmpi is missing, beside MPICH without taking
# its place: installing Open MPI switches the `mpirun`, `mpiexec`, `mpicc` and libmpi.so/mpi.pc
# alternatives to it (its priority, 50, beats MPICH's 40), so when MPICH is installed they are
# set to MPICH by hand first, and the script checks at the end that `mpirun` is still hydra.
# Everything here names Open MPI by its own paths: `mpicc.openmpi` for rsmpi's build script
# (MPICC), `mpirun.openmpi` for the launcher.
#
# The build is target/openmpi4: a target directory of its own, because rsmpi's build script does
# not rerun when MPICC changes, so one target directory would mix two libraries' bindings. The
# script checks with ldd that the binaries load Open MPI's libmpi.so.40, not MPICH's library.
#
# Exit status 77: no apt-get, or no openmpi-bin package, to install Open MPI with. Anything else
# that goes wrong fails. Ranks it started are ended on exit.
#
# Bounds: each mpirun by `timeout --foreground` (mpirun ends its ranks when told to), cargo test
# by the test's own limit on its launcher; the whole script by its caller's `timeout`.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
target=$root/target/openmpi4

# shellcheck source=scripts/openmpi-common.sh
source "$root/scripts/openmpi-common.sh"
trap 'end_processes_under "$target"' EXIT
trap 'exit 143' TERM INT

sudo=""
[[ $(id -u) != 0 ]] && sudo=sudo

# Keeps `mpirun`, `mpicc` and the rest on MPICH, where it is installed: manual mode, which a
# package's installation leaves alone. Only what is not set so already (no sudo asked for then).
keep_mpich_alternatives() {
    local multiarch name path query
    multiarch=$(gcc -print-multiarch 2>/dev/null || dpkg-architecture -qDEB_HOST_MULTIARCH)
    for name in mpirun:/usr/bin/mpirun.mpich mpi:/usr/bin/mpicc.mpich \
        "mpi-$multiarch:/usr/include/$multiarch/mpich"; do
        path=${name#*:}
        name=${name%%:*}
        [[ -e $path ]] || continue
        query=$(update-alternatives --query "$name" 2>/dev/null) || continue
        [[ $query == *"Status: manual"* && $query == *"Value: $path"* ]] && continue
        $sudo update-alternatives --quiet --set "$name" "$path"
    done
}

if ! command -v mpicc.openmpi > /dev/null || ! command -v mpirun.openmpi > /dev/null; then
    if ! command -v apt-get > /dev/null; then
        echo "no apt-get here to install Open MPI with" >&2
        exit 77
    fi
    keep_mpich_alternatives
    $sudo apt-get update -qq
    if ! apt-cache show openmpi-bin > /dev/null 2>&1; then
        echo "this system's packages have no openmpi-bin" >&2
        exit 77
    fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        openmpi-bin libopenmpi-dev > /dev/null
fi
keep_mpich_alternatives
ompi_info --version | head -n 1

# No optimisation, debug info or incremental state: this build is compiled once and only run.
export MPICC=/usr/bin/mpicc.openmpi CARGO_TARGET_DIR=$target
export CARGO_PROFILE_DEV_OPT_LEVEL=0 CARGO_PROFILE_DEV_DEBUG=0 CARGO_INCREMENTAL=0
launcher=/usr/bin/mpirun.openmpi

echo "--- tests/mpi.rs under mpirun.openmpi -n 3"
cargo build -q --features mpi --test mpi --example cluster_map
# Open MPI's libmpi.so.40, the one its mpicc links (libdir/libmpi.so is its link to it).
check_libmpi "$(mpicc.openmpi --showme:libdirs | awk '{ print $1 }')/libmpi.so" \
    "$target"/debug/deps/mpi-* "$target/debug/examples/cluster_map"
MP_TEST_LAUNCHER=$launcher cargo test -q --features mpi --test mpi

echo "--- cluster_map under mpirun.openmpi -n 3"
timeout --foreground 120 "$launcher" -n 3 "$target/debug/examples/cluster_map"

mpich_build=$(mpich_cluster_map)
if [[ -n $mpich_build ]]; then
    echo "--- the MPICH build under mpirun.openmpi is refused before main"
    expect_mismatch_refused "$launcher" -n 3 "$mpich_build"
else
    echo "(no MPICH build of cluster_map in target/release: its refusal not checked)"
fi
if [[ -x /usr/bin/mpirun.mpich ]]; then
    echo "--- this build under MPICH's mpirun is refused before main"
    expect_mismatch_refused /usr/bin/mpirun.mpich -n 3 "$target/debug/examples/cluster_map"
    if [[ $(mpirun --version 2>&1) != *HYDRA* ]]; then
        echo "FAILED: mpirun is no longer MPICH's: $(readlink -f "$(command -v mpirun)")" >&2
        exit 1
    fi
    echo "mpirun is still MPICH's hydra"
fi
echo "Open MPI 4.1: passed"
