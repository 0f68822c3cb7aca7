#!/usr/bin/env bash
# make demo: every pipeline stage that exists today, end to end, on the small embedded default
# (configs/gcm/demo.yaml: one 360-day ExoPlaSim spin-up, cached in ~/.cache/astrohpc/spinups,
# then 8 runs of 30 days branched from it), ending in a Markdown report with tables and plots.
# Outputs go to $ASTROHPC_DEMO_DIR (default runs/demo). A second run reuses the finished GCM tasks
# (the sweep skips them), a finished training and the studies whose config did not change.
#
# $ASTROHPC_DEMO_PROFILE names a bash file that sets overrides per stage (the *_ARGS arrays
# below) and SIGNAL_AFTER: configs/demo/smoke.sh is the same pipeline on 3 short runs and a few
# steps, which the test suite runs (tests/test_demo_smoke.py).
set -euo pipefail
cd "$(dirname "$0")/.."
A=.venv/bin/astrohpc
DEMO=${ASTROHPC_DEMO_DIR:-runs/demo}
SWEEP_ARGS=() TRAIN_ARGS=() CLIMATE_ARGS=() CLIMATE_GP_ARGS=() PARITY_ARGS=() ROLLOUT_ARGS=() ABLATION_ARGS=()
CALIBRATION_ARGS=() SPINUP_SWEEP_ARGS=() SPINUP_ARGS=() PREDICT_EMULATOR_ARGS=()
BENCH_ARGS=(--passes 2 --bytes 5e8)
SIGNAL_AFTER=30
if [ -n "${ASTROHPC_DEMO_PROFILE:-}" ]; then
  # shellcheck source=/dev/null
  source "$ASTROHPC_DEMO_PROFILE"
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export PYTHONUNBUFFERED=1
mkdir -p "$DEMO"
SUMMARY=$DEMO/summary.txt
: > "$SUMMARY"
t0=$(date +%s)
stage() { echo; echo "=== [demo +$(( $(date +%s) - t0 ))s] $*"; }
note() { echo "$*" | tee -a "$SUMMARY"; }

stage "1/14 local Slurm cluster (tools/local-slurm.sh)"
bash tools/local-slurm.sh start
eval "$(bash tools/local-slurm.sh env)"
note "cluster: $(sinfo -h -o '%P %D node(s) %T, %c CPUs')"

stage "2/14 astrohpc doctor"
$A doctor --require slurm,exoplasim
note "doctor: every required component present"

stage "3/14 compile the reference GCM once (cached; array tasks never compile)"
$A gcm build
note "gcm build: ExoPlaSim ready"

stage "4/14 GCM sweep: spin-up job, then a Slurm job array + aggregation job (manifest + HDF5 datacubes)"
$A gcm sweep configs/gcm/demo.yaml "run.root=$DEMO" "${SWEEP_ARGS[@]}" --submit --wait --timeout 1800
SWEEP=$DEMO/demo
CUBE=$SWEEP/datacube.h5
[ -f "$CUBE" ] || { echo "[demo] the aggregation job wrote no datacube: see $SWEEP/manifest.json" >&2; exit 1; }
note "sweep: $(.venv/bin/python -c "import json,sys; m=json.load(open(sys.argv[1])); print(m['counts'])" "$SWEEP/manifest.json") in $SWEEP"
read -r SPINUP_DAYS RUN_DAYS < <(.venv/bin/python -c "import sys; from astrohpc.config import load_config; \
c = load_config('configs/gcm/demo.yaml', sys.argv[1:]); print(c.sweep.spinup_days, c.gcm.days)" "${SWEEP_ARGS[@]}")
[ -f "$SWEEP/spinup/restored_from_cache.json" ] && note "spin-up: $SPINUP_DAYS days, taken from the spin-up cache" \
  || note "spin-up: $SPINUP_DAYS days, run now and cached for later demos"
note "cube: $(.venv/bin/python - "$CUBE" <<'PY'
import sys
from astrohpc.data.cube import read_meta
m = read_meta(sys.argv[1], stats=False)  # the sidecar of an earlier conversion is replaced in stage 5
print(f"{m.shape[0]} runs x {m.shape[1]} days x {m.shape[2]} channels ({', '.join(dict.fromkeys(m.variables))}); "
      f"static {', '.join(m.static)}; {len(m.param_names)} run parameters; sigma interfaces {len(m.vertical['sigma_half'])}")
PY
)"

stage "5/14 normalisation statistics, 2 MPI ranks (mpirun -n 2 astrohpc data stats)"
mpirun -n 2 $A data stats "$CUBE"
note "stats: area-weighted, whole cube and per run, in ${CUBE%.h5}.stats.h5"

stage "6/14 train the surrogate: 2-rank DDP under srun on the local Slurm, preempted by a signal mid-run, requeued, resumed"
TRAIN=$DEMO/train
TRAINED=$(.venv/bin/python tools/demo_train.py configs/train/demo.yaml "run.root=$DEMO" "train.cube=$CUBE" "${TRAIN_ARGS[@]}" \
  --signal-after "$SIGNAL_AFTER")
echo "$TRAINED"
RETRAINED=$(.venv/bin/python -c "import json,sys; print('' if 'reused' in json.loads(sys.argv[1]) else 'yes')" "$TRAINED")
note "train: $(.venv/bin/python -c "import json,sys; r=json.loads(sys.argv[1]); print('reused finished run' if 'reused' in r else f\"job {r['job_id']}: USR1 at step {r['signal_at_step']}, requeued {r['restarts']}x, resumed={r['resumed']}, {r['status']} at step {r['step']} on {r['world_size']} ranks\"); print('       weights:', ', '.join(r['exports'].values()))" "$TRAINED")"

stage "7/14 train the climate surrogate (planet parameters -> time-mean fields), one process"
CLIMATE=$DEMO/climate
[ -n "$RETRAINED" ] && rm -rf "$CLIMATE"
if [ ! -f "$CLIMATE/export/best.pt" ]; then
  $A train configs/train/climate_demo.yaml "run.root=$DEMO" "train.cube=$CUBE" "${CLIMATE_ARGS[@]}" --no-progress > "$DEMO/climate-train.json"
fi
note "climate: $CLIMATE/export/best.pt ($(.venv/bin/python -c "import json,sys; s=json.load(open(sys.argv[1])); print(s['step'], 'steps, best epoch', s['best']['epoch'])" "$CLIMATE/metrics.json"))"

stage "8/14 GCM parity study as a Slurm array (one task per held-out run, each with a GCM twin) + aggregation job; the GP climate surrogate's leave-one-out study as an array; astrohpc predict with both exports"
[ -n "$RETRAINED" ] && rm -rf "$DEMO/parity"
$A study parity configs/study/parity_demo.yaml "run.root=$DEMO" "study.model=$TRAIN/export/best.pt" \
  "study.sweep=$SWEEP" "study.climate_model=$CLIMATE/export/best.pt" "${PARITY_ARGS[@]}" --replace --submit --wait --timeout 1800
note "parity: $(.venv/bin/python - "$DEMO/parity" <<'PY'
import json, sys
folder = sys.argv[1]
head = json.load(open(f"{folder}/headline.json"))
summary = json.load(open(f"{folder}/summary.json"))
ts = next(r for r in head["rows"] if r["channel"] == "ts")
base = ts["best baseline (daily)"]
print(f"daily ts RMSE over runs {', '.join(head['runs'])}: surrogate {ts['surrogate daily']:.2f} K, best baseline "
      f"({base}) {ts[base + ' daily']:.2f} K, GCM twin {ts.get('gcm_twin daily', float('nan')):.2f} K; "
      f"speed-up vs ExoPlaSim (batched) {summary.get('speedup_cpu_batched', float('nan')):.0f}x in CPU time, "
      f"{summary.get('speedup_wall_core_batched', float('nan')):.0f}x in wall x cores")
climate = summary.get("climate_surrogate", {})
if "speedup_cpu_single" in climate:
    print(f"climate surrogate: {climate['cpu_s_per_run_single']:.3g} CPU-s per {climate['days']:g}-day run, "
          f"speed-up vs ExoPlaSim in CPU time {climate['speedup_cpu_single']:.0f}x (batch 1), "
          f"{climate['speedup_cpu_batched']:.0f}x (batch {climate['batch']}); in wall x cores "
          f"{climate['speedup_wall_core_single']:.0f}x (batch 1)")
PY
)"

$A study climate configs/study/climate_demo.yaml "run.root=$DEMO" "study.sweep=$SWEEP" "${CLIMATE_GP_ARGS[@]}" \
  --replace --submit --wait --timeout 1800
note "climate (GP, leave-one-out): $(.venv/bin/python - "$DEMO/climate_gp" <<'PY'
import json, sys
s = json.load(open(f"{sys.argv[1]}/climate_summary.json"))
ts = s["loo_rmse"]["ts"]
print(f"time-mean ts RMSE over {s['n_runs']} runs: GP {ts['gp']:.2f} K, nearest run {ts['nearest']:.2f} K, "
      f"linear {ts['linear']:.2f} K, quadratic {ts['quadratic']:.2f} K; 95% coverage {s['coverage95']['ts']:.2f}")
PY
)"

# use both exports as a user would (astrohpc predict, configs/predict/): a new planet's climate, the
# same planet moved outside the design (flagged), and the emulator from a held-out run's first state
mkdir -p "$DEMO/predict"
rm -f "$DEMO"/predict/*.nc "$DEMO"/predict/*.partial "$DEMO"/predict/*.restart.pt
$A predict configs/predict/demo_climate.yaml "predict.model=$DEMO/climate_gp/export/gp.pt" -o "$DEMO/predict/climate.nc" \
  > "$DEMO/predict/climate.json"
$A predict configs/predict/demo_climate.yaml "predict.model=$DEMO/climate_gp/export/gp.pt" \
  predict.params.instellation_W_m2=1600 -o "$DEMO/predict/climate_outside.nc" > "$DEMO/predict/climate_outside.json"
$A predict configs/predict/demo_emulator.yaml "predict.model=$TRAIN/export/best.pt" "predict.init.cube=$CUBE" \
  "${PREDICT_EMULATOR_ARGS[@]}" --no-progress -o "$DEMO/predict/emulator.nc" > "$DEMO/predict/emulator.json"
note "predict: $(.venv/bin/python - "$DEMO/predict" <<'PY'
import json, sys
import xarray as xr
folder = sys.argv[1]
with xr.open_dataset(f"{folder}/climate.nc") as c, xr.open_dataset(f"{folder}/climate_outside.nc") as far:
    ts, sd = float(c["ts"].mean()), float(c["ts_std"].mean())
    print(f"climate.nc: a new planet's mean ts {ts:.1f} K (mean sigma {sd:.2f} K), flag {int(c['ood_flag'][0])}; "
          f"at 1600 W m-2 flag {int(far['ood_flag'][0])}")
with xr.open_dataset(f"{folder}/emulator.nc") as e:
    print(f"         emulator.nc: {e.sizes['time']} states from {e.attrs['initial_state']}, diverged at step "
          f"{e.attrs['diverged_at_step']} (-1: never)")
PY
)"

stage "9/14 rollout study as a Slurm array: long rollouts from GCM states of each held-out run + a twin"
[ -n "$RETRAINED" ] && rm -rf "$DEMO/rollout"
$A study rollout configs/study/rollout_demo.yaml "run.root=$DEMO" "study.model=$TRAIN/export/best.pt" \
  "${ROLLOUT_ARGS[@]}" --replace --submit --wait --timeout 2700
note "rollout: $(.venv/bin/python -c "import json,sys; s=json.load(open(sys.argv[1])); print(f\"{s['members_without_divergence']} of {s['members']} members reached {s['steps']} steps without a divergence flag (earliest flag after {s['min_steps_without_divergence']}); {s['median_wall_s_per_10000_member_steps']:.0f} s per 10,000 steps of one member; dry-mass error <= {s['max_dry_mass_rel_error']:.1g}\")" "$DEMO/rollout/summary.json")"

stage "10/14 ablation study as a Slurm array: full model and its variants x seeds, paired statistics"
[ -n "$RETRAINED" ] && rm -rf "$DEMO/ablation"
$A study ablation configs/study/ablation_demo.yaml "run.root=$DEMO" "train.cube=$CUBE" "${ABLATION_ARGS[@]}" --replace --submit --wait --timeout 2700
note "ablation: $DEMO/ablation/ablation.csv ($(.venv/bin/python -c "import json,sys; d=json.load(open(sys.argv[1])); print(sum(1 for r in d['rows'] if r.get('significant')), 'of', len(d['rows']), 'variant x metric effects significant after Holm')" "$DEMO/ablation/ablation.json"))"

stage "11/14 calibration study as a Slurm array: the parity emulator's MC dropout and deep ensemble, sigma-scaling fitted on the validation run"
[ -n "$RETRAINED" ] && rm -rf "$DEMO/calibration"
$A study calibration configs/study/calibration_demo.yaml "run.root=$DEMO" "train.cube=$CUBE" \
  "study.model=$TRAIN/export/best.pt" "${CALIBRATION_ARGS[@]}" --replace --submit --wait --timeout 2700
note "calibration: $(.venv/bin/python - "$DEMO/calibration" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(f"{sys.argv[1]}/calibration.csv")))
pooled = [r for r in rows if r.get("channel", "").startswith("all")]
print("; ".join(f"{r['method']} {r.get('scaling', '')}: 95% coverage {float(r['coverage95']):.3f}, ECE {float(r['ece']):.3f}"
                for r in pooled) or "see calibration.csv")
PY
)"

stage "12/14 spin-up acceleration: a small cold-start sweep as arrays, then the study as arrays"
$A gcm sweep configs/gcm/spinup_small.yaml "run.root=$DEMO" "${SPINUP_SWEEP_ARGS[@]}" --submit --wait --timeout 2700
$A data stats "$DEMO/spinup_small/datacube.h5"
$A study spinup configs/study/spinup_demo.yaml "run.root=$DEMO" "study.sweep=$DEMO/spinup_small" "${SPINUP_ARGS[@]}" --replace --submit --wait --timeout 2700
note "spin-up: $DEMO/spinup/spinup.csv"

stage "13/14 reader benchmark on the demo cube (independent/collective, 1 and 2 ranks, vs baselines)"
rm -rf "$DEMO/bench" && mkdir -p "$DEMO/bench"
$A data bench "$CUBE" --input-steps 1 --target-steps 1 "${BENCH_ARGS[@]}" --out "$DEMO/bench"
note "bench: $(ls "$DEMO"/bench/*.json)"

stage "14/14 report"
REPORT=$($A report "$DEMO" \
  --note "Each run branches from one $SPINUP_DAYS-day spin-up of an Earth-like aquaplanet and runs $RUN_DAYS days with its own rotation period and instellation. The table 'Distance from equilibrium' says how far each still is from balance.")
note "report: $REPORT"

stage "done in $(( $(date +%s) - t0 )) s; what each stage produced:"
cat "$SUMMARY"
echo
echo "Open $DEMO/REPORT.md (figures in $DEMO/report/). The local Slurm cluster is still up for a look around"
echo "(squeue -t all, sinfo); stop it with 'make cluster-stop'."
