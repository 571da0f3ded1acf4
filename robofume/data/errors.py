"""The one error type of the data layer."""

from __future__ import annotations

from pathlib import Path


class DatasetError(ValueError):
    """A dataset file or episode that is missing, unreadable or inconsistent.

    The message names the file, the episode and the key that is wrong, e.g.
    ``data/sim/target.hdf5: episode 'demo_3' key 'actions': contains NaN at step 12``.
    The parts are also available as attributes for programs.
    """

    def __init__(
        self,
        path: str | Path | None,
        problem: str,
        episode: str | None = None,
        key: str | None = None,
    ) -> None:
        self.path = str(path) if path is not None else None
        self.episode = episode
        self.key = key
        self.problem = problem
        where = []
        if self.path is not None:
            where.append(self.path)
        if episode is not None:
            where.append(f"episode {episode!r}")
        if key is not None:
            where.append(f"key {key!r}")
        prefix = (where[0] + ": " + " ".join(where[1:])) if where else ""
        if len(where) == 1:
            prefix = where[0]
        super().__init__(f"{prefix}: {problem}" if prefix else problem)
