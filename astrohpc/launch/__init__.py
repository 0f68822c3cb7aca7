"""Render sbatch scripts from templates in slurm/, submit them, and wait for them."""

from astrohpc.launch.job_env import SlurmJobEnv
from astrohpc.launch.sbatch import SBATCH_OPTIONS, directive_lines, render_sbatch
from astrohpc.launch.submit import job_states, submit, wait_for, write_script

__all__ = ["SlurmJobEnv", "SBATCH_OPTIONS", "directive_lines", "render_sbatch", "job_states",
           "submit", "wait_for", "write_script"]
