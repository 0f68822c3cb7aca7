"""ExoPlaSim restart files across rotation periods.

PlaSim keeps its spectral prognostic fields in units scaled by the planet's rotation rate Ω (and
radius a): vorticity and divergence by Ω, temperature deviations (from the 250 K reference) by
(a Ω)²/R, surface geopotential by (a Ω)². A restart file written at one rotation period and read
by a run at another is redimensionalised with the new Ω: its temperature deviations come back
multiplied by (Ω_new/Ω_old)², its winds by Ω_new/Ω_old (measured: a 1-day spin-up's 166 K top level
started runs at 1.15, 1.42 and 5.93 days at 188, 209 and 247 K, = 250 − 84 (Ω_new/Ω_old)²; towards
faster rotation the deviations grow until ExoPlaSim stops with SIGFPE).

`rescale_rotation(src, dst, old_days, new_days)` writes a copy of the restart whose fields carry
the same physical state at the new rotation period: sz, szm (absolute vorticity: the planetary
part, √(8/3) on the (m=0, n=1) coefficient, kept) and sd, sdm × Ω_old/Ω_new; st, stm, sr, so ×
(Ω_old/Ω_new)². Everything else (humidity, ln ps, the grid-point surface and ocean state, the
accumulators) is dimensional or dimensionless and copied as it is.

The file is Fortran sequential: each field is a 16-character name record followed by its data
record (little-endian 4-byte length markers); the data are float64 spectral arrays [lev, nrsp].
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np

from astrohpc.atomic_write import atomic_path
from astrohpc.errors import GCMError

PLANETARY_VORTICITY = math.sqrt(8.0 / 3.0)  # 2 sin(latitude) on the orthonormal (m=0, n=1) harmonic
BY_OMEGA = ("sz", "szm", "sd", "sdm")
BY_OMEGA_SQUARED = ("st", "stm", "sr", "so")
ABSOLUTE_VORTICITY = ("sz", "szm")


def read_records(path: str | Path) -> list[tuple[str, bytes]]:
    """[(name, data)] of a restart file, in order; GCMError for a file of another layout."""
    raw = Path(path).read_bytes()
    out, pos, name = [], 0, None
    while pos < len(raw):
        if pos + 4 > len(raw):
            raise GCMError(f"{path}: truncated record marker at byte {pos}: not an ExoPlaSim restart file")
        n = struct.unpack("<i", raw[pos:pos + 4])[0]
        body = raw[pos + 4:pos + 4 + n]
        if n < 0 or pos + 8 + n > len(raw) or struct.unpack("<i", raw[pos + 4 + n:pos + 8 + n])[0] != n:
            raise GCMError(f"{path}: broken record at byte {pos}: not an ExoPlaSim restart file")
        pos += 8 + n
        if name is None:
            if n != 16 or not body.isascii():
                raise GCMError(f"{path}: expected a 16-character field name at byte {pos - 8 - n}")
            name = body.decode("ascii").strip()
        else:
            out.append((name, body))
            name = None
    if name is not None:
        raise GCMError(f"{path}: field {name} has no data record")
    return out


def write_records(path: str | Path, records: list[tuple[str, bytes]]) -> Path:
    """The records as a restart file (written to a temporary file, then renamed)."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        for name, body in records:
            for chunk in (name.ljust(16).encode("ascii"), body):
                f.write(struct.pack("<i", len(chunk)) + chunk + struct.pack("<i", len(chunk)))
    return path


def rescale_rotation(src: str | Path, dst: str | Path, old_days: float, new_days: float) -> Path:
    """A copy of restart `src` at `dst` holding the same physical state for a run at `new_days`
    (the restart was written at `old_days`); see the module doc."""
    if not (old_days > 0 and new_days > 0):
        raise GCMError(f"rotation periods must be > 0, got {old_days} and {new_days}")
    ratio = float(new_days) / float(old_days)  # Ω_old / Ω_new
    records = read_records(src)
    nrsp = dict(records).get("nrsp")
    if nrsp is None or not all(name in dict(records) for name in ("sz", "sd", "st")):
        raise GCMError(f"{src}: no nrsp/sz/sd/st fields: not an ExoPlaSim restart file")
    n = struct.unpack("<i", nrsp)[0]
    out = []
    for name, body in records:
        if name in BY_OMEGA or name in BY_OMEGA_SQUARED:
            a = np.frombuffer(body, "<f8").reshape(-1, n).copy()
            if name in ABSOLUTE_VORTICITY:
                a[:, 2] -= PLANETARY_VORTICITY
            a *= ratio if name in BY_OMEGA else ratio ** 2
            if name in ABSOLUTE_VORTICITY:
                a[:, 2] += PLANETARY_VORTICITY
            body = a.astype("<f8").tobytes()
        out.append((name, body))
    return write_records(dst, out)
