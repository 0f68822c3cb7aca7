"""astrohpc: Slurm/MPI batch toolkit for physics-constrained neural surrogates of exoplanet GCMs."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # `astrohpc.load_surrogate` without importing torch at `import astrohpc` (the CLI's start-up)
    if name == "load_surrogate":
        from astrohpc.predict import load_surrogate

        return load_surrogate
    raise AttributeError(f"module 'astrohpc' has no attribute {name!r}")
