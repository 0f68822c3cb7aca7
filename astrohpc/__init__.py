"""astrohpc: Slurm/MPI batch toolkit for physics-constrained neural surrogates of exoplanet GCMs."""

__version__ = "0.1.0"
