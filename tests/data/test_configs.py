"""The shipped configs/data/*.yaml load strictly and drive a conversion."""

from __future__ import annotations

from pathlib import Path

import h5py
import pytest

from astrohpc.config import load_config
from astrohpc.errors import ConfigError

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs" / "data").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_loads(path):
    cfg = load_config(path)
    assert cfg.data.variables


def test_bad_data_setting_is_named():
    with pytest.raises(ConfigError, match="data.input_steps must be >= 1"):
        load_config(None, ["data.input_steps=0"])


@pytest.mark.shared
def test_cam_pressure_config_converts_vinth2p(geocat, tmp_path):
    from astrohpc.data.convert import convert

    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "data" / "cam_pressure.yaml")
    cube = convert([geocat / "vinth2p.nc"], tmp_path / "c.h5", settings=cfg.data)
    with h5py.File(cube, "r") as f:
        assert f["fields"].shape == (1, 2, 8, 64, 128)  # T on 7 pressure levels + PS
        assert f.attrs["levels"] == "pressure:1000,850,700,500,300,200,100"
