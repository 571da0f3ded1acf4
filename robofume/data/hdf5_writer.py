"""Writing the native episode store (:mod:`robofume.data.hdf5` describes the format).

Files are written to a temporary name and renamed when complete, so a crash never leaves a
half-written dataset under the final name, and a failed write leaves no temporary file. A
writer refuses to replace an existing episode file with one of fewer episodes (an empty one
included), or to replace anything that is not an episode file, unless ``overwrite=True``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from robofume.data.errors import DatasetError
from robofume.data.hdf5 import FORMAT, FORMAT_VERSION, decode_attr
from robofume.data.validate import OPTIONAL_KEYS, check_episode_arrays
from robofume.types import Episode


def _encode_attr(value: Any) -> Any:
    if isinstance(value, (str, bool, int, float, np.integer, np.floating)):
        return value
    return json.dumps(value, default=str)


def _task_index(name: str) -> int:
    """Index of a simulated task (informational: the name is what readers rely on)."""
    from robofume.tasks import task_index

    try:
        return task_index(name)
    except KeyError:
        return -1


def _episode_count(path: Path) -> int:
    """``num_episodes`` of a robofume episode file (its attrs only; cheap for big files)."""
    with h5py.File(path, "r") as f:
        if decode_attr(f.attrs.get("format")) != FORMAT or "num_episodes" not in f.attrs:
            raise ValueError(f"no {FORMAT!r} format attribute")
        return int(f.attrs["num_episodes"])


def check_target(path: str | Path, overwrite: bool = False) -> int | None:
    """Check that an episode file may be written at ``path``, before any work is done.

    Returns the number of episodes of the existing episode file that a write would replace,
    or None when nothing is there (or ``overwrite`` is set). Raises DatasetError when
    ``path`` is a directory and, without ``overwrite``, when it is a file that is not a
    robofume episode file.
    """
    path = Path(path)
    if path.is_dir():
        raise DatasetError(path, "is a directory; expected the path of an .hdf5 file to write")
    if overwrite or not path.exists():
        return None
    try:
        return _episode_count(path)
    except Exception as err:  # h5py raises OSError with HDF5's message
        raise DatasetError(
            path,
            f"exists and is not a robofume episode file ({err}); refusing to replace it "
            "(pass overwrite=True, or --overwrite on the command line, to replace it)",
        ) from None


class DatasetWriter:
    """Streams episodes into a new HDF5 file (use as a context manager).

    ``with DatasetWriter(path, attrs={"source": "sim"}) as w: w.write(episode)``. The file
    appears under ``path`` only when the block ends without an exception; otherwise nothing
    is left behind and an existing file at ``path`` is untouched.

    Without ``overwrite`` an existing episode file is replaced only by one with at least as
    many episodes, and a path holding anything else is refused (DatasetError, raised when the
    block is entered or, for the episode count, when it ends). A directory is always refused.
    """

    def __init__(
        self,
        path: str | Path,
        attrs: dict[str, Any] | None = None,
        compression: str | None = "lzf",
        *,
        overwrite: bool = False,
    ) -> None:
        if compression not in (None, "lzf", "gzip"):
            raise ValueError(f"compression must be None, 'lzf' or 'gzip', not {compression!r}")
        self.path = Path(path)
        self.attrs = dict(attrs or {})
        self.compression = compression
        self.overwrite = overwrite
        self._tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self._file: h5py.File | None = None
        self._count = 0
        self._steps = 0
        self._image_shape: tuple[int, ...] | None = None
        self._action_dim: int | None = None
        self._proprio_dim: int | None = None
        self._tasks: list[str] = []
        self._kinds: dict[str, int] = {}

    def __enter__(self) -> DatasetWriter:
        check_target(self.path, self.overwrite)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # the HDF5 1.10 format indexes small chunked arrays compactly (~2.5x less overhead
            # per episode than the 1.8 default); any HDF5 >= 1.10 (h5py >= 2.8) reads it
            self._file = h5py.File(self._tmp, "w", libver=("v110", "v110"))
        except OSError as err:
            raise DatasetError(self.path, f"cannot create the file: {err}") from None
        self._file.create_group("data")
        return self

    def write(self, episode: Episode) -> int:
        """Append one episode; returns its index. Raises DatasetError if it is inconsistent."""
        if self._file is None:
            raise RuntimeError("DatasetWriter.write() outside its `with` block")
        name = f"demo_{self._count}"
        check_episode_arrays(episode, str(self.path), name)
        shape = tuple(episode.images.shape[1:])
        if self._image_shape is None:
            self._image_shape = shape
            self._action_dim = int(episode.actions.shape[1])
            self._proprio_dim = int(episode.proprio.shape[1])
        for key, want, got in (
            ("obs/image", self._image_shape, shape),
            ("actions", self._action_dim, int(episode.actions.shape[1])),
            ("obs/proprio", self._proprio_dim, int(episode.proprio.shape[1])),
        ):
            if want != got:
                raise DatasetError(
                    self.path, f"shape {got} differs from earlier episodes ({want})", name, key
                )
        group = self._file["data"].create_group(name)
        obs = group.create_group("obs")
        obs.create_dataset(
            "image",
            data=episode.images,
            chunks=(1, *shape),
            compression=self.compression,
            fletcher32=True,
        )
        small = {"fletcher32": True}  # checksummed: silent corruption becomes a read error
        obs.create_dataset("proprio", data=np.asarray(episode.proprio, np.float32), **small)
        group.create_dataset("actions", data=np.asarray(episode.actions, np.float32), **small)
        group.create_dataset("rewards", data=np.asarray(episode.rewards, np.float32), **small)
        group.create_dataset("terminals", data=np.asarray(episode.terminals, bool), **small)
        group.create_dataset("success", data=np.asarray(episode.success, bool), **small)
        for key in OPTIONAL_KEYS:
            value = getattr(episode, key)
            if value is not None:
                group.create_dataset(key, data=np.asarray(value, np.float32), **small)
        group.attrs["task"] = episode.task
        group.attrs["language"] = episode.language
        group.attrs["kind"] = episode.kind
        group.attrs["num_samples"] = len(episode)
        group.attrs["meta"] = json.dumps(episode.meta, default=str)
        group.attrs["task_index"] = _task_index(episode.task)
        if episode.task not in self._tasks:
            self._tasks.append(episode.task)
        self._kinds[episode.kind] = self._kinds.get(episode.kind, 0) + 1
        self._count += 1
        self._steps += len(episode)
        return self._count - 1

    def _finish(self) -> None:
        assert self._file is not None
        attrs = self._file.attrs
        for key, value in self.attrs.items():
            attrs[key] = _encode_attr(value)
        shape = list(self._image_shape or (0, 0, 3))
        attrs["format"] = FORMAT
        attrs["format_version"] = FORMAT_VERSION
        attrs["num_episodes"] = self._count
        attrs["image_size"] = int(shape[0])
        attrs["image_shape"] = json.dumps(shape)
        attrs["action_dim"] = int(self._action_dim or 0)
        attrs["proprio_dim"] = int(self._proprio_dim or 0)
        attrs["tasks"] = json.dumps(self._tasks)
        attrs["kinds"] = json.dumps(self._kinds)
        data = self._file["data"]
        data.attrs["total"] = self._steps
        data.attrs["env_args"] = json.dumps(
            {"image_size": shape[0], "action_dim": self._action_dim or 0}
        )

    def _check_replace(self) -> None:
        """Refuse to replace an episode file with one of fewer episodes (unless overwrite)."""
        before = check_target(self.path, self.overwrite)
        if before is not None and self._count < before:
            raise DatasetError(
                self.path,
                f"holds {before} episodes; refusing to replace it with {self._count} "
                "(pass overwrite=True, or --overwrite on the command line, to replace it)",
            )

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self._file is not None
        try:
            try:
                if exc_type is None:
                    self._finish()
            finally:
                self._file.close()
                self._file = None
            if exc_type is None:
                self._check_replace()
                os.replace(self._tmp, self.path)
        finally:
            self._tmp.unlink(missing_ok=True)  # a no-op once renamed


def write_episodes(
    path: str | Path,
    episodes: Iterable[Episode],
    attrs: dict[str, Any] | None = None,
    compression: str | None = "lzf",
    *,
    overwrite: bool = False,
) -> Path:
    """Write episodes to an HDF5 file atomically.

    An existing episode file is replaced only by one with at least as many episodes unless
    ``overwrite`` (see :class:`DatasetWriter`).
    """
    with DatasetWriter(path, attrs=attrs, compression=compression, overwrite=overwrite) as writer:
        for episode in episodes:
            writer.write(episode)
    return Path(path)
