"""Importers for BridgeData V2: numpy (``out.npy``), its TFRecord form and the RLDS/TFDS form.

All three are read into :class:`RawTrajectory` (frames, 7-D states, 7-D actions, language)
and converted by one function, :func:`to_episode`, so the mapping lives in one place:

* **Images** are resized to ``image_size`` x ``image_size`` (OpenCV ``INTER_AREA``; Bridge
  frames are 128x128 in numpy form, 256x256 in RLDS), RGB uint8.
* **Actions.** Bridge actions are ``(dx, dy, dz, droll, dpitch, dyaw, gripper)``: end-effector
  deltas in metres/radians per step at 5 Hz and an absolute gripper command in [0, 1]
  (1 = open). Ours are ``(dx, dy, dz, gripper)`` or ``(dx, dy, dz, dyaw, gripper)`` in
  [-1, 1], as in the simulator: ``xyz = clip(bridge_xyz / xyz_scale, -1, 1)`` with
  ``xyz_scale`` = metres per step of a full action (``env.max_ee_step``),
  ``dyaw = clip(bridge_dyaw / rot_scale, -1, 1)`` (``env.max_yaw_step``) and
  ``gripper = 1 - 2 * bridge_gripper`` (ours: > 0 closes, so Bridge open 1 -> -1, closed
  0 -> +1). Roll and pitch deltas are dropped (the gripper points down here).
* **Proprio** is ``(x, y, z, gripper opening)`` from the 7-D state ``(x, y, z, r, p, y, g)``.
* **Steps.** Frame t and frame t+1 bracket action t. When a trajectory has as many actions as
  frames (RLDS; numpy without ``next_observations``), the last action has no following frame
  and is dropped.
* **Rewards.** Bridge demos are successful: reward 1, terminal and success on the last step,
  0 elsewhere. ``kind = "prior"``; ``task = "bridge_<words of the instruction>"``.
  Trajectories without an instruction are skipped (counted in the import stats).

The numpy form is a pickle (``np.load(allow_pickle=True)``): import only files you trust.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from robofume.data.bridge_raw import RawTrajectory, first_language
from robofume.data.errors import DatasetError
from robofume.data.hdf5_writer import DatasetWriter, check_target
from robofume.logs import progress
from robofume.types import Episode

log = logging.getLogger(__name__)

FORMATS = ("npy", "tfrecord", "rlds")
BRIDGE_ACTION_DIM = 7
BRIDGE_STATE_DIM = 7


@dataclass(frozen=True)
class BridgeMapping:
    """How Bridge trajectories become robofume episodes."""

    image_size: int = 64
    """Side of the square output images in pixels."""
    action_dim: int = 4
    """4: (dx, dy, dz, gripper); 5 adds the yaw delta."""
    xyz_scale: float = 0.04
    """Metres per step that map to action 1.0 (the simulator's ``env.max_ee_step``)."""
    rot_scale: float = 0.25
    """Radians per step that map to a yaw action of 1.0 (``env.max_yaw_step``; action_dim 5)."""


def task_name_for(language: str) -> str:
    """``"Put the pot in the sink."`` -> ``"bridge_put_the_pot_in_the_sink"`` (<= 64 chars)."""
    words = re.findall(r"[a-z0-9]+", language.lower())
    return ("bridge_" + "_".join(words))[:64].rstrip("_") if words else "bridge_unlabeled"


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """Resize (N, H, W, 3) uint8 frames to (N, size, size, 3)."""
    if frames.shape[1:3] == (size, size):
        return np.ascontiguousarray(frames, dtype=np.uint8)
    return np.stack(
        [cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames]
    ).astype(np.uint8)


def map_actions(actions: np.ndarray, mapping: BridgeMapping) -> np.ndarray:
    """(T, 7) Bridge actions -> (T, action_dim) robofume actions in [-1, 1]."""
    xyz = np.clip(actions[:, :3] / mapping.xyz_scale, -1.0, 1.0)
    grip = np.clip(1.0 - 2.0 * actions[:, 6:7], -1.0, 1.0)
    if mapping.action_dim == 4:
        parts = [xyz, grip]
    elif mapping.action_dim == 5:
        parts = [xyz, np.clip(actions[:, 5:6] / mapping.rot_scale, -1.0, 1.0), grip]
    else:
        raise ValueError(f"action_dim must be 4 or 5, got {mapping.action_dim}")
    return np.concatenate(parts, axis=1).astype(np.float32)


def to_episode(raw: RawTrajectory, mapping: BridgeMapping, path: str) -> Episode:
    """Map one raw Bridge trajectory to an Episode (see the module doc for the mapping)."""
    images, states, actions = raw.images, np.asarray(raw.states), np.asarray(raw.actions)
    name = raw.source
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise DatasetError(
            path,
            f"frames must be (N, H, W, 3) uint8, got {images.shape} {images.dtype}",
            name,
            "images0",
        )
    if states.ndim != 2 or states.shape[1] < BRIDGE_STATE_DIM or len(states) != len(images):
        raise DatasetError(
            path, f"state must be ({len(images)}, 7), got {states.shape}", name, "state"
        )
    if actions.ndim != 2 or actions.shape[1] != BRIDGE_ACTION_DIM:
        raise DatasetError(path, f"actions must be (T, 7), got {actions.shape}", name, "actions")
    if len(actions) == len(images):
        actions = actions[:-1]
    if len(actions) != len(images) - 1 or len(actions) < 1:
        raise DatasetError(
            path, f"{len(actions)} actions do not fit {len(images)} frames", name, "actions"
        )
    if not np.all(np.isfinite(actions)):
        raise DatasetError(path, "actions contain NaN or inf", name, "actions")
    steps = len(actions)
    last = np.zeros(steps, dtype=bool)
    last[-1] = True
    proprio = np.concatenate([states[:, :3], np.clip(states[:, 6:7], 0.0, 1.0)], axis=1).astype(
        np.float32
    )
    return Episode(
        images=resize_frames(images, mapping.image_size),
        proprio=proprio,
        actions=map_actions(actions.astype(np.float64), mapping),
        rewards=last.astype(np.float32),
        terminals=last.copy(),
        success=last.copy(),
        task=task_name_for(raw.language),
        language=raw.language.strip(),
        kind="prior",
        meta={"source": raw.source, "dataset": "bridge_v2", **raw.meta},
    )


# -- numpy form -------------------------------------------------------------------------


_OBS_KEYS = ("images0", "state")
_OBS_FORMS = (
    "a list (or 1-D object array) of per-step dicts with 'images0' and 'state', a structured "
    "array with those fields, or a dict of stacked arrays"
)


def _observations(where: str, name: str, key: str, value: Any) -> tuple[np.ndarray, np.ndarray]:
    """(frames, states) of one observation sequence, ``observations`` or ``next_observations``.

    Accepted forms: what BridgeData V2 writes (a list of per-step dicts), the same as a 1-D
    object array, a structured array with fields ``images0`` and ``state``, or a dict holding
    the stacked ``images0`` (N, H, W, 3) and ``state`` (N, 7) arrays.
    """
    if isinstance(value, np.ndarray) and value.dtype == object and value.ndim == 0:
        value = value.item()
    if isinstance(value, dict) or (isinstance(value, np.ndarray) and value.dtype.names):
        if isinstance(value, np.ndarray) and value.ndim != 1:
            raise DatasetError(
                where, f"a structured array must be 1-D, got shape {value.shape}", name, key
            )
        fields = value.keys() if isinstance(value, dict) else value.dtype.names
        for field_name in _OBS_KEYS:
            if field_name not in fields:
                raise DatasetError(where, f"missing in {key!r}", name, field_name)
        images, states = np.asarray(value["images0"]), np.asarray(value["state"])
    elif isinstance(value, (list, tuple)) or (
        isinstance(value, np.ndarray) and value.dtype == object and value.ndim == 1
    ):
        steps = list(value)
        if not steps:
            raise DatasetError(where, "holds no steps", name, key)
        for t, step in enumerate(steps):
            is_record = isinstance(step, np.void) and bool(step.dtype.names)
            if not (isinstance(step, dict) or is_record):
                raise DatasetError(
                    where, f"step {t} is a {type(step).__name__}, expected {_OBS_FORMS}", name, key
                )
            fields = step.keys() if isinstance(step, dict) else step.dtype.names
            for field_name in _OBS_KEYS:
                if field_name not in fields:
                    raise DatasetError(where, f"missing in {key!r} step {t}", name, field_name)
        try:
            images = np.stack([np.asarray(step["images0"]) for step in steps])
            states = np.stack([np.asarray(step["state"]) for step in steps])
        except ValueError as err:
            raise DatasetError(where, f"frames differ in shape: {err}", name, key) from None
    else:
        got = (
            f"a {value.dtype} array of shape {value.shape}"
            if isinstance(value, np.ndarray)
            else f"a {type(value).__name__}"
        )
        raise DatasetError(where, f"expected {_OBS_FORMS}; got {got}", name, key)
    if len(images) != len(states):
        raise DatasetError(
            where, f"{len(images)} frames but {len(states)} states", name, f"{key}/state"
        )
    try:
        return images, states.astype(np.float64)
    except (TypeError, ValueError) as err:
        raise DatasetError(where, f"not numeric: {err}", name, f"{key}/state") from None


def _has_steps(value: Any) -> bool:
    """Whether an optional sequence (``next_observations``) is present and not empty."""
    if isinstance(value, np.ndarray) and value.dtype == object and value.ndim == 0:
        value = value.item()
    if value is None:
        return False
    if isinstance(value, np.ndarray):
        return value.size > 0
    if isinstance(value, (list, tuple)):
        return len(value) > 0
    return True  # anything else is checked (and reported) by _observations


def read_npy(path: str | Path) -> Iterator[RawTrajectory]:
    """Trajectories of one BridgeData V2 ``out.npy`` (a pickled list of dicts)."""
    where = str(path)
    try:
        trajs = np.load(path, allow_pickle=True)
    except Exception as err:
        raise DatasetError(where, f"not a readable numpy file: {err}") from None
    if trajs.dtype != object or trajs.ndim != 1:
        raise DatasetError(
            where, f"expected a list of trajectories, got {trajs.dtype} {trajs.shape}"
        )
    for i, traj in enumerate(trajs):
        name = f"traj {i}"
        if not isinstance(traj, dict):
            raise DatasetError(where, f"expected a dict, got {type(traj).__name__}", name)
        for key in ("observations", "actions"):
            if key not in traj:
                raise DatasetError(where, "missing", name, key)
        images, states = _observations(where, name, "observations", traj["observations"])
        nxt = traj.get("next_observations")
        if _has_steps(nxt):
            nxt_images, nxt_states = _observations(where, name, "next_observations", nxt)
            if len(nxt_images) != len(images):
                raise DatasetError(
                    where,
                    f"{len(nxt_images)} steps, but 'observations' has {len(images)}",
                    name,
                    "next_observations",
                )
            if nxt_images.shape[1:] != images.shape[1:]:
                raise DatasetError(
                    where,
                    f"frames are {nxt_images.shape[1:]}, 'observations' {images.shape[1:]}",
                    name,
                    "next_observations/images0",
                )
            images = np.concatenate([images, nxt_images[-1:]])
            states = np.concatenate([states, nxt_states[-1:]])
        try:
            actions = np.asarray(traj["actions"], dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise DatasetError(where, f"not a numeric array: {err}", name, "actions") from None
        yield RawTrajectory(
            images=images,
            states=states,
            actions=actions.reshape(len(actions), -1) if actions.size else actions,
            language=first_language(traj.get("language")),
            source=f"{Path(path).name}[{i}]",
        )


# -- entry point ------------------------------------------------------------------------


def find_sources(src: str | Path, fmt: str) -> list[Path]:
    """The files of a source path (a file, or a directory searched recursively)."""
    src = Path(src)
    if not src.exists():
        raise DatasetError(str(src), "does not exist")
    if src.is_file():
        return [src]
    pattern = "*.npy" if fmt == "npy" else "*.tfrecord*"
    files = sorted(p for p in src.rglob(pattern) if p.is_file())
    if not files:
        raise DatasetError(str(src), f"no {pattern} files found for format {fmt!r}")
    return files


def detect_format(src: str | Path) -> str:
    """Guess npy / tfrecord / rlds from the file names and, for TFRecords, the keys."""
    src = Path(src)
    if src.suffix == ".npy" or (src.is_dir() and any(src.rglob("*.npy"))):
        return "npy"
    from robofume.data.bridge_tf import peek_keys

    keys = peek_keys(find_sources(src, "rlds")[0])
    return "rlds" if any(k.startswith("steps/") for k in keys) else "tfrecord"


def iter_raw(src: str | Path, fmt: str) -> Iterator[RawTrajectory]:
    """Raw trajectories of every file under ``src`` in the given format."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown Bridge format {fmt!r}; known: {FORMATS}")
    files = find_sources(src, fmt)
    if fmt == "npy":
        for path in files:
            yield from read_npy(path)
        return
    from robofume.data import bridge_tf

    reader = bridge_tf.read_rlds if fmt == "rlds" else bridge_tf.read_tfrecord
    for path in files:
        yield from reader(path)


def _nothing_imported(stats: dict[str, Any], out: str | Path) -> str:
    """Why an import produced no episodes, for the error message."""
    read = stats["trajectories"]
    why = (
        "it holds no trajectories"
        if read == 0
        else f"none of its {read} trajectories has a language instruction "
        "(unlabeled trajectories are skipped)"
    )
    return f"no episodes imported: {why}; {out} was not written"


def import_bridge(
    src: str | Path,
    out: str | Path,
    fmt: str = "auto",
    mapping: BridgeMapping | None = None,
    limit: int | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Convert Bridge trajectories under ``src`` into one robofume HDF5 file at ``out``.

    Raises DatasetError, writing nothing, when no episode is imported, when ``out`` is a
    directory or not an episode file, and (unless ``overwrite``) when ``out`` is an episode
    file with more episodes than this import produces.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    mapping = mapping or BridgeMapping()
    check_target(out, overwrite)  # before any (slow) reading
    fmt = detect_format(src) if fmt == "auto" else fmt
    stats: dict[str, Any] = {
        "format": fmt,
        "episodes": 0,
        "steps": 0,
        "trajectories": 0,
        "skipped_unlabeled": 0,
    }
    tasks: set[str] = set()
    attrs = {"source": "bridge_v2", "bridge_format": fmt, "mapping": mapping.__dict__}
    with DatasetWriter(out, attrs=attrs, overwrite=overwrite) as writer:
        for raw in progress(iter_raw(src, fmt), desc=f"import bridge ({fmt})", unit="traj"):
            if limit is not None and stats["episodes"] >= limit:
                break
            stats["trajectories"] += 1
            if not raw.language:
                stats["skipped_unlabeled"] += 1
                continue
            episode = to_episode(raw, mapping, str(src))
            writer.write(episode)
            tasks.add(episode.task)
            stats["episodes"] += 1
            stats["steps"] += len(episode)
        if not stats["episodes"]:  # raised inside the block: the writer keeps nothing
            raise DatasetError(str(src), _nothing_imported(stats, out))
    stats["tasks"] = len(tasks)
    stats["out"] = str(out)
    if stats["skipped_unlabeled"]:
        log.warning("skipped %d trajectories without an instruction", stats["skipped_unlabeled"])
    log.info(
        "imported %d Bridge episodes (%d steps) into %s", stats["episodes"], stats["steps"], out
    )
    return stats
