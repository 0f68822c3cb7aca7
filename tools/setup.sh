#!/usr/bin/env bash
# Idempotent set-up from nothing: apt packages, .venv, h5py built against parallel HDF5
# (wheel cached outside the clone), torch 2.13.0 (CPU), ExoPlaSim, and astrohpc (editable).
# A second run with unchanged inputs only checks and exits (a few seconds).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${ASTROHPC_VENV:-.venv}
CACHE=${ASTROHPC_CACHE:-$HOME/.cache/astrohpc}
H5PY_VERSION=3.16.0
TORCH_VERSION=2.13.0
APT_PACKAGES="openmpi-bin libopenmpi-dev libhdf5-openmpi-dev pkg-config slurm-wlm munge gfortran make git"

log() { echo "[setup] $*"; }

# 1. System packages (root on Debian 12); skipped when all are present.
missing=""
for p in $APT_PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ] && [ -z "${ASTROHPC_SKIP_APT:-}" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "[setup] missing Debian packages:$missing — run 'sudo apt-get install -y$missing' and retry" >&2
    exit 1
  fi
  log "apt-get install$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -q
  apt-get -o DPkg::Lock::Timeout=600 install -y -q $missing
fi

# 2. The virtual environment.
if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
# pip, with the noise of this machine's unreachable extra indexes filtered from stderr
PIP="pip_quiet"
pip_quiet() { "$PY" -m pip --disable-pip-version-check -q "$@" 2> >(grep -v "is neither a file nor a directory" >&2); }

# Skip the Python part when nothing it depends on changed since the last successful run.
stamp_key=$(cat setup.cfg pyproject.toml tools/setup.sh | sha256sum | cut -c1-16)
STAMP="$VENV/.astrohpc-setup-$stamp_key"
if [ -f "$STAMP" ] && "$PY" -c "import h5py, torch, astrohpc; assert h5py.get_config().mpi" 2>/dev/null; then
  log "up to date ($VENV)"
  exit 0
fi

# 3. Build tools and mpi4py (needed to build h5py with MPI).
$PIP install "setuptools>=77" wheel "cython>=3" pkgconfig "numpy==2.4.6" "mpi4py==4.1.2"

# 4. h5py against Debian's parallel HDF5, built once per machine and cached.
hdf5_version=$(pkg-config --modversion hdf5-openmpi)
pyver=$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
WHEELDIR="$CACHE/wheels/h5py-$H5PY_VERSION-hdf5-$hdf5_version-openmpi-$pyver"
if ! ls "$WHEELDIR"/h5py-*.whl >/dev/null 2>&1; then
  log "building h5py $H5PY_VERSION against parallel HDF5 $hdf5_version (a few minutes, once)"
  mkdir -p "$WHEELDIR.tmp"
  CC=mpicc HDF5_MPI=ON HDF5_PKGCONFIG_NAME=hdf5-openmpi CFLAGS="-O1" \
    pip_quiet wheel --no-deps --no-binary=h5py --no-build-isolation -w "$WHEELDIR.tmp" "h5py==$H5PY_VERSION"
  rm -rf "$WHEELDIR" && mv "$WHEELDIR.tmp" "$WHEELDIR"
fi
$PIP install --no-deps --force-reinstall "$WHEELDIR"/h5py-*.whl

# 5. torch (CPU file on disk here; on a GPU cluster install the CUDA build yourself first).
if ! "$PY" -c "import torch" 2>/dev/null; then
  log "installing torch==$TORCH_VERSION"
  $PIP install "torch==$TORCH_VERSION"
fi

# 6. The package with its pinned dependencies; h5py must stay the MPI build.
log "installing astrohpc (editable) with extras test, dev, gcm"
$PIP install -e ".[test,dev,gcm]"
"$PY" -c "import h5py; assert h5py.get_config().mpi, 'h5py lost its MPI build: pin h5py'" 

rm -f "$VENV"/.astrohpc-setup-*
touch "$STAMP"
log "done: $("$PY" -c 'import torch, h5py, mpi4py; print("torch", torch.__version__, "h5py", h5py.__version__, "mpi4py", mpi4py.__version__)')"
