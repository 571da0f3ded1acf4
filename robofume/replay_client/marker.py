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

Authentication: the server writes, after every marker, its HMAC-SHA256 under the deployment
secret into ``replay_marker_mac`` (:func:`marker_mac`). A reader that holds the secret checks it
and takes a marker without a matching authenticator for unreadable
(:class:`ReplayMarkerForgedError`): a forged marker can then neither make actors forget episodes
they keep nor pass a wipe off as a restart. (A marker restored from a checkpoint written before
the authenticator existed is unauthenticated until the server writes its own, at start.)

:func:`read_marker` and :func:`write_marker` import Reverb; :class:`Marker` does not.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from robofume.replay_client.errors import (
    ReplayConfigMismatchError,
    ReplayMarkerForgedError,
    ReplayUnavailableError,
)
from robofume.replay_client.info import run_with_deadline, server_info
from robofume.replay_client.tables import MARKER_MAC_TABLE, MARKER_TABLE

MARKER_DOMAIN = b"robofume replay marker v1\0"
"""Prefix of the authenticated bytes, so a marker MAC is never valid for anything else."""


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


def marker_mac(secret: bytes, marker: Marker) -> bytes:
    """HMAC-SHA256 of ``marker`` under the deployment secret (32 bytes)."""
    body = struct.pack("<qq?", marker.epoch, marker.completed, marker.in_progress)
    return hmac.new(secret, MARKER_DOMAIN + body, hashlib.sha256).digest()


def _write_one(client: Any, table: str, step: dict[str, np.ndarray], timeout_s: float) -> None:
    writer = client.trajectory_writer(num_keep_alive_refs=1)
    try:
        writer.append(step)
        writer.create_item(table, 1.0, {k: writer.history[k][-1] for k in step})
        writer.end_episode(timeout_ms=max(1, int(timeout_s * 1000)))
    finally:
        writer.close()


def write_marker(
    client: Any, marker: Marker, timeout_s: float = 10.0, secret: bytes | None = None
) -> None:
    """Make ``marker`` the one item of ``replay_marker`` (the previous one is evicted) and,
    with ``secret``, its authenticator the one item of ``replay_marker_mac``."""
    step = {
        "epoch": np.asarray(marker.epoch, np.int64),
        "completed": np.asarray(marker.completed, np.int64),
        "in_progress": np.asarray(marker.in_progress, np.bool_),
    }
    _write_one(client, MARKER_TABLE, step, timeout_s)
    if secret is not None:
        mac = np.frombuffer(marker_mac(secret, marker), np.uint8)
        _write_one(client, MARKER_MAC_TABLE, {"mac": mac}, timeout_s)


def read_marker(
    client: Any, timeout_s: float = 10.0, address: str = "", secret: bytes | None = None
) -> Marker:
    """The server's current marker.

    Raises ReplayUnavailableError when the server does not answer within ``timeout_s`` or has
    not written its first marker yet (it is starting), and ReplayConfigMismatchError when it
    has no ``replay_marker`` table (a server from before markers). With ``secret``, a marker
    whose authenticator does not match raises ReplayMarkerForgedError (read twice first: the
    server writes the marker, then its authenticator).
    """
    where = address or getattr(client, "server_address", "replay")
    marker = _read_marker(client, timeout_s, where)
    if secret is None:
        return marker
    for attempt in range(2):
        mac = _with_deadline(lambda: _sample_mac(client, timeout_s), timeout_s, where)
        if mac is not None and hmac.compare_digest(mac, marker_mac(secret, marker)):
            return marker
        if attempt == 0:
            time.sleep(0.05)
            marker = _read_marker(client, timeout_s, where)
    raise ReplayMarkerForgedError(
        f"replay marker at {where} ({marker}) fails authentication: it was not written by a "
        "replay server holding this deployment's secret; ignoring it"
    )


def _sample_mac(client: Any, timeout_s: float) -> bytes | None:
    """The one authenticator in ``replay_marker_mac`` (None: none written yet)."""
    infos = server_info(client, timeout_s)
    if MARKER_MAC_TABLE not in infos or infos[MARKER_MAC_TABLE].current_size < 1:
        return None
    sample = next(client.sample(MARKER_MAC_TABLE, 1, emit_timesteps=False))
    return np.asarray(sample.data[0], np.uint8).tobytes()


def _read_marker(client: Any, timeout_s: float, where: str) -> Marker:
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
