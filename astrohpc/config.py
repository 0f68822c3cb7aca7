"""Strict YAML configuration: nested typed dataclasses, `extends`, and `a.b.c=value` overrides.

One root schema (`Config`) covers every file under configs/; each section is a dataclass
owned by the part of the pipeline that uses it. Strict means: an unknown key is an error
naming the file, the key path and the closest valid keys; a value of the wrong type is an
error naming the key and the expected type.

    cfg = load_config("configs/gcm/demo.yaml", ["planet.instellation_W_m2=1200"])
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Union

import yaml

from astrohpc.data.settings import DataSettings
from astrohpc.errors import ConfigError
from astrohpc.gcm.settings import GCMSettings, SweepSettings
from astrohpc.launch.settings import SlurmSettings
from astrohpc.models.settings import ModelSettings
from astrohpc.planet import PRESETS, Planet, preset_values
from astrohpc.studies.settings import StudySettings
from astrohpc.train.settings import TrainSettings

EXTENDS_KEY = "extends"


@dataclass
class RunSettings:
    """Where a run writes and how it is named."""

    name: str = "default"
    root: str = "runs"
    seed: int = 0


@dataclass
class Config:
    """The root of every astrohpc configuration file."""

    run: RunSettings = field(default_factory=RunSettings)
    planet: Planet = field(default_factory=Planet)
    gcm: GCMSettings = field(default_factory=GCMSettings)
    sweep: SweepSettings = field(default_factory=SweepSettings)
    data: DataSettings = field(default_factory=DataSettings)
    slurm: SlurmSettings = field(default_factory=SlurmSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    study: StudySettings = field(default_factory=StudySettings)


# ---------------------------------------------------------------------------- loading


def load_config(path: str | Path | None = None, overrides: Iterable[str] = (),
                schema: type = Config, base: dict | None = None) -> Any:
    """Load `path` (following `extends`), apply `overrides`, and validate against `schema`.

    `path=None` starts from the schema's defaults. `base`: a raw mapping the file is merged over, as
    if it were extended first (the cluster profile chosen at submit time, astrohpc.launch.profiles).
    Raises ConfigError on any problem.
    """
    raw: dict = dict(base or {})
    source = "<defaults>"
    if path is not None:
        raw = deep_merge(raw, _load_with_extends(Path(path), seen=()))
        source = str(path)
    for item in overrides:
        key, value = parse_override(item)
        _check_key_path(schema, key, f"override {item!r}")
        _set_path(raw, key, value)
    return from_dict(schema, raw, source=source)


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found (check the path; configs live under configs/)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(data).__name__}")
    return data


def _load_with_extends(path: Path, seen: tuple) -> dict:
    path = path.resolve()
    if path in seen:
        chain = " -> ".join(str(p) for p in (*seen, path))
        raise ConfigError(f"{path}: 'extends' forms a cycle: {chain}")
    data = _read_yaml(path)
    bases = data.pop(EXTENDS_KEY, None)
    if bases is None:
        return data
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: '{EXTENDS_KEY}' must be a file path or a list of them")
    merged: dict = {}
    for base in bases:
        merged = deep_merge(merged, _load_with_extends(path.parent / base, seen=(*seen, path)))
    return deep_merge(merged, data)


def deep_merge(base: dict, update: dict) -> dict:
    """Return `base` updated by `update`, merging nested mappings key by key."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_override(item: str) -> tuple[str, Any]:
    """Split `a.b.c=value`; the value is parsed as YAML (`3` -> int, `[1, 2]` -> list)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r}: expected KEY.PATH=VALUE, e.g. planet.instellation_W_m2=1200")
    key, text = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {item!r}: empty key path")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {item!r}: value is not valid YAML: {exc}") from None
    return key, value


def _set_path(raw: dict, dotted: str, value: Any) -> None:
    node = raw
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def _check_key_path(schema: type, dotted: str, where: str) -> None:
    """Fail early, naming the override, when `dotted` is not a key path of `schema`."""
    tp: Any = schema
    walked = []
    for part in dotted.split("."):
        tp = _strip_optional(tp)
        if dataclasses.is_dataclass(tp):
            names = [f.name for f in dataclasses.fields(tp)]
            if part not in names:
                raise ConfigError(_unknown_key_message(where, ".".join([*walked, part]), names))
            tp = typing.get_type_hints(tp)[part]
        elif typing.get_origin(tp) is dict:
            tp = typing.get_args(tp)[1]
        else:
            return  # below a leaf or an Any: the type check reports it
        walked.append(part)


def _unknown_key_message(source: str, key_path: str, valid: list[str]) -> str:
    leaf = key_path.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(leaf, valid, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return f"{source}: unknown key '{key_path}'{hint} (valid keys here: {', '.join(valid)})"


# ---------------------------------------------------------------------------- validation


def from_dict(cls: type, data: Any, source: str = "<dict>", prefix: str = "") -> Any:
    """Build dataclass `cls` from mapping `data`, strictly. `source` names the file in errors."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: '{prefix or '<top>'}' must be a mapping, got {data!r}")
    if cls is Planet and data.get("preset") is not None:
        data = _apply_planet_preset(data, source, prefix)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        key_path = f"{prefix}.{unknown[0]}" if prefix else str(unknown[0])
        raise ConfigError(_unknown_key_message(source, key_path, names))
    kwargs = {}
    for name in names:
        if name in data:
            key_path = f"{prefix}.{name}" if prefix else name
            kwargs[name] = _coerce(hints[name], data[name], source, key_path)
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _apply_planet_preset(data: dict, source: str, prefix: str) -> dict:
    name = data["preset"]
    try:
        base = preset_values(name)
    except KeyError:
        raise ConfigError(f"{source}: unknown '{prefix}.preset' {name!r}; "
                          f"valid presets: {', '.join(sorted(PRESETS))}") from None
    return {**base, **data}


def _strip_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(tp: Any, value: Any, source: str, key: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, source, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else
                          f"{source}: '{key}' = {value!r} matches none of {_type_name(tp)}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"{source}: '{key}' = {value!r} is not one of {', '.join(map(repr, choices))}")
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, source, key)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{source}: '{key}' must be a list, got {value!r}")
        (item_tp,) = typing.get_args(tp)
        return [_coerce(item_tp, v, source, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: '{key}' must be a mapping, got {value!r}")
        key_tp, val_tp = typing.get_args(tp)
        return {_coerce(key_tp, k, source, f"{key}.<key>"): _coerce(val_tp, v, source, f"{key}.{k}")
                for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: '{key}' must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: '{key}' must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: '{key}' must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            hint = " (quote it: YAML reads 1:30:00 as a number)" if isinstance(value, int) else ""
            raise ConfigError(f"{source}: '{key}' must be a string, got {value!r}{hint}")
        return value
    raise ConfigError(f"{source}: '{key}' has an unsupported type {_type_name(tp)} (a bug in the schema)")


# ---------------------------------------------------------------------------- output


def to_dict(cfg: Any) -> dict:
    """The plain-dict form of a config dataclass (round-trips through `from_dict`)."""
    return dataclasses.asdict(cfg)


def to_yaml(cfg: Any) -> str:
    """The resolved config as YAML, in schema order."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=False)


def config_hash(cfg: Any) -> str:
    """sha256 of the canonical JSON of the resolved config (first 16 hex digits)."""
    blob = json.dumps(to_dict(cfg), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


__all__ = ["Config", "RunSettings", "load_config", "from_dict", "to_dict", "to_yaml",
           "config_hash", "deep_merge", "parse_override"]
