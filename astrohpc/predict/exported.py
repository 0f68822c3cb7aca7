"""What every export of `astrohpc train` gives a prediction, read from the export alone: the model
(eval mode), the training cube's layout, the parameters it reads and their normalisation, the
training runs and their parameter envelope; and the attributes every prediction file carries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def provenance_attrs(path: Path, payload: dict[str, Any], kind: str) -> dict[str, Any]:
    """Global attributes of a prediction file: the model, where it came from, this process."""
    from astrohpc import __version__
    from astrohpc.provenance import collect

    here = collect()
    trained = payload.get("provenance") or {}
    return {"title": f"astrohpc predict: {kind}", "institution": "astrohpc", "source": f"astrohpc {__version__}",
            "history": f"{here['created_utc']} {' '.join(here['command_line']) or 'astrohpc.predict'}",
            "model_export": str(path), "model_format": payload.get("format"),
            "model_trained_git": (trained.get("git") or {}).get("commit"),
            "model_trained_utc": trained.get("created_utc"), "training_cube": payload.get("cube"),
            "git_commit": (here.get("git") or {}).get("commit"), "host": here.get("host")}



def param_units(name: str) -> str:
    """Units from the parameter's name suffix (the cube's convention: instellation_W_m2, …_days)."""
    for suffix, units in (("_W_m2", "W m-2"), ("_days", "days"), ("_deg", "degrees"), ("_bar", "bar"), ("_m", "m"),
                          ("_m_s2", "m s-2"), ("_J_kg_K", "J kg-1 K-1"), ("_K", "K"), ("_Pa", "Pa")):
        if name.endswith(suffix):
            return units
    return "1"



class ExportedNet:
    """An export of `astrohpc train` in use: `model`, `payload`, `meta` (the training cube's
    layout), `param_names`, `train_rows` (indices of the training runs in `meta`) and `envelope`
    (the training runs' ParameterEnvelope, or None)."""

    def __init__(self, path: str | Path, payload: dict[str, Any]):
        from astrohpc.models.ood import ParameterEnvelope
        from astrohpc.train.export import model_of, training_meta

        self.path, self.payload = Path(path), payload
        self.model = model_of(payload, path)
        self.meta = training_meta(payload, str(path))
        self.param_names = list(payload["param_norm"]["names"])
        self.train_rows = [self.meta.run_names.index(r) for r in payload["run_split"]["train"]]
        self.envelope = ParameterEnvelope.from_state_dict(payload["envelope"]) if payload.get("envelope") else None

    def normalized(self, matrix: np.ndarray) -> np.ndarray:
        """Raw parameters [N, P] (param_names order) as the model reads them."""
        from astrohpc.data.cube import normalize_params

        return normalize_params(matrix, self.payload["param_norm"])

    def verdicts(self, matrix: np.ndarray) -> tuple[list[bool], list[str]]:
        """Per row of raw parameters [N, P]: flagged outside the training envelope, and why."""
        if self.envelope is None:
            return [False] * len(matrix), [""] * len(matrix)
        columns = [self.param_names.index(n) for n in self.envelope.names]
        inside, reasons = self.envelope.check(matrix[:, columns])
        return [not bool(i) for i in inside], list(reasons)
