#!/usr/bin/env bash
# The test suite against the real stack: local Slurm cluster, serial pytest, then the MPI tests
# under `mpirun -n 2`. Stops the cluster afterwards (also on failure) if this script started it.
# Every suite lists its failures and its skipped tests with the reason (-rfEs), and the script
# ends with one result line per suite; a clone without ../shared skips only the checks against
# those outside files (`shared` marker). tests/mpi runs only in the MPI suite.
# Exit status is non-zero if any part fails. Extra arguments go to the serial pytest run.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export PYTHONUNBUFFERED=1

logs=$(mktemp -d)
started_cluster=0
cleanup() {
  rm -rf "$logs"
  [ "$started_cluster" = 1 ] && bash tools/local-slurm.sh stop >/dev/null 2>&1
}
trap cleanup EXIT
if ! bash tools/local-slurm.sh status >/dev/null 2>&1; then
  bash tools/local-slurm.sh start >/dev/null || { echo "[test] could not start the local Slurm cluster" >&2; exit 1; }
  started_cluster=1
fi
eval "$(bash tools/local-slurm.sh env)"

# pytest's last line: "250 passed, 7 skipped in 99.1s" (or "no tests ran")
result_line() { grep -aE '^(=+ )?([0-9]+ (passed|failed|skipped|errors?|deselected|xfailed|xpassed)|no tests ran)' "$1" | tail -n 1 | sed -E 's/^=+ //; s/ =+$//'; }

status=0
echo "[test] serial suite"
$PY -m pytest -q -rfEs -p no:cacheprovider --color=no --ignore=tests/mpi "$@" 2>&1 | tee "$logs/serial.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

echo "[test] MPI suite (mpirun -n 2)"
mpirun -n 2 --output-filename "$logs/mpi" $PY -m pytest -q -rfEs -p no:cacheprovider --color=no --with-mpi tests/mpi
rc=$?
# exit 5 = no tests collected: that is a failure of the suite layout, not a pass
[ $rc -eq 0 ] || status=1

echo "[test] results (failures and skip reasons: the FAILED/ERROR/SKIPPED lines above)"
echo "[test]   serial:     $(result_line "$logs/serial.log")"
for out in "$logs"/mpi/*/rank.*/stdout; do
  [ -f "$out" ] || continue
  rank=$(basename "$(dirname "$out")")
  echo "[test]   MPI ${rank/./ }: $(result_line "$out")"
done

if [ $status -eq 0 ]; then echo "[test] all suites passed"; else echo "[test] FAILED" >&2; fi
exit $status
