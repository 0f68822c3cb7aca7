"""Preemption: notice Slurm's warning signal, agree on it across ranks, and requeue the job.

Slurm warns a job before killing it (`--signal=B:USR1@120`, or SIGTERM at preemption / time
limit). The handler only records the signal; the training loop asks `agreed()` at a step
boundary — every rank at the same step, as it is a collective — so that all ranks stop
together, write a checkpoint, and rank 0 calls `requeue()`. The requeued job starts again with
SLURM_RESTART_COUNT one higher and resumes from the checkpoint.

`requeue` takes any object with the fields of astrohpc.launch.SlurmJobEnv (job_id, array_job_id,
array_task_id, restart_count) and never raises for a refusal. Under `astrohpc submit train` the
requeue happens on the host: the batch script exports ASTROHPC_REQUEUE_FILE, rank 0 writes that
file (the task may run in an image without a Slurm client), and once srun has returned the batch
shell runs `scontrol requeue`. Without the variable (submitit, a hand-written script) rank 0 runs
`scontrol requeue` itself.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
from types import FrameType
from typing import TYPE_CHECKING, Callable, Iterable, Mapping, Optional

from astrohpc.errors import ConfigError

if TYPE_CHECKING:  # a type only: training reads the Slurm fields, it does not import the launch layer
    from astrohpc.launch.job_env import SlurmJobEnv

log = logging.getLogger(__name__)

# set by slurm/train.sbatch: the file rank 0 writes to ask the batch shell (on the host) to requeue
REQUEUE_FILE_VARIABLE = "ASTROHPC_REQUEUE_FILE"

SIGNAL_FORM = "[R:][B:]SIG[@seconds], e.g. B:USR1@120, USR1@90, SIGTERM or 10@60"
_SIGNAL_SPEC = re.compile(r"(?P<flags>(?:[RB]+:)*)(?P<sig>[A-Za-z0-9]+)(?:@(?P<seconds>\d+))?")


def parse_signal(spec: str) -> tuple[signal.Signals, Optional[int], bool]:
    """Read Slurm's --signal value: (signal, seconds before the end or None, batch shell only).

    "B:USR1@120" -> (SIGUSR1, 120, True); "USR1@90" -> (SIGUSR1, 90, False); "SIGTERM" ->
    (SIGTERM, None, False); "10@60" -> (SIGUSR1, 60, False) on Linux. R (reservation overlap) is
    accepted and ignored.
    """
    m = _SIGNAL_SPEC.fullmatch(spec.strip())
    if m is None:
        raise ConfigError(f"signal {spec!r} is not of the form {SIGNAL_FORM}")
    flags = m["flags"].replace(":", "")
    if len(flags) != len(set(flags)):
        raise ConfigError(f"signal {spec!r} repeats a flag; the form is {SIGNAL_FORM}")
    name = m["sig"].upper()
    try:
        sig = signal.Signals(int(name)) if name.isdigit() else signal.Signals[name if name.startswith("SIG")
                                                                              else f"SIG{name}"]
    except (KeyError, ValueError):
        raise ConfigError(f"signal {spec!r}: {m['sig']!r} is not a signal name or number of this system "
                          f"(USR1, USR2, TERM, ...); the form is {SIGNAL_FORM}") from None
    seconds = None if m["seconds"] is None else int(m["seconds"])
    if seconds is not None and seconds > 65535:  # Slurm's limit
        raise ConfigError(f"signal {spec!r}: {seconds} s is more than Slurm's 65535; the form is {SIGNAL_FORM}")
    return sig, seconds, "B" in flags


class PreemptionFlag:
    """Records that one of `signals` arrived; nothing else happens in the handler.

    install() replaces the handlers (main thread only, as for any Python signal handler) and
    restore() puts the previous ones back; `with PreemptionFlag() as flag:` does both.
    """

    def __init__(self, signals: Iterable[signal.Signals] = (signal.SIGUSR1, signal.SIGTERM)) -> None:
        self.signals = tuple(signal.Signals(s) for s in signals)
        self._previous: dict[signal.Signals, object] = {}
        self._received: Optional[signal.Signals] = None

    def install(self) -> PreemptionFlag:
        for sig in self.signals:
            if sig not in self._previous:
                self._previous[sig] = signal.signal(sig, self._handle)
        log.debug("preemption flag set on %s", ", ".join(s.name for s in self.signals))
        return self

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def __enter__(self) -> PreemptionFlag:
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.restore()

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        if self._received is None:  # keep the first: it is the reason
            self._received = signal.Signals(signum)

    @property
    def raised(self) -> bool:
        """This process got one of the signals."""
        return self._received is not None

    @property
    def signal_name(self) -> Optional[str]:
        """The first signal received ("SIGUSR1"), or None."""
        return None if self._received is None else self._received.name

    def agreed(self, device: str = "cpu") -> bool:
        """True on every rank if any rank got a signal (all_reduce MAX of the local flags).

        A collective: every rank must call it at the same step. Without an initialized process
        group it is the local flag. device: where the one-element tensor lives (cuda for nccl).
        """
        import torch
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return self.raised
        flag = torch.tensor([1 if self.raised else 0], dtype=torch.int32, device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())


def requeue_id(job: SlurmJobEnv) -> Optional[str]:
    """The id `scontrol requeue` needs: "<array job>_<task>" for an array task, else the job id."""
    if job.array_job_id and job.array_task_id:
        return f"{job.array_job_id}_{job.array_task_id}"
    return job.job_id


def requeue(job: SlurmJobEnv, max_restarts: int,
            run: Callable[..., subprocess.CompletedProcess] = subprocess.run,
            environ: Optional[Mapping[str, str]] = None) -> tuple[bool, str]:
    """Put this Slurm job back in the queue; rank 0 only. With ASTROHPC_REQUEUE_FILE in `environ`
    (default os.environ) it writes that file for the batch shell to requeue from the host; without
    it, it runs `scontrol requeue` here.

    Returns (True, what was done) or (False, why not): outside Slurm, after `max_restarts`
    restarts (SLURM_RESTART_COUNT), or when scontrol or the file write fails (its message).
    Never raises for those.
    """
    environ = os.environ if environ is None else environ
    job_id = requeue_id(job)
    if not job_id:
        reason = "not in a Slurm job (no SLURM_JOB_ID): nothing to requeue"
        log.warning("requeue refused: %s", reason)
        return False, reason
    try:
        restarts = int(job.restart_count or 0)
    except ValueError:
        restarts = 0
        log.warning("SLURM_RESTART_COUNT=%r is not an integer; counted as 0", job.restart_count)
    if restarts >= max_restarts:
        reason = (f"job {job_id} has restarted {restarts} time(s), the limit is {max_restarts} "
                  "(train.max_restarts): not requeued")
        log.warning("requeue refused: %s", reason)
        return False, reason
    request = environ.get(REQUEUE_FILE_VARIABLE)
    if request:
        try:
            with open(request, "w", encoding="utf-8") as handle:
                handle.write(f"{job_id} {restarts + 1}\n")
        except OSError as exc:  # the run folder is not writable, or not bound into the container
            log.error("cannot write the requeue request %s: %s", request, exc)
            return False, f"cannot write the requeue request {request}: {exc}"
        done = (f"requeue of job {job_id} requested from the batch shell (restart {restarts + 1} of at most "
                f"{max_restarts})")
        log.info(done)
        return True, done
    try:
        proc = run(["scontrol", "requeue", job_id], capture_output=True, text=True)
    except OSError as exc:  # scontrol missing or not executable
        log.error("scontrol requeue %s failed: %s", job_id, exc)
        return False, f"scontrol requeue {job_id} failed: {exc}"
    if proc.returncode != 0:
        message = (proc.stderr or proc.stdout or f"exit {proc.returncode}").strip()
        log.error("scontrol requeue %s failed: %s", job_id, message)
        return False, message
    done = f"requeued job {job_id} (restart {restarts + 1} of at most {max_restarts})"
    log.info(done)
    return True, done
