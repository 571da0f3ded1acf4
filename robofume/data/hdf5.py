"""The native episode store: one HDF5 file per dataset, robomimic-style.

Layout (format ``robofume.episodes`` version 1)::

    /                       attrs: format, format_version, image_size, image_shape, action_dim,
                                   proprio_dim, num_episodes, tasks (JSON list), kinds (JSON
                                   counts), plus the writer's own attrs (non-scalars as JSON)
    /data                   attrs: total (steps over all episodes), env_args (JSON)
    /data/demo_<i>/         attrs: task, language, kind, num_samples (= T), meta (JSON),
                                   task_index (position in the simulated suite, -1 outside it)
        obs/image           uint8 (T+1, H, W, 3), one chunk per frame, lzf or gzip
        obs/proprio         float32 (T+1, P)
        actions             float32 (T, A)
        rewards             float32 (T,)
        terminals           bool (T,)
        success             bool (T,)
        mc_returns          float32 (T,)   optional
        labels              float32 (T,)   optional

Every array carries a Fletcher-32 checksum, so a flipped byte is a read error rather than
silently wrong data. Unlike robomimic there is no ``next_obs`` group: ``obs`` holds T+1
frames and step t goes from ``obs[t]`` to ``obs[t+1]`` (see :class:`robofume.types.Episode`).
Reading is here (:class:`EpisodeFile`, :func:`read_episodes`); writing, with its guards
against half-written or replaced files, in :mod:`robofume.data.hdf5_writer`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from robofume.data.errors import DatasetError
from robofume.data.validate import (
    check_group,
    guard,
    load_checked,
)
from robofume.types import Episode

FORMAT = "robofume.episodes"
FORMAT_VERSION = 1
_FILE_KEYS = ("format", "format_version", "num_episodes")


def decode_attr(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


class EpisodeFile:
    """Read access to one episode file; validates the whole structure when opened.

    Opening checks the file attrs and, for every episode, the keys, dtypes and shapes (from
    the HDF5 metadata) and that actions and rewards are finite. Images are read only when an
    episode is loaded, so large files open quickly::

        with EpisodeFile("data/sim/prior.hdf5") as f:
            print(len(f), f.summary())
            first = f[0]
            for ep in f: ...
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        where = str(self.path)
        if not self.path.exists():
            raise DatasetError(where, "file does not exist")
        if self.path.is_dir():
            raise DatasetError(where, "is a directory, expected an HDF5 episode file")
        try:
            self._file = h5py.File(self.path, "r")
        except Exception as err:  # h5py raises OSError with HDF5's message
            hint = (
                "truncated (incomplete copy or interrupted write)"
                if "truncat" in str(err)
                else "not a readable HDF5 file"
            )
            raise DatasetError(where, f"{hint}: {err}") from None
        try:
            self._open_checks()
        except BaseException:
            self._file.close()
            raise

    def _open_checks(self) -> None:
        where = str(self.path)
        with guard(where, None, "/"):
            attrs = {k: decode_attr(v) for k, v in self._file.attrs.items()}
        missing = [k for k in _FILE_KEYS if k not in attrs]
        if missing:
            raise DatasetError(where, f"missing file attribute(s) {missing}; not a robofume file")
        if attrs["format"] != FORMAT:
            raise DatasetError(where, f"format is {attrs['format']!r}, expected {FORMAT!r}")
        if int(attrs["format_version"]) > FORMAT_VERSION:
            raise DatasetError(
                where,
                f"format_version {attrs['format_version']} is newer than this reader "
                f"({FORMAT_VERSION}); upgrade robofume",
            )
        self.attrs: dict[str, Any] = attrs
        with guard(where, None, "data"):
            if "data" not in self._file:
                raise DatasetError(where, "missing group", key="data")
            names = list(self._file["data"].keys())
        bad = [n for n in names if not (n.startswith("demo_") and n[5:].isdigit())]
        if bad:
            raise DatasetError(where, f"unexpected group(s) {bad[:5]}", key="data")
        self.names = sorted(names, key=lambda n: int(n[5:]))
        if len(self.names) != int(attrs["num_episodes"]):
            raise DatasetError(
                where,
                f"file says {attrs['num_episodes']} episodes but holds {len(self.names)}",
                key="num_episodes",
            )
        shape = attrs.get("image_shape") or None
        expect = {
            "image_shape": tuple(shape) if shape and shape[0] else None,
            "action_dim": int(attrs.get("action_dim") or 0) or None,
        }
        self._infos = [check_group(self._group(n), where, n, expect) for n in self.names]

    def _group(self, name: str) -> h5py.Group:
        with guard(str(self.path), name, None):
            return self._file["data"][name]

    # -- lazy access --------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.names)

    def info(self, index: int) -> dict[str, Any]:
        """Cheap per-episode facts: name, task, language, kind, steps, success at the end."""
        return dict(self._infos[index])

    def __getitem__(self, index: int) -> Episode:
        if not -len(self) <= index < len(self):
            raise IndexError(f"{self.path}: episode index {index} out of range ({len(self)})")
        name = self.names[index]
        return load_checked(self._group(name), str(self.path), name, self._infos[index])

    def __iter__(self) -> Iterator[Episode]:
        for i in range(len(self)):
            yield self[i]

    def select(
        self, kinds: Iterable[str] | None = None, tasks: Iterable[str] | None = None
    ) -> list[int]:
        """Indices of the episodes of the given kinds and tasks (None = all)."""
        kinds = set(kinds) if kinds is not None else None
        tasks = set(tasks) if tasks is not None else None
        return [
            i
            for i, info in enumerate(self._infos)
            if (kinds is None or info["kind"] in kinds) and (tasks is None or info["task"] in tasks)
        ]

    def summary(self) -> dict[str, Any]:
        """Counts per task and kind, steps, image shape and end-of-episode success rate."""
        per_task: dict[str, dict[str, Any]] = {}
        per_kind: dict[str, int] = {}
        lengths = [info["steps"] for info in self._infos]
        for info in self._infos:
            entry = per_task.setdefault(
                info["task"], {"episodes": 0, "steps": 0, "successes": 0, "kinds": {}}
            )
            entry["episodes"] += 1
            entry["steps"] += info["steps"]
            entry["successes"] += int(info["success_end"])
            entry["kinds"][info["kind"]] = entry["kinds"].get(info["kind"], 0) + 1
            per_kind[info["kind"]] = per_kind.get(info["kind"], 0) + 1
        for entry in per_task.values():
            entry["success_rate"] = entry["successes"] / entry["episodes"]
        successes = sum(int(info["success_end"]) for info in self._infos)
        return {
            "file": str(self.path),
            "format_version": int(self.attrs["format_version"]),
            "episodes": len(self),
            "steps": int(sum(lengths)),
            "min_steps": int(min(lengths)) if lengths else 0,
            "max_steps": int(max(lengths)) if lengths else 0,
            "mean_steps": float(np.mean(lengths)) if lengths else 0.0,
            "image_shape": list(self._infos[0]["image_shape"]) if self._infos else None,
            "action_dim": int(self._infos[0]["action_dim"]) if self._infos else None,
            "success_rate": successes / len(self) if len(self) else 0.0,
            "kinds": per_kind,
            "tasks": per_task,
            "size_mb": round(self.path.stat().st_size / 2**20, 3),
        }

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> EpisodeFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_episodes(
    path: str | Path,
    kinds: Iterable[str] | None = None,
    tasks: Iterable[str] | None = None,
) -> list[Episode]:
    """Load (and validate) the episodes of a file, optionally only some kinds/tasks."""
    with EpisodeFile(path) as f:
        return [f[i] for i in f.select(kinds, tasks)]
