# shellcheck shell=bash
# The demo-config smoke: `make demo`'s 14 stages on a config small enough for the test suite
# (tests/test_demo_smoke.py; a few minutes on 2 cores). Source it through
#   ASTROHPC_DEMO_PROFILE=configs/demo/smoke.sh ASTROHPC_DEMO_DIR=/tmp/smoke bash tools/demo.sh
# Every stage runs for real (ExoPlaSim on the local Slurm, 2-rank DDP preempted and resumed, every
# study as arrays); only the sizes shrink. Three runs, not two: training, validation and test each
# take one whole run. The figures it produces say nothing about accuracy.

# a 2-day spin-up, then 3 runs of 4 days (ExoPlaSim, ~1.5 s per simulated day)
SWEEP_ARGS=(sweep.samples=3 sweep.spinup_days=2 gcm.days=4 gcm.means_interval_days=2 slurm.time=00:10:00)
SPLIT=("train.test_runs=[task-0002]" "train.validation_runs=[task-0001]")
# 2-rank DDP: a global batch of 2 (one sample per rank), one step per epoch, the preemption signal after step 3
TRAIN_ARGS=("${SPLIT[@]}" train.batch_size=2 train.epochs=14 train.log_every=1 train.checkpoint_every=0)
SIGNAL_AFTER=3
CLIMATE_ARGS=("${SPLIT[@]}" train.epochs=4 train.log_every=1 "model.transformer.patch=[8,8]")
# the GP's leave-one-out: 2 runs fitted at a time hold one EOF component; the last 2 days (one 2-day mean)
CLIMATE_GP_ARGS=(model.gp.max_components=1 model.gp.restarts=0 study.average_days=2)
PARITY_ARGS=()
# astrohpc predict: the emulator from the test run's first state, over its 4 days
PREDICT_EMULATOR_ARGS=(predict.init.run=task-0002 predict.steps=4 predict.segment_steps=2)
ROLLOUT_ARGS=(study.rollout_steps=40 study.segment_steps=20 study.initial_conditions=1)
ABLATION_ARGS=("${SPLIT[@]}" train.batch_size=2 "study.components=[no_correctors]" "study.seeds=[0,1]" train.epochs=1)
CALIBRATION_ARGS=("${SPLIT[@]}" train.batch_size=2 model.uncertainty.members=2 model.uncertainty.samples=4 train.epochs=1)
# the spin-up study: 3 cold starts of 6 days, inferring the last 2 days from the first 1 or 2
SPINUP_SWEEP_ARGS=(sweep.samples=3 gcm.days=6 gcm.means_interval_days=2 slurm.time=00:10:00)
SPINUP_ARGS=("train.test_runs=[task-0000]" "train.validation_runs=[task-0001]" "study.spinup_days=[1,2]"
             study.target_days=2 train.epochs=3)
BENCH_ARGS=(--passes 1 --bytes 2e7 --dataloader-epochs 1)
