"""`load_surrogate(path)`: any export of astrohpc, ready to use, read without its training cube.

- a climate study's GP (export/gp.pt) -> ClimateGP (`.predict(params=…)`)
- `astrohpc train` with model.task: climate (export/best.pt) -> ClimateNet (`.predict(params=…)`)
- `astrohpc train` with model.task: emulator -> Emulator (`.rollout(init, steps=…)`)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def load_surrogate(path: str | Path) -> Any:
    """The surrogate exported at `path` (see the module doc); CheckpointError when it is not one."""
    from astrohpc.predict.climate import ClimateGP, ClimateNet
    from astrohpc.predict.emulator import Emulator
    from astrohpc.train import export, gp_export

    payload = export.load_payload(path, "RUN_DIR/export/best.pt of `astrohpc train`, or STUDY_DIR/export/gp.pt of "
                                        "`astrohpc study climate`")
    if payload.get("format") == gp_export.FORMAT:
        return ClimateGP(path, payload)
    export.check_format(payload, path)  # the upgrade message for older exports
    task = payload["config"]["model"]["task"]
    return ClimateNet(path, payload) if task == "climate" else Emulator(path, payload)
