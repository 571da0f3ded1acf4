"""Label completion: every step of a closed segment gets its reward label before delivery.

Labels requested while the robot acted arrive through the :class:`actor.labels.LabelTracker`.
A closed segment waits for the ones still in flight for at most ``label_wait_s``; the steps
whose label never arrived (a reply lost, a replica that died) are scored again in one batch.
While the reward server cannot label, the segment is not delivered: it waits, and the caller
retries later. Nothing here touches replay.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np

from actor.episodes import Segment
from actor.labels import LabelTracker

log = logging.getLogger(__name__)


class LabelCompletion:
    """Fills a segment's labels from the tracker, asking again for the missing ones."""

    def __init__(self, tracker: LabelTracker | None, label_wait_s: float):
        self.tracker = tracker
        self.label_wait_s = label_wait_s
        self.down_since: float | None = None
        """When the reward server last failed to label (None: it answers)."""
        self.last_error = ""

    def merge(self, seg: Segment) -> int:
        """Copy returned labels into ``seg``; returns how many are still in flight."""
        missing = seg.missing()
        if not missing or self.tracker is None:
            return 0
        found, pending = self.tracker.lookup([seg.step_ids[i] for i in missing])
        for i in missing:
            label = found.get(seg.step_ids[i])
            if label is not None:
                seg.set_label(i, label.prob, label.decision)
        return pending

    def complete(self, seg: Segment, backlog: Callable[[], str]) -> bool:
        """Make sure every step of ``seg`` has a label; False to retry later.

        ``backlog`` describes what waits behind this segment, for the warning when the reward
        server cannot label.
        """
        pending = self.merge(seg)
        missing = seg.missing()
        if not missing:
            return True
        waited = time.monotonic() - seg.closed_at if seg.closed_at else float("inf")
        if pending and waited < self.label_wait_s:
            return False
        if self.tracker is None:
            raise RuntimeError(f"segment {seg.seq} has no labels and no reward client")
        frames = np.stack([seg.images[i + 1] for i in missing])
        ids = [seg.step_ids[i] for i in missing]
        try:
            labels = self.tracker.relabel(frames, seg.task, ids)
        except Exception as err:
            if self.down_since is None:
                self.down_since = time.monotonic()
            self.last_error = f"reward: {err}"
            what = (
                f"reward server refused to label task {seg.task!r} ({err}); fix the config"
                if isinstance(err, ValueError)  # INVALID_ARGUMENT: retrying alone will not help
                else f"reward server unreachable ({err})"
            )
            log.warning("%s; %s", what, backlog())
            return False
        for i, label in zip(missing, labels, strict=True):
            seg.set_label(i, label.prob, label.decision)
        if self.down_since is not None:
            log.info("reward server answers again; labelling the buffered episodes")
            self.down_since = None
        self.last_error = ""  # status shows what is wrong now, not what was
        return True

    def forget(self, seg: Segment) -> None:
        """The segment is delivered: its labels are no longer needed."""
        if self.tracker is not None:
            self.tracker.forget(seg.step_ids)
