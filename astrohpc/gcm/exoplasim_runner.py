"""ExoPlaSim 3.4 behind the GCMRunner interface.

`configure_kwargs` (pure) maps the `planet:` and `gcm:` sections onto the arguments of
`exoplasim.Model.configure`, converting units where ExoPlaSim wants other ones:

    planet.radius_m               -> radius         (Earth radii: radius_m / 6.371e6 m)
    planet.gravity_m_s2           -> gravity        (m s^-2)
    planet.rotation_period_days   -> rotationperiod (days of 86 400 s)
    planet.synchronous            -> synchronous
    planet.substellar_longitude_deg -> substellarlon (degrees east)
    planet.obliquity_deg          -> obliquity      (degrees)
    planet.eccentricity           -> eccentricity
    planet.instellation_W_m2      -> flux           (W m^-2)
    planet.stellar_temperature_K  -> startemp       (K; blackbody spectrum, two-band albedos)
    planet.pN2_bar/pO2_bar/pCO2_bar -> pN2/pO2/pCO2 (bar; CO2 becomes ppmv of their sum)
    planet.gas_constant_J_kg_K    -> gascon         (J kg^-1 K^-1; overrides the gas-mix value)
    planet.cp_J_kg_K              -> AKAP@planet_namelist = R / cp (PlaSim has no cp argument)
    planet.aquaplanet             -> aquaplanet     (False: ExoPlaSim's Earth land map)
    gcm.mixed_layer_depth_m       -> mldepth        (m; the slab ocean)
    gcm.sea_ice                   -> seaice

A pCO2 of exactly 0 is written as CO2 = 0 ppmv (ExoPlaSim would otherwise fall back to 300).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from pathlib import Path
from typing import Any, Iterator

from astrohpc.errors import GCMError
from astrohpc.gcm.build import BuildKey, build_info, ensure_build, require_build
from astrohpc.gcm.runner import RunOutput
from astrohpc.planet import EARTH_RADIUS_M

MODEL_NAME = "exoplasim"  # exoplasim's modelname: names the files finalize() writes
LOG_NAME = "exoplasim.log"
RESCALED_RESTART = "restart_at_this_rotation"  # the spin-up restart rescaled to the run's rotation rate
# exoplasim builds shell command lines from paths without quoting them.
_SAFE_PATH = re.compile(r"[A-Za-z0-9_./+@=,-]+")


def build_key(gcm: Any) -> BuildKey:
    return BuildKey(resolution=gcm.resolution, levels=gcm.levels, ncpus=gcm.ncpus, precision=gcm.precision)


def configure_kwargs(planet: Any, gcm: Any) -> dict[str, Any]:
    """Keyword arguments for exoplasim.Model.configure from the planet and gcm sections."""
    if planet.pN2_bar + planet.pO2_bar + planet.pCO2_bar <= 0:
        raise GCMError("planet: pN2_bar + pO2_bar + pCO2_bar must be > 0 (ExoPlaSim needs a surface pressure)")
    steps_per_day = gcm.steps_per_day
    days_per_segment = 360 if gcm.years is not None else gcm.days
    otherargs = {
        "AKAP@planet_namelist": repr(planet.gas_constant_J_kg_K / planet.cp_J_kg_K),
        # NSTPW: steps between written (mean) records.
        "NSTPW@plasim_namelist": str(gcm.means_interval_days * steps_per_day),
    }
    if planet.pCO2_bar == 0:
        otherargs["CO2@radmod_namelist"] = "0.0"
    kwargs: dict[str, Any] = {
        "flux": planet.instellation_W_m2,
        "startemp": planet.stellar_temperature_K,
        "pN2": planet.pN2_bar or None,
        "pO2": planet.pO2_bar or None,
        "pCO2": planet.pCO2_bar or None,
        "gascon": planet.gas_constant_J_kg_K,
        "rotationperiod": planet.rotation_period_days,
        "synchronous": planet.synchronous,
        "substellarlon": planet.substellar_longitude_deg,
        "obliquity": planet.obliquity_deg,
        "eccentricity": planet.eccentricity,
        "fixedorbit": True,  # no Milankovitch drift: runs are reproducible and comparable
        "gravity": planet.gravity_m_s2,
        "radius": planet.radius_m / EARTH_RADIUS_M,
        "aquaplanet": planet.aquaplanet,
        "timestep": gcm.timestep_minutes,
        "mldepth": gcm.mixed_layer_depth_m,
        "seaice": gcm.sea_ice,
        "runsteps": days_per_segment * steps_per_day,
        "snapshots": gcm.snapshot_interval_days * steps_per_day or None,
        "restartfile": str(Path(gcm.restart_file).resolve()) if gcm.restart_file else None,
        "otherargs": otherargs,
    }
    return kwargs


@contextlib.contextmanager
def _output_to(log_path: Path) -> Iterator[None]:
    """Send this process's stdout/stderr (fds 1 and 2: exoplasim prints and runs shell commands)
    to `log_path`, and restore the working directory exoplasim changes."""
    cwd = os.getcwd()
    saved = [os.dup(1), os.dup(2)]
    with open(log_path, "ab", buffering=0) as log:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            os.chdir(cwd)


def log_tail(log_path: Path, lines: int = 8) -> str:
    if not log_path.is_file():
        return ""
    text = log_path.read_text(errors="replace").strip().splitlines()
    return " | ".join(line.strip() for line in text[-lines:] if line.strip())


class ExoPlaSimRunner:
    """Runs ExoPlaSim from the cached build (never compiles in `run`)."""

    name = MODEL_NAME

    def build(self, gcm: Any) -> dict[str, Any]:
        build, compiled = ensure_build(build_key(gcm))
        return {**build_info(build), "cache_dir": str(build.cache_dir), "compiled_now": compiled}

    def check_ready(self, gcm: Any) -> None:
        require_build(build_key(gcm))

    def run(self, cfg: Any, run_dir: Path) -> RunOutput:
        gcm, planet = cfg.gcm, cfg.planet
        run_dir = Path(run_dir).resolve()
        if not _SAFE_PATH.fullmatch(str(run_dir)):
            raise GCMError(f"run directory {run_dir} holds spaces or shell characters, which ExoPlaSim "
                           "cannot handle: use letters, digits and ._-+ in run.root and run.name")
        build = require_build(build_key(gcm))
        kwargs = configure_kwargs(planet, gcm)
        if kwargs["restartfile"] and not Path(kwargs["restartfile"]).is_file():
            raise GCMError(f"gcm.restart_file {gcm.restart_file} not found")
        written_at = gcm.restart_rotation_period_days
        if kwargs["restartfile"] and written_at and written_at != planet.rotation_period_days:
            from astrohpc.gcm.restart import rescale_rotation

            # the restart's atmosphere is in units of its own rotation rate: rescale it to this planet's
            kwargs["restartfile"] = str(rescale_rotation(kwargs["restartfile"], run_dir / RESCALED_RESTART,
                                                         written_at, planet.rotation_period_days))
        work, output = run_dir / "work", run_dir / "output"
        log_path = run_dir / LOG_NAME
        years = gcm.years or 1
        try:
            with _output_to(log_path):
                import exoplasim

                model = exoplasim.Model(resolution=gcm.resolution, layers=gcm.levels, ncpus=gcm.ncpus,
                                        precision=gcm.precision, workdir=str(work), source=str(build.source),
                                        modelname=MODEL_NAME, outputtype=".nc")
                model.configure(**kwargs)
                model.cfgpostprocessor(ftype="regular", extension=".nc", variables=list(gcm.means_variables),
                                       times=None, timeaverage=False)
                if kwargs["snapshots"]:
                    model.cfgpostprocessor(ftype="snapshot", extension=".nc",
                                           variables=list(gcm.snapshot_variables), times=None, timeaverage=False)
                model.exportcfg(str(work / f"{MODEL_NAME}.cfg"))
                model.run(years=years, crashifbroken=True)
                model.finalize(str(output), keeprestarts=gcm.keep_restart, clean=True)
                (run_dir / RESCALED_RESTART).unlink(missing_ok=True)  # read at start-up; the spin-up keeps its own
        except GCMError:
            raise
        except Exception as exc:  # exoplasim raises bare Exception/RuntimeError on crashes
            raise GCMError(f"ExoPlaSim failed: {type(exc).__name__}: {exc}; log tail: {log_tail(log_path)}") from None
        files = [(f"output/{MODEL_NAME}.nc", "means")]
        if kwargs["snapshots"]:
            files.append((f"output/{MODEL_NAME}_snapshot.nc", "snapshots"))
        if gcm.keep_restart:
            files.append((f"output/{MODEL_NAME}_restart", "restart"))
        missing = [p for p, _ in files if not (run_dir / p).is_file()]
        if missing:
            raise GCMError(f"ExoPlaSim finished without writing {', '.join(missing)}; log tail: {log_tail(log_path)}")
        return RunOutput(model_version=build.version, simulated_days=years * kwargs["runsteps"] // gcm.steps_per_day,
                         files=files, extra={"build": str(build.cache_dir)})
