#!/usr/bin/env bash
# The test suite against the real stack: local Slurm cluster, serial pytest, then the MPI tests
# under `mpirun -n 2`. Stops the cluster afterwards (also on failure) if this script started it.
# Exit status is non-zero if any part fails. Extra arguments go to the serial pytest run.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export PYTHONUNBUFFERED=1

started_cluster=0
if ! bash tools/local-slurm.sh status >/dev/null 2>&1; then
  bash tools/local-slurm.sh start >/dev/null || { echo "[test] could not start the local Slurm cluster" >&2; exit 1; }
  started_cluster=1
fi
cleanup() { [ "$started_cluster" = 1 ] && bash tools/local-slurm.sh stop >/dev/null 2>&1; }
trap cleanup EXIT
eval "$(bash tools/local-slurm.sh env)"

status=0
echo "[test] serial suite"
$PY -m pytest -q -p no:cacheprovider --color=no "$@" || status=1

echo "[test] MPI suite (mpirun -n 2)"
mpirun -n 2 $PY -m pytest -q -p no:cacheprovider --color=no --with-mpi tests/mpi
rc=$?
# exit 5 = no tests collected: that is a failure of the suite layout, not a pass
[ $rc -eq 0 ] || status=1

if [ $status -eq 0 ]; then echo "[test] all suites passed"; else echo "[test] FAILED" >&2; fi
exit $status
