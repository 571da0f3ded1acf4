"""Asynchronous success labels from the reward server, keyed by step id.

The tick thread calls :meth:`LabelTracker.submit` with the new frame of each step and never
waits; the reward client's future completes on its own thread, and the result is filed under
the step id. The tick thread drains returned labels at the start of the next tick (to decide
whether the episode succeeded); the delivery thread takes the labels of closed segments and
asks again, synchronously and with back-off, for the ones that never came back.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

log = logging.getLogger(__name__)


class Labeller(Protocol):
    """What the actor needs from :class:`robofume.reward_client.RewardClient`."""

    def score(self, frames: np.ndarray, task: str) -> Any:
        """Blocking: ``frames`` uint8 (N,H,W,3) -> result with ``probs``, ``decisions``,
        ``version``."""

    def score_async(self, frames: np.ndarray, task: str) -> Future:
        """Non-blocking: a future of the same result."""


@dataclass(frozen=True)
class Label:
    step_id: int
    prob: float
    decision: bool
    version: str
    lag_steps: int
    """Steps the actor took between producing the frame and the label returning."""


class LabelTracker:
    """Files labels under step ids; knows which are in flight and whether the server answers."""

    def __init__(self, labeller: Labeller, step_clock: Callable[[], int]):
        self._labeller = labeller
        self._step_clock = step_clock
        self._lock = threading.Lock()
        self._results: dict[int, Label] = {}
        self._pending: dict[int, float] = {}
        """Step id -> time.monotonic() of the request."""
        self._ready: queue.SimpleQueue[Label] = queue.SimpleQueue()
        self.lags: deque[int] = deque(maxlen=10_000)
        self.latency_ms: deque[float] = deque(maxlen=10_000)
        """Request-to-label time of recent labels (milliseconds)."""
        self.failures = 0
        self.consecutive_failures = 0
        self.last_error = ""
        self.probe_pending = False

    # --- health -------------------------------------------------------------------------
    @property
    def reachable(self) -> bool:
        """False after a failed call until the next successful one."""
        return self.consecutive_failures == 0

    def _ok(self) -> None:
        if self.consecutive_failures:
            log.info("reward server reachable again after %d failed calls", self.failures)
        self.consecutive_failures = 0
        self.last_error = ""  # a stale error would outlive the recovery in status

    def _fail(self, err: BaseException) -> None:
        self.failures += 1
        self.consecutive_failures += 1
        self.last_error = f"{type(err).__name__}: {err}"
        if self.consecutive_failures == 1:
            log.warning("reward server call failed (%s); labels will be requested again", err)

    # --- tick thread ----------------------------------------------------------------------
    def submit(self, step_id: int, image: np.ndarray, task: str) -> None:
        """Ask for the label of the frame produced by step ``step_id``; never blocks."""
        with self._lock:
            self._pending[step_id] = time.monotonic()
        try:
            future = self._labeller.score_async(image[None], task)
        except Exception as err:  # a client that fails fast (channel closed, bad address)
            with self._lock:
                self._pending.pop(step_id, None)
            self._fail(err)
            return
        future.add_done_callback(lambda f, s=step_id: self._done(s, f))

    def probe(self, image: np.ndarray, task: str) -> None:
        """While holding, check (without blocking) whether the reward server answers again."""
        if self.probe_pending:
            return
        self.probe_pending = True

        def done(f: Future) -> None:
            self.probe_pending = False
            if f.exception() is None:
                self._ok()
            else:
                self._fail(f.exception())

        try:
            self._labeller.score_async(image[None], task).add_done_callback(done)
        except Exception as err:
            self.probe_pending = False
            self._fail(err)

    def _done(self, step_id: int, future: Future) -> None:
        err = future.exception()
        if err is not None:
            with self._lock:
                self._pending.pop(step_id, None)
            self._fail(err)
            return
        result = future.result()
        lag = max(0, self._step_clock() - (step_id + 1))
        label = Label(
            step_id,
            float(result.probs[0]),
            bool(result.decisions[0]),
            str(getattr(result, "version", "")),
            lag,
        )
        with self._lock:
            asked = self._pending.pop(step_id, None)
            self._results[step_id] = label
        self.lags.append(lag)
        if asked is not None:
            self.latency_ms.append(1e3 * (time.monotonic() - asked))
        self._ok()
        self._ready.put(label)

    def drain(self) -> list[Label]:
        """Labels returned since the last call (tick thread; non-blocking)."""
        out = []
        while True:
            try:
                out.append(self._ready.get_nowait())
            except queue.Empty:
                return out

    # --- delivery thread ------------------------------------------------------------------
    def lookup(self, step_ids: list[int]) -> tuple[dict[int, Label], int]:
        """Returned labels among ``step_ids`` and how many of the others are still in flight."""
        with self._lock:
            found = {s: self._results[s] for s in step_ids if s in self._results}
            pending = sum(1 for s in step_ids if s in self._pending)
        return found, pending

    def forget(self, step_ids: list[int]) -> None:
        """Drop the labels of a delivered segment."""
        with self._lock:
            for s in step_ids:
                self._results.pop(s, None)
                self._pending.pop(s, None)

    def relabel(self, frames: np.ndarray, task: str, step_ids: list[int]) -> list[Label]:
        """Blocking request for frames whose labels never arrived; raises when unreachable."""
        start = time.monotonic()
        try:
            result = self._labeller.score(frames, task)
        except Exception as err:
            self._fail(err)
            raise
        self._ok()
        now = self._step_clock()
        labels = [
            Label(
                s,
                float(p),
                bool(d),
                str(getattr(result, "version", "")),
                max(0, now - (s + 1)),
            )
            for s, p, d in zip(step_ids, result.probs, result.decisions, strict=True)
        ]
        self.lags.extend(label.lag_steps for label in labels)
        log.debug("relabelled %d frames in %.0f ms", len(labels), 1e3 * (time.monotonic() - start))
        return labels
