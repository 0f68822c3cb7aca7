"""Training a surrogate on a cube, the same way under every launcher (srun, mpirun, torchrun, submitit).

    settings.py     the `train:` config section
    distributed.py  one detector of the launch (torchrun, Slurm, Open MPI, single): ranks, rendezvous, device
    data.py         the run split (whole runs), each task's datasets, the resumable sampler, the loaders
    precision.py    AMP: fp16 + GradScaler on CUDA, bf16 autocast on CPU or CUDA
    trainer.py      the run: DDP, AdamW + OneCycle, clipping, multi-step loss, validation, checkpoints, export
    validate.py     per-epoch validation on held-out runs, RMSE in physical units beside baselines
    checkpoint.py   atomic checkpoints with sha256 sidecars, pruning, resume from the newest valid one, RNG states
    sampler.py      distributed sampler in torch's order that resumes mid-epoch (skip, state_dict)
    preemption.py   Slurm --signal parsing, a signal flag all ranks agree on, scontrol requeue
    metrics_log.py  metrics CSV tables and the JSON summary in the run directory
    export.py       best/last weights with the config and normalisation inference needs; loading them
"""
