"""Ordered, loss-free delivery of closed segments to replay: labels first, then Reverb.

Closed segments enter with :meth:`DeliveryQueue.put` (tick thread, O(1), never blocks). A
*spooler* thread keeps at most ``memory_limit`` of them in memory and spills the newer ones to
``spill_dir`` as ``.npz`` files (reading them back in order as memory frees up). A *sender*
thread takes the oldest segment, completes its labels (:mod:`actor.completion`), splits it
into episodes with MC returns and writes them to the
sink. While replay or the reward server is unreachable the segment stays at the head and the
sender backs off; nothing is dropped and order is kept. Segments left at shutdown are spilled
and picked up by the next start with the same spill directory.

A confirmed write is not yet safe: a replay server killed hard restores its newest checkpoint.
With an :class:`actor.outbox.Outbox` and a sink that reads the server's marker
(``read_marker``, as :class:`replay_client.writer.EpisodeWriter` does), every written episode is
kept until a replay checkpoint holds it; when the marker shows a restarted server, the kept
episodes are written again, in order, before anything new (the sender also reads the marker
every ``marker_poll_s`` while it has nothing else to do).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import numpy as np

from actor.completion import LabelCompletion
from actor.episodes import Segment, finalize, load_segment, save_segment
from actor.labels import LabelTracker
from actor.outbox import Outbox, assign_episode_ids
from actor.replay_link import EpisodeSink, ReplayLink
from robofume.types import Episode

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 30.0
SPILL_LOG_EVERY_S = 10.0


class DeliveryQueue:
    def __init__(
        self,
        sink_factory: Callable[[], EpisodeSink],
        tracker: LabelTracker | None,
        *,
        spill_dir: str | Path,
        memory_limit: int,
        label_wait_s: float,
        retry_s: float,
        discount: float,
        address: str = "replay",
        on_finalized: Callable[[Segment, list[Episode]], None] | None = None,
        outbox: Outbox | None = None,
        marker_poll_s: float = 5.0,
    ):
        self.labels = LabelCompletion(tracker, label_wait_s)
        self.spill_dir = Path(spill_dir)
        self.memory_limit = max(1, memory_limit)
        self.retry_s = retry_s
        self.discount = discount
        self.address = address
        self._on_finalized = on_finalized
        self.link = ReplayLink(sink_factory, outbox, address, self._buffered)
        self.outbox = outbox
        """Written episodes not yet in a replay checkpoint (None: forget them once written)."""
        self.marker_poll_s = marker_poll_s
        self._cond = threading.Condition()
        self._incoming: deque[Segment] = deque()
        self._memory: deque[Segment] = deque()
        self._disk: deque[Path] = deque()
        self._from_disk: dict[int, Path] = {}
        self._stop = threading.Event()
        self._finalized: dict[int, list[Episode]] = {}
        self.delivered_segments = 0
        self.delivered_episodes = 0
        self.spilled_total = 0
        self.rejected = 0
        self._last_spill_log = -SPILL_LOG_EVERY_S
        self._threads = [
            threading.Thread(target=self._spool, name="actor-spooler", daemon=True),
            threading.Thread(target=self._send, name="actor-sender", daemon=True),
        ]

    # --- lifecycle -----------------------------------------------------------------------
    def recover(self) -> tuple[int, int]:
        """Queue segments spilled by an earlier run; returns (next seq, next step id)."""
        files = sorted(self.spill_dir.glob("seg_*.npz"))
        next_seq, next_step = 0, 0
        for path in files:
            try:
                with np.load(path) as data:
                    ids = data["step_ids"]
                seq = int(path.stem.split("_")[1])
            except Exception as err:
                log.error("cannot read spilled episode %s (%s); left in place", path, err)
                continue
            self._disk.append(path)
            next_seq = max(next_seq, seq + 1)
            if ids.size:
                next_step = max(next_step, int(ids.max()) + 1)
        if self._disk:
            log.info(
                "found %d undelivered episode(s) in %s; delivering them first",
                len(self._disk),
                self.spill_dir,
            )
        if self.outbox is not None:
            self.outbox.recover()
        return next_seq, next_step

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def put(self, segment: Segment) -> None:
        """Hand over a closed segment (non-blocking)."""
        segment.closed_at = segment.closed_at or time.monotonic()
        with self._cond:
            self._incoming.append(segment)
            self._cond.notify_all()

    @property
    def pending(self) -> int:
        """Segments not yet delivered (in memory, on disk or just handed over)."""
        with self._cond:
            return len(self._incoming) + len(self._memory) + len(self._disk)

    @property
    def spilled(self) -> int:
        with self._cond:
            return len(self._disk)

    @property
    def replay_reachable(self) -> bool:
        return self.link.down_since is None

    @property
    def labels_down_since(self) -> float | None:
        """When the reward server last failed to label the head segment (None: it answers)."""
        return self.labels.down_since

    @property
    def last_error(self) -> str:
        return self.link.last_error or self.labels.last_error

    def _backlog(self) -> str:
        with self._cond:
            n = sum(len(s.missing()) for s in self._memory)
        return (
            f"{self.pending} episodes ({n} transitions) wait for labels, {self.spilled} "
            f"spilled to {self.spill_dir}"
        )

    def _buffered(self) -> str:
        return f"{self.pending} episodes buffered, {self.spilled} spilled to {self.spill_dir}"

    def wait_idle(self, timeout: float) -> bool:
        """Block until everything handed over is delivered (or the timeout passes)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._incoming or self._memory or self._disk:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.1))
        return True

    def close(self, timeout: float) -> int:
        """Deliver for up to ``timeout`` s, then spill what is left; returns segments spilled."""
        self.wait_idle(timeout)
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout=max(5.0, self.retry_s * 2))
        with self._cond:
            older, newer = list(self._memory), list(self._incoming)
            self._memory.clear()
            self._incoming.clear()

        def spill(segs: list[Segment]) -> list[Path]:
            out = []
            for seg in segs:
                self.labels.merge(seg)
                path = self._from_disk.pop(seg.seq, None)
                out.append(save_segment(seg, path or self._path(seg.seq)))
            return out

        if self.outbox is not None:
            self.outbox.close()
        older_paths, newer_paths = spill(older), spill(newer)
        with self._cond:
            self._disk = deque(older_paths + list(self._disk) + newer_paths)
            n = len(self._disk)
        if n:
            log.warning(
                "%d undelivered episode(s) kept in %s for the next start", n, self.spill_dir
            )
        return n

    # --- spooler: memory bound and disk spill -------------------------------------------
    def _path(self, seq: int) -> Path:
        return self.spill_dir / f"seg_{seq:09d}.npz"

    def _spool(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                while not self._stop.is_set() and not self._spool_work():
                    self._cond.wait(0.2)
                if self._stop.is_set():
                    return
                seg = self._incoming.popleft() if self._incoming else None
                to_memory = (
                    seg is not None and not self._disk and (len(self._memory) < self.memory_limit)
                )
                if to_memory:
                    self._memory.append(seg)
                    self._cond.notify_all()
                    continue
                refill = self._disk[0] if seg is None else None
            if seg is not None:
                self.labels.merge(seg)
                path = save_segment(seg, self._path(seg.seq))
                with self._cond:
                    self._disk.append(path)
                    self.spilled_total += 1
                    self._cond.notify_all()
                now = time.monotonic()
                if now - self._last_spill_log < SPILL_LOG_EVERY_S:
                    continue
                self._last_spill_log = now
                log.warning(
                    "%s; %d episodes buffered in memory, %d spilled to %s",
                    self._blocked_reason(),
                    len(self._memory),
                    len(self._disk),
                    self.spill_dir,
                )
            elif refill is not None:
                try:
                    loaded = load_segment(refill)
                except ValueError as err:
                    log.error("%s; moved aside, nothing else affected", err)
                    refill.rename(refill.with_suffix(".bad"))
                    loaded = None
                with self._cond:
                    self._disk.popleft()
                    if loaded is not None:
                        self._memory.append(loaded)
                        self._from_disk[loaded.seq] = refill
                    self._cond.notify_all()

    def _blocked_reason(self) -> str:
        if self.link.down_since is not None:
            return f"replay unreachable at {self.address}"
        if self.labels.down_since is not None:
            return "reward server unreachable (episodes wait for labels)"
        since = self.link.writing_since
        if since is not None and time.monotonic() - since > 0.5:
            return (
                f"replay at {self.address} has not confirmed a write for "
                f"{time.monotonic() - since:.1f} s (down, or holding inserts for the learner)"
            )
        return "delivery behind"

    def _spool_work(self) -> bool:
        if self._incoming:
            return True
        return bool(self._disk) and len(self._memory) < max(1, self.memory_limit // 2)

    # --- sender: labels, finalisation, sink ---------------------------------------------
    def _send(self) -> None:
        backoff = self.retry_s
        next_poll = time.monotonic() + self.marker_poll_s
        while not self._stop.is_set():
            with self._cond:
                while not self._memory and not self._stop.is_set() and time.monotonic() < next_poll:
                    self._cond.wait(0.2)
                if self._stop.is_set():
                    return
                seg = self._memory[0] if self._memory else None
            if seg is None:
                next_poll = time.monotonic() + self.marker_poll_s
                try:
                    self.link.poll()
                except Exception:  # a bug here must not stop delivery
                    log.exception("reading the replay marker failed")
                continue
            try:
                ok = self._deliver(seg)
            except Exception as err:
                self._reject(seg, err)
                ok = True
            if ok:
                backoff = self.retry_s
                with self._cond:
                    self._memory.popleft()
                    self._cond.notify_all()
                path = self._from_disk.pop(seg.seq, None)
                if path is not None:
                    path.unlink(missing_ok=True)
                self.labels.forget(seg)
            elif self.link.down_since or self.labels.down_since:
                self._stop.wait(backoff)
                backoff = min(MAX_BACKOFF_S, backoff * 2)
            else:
                self._stop.wait(0.02)  # labels still in flight

    def _deliver(self, seg: Segment) -> bool:
        episodes = self._finalized.get(seg.seq)
        if episodes is None:
            if not self.labels.complete(seg, self._backlog):
                return False
            episodes = finalize(seg, self.discount)
            assign_episode_ids(seg.meta, episodes)
            self._finalized[seg.seq] = episodes
            if self._on_finalized is not None:
                self._on_finalized(seg, episodes)
        if not self.link.write(seg, episodes):
            return False
        del self._finalized[seg.seq]
        self.delivered_segments += 1
        self.delivered_episodes += len(episodes)
        return True

    def _reject(self, seg: Segment, err: Exception) -> None:
        """An episode the sink refuses for good: keep it on disk, name it, go on."""
        self.rejected += 1
        self._finalized.pop(seg.seq, None)
        path = self.spill_dir / "rejected" / f"seg_{seg.seq:09d}.npz"
        save_segment(seg, path)
        log.error(
            "replay refused episode %d (%s, %d steps): %s; kept in %s",
            seg.seq,
            seg.task,
            len(seg),
            err,
            path,
        )
