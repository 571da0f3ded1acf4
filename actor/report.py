"""TensorBoard scalars and the status heartbeat of one actor, written off the tick thread."""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from actor.episodes import Segment
from robofume import metrics as M
from robofume.status import write_status
from robofume.strips import episode_strip
from robofume.telemetry import HeadReporter, HeadSummaryWriter, TeeWriter
from robofume.types import Episode

log = logging.getLogger(__name__)


class Reporter:
    """Collects per-episode results (from the delivery thread) and periodic counters."""

    def __init__(
        self,
        name: str,
        run_dir: str | Path,
        snapshot: Callable[[], dict[str, Any]],
        every_s: float,
        tb_dir: str | Path | None = None,
        strip_every: int = 0,
        head: HeadReporter | None = None,
    ):
        """``head``: also send every heartbeat and summary to the head's registry (a machine
        that shares no disk with the head)."""
        self.name = name
        self.head = head
        self.run_dir = Path(run_dir)
        self.snapshot = snapshot
        self.every_s = every_s
        self.tb_dir = Path(tb_dir) if tb_dir else None
        self.strip_every = strip_every
        self._finalized = 0
        self._events: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self._recent: dict[str, deque[float]] = {}
        self._recent_predicted: dict[str, deque[float]] = {}
        self._recent_forward: deque[float] = deque(maxlen=20)
        self._confusion = np.zeros(4, dtype=np.int64)  # fp, negatives, fn, positives
        self._task_confusion: dict[str, np.ndarray] = {}  # + false successes, episodes
        self.episodes_delivered: dict[str, int] = {}
        self.gt_success: dict[str, list[int]] = {}
        self.false_successes = [0, 0]  # episodes ended on a false success, episodes judged
        self._writer: Any = None
        self._last: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="actor-report", daemon=True)

    def start(self) -> None:
        """Open TensorBoard and write the first heartbeat now, before the control loop runs
        (importing TensorBoard later would hold the interpreter during ticks)."""
        self.report()
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30.0)
        self.report()
        if self._writer is not None:
            self._writer.close()
        if self.head is not None:
            self.head.close()

    # --- called by the delivery thread when a segment's labels are complete -------------
    def on_finalized(self, seg: Segment, episodes: list[Episode]) -> None:
        main = episodes[0]
        event = {
            "task": seg.task,
            "step": seg.step_ids[-1] + 1,
            "length": len(main),
            "return": float(main.rewards.sum()),
            "predicted_success": bool(main.terminals[-1]),
            "pieces": len(episodes),
        }
        if seg.meta.get("ground_truth"):
            gt = np.asarray(seg.gt_success, bool)
            pred = np.asarray(seg.decisions) == 1.0
            event["gt_success"] = bool(gt.any())
            # ended on a predicted success that the simulator does not confirm at that frame
            event["false_success"] = bool(main.terminals[-1]) and not bool(gt[len(main) - 1])
            counts = [int((pred & ~gt).sum()), int((~gt).sum()), int((~pred & gt).sum()),
                      int(gt.sum())]  # fmt: skip
            self._confusion += counts
            per_task = self._task_confusion.setdefault(seg.task, np.zeros(6, dtype=np.int64))
            per_task += [*counts, int(event["false_success"]), 1]
        self._finalized += 1
        event["camera"] = np.asarray(seg.images[-1], np.uint8)
        if self.strip_every and self._finalized % self.strip_every == 0:
            event["strip"] = episode_strip(
                np.stack(seg.images),
                np.asarray(seg.probs),
                np.asarray(seg.decisions),
                np.asarray(seg.gt_success, bool) if seg.meta.get("ground_truth") else None,
            )
        self._events.put(event)

    # --- reporting thread ------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.report()
            except Exception:  # reporting must never take the actor down
                log.exception("actor report failed")

    def _tb(self) -> Any:
        if self._writer is None and (self.tb_dir is not None or self.head is not None):
            local = None
            if self.tb_dir is not None:
                from torch.utils.tensorboard import SummaryWriter

                self.tb_dir.mkdir(parents=True, exist_ok=True)
                local = SummaryWriter(str(self.tb_dir))
            remote = HeadSummaryWriter(self.head) if self.head is not None else None
            self._writer = TeeWriter(local, remote) if remote is not None else local
        return self._writer

    def report(self) -> dict[str, Any]:
        snap = self.snapshot()
        step = int(snap.get("env_steps", snap.get("steps", 0)))  # continues across restarts
        writer = self._tb()
        camera = None
        while True:
            try:
                ev = self._events.get_nowait()
            except queue.Empty:
                break
            task = ev["task"]
            self.episodes_delivered[task] = self.episodes_delivered.get(task, 0) + 1
            if writer is not None:
                writer.add_scalar(M.per_task(M.EPISODE_RETURN, task), ev["return"], ev["step"])
                writer.add_scalar(M.per_task(M.EPISODE_LENGTH, task), ev["length"], ev["step"])
                writer.add_scalar(M.EPISODE_RETURN, ev["return"], ev["step"])
                writer.add_scalar(M.EPISODE_LENGTH, ev["length"], ev["step"])
                if "strip" in ev:
                    tag = M.per_task(M.ACTOR_EPISODE_STRIP, task)
                    writer.add_image(tag, ev["strip"], ev["step"], dataformats="HWC")
            camera = (ev["camera"], ev["step"])
            predicted = self._recent_predicted.setdefault(task, deque(maxlen=20))
            predicted.append(float(ev["predicted_success"]))
            if writer is not None:
                step_ = ev["step"]
                writer.add_scalar(
                    M.per_task(M.PREDICTED_SUCCESS_RATE, task), np.mean(predicted), step_
                )
                writer.add_scalar(
                    M.per_task(M.EPISODES, task), self.episodes_delivered[task], step_
                )
            if "false_success" in ev:
                self.false_successes[0] += int(ev["false_success"])
                self.false_successes[1] += 1
            if "gt_success" in ev:
                recent = self._recent.setdefault(task, deque(maxlen=20))
                recent.append(float(ev["gt_success"]))
                counts = self.gt_success.setdefault(task, [0, 0])
                counts[0] += int(ev["gt_success"])
                counts[1] += 1
                if writer is not None:
                    writer.add_scalar(M.per_task(M.SUCCESS_RATE, task), np.mean(recent), ev["step"])
                    if task.endswith("_forward"):
                        self._recent_forward.append(float(ev["gt_success"]))
                        writer.add_scalar(
                            M.SUCCESS_RATE_ALL_FORWARD, np.mean(self._recent_forward), ev["step"]
                        )
        if writer is not None and camera is not None:
            writer.add_image(M.ACTOR_CAMERA, camera[0], camera[1], dataformats="HWC")
        fp, neg, fn, pos = (int(x) for x in self._confusion)
        snap["reward_model"] = {
            "false_positive_rate": fp / neg if neg else None,
            "false_negative_rate": fn / pos if pos else None,
            "transitions": neg + pos,
            "false_success_episode_fraction": (
                self.false_successes[0] / self.false_successes[1]
                if self.false_successes[1]
                else None
            ),
        }
        snap["reward_model"]["per_task"] = {
            task: {
                "false_positive_rate": int(c[0]) / int(c[1]) if c[1] else None,
                "false_negative_rate": int(c[2]) / int(c[3]) if c[3] else None,
                "false_success_episodes": int(c[4]),
                "episodes": int(c[5]),
            }
            for task, c in self._task_confusion.items()
        }
        snap["episodes_delivered"] = dict(self.episodes_delivered)
        snap["ground_truth_success"] = {
            t: {"successes": c[0], "episodes": c[1]} for t, c in self.gt_success.items()
        }
        if writer is not None:
            scalars = {
                M.ACTOR_STEPS_PER_SEC: snap.get("steps_per_sec"),
                M.ACTOR_TICK_JITTER_MS: snap.get("tick_jitter_p99_ms"),
                M.ACTOR_POLICY_LAG: snap.get("policy_lag"),
                M.ACTOR_POLICY_VERSION: snap.get("policy_version"),
                M.ACTOR_LABEL_LAG_STEPS: snap.get("label_lag_steps_mean"),
                M.ACTOR_INTERVENTIONS: snap.get("interventions"),
                M.ACTOR_HUMAN_RESETS: snap.get("human_resets"),
                M.ACTOR_WEIGHTS_REFUSED: sum((snap.get("weights_refusals") or {}).values()),
                M.ACTOR_PENDING_EPISODES: snap.get("pending_episodes"),
                M.ACTOR_RETAINED_EPISODES: snap.get("retained_episodes"),
                M.ACTOR_REDELIVERED_EPISODES: snap.get("redelivered_episodes"),
                M.ACTOR_REPLAY_RESTARTS: snap.get("replay_restarts_seen"),
                M.REWARD_FALSE_POSITIVE_RATE: snap["reward_model"]["false_positive_rate"],
                M.REWARD_FALSE_NEGATIVE_RATE: snap["reward_model"]["false_negative_rate"],
                M.REWARD_FALSE_SUCCESS_EPISODES: snap["reward_model"][
                    "false_success_episode_fraction"
                ],
            }
            for tag, value in scalars.items():
                if value is not None:
                    writer.add_scalar(tag, float(value), step)
            writer.flush()
        if self.head is not None:
            snap["head"] = {
                "address": self.head.client.address,
                "reachable": not self.head.last_error,
                "reports_sent": self.head.sent,
                "reports_dropped": self.head.dropped,
            }
        write_status(self.run_dir, self.name, snap)
        if self.head is not None:
            self.head.heartbeat({"pid": os.getpid(), "host": socket.gethostname(), **snap,
                                 "time": time.time()})  # fmt: skip
        if writer is not None and (self._last or {}).get("state") != snap.get("state"):
            writer.add_text(M.ACTOR_STATE, f"{snap.get('state')} (at env step {step})", step)
            writer.flush()
        self._last = snap
        return snap

    @property
    def last(self) -> dict[str, Any] | None:
        return self._last
