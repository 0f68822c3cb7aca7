#!/usr/bin/env bash
# Idempotent set-up from nothing: system packages, .venv, h5py built against parallel HDF5 (wheel
# cached outside the clone), torch 2.13.0, ExoPlaSim, and astrohpc (editable), at the versions of
# constraints.txt (the tested set; setup.cfg holds ranges). A second run with unchanged inputs only
# checks and exits (a few seconds).
#
# Debian/Ubuntu as root: the system packages come from apt. Anywhere else (a cluster's login node,
# RHEL-like, no root) nothing is installed system-wide; the site must provide, e.g. with `module load`:
#   python3 >= 3.10 with venv; mpicc (Open MPI 4.x, the version your Slurm's PMIx speaks); parallel
#   HDF5 >= 1.10 (pkg-config hdf5-openmpi, or ASTROHPC_HDF5_DIR=/path/to/hdf5); gfortran (ExoPlaSim).
#   Slurm is the site's: slurm-wlm and munge are only for the local test cluster.
# Kept when already installed in the venv (e.g. --system-site-packages, or installed beforehand):
#   a parallel h5py (h5py.get_config().mpi) and a CUDA torch (torch.version.cuda); their lines of
#   constraints.txt are left out so that pip does not replace them.
# Variables: ASTROHPC_VENV (default .venv), ASTROHPC_SKIP_APT=1, ASTROHPC_HDF5_DIR,
#   ASTROHPC_TORCH_INDEX (e.g. https://download.pytorch.org/whl/cu126: a CUDA torch for GPU nodes).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${ASTROHPC_VENV:-.venv}
CACHE=${ASTROHPC_CACHE:-$HOME/.cache/astrohpc}
CONSTRAINTS=constraints.txt
pinned() { sed -n "s/^$1==//p" "$CONSTRAINTS"; }
H5PY_VERSION=$(pinned h5py)
TORCH_VERSION=$(pinned torch)
APT_PACKAGES="openmpi-bin libopenmpi-dev libhdf5-openmpi-dev pkg-config slurm-wlm munge gfortran make git"

log() { echo "[setup] $*"; }
die() { echo "[setup] $*" >&2; exit 1; }

# 1. System packages: apt on Debian/Ubuntu as root; elsewhere, check what the site must provide.
if command -v dpkg-query >/dev/null && command -v apt-get >/dev/null; then
  missing=""
  for p in $APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
  done
  if [ -n "$missing" ] && [ -z "${ASTROHPC_SKIP_APT:-}" ]; then
    if [ "$(id -u)" != 0 ]; then
      die "missing Debian packages:$missing — run 'sudo apt-get install -y$missing' and retry (or ASTROHPC_SKIP_APT=1 with the site's modules loaded)"
    fi
    log "apt-get install$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -q
    apt-get -o DPkg::Lock::Timeout=600 install -y -q $missing
  fi
else
  log "not Debian/Ubuntu: using the site's compilers and libraries (see the top of tools/setup.sh)"
fi
command -v python3 >/dev/null || die "python3 not found: load a Python >= 3.10 (module load python)"

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
stamp_key=$(cat setup.cfg pyproject.toml "$CONSTRAINTS" tools/setup.sh | sha256sum | cut -c1-16)
STAMP="$VENV/.astrohpc-setup-$stamp_key"
if [ -f "$STAMP" ] && "$PY" -c "import h5py, torch, astrohpc; assert h5py.get_config().mpi" 2>/dev/null; then
  log "up to date ($VENV)"
  exit 0
fi

# What the venv already holds and must keep: a parallel h5py, a CUDA torch.
keep=""
if "$PY" -c "import h5py, sys; sys.exit(0 if h5py.get_config().mpi else 1)" 2>/dev/null; then
  keep="$keep h5py"
  log "keeping the parallel h5py $("$PY" -c 'import h5py; print(h5py.__version__)') already installed"
fi
if "$PY" -c "import torch, sys; sys.exit(0 if torch.version.cuda else 1)" 2>/dev/null; then
  keep="$keep torch"
  log "keeping torch $("$PY" -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)') already installed"
fi
SITE_CONSTRAINTS="$VENV/.astrohpc-constraints.txt"
grep -v -E "^($(echo $keep | tr ' ' '|'))==" "$CONSTRAINTS" > "$SITE_CONSTRAINTS" || true

# 3. Build tools and mpi4py (needed to build h5py with MPI).
command -v mpicc >/dev/null || die "mpicc not found: install Open MPI (apt-get install libopenmpi-dev) or module load openmpi"
$PIP install -c "$SITE_CONSTRAINTS" "setuptools>=77" wheel "cython>=3" pkgconfig numpy mpi4py

# 4. h5py against parallel HDF5, built once per machine and cached (unless the venv has one).
if [[ " $keep " != *" h5py "* ]]; then
  if [ -n "${ASTROHPC_HDF5_DIR:-}" ]; then
    hdf5_env=(HDF5_DIR="$ASTROHPC_HDF5_DIR"); hdf5_version=$(basename "$ASTROHPC_HDF5_DIR")
  elif pkg-config --exists hdf5-openmpi 2>/dev/null; then
    hdf5_env=(HDF5_PKGCONFIG_NAME=hdf5-openmpi); hdf5_version=$(pkg-config --modversion hdf5-openmpi)
  else
    die "no parallel HDF5 found: apt-get install libhdf5-openmpi-dev, or module load a parallel HDF5 and set ASTROHPC_HDF5_DIR"
  fi
  pyver=$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
  WHEELDIR="$CACHE/wheels/h5py-$H5PY_VERSION-hdf5-$hdf5_version-openmpi-$pyver"
  if ! ls "$WHEELDIR"/h5py-*.whl >/dev/null 2>&1; then
    log "building h5py $H5PY_VERSION against parallel HDF5 $hdf5_version (a few minutes, once)"
    mkdir -p "$WHEELDIR.tmp"
    env CC=mpicc HDF5_MPI=ON "${hdf5_env[@]}" CFLAGS="-O1" \
      "$PY" -m pip --disable-pip-version-check -q wheel --no-deps --no-binary=h5py --no-build-isolation \
      -w "$WHEELDIR.tmp" "h5py==$H5PY_VERSION"
    rm -rf "$WHEELDIR" && mv "$WHEELDIR.tmp" "$WHEELDIR"
  fi
  $PIP install --no-deps --force-reinstall "$WHEELDIR"/h5py-*.whl
fi

# 5. torch: kept if the venv has one; else the tested version, from ASTROHPC_TORCH_INDEX when given
#    (a CUDA wheel for GPU nodes: torch 2.13.0 ships cu126 and cu130, no cu128).
if ! "$PY" -c "import torch" 2>/dev/null; then
  log "installing torch==$TORCH_VERSION${ASTROHPC_TORCH_INDEX:+ from $ASTROHPC_TORCH_INDEX}"
  $PIP install "torch==$TORCH_VERSION" ${ASTROHPC_TORCH_INDEX:+--index-url "$ASTROHPC_TORCH_INDEX"}
fi

# 6. The package with its dependencies at the tested versions (less those kept above).
log "installing astrohpc (editable) with extras test, dev, gcm (constraints.txt${keep:+, keeping$keep})"
$PIP install -c "$SITE_CONSTRAINTS" -e ".[test,dev,gcm]"
"$PY" -c "import h5py; assert h5py.get_config().mpi, 'h5py lost its MPI build: check constraints.txt'"

rm -f "$VENV"/.astrohpc-setup-*
touch "$STAMP"
log "done: $("$PY" -c 'import torch, h5py, mpi4py; print("torch", torch.__version__, "CUDA", torch.version.cuda, "h5py", h5py.__version__, "mpi4py", mpi4py.__version__)')"
