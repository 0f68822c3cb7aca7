"""Exceptions a user can act on. The CLI turns each into one line and a non-zero exit."""


class AstrohpcError(Exception):
    """Base class: the message names the file or key at fault and the fix."""


class ConfigError(AstrohpcError):
    """A configuration file, key, type or override is invalid."""


class SlurmError(AstrohpcError):
    """A Slurm option is invalid, or a Slurm command failed."""


class DataError(AstrohpcError):
    """An input or output data file is missing, corrupt or inconsistent."""


class GCMError(AstrohpcError):
    """The reference GCM could not be built or run."""


class LaunchError(AstrohpcError):
    """The distributed launch environment is inconsistent (ranks, tasks per node, GPUs)."""


class CheckpointError(AstrohpcError):
    """No usable checkpoint, or one that does not match the run being resumed."""
