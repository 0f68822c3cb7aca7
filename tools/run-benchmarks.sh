#!/usr/bin/env bash
# make bench: the benchmarks, side by side in one run, JSON under runs/bench/. Needs the local
# Slurm cluster (started here if it is not up), a smoke GCM run (made here if missing) and, for the
# reader benchmark, the bench sweep's cube (made by tools/bench_io.py if missing, ~2 min); the models
# benchmark uses the demo cube if `make demo` made one, else the cached smoke runs' cube.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
bash tools/local-slurm.sh start >/dev/null
eval "$(bash tools/local-slurm.sh env)"
.venv/bin/astrohpc gcm build configs/gcm/smoke.yaml
.venv/bin/astrohpc gcm run configs/gcm/smoke.yaml   # a finished run is kept, not redone
echo "[bench] GCM: core-seconds per simulated day, 2-task array efficiency"
$PY tools/bench_gcm.py --days "${BENCH_GCM_DAYS:-30}"
echo "[bench] I/O: datacube reader vs sequential bytes, preadv, netCDF4, xarray and the DataLoader, on the"
echo "[bench] cube of a 6-run ExoPlaSim sweep (configs/gcm/bench.yaml, run once into runs/benchsweep/)"
$PY tools/bench_io.py
echo "[bench] models: parameters, FLOPs, train/inference throughput, peak RSS of configs/model/*.yaml, and"
echo "[bench] their core-seconds per simulated day against ExoPlaSim's, measured in the same run"
$PY tools/bench_models.py
echo "[bench] training: 1 vs 2 ranks (torchrun, gloo), data wait, checkpoint writes, on the demo cube (make demo first)"
if [ -f runs/demo/demo/datacube.h5 ]; then
  $PY tools/bench_train.py
else
  echo "[bench] no demo cube: training benchmark skipped (run make demo first)"
fi
ls -t runs/bench/*.json | head -3
