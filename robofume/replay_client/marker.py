"""The replay server's epoch and checkpoint marker: which delivered episodes are safe.

A restarted replay server restores its newest checkpoint, so whatever the actors delivered
after that checkpoint is gone. The server therefore keeps one tiny item in ``replay_marker``::

    Marker(epoch, completed, in_progress)

``epoch`` is picked anew at every start (after the restore), so a changed epoch means the
server restarted. ``completed`` counts the checkpoints written; around each checkpoint the
server writes ``(epoch, n, True)`` before and ``(epoch, n + 1, False)`` after it completed (or
``(epoch, n, False)`` after it failed).

Coverage rule: an actor reads the marker ``m`` after a write was confirmed. If
``m.in_progress`` is false, the next checkpoint starts after the read, so it holds the write:
the episode is safe once a marker of the same epoch shows ``completed >= m.completed + 1``.
If a checkpoint was in progress it may or may not hold the write, so the one after it is
needed: ``completed >= m.completed + 2`` (:meth:`Marker.covers`). A marker of another epoch
means the server restarted and restored a checkpoint: what was not covered must be delivered
again (``actor.outbox``).

A restarted server answers for a moment before it has written its new epoch: its marker is then
the restored one, written just before that checkpoint (old epoch, ``in_progress``). Nothing is
lost by this: such a marker covers only what its checkpoint holds, and an episode written then
is delivered again once the new epoch shows (the sampler drops the copy by its episode id).

:func:`read_marker` and :func:`write_marker` import Reverb; :class:`Marker` does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from robofume.replay_client.errors import ReplayConfigMismatchError, ReplayUnavailableError
from robofume.replay_client.info import run_with_deadline, server_info
from robofume.replay_client.tables import MARKER_TABLE


@dataclass(frozen=True)
class Marker:
    """The server's epoch and how many checkpoints it completed (one in progress or not)."""

    epoch: int
    """Chosen at every server start (time in ns): another epoch means a restart."""
    completed: int
    """Checkpoints completed (counted on from the restored one)."""
    in_progress: bool
    """True while a checkpoint is being written."""

    @property
    def needed(self) -> int:
        """``completed`` a later marker must show to prove a write before this read is safe."""
        return self.completed + (2 if self.in_progress else 1)

    def covers(self, seen: Marker) -> bool:
        """True when this marker proves that a checkpoint holding everything confirmed before
        ``seen`` was read has completed (same epoch, enough checkpoints since)."""
        return self.epoch == seen.epoch and self.completed >= seen.needed

    def to_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "completed": self.completed, "in_progress": self.in_progress}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Marker:
        return cls(int(data["epoch"]), int(data["completed"]), bool(data["in_progress"]))


def write_marker(client: Any, marker: Marker, timeout_s: float = 10.0) -> None:
    """Make ``marker`` the one item of ``replay_marker`` (the previous one is evicted)."""
    step = {
        "epoch": np.asarray(marker.epoch, np.int64),
        "completed": np.asarray(marker.completed, np.int64),
        "in_progress": np.asarray(marker.in_progress, np.bool_),
    }
    writer = client.trajectory_writer(num_keep_alive_refs=1)
    try:
        writer.append(step)
        writer.create_item(MARKER_TABLE, 1.0, {k: writer.history[k][-1] for k in step})
        writer.end_episode(timeout_ms=max(1, int(timeout_s * 1000)))
    finally:
        writer.close()


def read_marker(client: Any, timeout_s: float = 10.0, address: str = "") -> Marker:
    """The server's current marker.

    Raises ReplayUnavailableError when the server does not answer within ``timeout_s`` or has
    not written its first marker yet (it is starting), and ReplayConfigMismatchError when it
    has no ``replay_marker`` table (a server from before markers).
    """
    where = address or getattr(client, "server_address", "replay")
    try:
        infos = server_info(client, timeout_s)
    except Exception as err:
        raise ReplayUnavailableError(f"replay server at {where} unreachable: {err}") from err
    if MARKER_TABLE not in infos:
        raise ReplayConfigMismatchError(
            f"replay server at {where} has no '{MARKER_TABLE}' table (started by an older "
            f"version); restart it with this version"
        )
    if infos[MARKER_TABLE].current_size < 1:
        raise ReplayUnavailableError(f"replay server at {where} is starting (no marker yet)")
    data = _with_deadline(lambda: _sample(client), timeout_s, where)
    return Marker(int(data["epoch"]), int(data["completed"]), bool(data["in_progress"]))


def _sample(client: Any) -> dict[str, np.ndarray]:
    sample = next(client.sample(MARKER_TABLE, 1, emit_timesteps=False))
    keys = sorted(("epoch", "completed", "in_progress"))  # the flattened signature's order
    return dict(zip(keys, sample.data, strict=True))


def _with_deadline(fn: Any, timeout_s: float, where: str) -> Any:
    """``fn`` within ``timeout_s``; every failure is a ReplayUnavailableError naming ``where``."""
    try:
        return run_with_deadline(fn, timeout_s, "replay-marker-read")
    except TimeoutError as err:
        raise ReplayUnavailableError(
            f"replay server at {where} did not answer a marker read within {timeout_s:.0f} s"
        ) from err
    except Exception as err:
        msg = f"replay server at {where}: marker read failed: {err}"
        raise ReplayUnavailableError(msg) from err
