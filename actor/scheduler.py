"""A monotonic deadline scheduler for the control tick, recording jitter."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

import numpy as np


class TickScheduler:
    """Fixed-rate ticks on absolute deadlines (``t0 + k * period``), never drifting.

    :meth:`wait` sleeps until the next deadline and returns how late the tick starts (its
    jitter). When a tick's work overruns a whole period, the missed deadlines are skipped
    (no burst of catch-up ticks) and counted in :attr:`overruns`. ``hz <= 0`` ticks as fast as
    possible (jitter 0), for throughput tests.
    """

    def __init__(
        self,
        hz: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] | None = None,
        window: int = 10_000,
    ):
        self.period = 1.0 / hz if hz > 0 else 0.0
        self._clock = clock
        self._sleep = sleep
        self._wake = threading.Event()
        self._next: float | None = None
        self.ticks = 0
        self.overruns = 0
        self.jitter_s: deque[float] = deque(maxlen=window)
        """Lateness of recent tick starts (seconds)."""

    def wake(self) -> None:
        """Cut the current wait short (the actor is stopping); the tick grid is unchanged."""
        self._wake.set()

    def wait(self) -> float:
        """Block until the next deadline; return the tick's lateness in seconds."""
        now = self._clock()
        if self._next is None or self.period == 0.0:
            self._next = now
        delay = self._next - now
        if delay > 0:
            if self._sleep is not None:
                self._sleep(delay)
            elif self._wake.wait(delay):
                self._wake.clear()
                return 0.0
            now = self._clock()
        late = max(0.0, now - self._next)
        self._next += self.period
        if self.period and now >= self._next:
            missed = math.floor((now - self._next) / self.period) + 1
            self._next += missed * self.period
            self.overruns += 1
        self.ticks += 1
        self.jitter_s.append(late)
        return late

    def jitter_ms(self, q: float = 99.0, last: int | None = None) -> float:
        """Percentile ``q`` of recent tick lateness in milliseconds (0 when no ticks yet)."""
        values = list(self.jitter_s)[-last:] if last else list(self.jitter_s)
        if not values:
            return 0.0
        return float(np.percentile(np.asarray(values) * 1e3, q))
