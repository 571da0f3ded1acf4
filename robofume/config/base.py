"""Config machinery: YAML presets, dotted CLI overrides, validation and a stable hash.

Configs are frozen dataclasses with a docstring-style comment per field. An experiment config
is built from (in order) the dataclass defaults, a preset from ``deploy/configs/<name>.yaml``
or any YAML file, and ``--section.field value`` overrides from the command line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

PRESET_DIR = Path(__file__).resolve().parents[2] / "deploy" / "configs"


class ConfigError(ValueError):
    """A preset, file or override that does not fit the config schema."""


def preset_path(name: str) -> Path:
    """The YAML file of a named preset (``sim-cpu``) or a path given directly."""
    candidate = Path(name)
    if candidate.suffix in (".yaml", ".yml") and candidate.exists():
        return candidate
    path = PRESET_DIR / f"{name}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
        raise ConfigError(f"unknown preset {name!r}; known presets: {', '.join(known)}")
    return path


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert a YAML/CLI value into the annotated field type, or raise ConfigError."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"{where}: {value!r} fits none of {tp}")
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{where}: {value!r} is not one of {list(allowed)}")
        return value
    if origin in (tuple, list):
        if isinstance(value, str):
            value = yaml.safe_load(value) if value.strip().startswith("[") else value.split(",")
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
            return tuple(
                _coerce(v, a, f"{where}[{i}]")
                for i, (v, a) in enumerate(zip(value, args, strict=True))
            )
        item = args[0] if args else Any
        out = [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        try:
            if isinstance(value, str):
                value = float(value) if ("e" in value.lower() or "." in value) else int(value)
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
    if tp is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if tp is str:
        if not isinstance(value, (str, int, float)):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build a (nested) dataclass from a mapping, rejecting unknown keys by name."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - names
    if unknown:
        raise ConfigError(
            f"{where or cls.__name__}: unknown field(s) {sorted(unknown)}; known: {sorted(names)}"
        )
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


def merge(base: T, data: dict[str, Any], where: str = "") -> T:
    """Return ``base`` with the fields in ``data`` replaced (nested mappings merge)."""
    hints = typing.get_type_hints(type(base))
    names = {f.name for f in dataclasses.fields(base)}  # type: ignore[arg-type]
    unknown = set(data) - names
    if unknown:
        raise ConfigError(
            f"{where or type(base).__name__}: unknown field(s) {sorted(unknown)}; "
            f"known: {sorted(names)}"
        )
    changes = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        current = getattr(base, key)
        if dataclasses.is_dataclass(current) and isinstance(value, dict):
            changes[key] = merge(current, value, path)
        else:
            changes[key] = _coerce(value, hints[key], path)
    return dataclasses.replace(base, **changes)  # type: ignore[type-var]


def parse_overrides(args: list[str]) -> dict[str, Any]:
    """Turn ``["--learner.utd_ratio", "4", "--env.image_size=64"]`` into a nested mapping."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise ConfigError(
                f"unexpected argument {arg!r}; overrides look like --section.field VALUE"
            )
        key = arg[2:]
        if "=" in key:
            key, raw = key.split("=", 1)
            i += 1
        else:
            if i + 1 >= len(args):
                raise ConfigError(f"override {arg} needs a value")
            raw = args[i + 1]
            i += 2
        value = yaml.safe_load(raw) if raw != "" else ""
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def to_dict(config: Any) -> dict[str, Any]:
    """Plain nested mapping (tuples become lists) suitable for YAML/JSON."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=list))


PROCESS_LOCAL = ("deploy", "actor", "name")
"""Sections a process may set for itself without breaking agreement with the others:
addresses and ports (deploy), the actor's own loop settings (actor), the preset's name."""


def config_hash(config: Any, exclude: tuple[str, ...] = PROCESS_LOCAL) -> str:
    """A short stable hash of everything that must agree between processes."""
    data = {k: v for k, v in to_dict(config).items() if k not in exclude}
    blob = json.dumps(data, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def hashed_values(config: Any, exclude: tuple[str, ...] = PROCESS_LOCAL) -> dict[str, Any]:
    """What :func:`config_hash` covers, flat: ``{"learner.utd_ratio": 0.5, ...}``."""
    out: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else key, inner)
        else:
            out[prefix] = value

    walk("", {k: v for k, v in to_dict(config).items() if k not in exclude})
    return out


def config_differences(theirs: Any, ours: dict[str, Any], limit: int = 8) -> list[str]:
    """``field: theirs X, here Y`` for each hashed field that differs (at most ``limit``)."""
    if not isinstance(theirs, dict):
        return []
    keys = sorted(set(theirs) | set(ours))
    missing = object()
    lines = [
        f"{k}: {theirs.get(k, missing)!r} there, {ours.get(k, missing)!r} here".replace(
            repr(missing), "(unknown)"
        )
        for k in keys
        if theirs.get(k, missing) != ours.get(k, missing)
    ]
    if len(lines) > limit:
        lines = [*lines[:limit], f"... and {len(lines) - limit} more"]
    return lines
