"""`load_surrogate(path)`: any export of astrohpc, ready to use, read without its training cube.

- a climate study's GP (export/gp.pt) -> ClimateGP (`.predict(params=…)`)
- `astrohpc train` with model.task: climate (export/best.pt) -> ClimateNet (`.predict(params=…)`)
- `astrohpc train` with model.task: emulator -> Emulator (`.rollout(init, steps=…)`)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from astrohpc.errors import CheckpointError


def load_surrogate(path: str | Path) -> Any:
    """The surrogate exported at `path` (see the module doc); CheckpointError when it is not one."""
    from astrohpc.predict.climate import ClimateGP, ClimateNet
    from astrohpc.predict.emulator import Emulator
    from astrohpc.train import export, gp_export

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such exported surrogate (RUN_DIR/export/best.pt of `astrohpc train`, or "
                              "STUDY_DIR/export/gp.pt of `astrohpc study climate`)")
    try:
        head = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: say which and why
        raise CheckpointError(f"{path}: not a readable exported surrogate ({exc})") from exc
    fmt = head.get("format") if isinstance(head, dict) else None
    if fmt == gp_export.FORMAT:
        return ClimateGP(path, head)
    payload = export.read_export(path)  # format checks, the upgrade message for older exports
    task = payload["config"]["model"]["task"]
    return ClimateNet(path, payload) if task == "climate" else Emulator(path, payload)
