"""Neural surrogates of a GCM: datacube U-Net, surrogate transformer, fusion, uncertainty heads.

Models see normalised tensors only, never units; `stepper.py` and `climate.py` de-normalise,
apply the physics correctors (astrohpc.physics) in SI units and re-normalise. Nothing here
knows about training loops (astrohpc.train).

    settings.py     the `model:` config section (task, architecture, sizes, physics, uncertainty)
    channels.py     the cube's channels as named fields; per-channel normalisation (pooled per run)
    layout.py       channels <-> datacube [B, var, climate_time, geo_time, level, lat, lon]
    blocks.py       factorised depthwise-separable convolutions, pole/longitude padding, FiLM
    unet.py         the datacube U-Net, and ChannelUNet (its channel interface)
    patches.py      patch tokens of a [B, C, lat, lon] state and back
    fusion.py       cross-attention fusion of modalities; concatenation (ablation baseline)
    transformer.py  the surrogate transformer: scalar / datacube / spectral / joint heads
    stepper.py      the emulator's step: tendency on normalised fields, correctors in SI units
    climate.py      the climate surrogate: planet (+ first days) -> time means, scalars, spectrum
    build.py        models from the `model:` section and a cube (one build per component)
    objective.py    each task's training loss: data term + weighted physics terms
    uncertainty.py  Gaussian head and NLL, MC dropout, deep ensembles
    ood.py          out-of-distribution flag: Mahalanobis distance + parameter envelope
    cost.py         parameter and FLOP counts
"""
