"""Copies of the smoke run's files, modified by a test (the cached run itself is never touched).

A copy is a run folder holding only what conversion reads: summary.json (its file list cut
down to the snapshots, their size and sha256 updated unless `reseal=False`) and the snapshot
NetCDF file. ExoPlaSim's files count time in model steps, so they convert only as run folders:
summary.json supplies the step length.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable, Mapping, Optional

import numpy as np

from astrohpc.checksum import sha256_file

SUMMARY = "summary.json"


def snapshot_file(run_dir: Path) -> Path:
    """The snapshot NetCDF file listed in the run's summary.json."""
    summary = json.loads((Path(run_dir) / SUMMARY).read_text())
    return Path(run_dir) / next(e["path"] for e in summary["files"] if e["kind"] == "snapshots")


def copy_run(run_dir: Path, dest: Path, edit: Optional[Callable[[Path], None]] = None, *,
             reseal: bool = True) -> Path:
    """Copy summary.json and the snapshot file of `run_dir` into `dest`, call `edit(snapshot
    path)` on the copy, and record the edited file in the summary (unless `reseal=False`:
    then the summary's sha256 no longer matches). Returns `dest`."""
    run_dir, dest = Path(run_dir), Path(dest)
    summary = json.loads((run_dir / SUMMARY).read_text())
    summary["files"] = [e for e in summary["files"] if e["kind"] == "snapshots"]
    for entry in summary["files"]:
        target = dest / entry["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run_dir / entry["path"], target)
        if edit is not None:
            edit(target)
        if reseal:
            entry.update(bytes=target.stat().st_size, sha256=sha256_file(target))
    (dest / SUMMARY).write_text(json.dumps(summary, indent=2))
    return dest


def subset_netcdf(path: Path, select: Mapping[str, slice]) -> None:
    """Rewrite the NetCDF file at `path` keeping `select[dim]` along each named dimension
    (e.g. {"time": slice(0, 2)}, {"lat": slice(None, None, 2)}); everything else, attributes
    included, as it was."""
    import netCDF4

    tmp = path.with_name(path.name + ".subset")
    with netCDF4.Dataset(path) as src, netCDF4.Dataset(tmp, "w", format=src.file_format) as out:
        src.set_auto_maskandscale(False)
        out.setncatts({a: src.getncattr(a) for a in src.ncattrs()})
        for name, dim in src.dimensions.items():
            size = len(range(*select[name].indices(len(dim)))) if name in select else len(dim)
            out.createDimension(name, None if dim.isunlimited() else size)
        for name, var in src.variables.items():
            attrs = {a: var.getncattr(a) for a in var.ncattrs()}
            fill = attrs.pop("_FillValue", None)
            new = out.createVariable(name, var.dtype, var.dimensions, fill_value=fill)
            new.set_auto_maskandscale(False)
            new.setncatts(attrs)
            index = tuple(select.get(d, slice(None)) for d in var.dimensions)
            new[...] = np.asarray(var[index])
    tmp.replace(path)
