"""TensorBoard scalars of a serving replica: request latency and dynamic batch size.

A daemon thread samples the server's counters every ``every_s`` seconds and writes, for that
interval, the mean and p99 request latency (``reward/latency_ms``) and the mean frames per
model call (``reward/batch_size``) under ``<run_dir>/tb/reward_<port>``.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from robofume import metrics as tags


class ServerTelemetry:
    """Periodic TensorBoard logging of a :class:`reward_server.server.RewardServer`."""

    def __init__(self, server: Any, log_dir: str | Path, every_s: float = 10.0):
        from robofume.telemetry import dashboard_writer

        self.server = server
        self.every_s = every_s
        self.writer = dashboard_writer(log_dir)
        self._stop = threading.Event()
        self._last = (0, 0, 0)  # requests, batches, frames
        self._start = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="reward-telemetry", daemon=True)
        self._thread.start()

    def sample(self, step: int) -> dict[str, float]:
        """Write one interval's scalars; returns them (empty when nothing was served)."""
        srv = self.server
        requests, batches, frames = srv.requests, srv.batcher.batches, srv.batcher.frames
        new_requests = requests - self._last[0]
        new_batches = batches - self._last[1]
        new_frames = frames - self._last[2]
        self._last = (requests, batches, frames)
        out: dict[str, float] = {}
        recent = list(srv.latency_ms)[-new_requests:] if new_requests > 0 else []
        if recent:
            out[tags.REWARD_LATENCY_MS] = float(np.mean(recent))
            out[f"{tags.REWARD_LATENCY_MS}_p99"] = float(np.percentile(recent, 99))
        if new_batches > 0:
            out[tags.REWARD_BATCH_SIZE] = new_frames / new_batches
        for tag, value in out.items():
            self.writer.add_scalar(tag, value, step)
        if out:
            self.writer.flush()
        return out

    def _elapsed(self) -> int:
        return int(time.monotonic() - self._start)

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.sample(self._elapsed())

    def close(self) -> None:
        """Stop sampling, write the last interval, close the event file."""
        self._stop.set()
        self._thread.join(timeout=5)
        self.sample(self._elapsed())
        self.writer.close()
