"""Studies as job arrays: a study expands into independent tasks (one per array index), each
writing one result file atomically; an aggregation job collects them into tables.

    settings.py   the `study:` config section
    tasks.py      the study folder: study.json (kind, config, task list), per-task result/failure files, status
    kinds.py      the registry of study kinds (expand / run / aggregate of each)
    execute.py    plan a study, run one task (array index) or all locally, aggregate without hiding gaps
    slurm.py      the task arrays (split at MaxArraySize) and the afterany aggregation job; resubmit what is missing
    baselines.py  persistence, training climatology, nearest training run, linear regression on parameters
    scores.py     area-weighted RMSE, bias and pattern correlation per channel, of states and of time means
    studied_cube.py  the cube of the studied runs: the training cube, or study.cube matched to the model
    parity.py     GCM parity of a surrogate on held-out runs, beside the baselines and the GCM's twin spread
    ablation.py   each component's worth: variants trained without it, paired with the full model by seed
    rollout.py    long batched rollouts with divergence detection and drift diagnostics (the engine)
    rollout_study.py  the rollout study: one task per held-out run, restartable, drift/ADF/Lyapunov/climatology
    calibration.py  are the error bars right: coverage, CRPS, ECE, sharpness per uncertainty method, σ-scaled
    spinup.py     spin-up acceleration: from a cold start's first k days, its later state; what that saves
"""
