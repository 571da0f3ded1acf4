"""Checks on episodes, before they are written and when they are read back.

Every problem becomes a :class:`DatasetError` naming the file, the episode and the key; low
level h5py/HDF5 failures (corrupt chunks, truncated data) are translated the same way.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import h5py
import numpy as np

from robofume.data.errors import DatasetError
from robofume.types import Episode

KINDS = ("prior", "target_forward", "target_reset", "failure", "online")
"""Valid values of ``Episode.kind``."""
OPTIONAL_KEYS = ("mc_returns", "labels")
"""Per-step float arrays an episode may carry."""
# key -> (allowed numpy dtype kinds, True if it has T+1 entries, ndim)
_SPEC: dict[str, tuple[str, bool, int]] = {
    "obs/image": ("u", True, 4),
    "obs/proprio": ("f", True, 2),
    "actions": ("f", False, 2),
    "rewards": ("f", False, 1),
    "terminals": ("bui", False, 1),
    "success": ("bui", False, 1),
    "mc_returns": ("f", False, 1),
    "labels": ("f", False, 1),
}
_ATTRS = ("task", "language", "kind")


@contextmanager
def guard(path: str, episode: str | None, key: str | None) -> Iterator[None]:
    """Turn any h5py/HDF5 failure inside the block into a DatasetError naming the place."""
    try:
        yield
    except DatasetError:
        raise
    except Exception as err:  # HDF5 reports corruption as OSError/RuntimeError/KeyError
        raise DatasetError(
            path, f"unreadable ({type(err).__name__}: {err}); the file is corrupt", episode, key
        ) from None


def _check_shape(
    path: str, name: str, key: str, shape: tuple[int, ...], dtype: np.dtype, steps: int
) -> None:
    kinds, plus_one, ndim = _SPEC[key]
    if dtype.kind not in kinds:
        raise DatasetError(path, f"dtype {dtype} is not allowed here", name, key)
    if len(shape) != ndim:
        raise DatasetError(path, f"shape {shape} should have {ndim} dimensions", name, key)
    want = steps + 1 if plus_one else steps
    if shape[0] != want:
        raise DatasetError(
            path,
            f"length {shape[0]} is inconsistent with {steps} actions (expected {want})",
            name,
            key,
        )
    if key == "obs/image" and (dtype != np.uint8 or shape[-1] != 3):
        raise DatasetError(path, f"image must be HxWx3 uint8, got {shape[1:]} {dtype}", name, key)


def _check_finite(path: str, name: str, key: str, values: np.ndarray) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        step = int(np.argwhere(bad)[0][0])
        raise DatasetError(path, f"contains NaN or inf (first at step {step})", name, key)


def check_episode_arrays(episode: Episode, path: str, name: str) -> None:
    """Validate an in-memory episode before it is written."""
    if not isinstance(episode, Episode):
        raise DatasetError(path, f"expected an Episode, got {type(episode).__name__}", name)
    actions = np.asarray(episode.actions)
    if actions.ndim != 2 or actions.shape[0] < 1:
        raise DatasetError(path, f"actions must be (T>=1, A), got {actions.shape}", name, "actions")
    steps = actions.shape[0]
    arrays = {
        "obs/image": episode.images,
        "obs/proprio": episode.proprio,
        "actions": actions,
        "rewards": episode.rewards,
        "terminals": episode.terminals,
        "success": episode.success,
        "mc_returns": episode.mc_returns,
        "labels": episode.labels,
    }
    for key, value in arrays.items():
        if value is None:
            continue
        value = np.asarray(value)
        _check_shape(path, name, key, value.shape, value.dtype, steps)
        if value.dtype.kind == "f":
            _check_finite(path, name, key, value)
    for attr in _ATTRS:
        if not isinstance(getattr(episode, attr), str):
            raise DatasetError(
                path, f"attribute must be a string, got {getattr(episode, attr)!r}", name, attr
            )
    if episode.kind not in KINDS:
        raise DatasetError(path, f"kind {episode.kind!r} is not one of {KINDS}", name, "kind")


def check_group(group: h5py.Group, path: str, name: str, expect: dict[str, Any]) -> dict[str, Any]:
    """Validate one stored episode from its metadata (plus its small arrays).

    Returns the facts the reader needs later: task, language, kind, steps, success at the end.
    """
    with guard(path, name, None):
        keys = set()
        group.visit(keys.add)
        attrs = {k: group.attrs[k] for k in group.attrs}
    for key in ("obs/image", "obs/proprio", "actions", "rewards", "terminals", "success"):
        if key not in keys:
            raise DatasetError(path, "missing", name, key)
    for attr in _ATTRS:
        if attr not in attrs:
            raise DatasetError(path, "missing attribute", name, attr)
    info: dict[str, Any] = {"name": name}
    for attr in _ATTRS:
        value = attrs[attr]
        info[attr] = value.decode() if isinstance(value, bytes) else str(value)
    if info["kind"] not in KINDS:
        raise DatasetError(path, f"kind {info['kind']!r} is not one of {KINDS}", name, "kind")
    with guard(path, name, "actions"):
        ds = group["actions"]
        steps = int(ds.shape[0]) if ds.ndim else 0
    if steps < 1:
        raise DatasetError(path, "episode has no steps", name, "actions")
    present = [k for k in _SPEC if k in keys]
    for key in present:
        with guard(path, name, key):
            ds = group[key]
            if not isinstance(ds, h5py.Dataset):
                raise DatasetError(path, "is a group, expected an array", name, key)
            shape, dtype = tuple(ds.shape), ds.dtype
        _check_shape(path, name, key, shape, dtype, steps)
    image_shape = tuple(group["obs/image"].shape[1:])
    if expect.get("image_shape") and image_shape != tuple(expect["image_shape"]):
        raise DatasetError(
            path,
            f"image shape {image_shape} differs from the file's {expect['image_shape']}",
            name,
            "obs/image",
        )
    action_dim = int(group["actions"].shape[1])
    if expect.get("action_dim") and action_dim != expect["action_dim"]:
        raise DatasetError(
            path,
            f"action dim {action_dim} differs from the file's {expect['action_dim']}",
            name,
            "actions",
        )
    for key in ("actions", "rewards"):
        with guard(path, name, key):
            values = group[key][()]
        _check_finite(path, name, key, values)
    with guard(path, name, "success"):
        success = group["success"][()]
    meta: dict[str, Any] = {}
    if "meta" in attrs:
        try:
            meta = json.loads(attrs["meta"])
        except (TypeError, ValueError):
            raise DatasetError(path, "meta attribute is not valid JSON", name, "meta") from None
    info.update(
        steps=steps,
        success_end=bool(success[-1]),
        image_shape=image_shape,
        action_dim=action_dim,
        optional=[k for k in OPTIONAL_KEYS if k in keys],
        meta=meta,
    )
    return info


def load_checked(group: h5py.Group, path: str, name: str, info: dict[str, Any]) -> Episode:
    """Read one validated episode into memory (decompressing its images)."""
    arrays: dict[str, np.ndarray] = {}
    for key in (
        "obs/image",
        "obs/proprio",
        "actions",
        "rewards",
        "terminals",
        "success",
        *info["optional"],
    ):
        with guard(path, name, key):
            arrays[key] = group[key][()]
    for key in ("obs/proprio", *info["optional"]):
        _check_finite(path, name, key, arrays[key])
    return Episode(
        images=arrays["obs/image"],
        proprio=arrays["obs/proprio"].astype(np.float32, copy=False),
        actions=arrays["actions"].astype(np.float32, copy=False),
        rewards=arrays["rewards"].astype(np.float32, copy=False),
        terminals=arrays["terminals"].astype(bool, copy=False),
        success=arrays["success"].astype(bool, copy=False),
        task=info["task"],
        language=info["language"],
        kind=info["kind"],
        mc_returns=(
            arrays["mc_returns"].astype(np.float32, copy=False) if "mc_returns" in arrays else None
        ),
        labels=arrays["labels"].astype(np.float32, copy=False) if "labels" in arrays else None,
        meta=dict(info["meta"]),
    )
