"""Strict config loading: unknown keys, wrong types, overrides, extends, planet presets."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from astrohpc.config import Config, config_hash, from_dict, load_config, to_dict, to_yaml
from astrohpc.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_defaults_load_without_a_file():
    cfg = load_config(None)
    assert isinstance(cfg, Config)
    assert cfg.planet.name == "earth"
    assert cfg.slurm.cpus_per_task == 1


def test_unknown_key_names_file_path_and_closest_key(tmp_path):
    f = write(tmp_path / "bad.yaml", """
        planet:
          instelation_W_m2: 900
    """)
    with pytest.raises(ConfigError) as err:
        load_config(f)
    msg = str(err.value)
    assert str(f) in msg
    assert "'planet.instelation_W_m2'" in msg
    assert "did you mean 'instellation_W_m2'" in msg


def test_unknown_top_level_section(tmp_path):
    f = write(tmp_path / "bad.yaml", "slrum: {time: '1:00:00'}\n")
    with pytest.raises(ConfigError, match=r"unknown key 'slrum'; did you mean 'slurm'"):
        load_config(f)


@pytest.mark.parametrize("text, match", [
    ("slurm: {cpus_per_task: two}\n", r"'slurm.cpus_per_task' must be an integer, got 'two'"),
    ("slurm: {cpus_per_task: 1.5}\n", r"'slurm.cpus_per_task' must be an integer"),
    ("planet: {synchronous: 1}\n", r"'planet.synchronous' must be true or false"),
    ("planet: {radius_m: big}\n", r"'planet.radius_m' must be a number"),
    ("slurm: {time: 1:30:00}\n", r"quote it"),
    ("slurm: {setup: 'module load x'}\n", r"'slurm.setup' must be a list"),
    ("gcm: {model: rocke3d}\n", r"'gcm.model' = 'rocke3d' is not one of 'exoplasim'"),
    ("planet: {radius_m: -1}\n", r"planet.radius_m must be > 0"),
    ("gcm: {levels: 5}\n", r"gcm.levels must be >= 6 for ExoPlaSim"),
    ("gcm: {resolution: T22}\n", r"gcm.resolution 'T22' is not one ExoPlaSim compiles; choose one of T21"),
    ("- a\n- b\n", r"top level must be a mapping"),
])
def test_wrong_types_are_errors(tmp_path, text, match):
    f = write(tmp_path / "bad.yaml", text)
    with pytest.raises(ConfigError, match=match):
        load_config(f)


def test_int_is_accepted_for_float():
    cfg = from_dict(Config, {"planet": {"instellation_W_m2": 900}})
    assert cfg.planet.instellation_W_m2 == 900.0 and isinstance(cfg.planet.instellation_W_m2, float)


def test_overrides_are_typed_and_checked(tmp_path):
    f = write(tmp_path / "c.yaml", "run: {name: a}\n")
    cfg = load_config(f, ["run.name=b", "planet.instellation_W_m2=1200", "slurm.setup=[module load x]",
                          "slurm.extra.mail-type=END"])
    assert cfg.run.name == "b"
    assert cfg.planet.instellation_W_m2 == 1200.0
    assert cfg.slurm.setup == ["module load x"]
    assert cfg.slurm.extra == {"mail-type": "END"}
    with pytest.raises(ConfigError, match=r"override 'plant.radius_m=1'.*did you mean 'planet'"):
        load_config(f, ["plant.radius_m=1"])
    with pytest.raises(ConfigError, match=r"expected KEY.PATH=VALUE"):
        load_config(f, ["run.name"])
    with pytest.raises(ConfigError, match=r"'slurm.cpus_per_task' must be an integer"):
        load_config(f, ["slurm.cpus_per_task=x"])


def test_extends_merges_nested_and_child_wins(tmp_path):
    (tmp_path / "cluster").mkdir()
    write(tmp_path / "cluster" / "site.yaml", """
        slurm:
          partition: gpu
          account: proj1
          time: "02:00:00"
    """)
    f = write(tmp_path / "exp.yaml", """
        extends: cluster/site.yaml
        slurm:
          time: "00:10:00"
    """)
    cfg = load_config(f)
    assert (cfg.slurm.partition, cfg.slurm.account, cfg.slurm.time) == ("gpu", "proj1", "00:10:00")


def test_extends_errors(tmp_path):
    a = write(tmp_path / "a.yaml", "extends: b.yaml\n")
    write(tmp_path / "b.yaml", "extends: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(a)
    c = write(tmp_path / "c.yaml", "extends: missing.yaml\n")
    with pytest.raises(ConfigError, match=r"missing.yaml: config file not found"):
        load_config(c)
    d = write(tmp_path / "d.yaml", "extends: {a: 1}\n")
    with pytest.raises(ConfigError, match="'extends' must be a file path"):
        load_config(d)
    e = write(tmp_path / "e.yaml", "planet: [1\n")
    with pytest.raises(ConfigError, match=r"e.yaml: not valid YAML"):
        load_config(e)


def test_planet_preset_with_override(tmp_path):
    f = write(tmp_path / "p.yaml", """
        planet:
          preset: trappist1e
          instellation_W_m2: 1200
    """)
    cfg = load_config(f)
    assert cfg.planet.name == "trappist1e"
    assert cfg.planet.synchronous is True
    assert cfg.planet.radius_m == pytest.approx(5.798e6)
    assert cfg.planet.instellation_W_m2 == 1200.0
    with pytest.raises(ConfigError, match=r"unknown 'planet.preset' 'mars'; valid presets: earth, trappist1e"):
        load_config(f, ["planet.preset=mars"])


def test_yaml_round_trip_and_hash(tmp_path):
    cfg = load_config(None, ["planet.preset=trappist1e", "run.name=x"])
    f = write(tmp_path / "resolved.yaml", to_yaml(cfg))
    again = load_config(f)
    assert to_dict(again) == to_dict(cfg)
    assert config_hash(again) == config_hash(cfg)
    assert config_hash(load_config(None, ["run.name=y"])) != config_hash(cfg)


def test_every_shipped_config_loads():
    """Every shipped config loads strictly: the inference configs (configs/predict/) against their own
    schema, the rest against the pipeline's."""
    from astrohpc.predict.settings import PredictConfig

    configs = sorted(Path(__file__).resolve().parents[1].glob("configs/**/*.yaml"))
    assert configs, "configs/ holds no YAML files"
    predict = [p for p in configs if p.parent.name == "predict"]
    assert predict, "configs/predict/ holds no inference config"
    for path in configs:
        cfg = load_config(path, schema=PredictConfig if path in predict else Config)
        if path in predict:
            assert cfg.predict.model, path
