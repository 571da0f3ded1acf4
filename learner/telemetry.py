"""What the online learner tells the dashboard and `robofume status`.

TensorBoard (``<run_dir>/tb/learner``): the update's losses every ``learner.log_every``
updates, the learner's rates (updates/s, the fraction of time it waited for data), the
effective UTD ratio against its target, the replay table's size and insert rate, and the
sampler's state as text whenever it changes ("waiting for data" shows as words, not as a gap).

Heartbeat (``<run_dir>/status/learner.json``, every few seconds): the same counters, plus the
checkpoint, the published policy version and what the sampler dropped.

It also watches the replay table for items lost without a restart (a wipe or a reset).
"""

from __future__ import annotations

import logging
import re
import time
from collections import deque
from pathlib import Path
from typing import Any

from robofume import metrics as tags
from robofume.config import ExperimentConfig
from robofume.run_dir import RunDir

log = logging.getLogger(__name__)

RATE_WINDOW_BEATS = 7
"""Heartbeats over which the learner's rate is computed (30 s at a 5 s heartbeat)."""


class LearnerTelemetry:
    """TensorBoard scalars, the heartbeat and the replay watch of one online learner.

    ``sampler`` is read only: its state and what it dropped (duplicates, forgeries).
    """

    def __init__(self, cfg: ExperimentConfig, address: str, sampler: Any, metric_tags: dict):
        from robofume.auth import deployment_secret
        from robofume.replay_client.info import stats_client

        self.cfg = cfg
        self.address = address
        self.sampler = sampler
        self.metric_tags = metric_tags
        self._stats_client = stats_client(address)
        self._secret = deployment_secret(cfg.deploy)
        self._tb: Any = None
        self._replay: dict[str, Any] = {}
        self._beats: deque[tuple[float, int]] = deque(maxlen=RATE_WINDOW_BEATS)
        self._deleted_seen = 0
        self._last_state = ""
        self.replay_wipes = 0
        """Times the replay table lost items that no restart or own deletion explains."""
        self.last_replay_wipe = ""
        self.rates = {"updates_per_sec": 0.0, "inserts_per_sec": 0.0, "wait_fraction": 0.0}

    # --- replay ---------------------------------------------------------------------------
    def _replay_stats(self) -> dict[str, Any]:
        from robofume.replay_client.errors import ReplayConfigMismatchError, ReplayUnavailableError
        from robofume.replay_client.info import table_stats
        from robofume.replay_client.marker import read_marker

        timeout = self.cfg.replay.rpc_timeout_s
        try:
            stats = table_stats(self._stats_client, timeout_s=timeout)
            stats["epoch"] = read_marker(
                self._stats_client, timeout, self.address, self._secret
            ).epoch
        except (ReplayUnavailableError, ReplayConfigMismatchError) as err:
            log.warning("replay stats unavailable: %s", err)
            return {}
        return stats

    def _check_shrink(self, stats: dict[str, Any]) -> None:
        """Report a replay table that lost items without a restart (a reset or a wipe)."""
        from robofume.replay_client.info import unexplained_shrink

        deleted = self.sampler.duplicates_deleted + self.sampler.forged_dropped
        why = unexplained_shrink(self._replay, stats, deleted - self._deleted_seen)
        self._deleted_seen = deleted
        if why:
            self.replay_wipes += 1
            self.last_replay_wipe = why
            log.error("%s", why)

    def utd_ratio(self, online_updates: int) -> float:
        """Effective UTD: online updates per transition inserted into replay."""
        inserts = self._replay.get("inserts", 0)
        return online_updates / inserts if inserts else 0.0

    # --- TensorBoard ----------------------------------------------------------------------
    def writer(self, step: int) -> Any:
        if self._tb is None:
            from robofume.telemetry import dashboard_writer

            log_dir = RunDir.of(self.cfg).tb("learner")
            self._tb = dashboard_writer(log_dir, purge_step=step or None)
        return self._tb

    def record(
        self, values: dict[str, float], step: int, online_updates: int, window: dict
    ) -> None:
        """Losses and rates at update ``step``; ``window`` (t, updates, waited) since the last
        record is read and restarted."""
        now = time.perf_counter()
        dt = max(now - window["t"], 1e-9)
        self.rates["updates_per_sec"] = (online_updates - window["updates"]) / dt
        self.rates["wait_fraction"] = min(1.0, window["waited"] / dt)
        stats = self._replay_stats()
        self._check_shrink(stats)
        if stats and self._replay:
            inserted = stats["inserts"] - self._replay.get("inserts", 0)
            self.rates["inserts_per_sec"] = max(0, inserted) / dt
        self._replay = stats or self._replay
        window.update(t=now, updates=online_updates, waited=0.0)
        tb = self.writer(step)
        for key, value in values.items():
            tb.add_scalar(self.metric_tags.get(key, f"losses/{key}"), value, step)
        tb.add_scalar(tags.LEARNER_UPDATES_PER_SEC, self.rates["updates_per_sec"], step)
        tb.add_scalar(tags.LEARNER_STEP, step, step)
        tb.add_scalar(tags.LEARNER_WAIT_FRACTION, self.rates["wait_fraction"], step)
        if self._replay:
            tb.add_scalar(tags.LEARNER_UTD_RATIO, self.utd_ratio(online_updates), step)
            tb.add_scalar(tags.HEADLINE_UTD_TARGET, self.cfg.learner.utd_ratio, step)
            tb.add_scalar(tags.REPLAY_SIZE, self._replay["size"], step)
            tb.add_scalar(tags.REPLAY_INSERTS_PER_SEC, self.rates["inserts_per_sec"], step)
        tb.flush()

    # --- heartbeat ------------------------------------------------------------------------
    def heartbeat(
        self,
        step: int,
        online_updates: int,
        published: int | None,
        checkpoint: Path | None,
        device: str,
    ) -> None:
        from robofume.status import window_rate, write_status

        # over the last RATE_WINDOW_BEATS heartbeats, so an idle learner shows 0, not its last burst
        rate = window_rate(self._beats, time.monotonic(), online_updates)
        state = self.sampler.state
        kind = re.sub(r"\d+", "#", state)  # "no samples for 12 s" and "... 17 s" are one state
        if kind != self._last_state:
            self._last_state = kind
            tb = self.writer(step)
            tb.add_text(tags.LEARNER_STATE, f"{state} (at update {step})", step)
            tb.flush()
        try:
            write_status(
                self.cfg.deploy.run_dir,
                "learner",
                {
                    "step": step,
                    "online_updates": online_updates,
                    "policy_version": published,
                    "utd_ratio": round(self.utd_ratio(online_updates), 4),
                    "utd_target": self.cfg.learner.utd_ratio,
                    "updates_per_sec": round(rate if rate is not None else 0.0, 3),
                    "wait_fraction": round(self.rates["wait_fraction"], 3),
                    "sampler": state,
                    "replay_address": self.address,
                    "replay_size": self._replay.get("size"),
                    "replay_duplicates_dropped": self.sampler.duplicates_dropped,
                    "replay_forged_dropped": self.sampler.forged_dropped,
                    "replay_wipes": self.replay_wipes,
                    "last_replay_wipe": self.last_replay_wipe,
                    "checkpoint": str(checkpoint) if checkpoint else None,
                    "device": device,
                },
            )
        except OSError as err:
            log.warning("learner heartbeat not written: %s", err)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None
