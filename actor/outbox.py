"""Episodes written to replay but not yet safe in a replay checkpoint, kept to be sent again.

A confirmed write is not the end of an episode's journey: a replay server killed hard restores
its newest checkpoint, and everything delivered after that checkpoint is gone. The
:class:`Outbox` keeps every written episode with the server's marker read after the write
(``replay_client.marker``) until a marker of the same epoch proves that a checkpoint holding it has
completed (:meth:`replay_client.marker.Marker.covers`). When a marker shows a new epoch the server
restarted: every episode still kept becomes *due* and is written again, in order, with its
episode id (so the learner's sampler drops the copies a restored checkpoint already held).

Entry states: *due* (to be written, again), *unread* (written, no marker read since; the next
marker of the epoch known before the write stands in for it, since any later read is as good)
and *marked* (waiting for coverage). The logic is pure: the caller writes and reads markers.

Memory: up to ``memory_limit`` episodes in memory, the rest in ``spill_dir`` as ``.npz``;
beyond ``max_episodes`` the oldest are forgotten (counted, logged). :meth:`close` spills all
and writes their markers to ``outbox.json``; :meth:`recover` picks them up at the next start
(one without a recorded marker is delivered again).
"""

from __future__ import annotations

import json
import logging
import secrets
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robofume.replay_client.errors import ReplayMarkerForgedError
from robofume.replay_client.marker import Marker
from robofume.replay_client.writer import EPISODE_ID_META
from robofume.types import Episode

log = logging.getLogger(__name__)

INDEX_FILE = "outbox.json"
"""Markers and states of the spilled episodes, written by :meth:`Outbox.close`."""
PIECE_IDS_META = "replay_piece_ids"
"""``Segment.meta`` key of the ids of its pieces, so a segment finalised again reuses them."""

_ARRAYS = ("images", "proprio", "actions", "rewards", "terminals", "success")
_OPTIONAL = ("mc_returns", "labels")


def assign_episode_ids(meta: dict, episodes: list[Episode]) -> None:
    """Give every piece of a segment its replay id, kept in the segment's ``meta``."""
    ids = meta.get(PIECE_IDS_META)
    if not isinstance(ids, list) or len(ids) != len(episodes):
        ids = [secrets.randbits(63) or 1 for _ in episodes]
        meta[PIECE_IDS_META] = ids
    for ep, eid in zip(episodes, ids, strict=True):
        ep.meta.pop(PIECE_IDS_META, None)
        ep.meta[EPISODE_ID_META] = int(eid)


@dataclass
class _Entry:
    number: int
    """Order of the first write (also the spill file's name)."""
    steps: int
    episode: Episode | None
    """In memory; None when only on disk."""
    path: Path | None
    """The spill file, when written to disk."""
    marker: Marker | None = None
    """Marker read after the last write (None: unread or due)."""
    due: bool = False
    """To be written (again)."""


class Outbox:
    """Written episodes awaiting a covering checkpoint (see the module docstring)."""

    def __init__(self, spill_dir: str | Path, memory_limit: int, max_episodes: int):
        self.spill_dir = Path(spill_dir)
        self.memory_limit = max(0, int(memory_limit))
        self.max_episodes = max(1, int(max_episodes))
        self.epoch: int | None = None
        """Epoch of the newest marker seen (None before the first)."""
        self.last_marker: Marker | None = None
        self._entries: deque[_Entry] = deque()
        self._next_number = 0
        self.restarts_seen = 0
        self.redelivered = 0
        self.covered = 0
        self.overflow = 0
        self.forged_markers = 0
        """Marker reads whose authenticator did not match (ignored)."""

    # --- state -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._entries)

    @property
    def due(self) -> int:
        """Episodes to be written again."""
        return sum(e.due for e in self._entries)

    @property
    def retained_steps(self) -> int:
        return sum(e.steps for e in self._entries)

    @property
    def in_memory(self) -> int:
        return sum(e.episode is not None for e in self._entries)

    # --- events ------------------------------------------------------------------------------
    def observe(self, marker: Marker) -> bool:
        """A marker read from the server; returns True when it shows a restart."""
        restarted = self.epoch is not None and marker.epoch != self.epoch
        if restarted:
            self.restarts_seen += 1
            for entry in self._entries:
                entry.due, entry.marker = True, None
            if self._entries:
                log.warning(
                    "replay restarted (epoch %d -> %d, %d checkpoints): delivering again the "
                    "%d episode(s) (%d transitions) its checkpoint may not hold",
                    self.epoch,
                    marker.epoch,
                    marker.completed,
                    len(self._entries),
                    self.retained_steps,
                )
            else:
                log.warning("replay restarted (epoch %d -> %d)", self.epoch, marker.epoch)
        else:
            for entry in self._entries:
                if not entry.due and entry.marker is None:
                    entry.marker = marker
        self.epoch = marker.epoch
        self.last_marker = marker
        self._drop_covered(marker)
        return restarted

    def observe_from(self, sink: Any) -> None:
        """:meth:`observe` the marker ``sink`` reads; a forged one (its authenticator does
        not match) is counted and ignored, so it can neither cover nor restart anything."""
        try:
            marker = sink.read_marker()
        except ReplayMarkerForgedError as err:
            self.forged_markers += 1
            if self.forged_markers == 1 or self.forged_markers % 100 == 0:
                log.error("%s (%d so far); keeping every episode until a genuine marker "
                          "covers it", err, self.forged_markers)  # fmt: skip
            return
        self.observe(marker)

    def add(self, episode: Episode) -> None:
        """``episode`` was written for the first time (call :meth:`observe` next)."""
        entry = _Entry(self._next_number, len(episode), episode, None)
        self._next_number += 1
        if self.in_memory >= self.memory_limit:
            self._spill(entry)
        self._entries.append(entry)
        while len(self._entries) > self.max_episodes:
            old = self._entries.popleft()
            self._forget(old)
            self.overflow += 1
            log.warning(
                "outbox full (%d episodes): forgot episode %d unconfirmed by a replay "
                "checkpoint (a replay restart would lose it); %d so far",
                self.max_episodes,
                old.number,
                self.overflow,
            )

    def next_due(self) -> Episode | None:
        """The oldest episode to write again (loaded from disk if spilled), or None."""
        for entry in self._entries:
            if entry.due:
                return entry.episode if entry.episode is not None else _load(entry.path)
        return None

    def redelivered_one(self) -> None:
        """The episode :meth:`next_due` returned was written again (call :meth:`observe` next)."""
        for entry in self._entries:
            if entry.due:
                entry.due, entry.marker = False, None
                self.redelivered += 1
                return
        raise RuntimeError("redelivered_one() without a due episode")

    # --- persistence -------------------------------------------------------------------------
    def resend_lost(self, sink: Any) -> None:
        """Read ``sink``'s marker (a restart shows before anything new goes to the new
        server, so nothing new is sent twice) and write again, in order, what a restart lost.

        ``sink`` writes episodes and reads the server's marker (``write``, ``read_marker``).
        """
        self.observe_from(sink)
        while (episode := self.next_due()) is not None:
            sink.write(episode)
            self.redelivered_one()
            self.observe_from(sink)

    def close(self) -> int:
        """Spill every kept episode, and the index of their markers, for the next start;
        returns how many."""
        for entry in self._entries:
            if entry.path is None and entry.episode is not None:
                self._spill(entry)
        index = {
            str(e.number): {"marker": e.marker.to_dict() if e.marker else None, "due": e.due}
            for e in self._entries
        }
        path = self.spill_dir / INDEX_FILE
        n = len(self._entries)
        if n:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(json.dumps(index))
            tmp.replace(path)
            log.info("%d episode(s) not yet in a replay checkpoint kept in %s", n, self.spill_dir)
        else:
            path.unlink(missing_ok=True)
        return n

    def recover(self) -> int:
        """Take over the episodes a previous run kept; returns how many. Those without a
        recorded marker are delivered again."""
        try:
            index = json.loads((self.spill_dir / INDEX_FILE).read_text())
        except (OSError, ValueError):
            index = {}
        for path in sorted(self.spill_dir.glob("ep_*.npz")):
            try:
                header = _read_header(path)
            except ValueError as err:
                log.error("%s; moved aside", err)
                path.rename(path.with_suffix(".bad"))
                continue
            number = int(path.stem.split("_")[1])
            state = index.get(str(number)) or {}
            marker = state.get("marker")
            entry = _Entry(
                number,
                int(header["steps"]),
                None,
                path,
                marker=Marker.from_dict(marker) if marker else None,
                due=bool(state.get("due")) or not marker,
            )
            self._entries.append(entry)
            self._next_number = max(self._next_number, number + 1)
        if self._entries:
            epochs = {e.marker.epoch for e in self._entries if e.marker is not None}
            self.epoch = max(epochs) if len(epochs) == 1 else None
            if self.epoch is None:  # unknown or mixed: deliver them all again to be safe
                for entry in self._entries:
                    entry.due, entry.marker = True, None
            log.info(
                "%d episode(s) from the last run not yet confirmed by a replay checkpoint",
                len(self._entries),
            )
        return len(self._entries)

    # --- internals ---------------------------------------------------------------------------
    def _drop_covered(self, marker: Marker) -> None:
        keep: deque[_Entry] = deque()
        for entry in self._entries:
            if entry.marker is not None and marker.covers(entry.marker):
                self._forget(entry)
                self.covered += 1
            else:
                keep.append(entry)
        self._entries = keep
        self._refill()

    def _refill(self) -> None:
        """Bring spilled episodes back into memory while there is room (oldest first)."""
        room = self.memory_limit - self.in_memory
        for entry in self._entries:
            if room <= 0:
                return
            if entry.episode is None and entry.path is not None:
                try:
                    entry.episode = _load(entry.path)
                except ValueError as err:  # pragma: no cover - disk trouble
                    log.error("%s", err)
                    continue
                entry.path.unlink(missing_ok=True)
                entry.path = None
                room -= 1

    def _spill(self, entry: _Entry) -> None:
        assert entry.episode is not None
        entry.path = _save(entry, self.spill_dir / f"ep_{entry.number:012d}.npz")
        entry.episode = None

    def _forget(self, entry: _Entry) -> None:
        if entry.path is not None:
            entry.path.unlink(missing_ok=True)
        entry.episode = entry.path = None


def _header(entry: _Entry, episode: Episode) -> dict:
    return {
        "steps": entry.steps,
        "task": episode.task,
        "language": episode.language,
        "kind": episode.kind,
        "meta": episode.meta,
    }


def _save(entry: _Entry, path: Path) -> Path:
    """Write the entry's episode atomically."""
    ep = entry.episode
    assert ep is not None
    arrays = {k: np.asarray(getattr(ep, k)) for k in _ARRAYS}
    arrays.update({k: np.asarray(getattr(ep, k)) for k in _OPTIONAL if getattr(ep, k) is not None})
    header = json.dumps(_header(entry, ep), default=str)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, header=np.asarray(header), **arrays)
    tmp.replace(path)
    return path


def _read_header(path: Path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as data:
            return json.loads(str(data["header"]))
    except (OSError, EOFError, ValueError, KeyError) as err:
        raise ValueError(f"kept episode {path} is unreadable: {err}") from err


def _load(path: Path | None) -> Episode:
    if path is None:
        raise ValueError("kept episode has neither data in memory nor a file")
    try:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(str(data["header"]))
            arrays = {k: data[k] for k in (*_ARRAYS, *_OPTIONAL) if k in data.files}
    except (OSError, EOFError, ValueError, KeyError) as err:
        raise ValueError(f"kept episode {path} is unreadable: {err}") from err
    missing = [k for k in _ARRAYS if k not in arrays]
    if missing:
        raise ValueError(f"kept episode {path}: missing arrays {missing}")
    return Episode(
        task=header["task"],
        language=header["language"],
        kind=header["kind"],
        meta=header["meta"],
        mc_returns=arrays.get("mc_returns"),
        labels=arrays.get("labels"),
        **{k: arrays[k] for k in _ARRAYS},
    )
