"""Simulation faster than real time with the UTD ratio held: the actor waits for the learner.

On the robot the world sets the pace (``env.control_hz``) and the actor never waits: when the
learner is slower than ``utd_ratio`` updates per step, the effective UTD drops and is reported
as it is. A simulated robot can step much faster than real time, and then what limits learning
is the learner. :class:`LearnerPace` lets a simulated actor run as fast as the learner keeps up
at the target ratio, and no faster.

The rule, on the ``online`` table's rate-limiter counters (read in the background, never on
the tick): the learner has consumed ``samples / samples_per_insert`` environment steps at the
UTD target, and the limiter lets it sample up to ``inserts - min_size_to_sample`` steps' worth
(it always stays ``min_size_to_sample`` steps behind). While more than ``lead_steps`` of those
are still unconsumed, the actor holds its tick. The learner then always has up to
``lead_steps`` of fresh data to work on, so it never waits for the actor, and the actor never
runs more than that ahead of it. Reverb's own limiter still stops the learner from going beyond
the target in the other direction.

The actor waits only on steps already in replay, which the learner consumes whatever the
actor does, so a wait always ends while the learner runs (and lasts while it is down: the
actor's state then says it waits for the learner). Episodes reach replay whole, when they
close and are labelled, so ``lead_steps`` of about two episodes keeps the learner busy while
the actor collects the next one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

POLL_S = 0.2
"""How often the replay counters are read."""


def steps_ahead(stats: dict[str, Any]) -> float:
    """Inserted environment steps the learner has not consumed at the UTD target yet."""
    spi = float(stats.get("samples_per_insert") or 0.0)
    if spi <= 0:
        return 0.0
    # the limiter lets the learner sample up to (inserts - min_size_to_sample) steps' worth
    usable = stats["inserts"] - float(stats.get("min_size_to_sample", 0))
    return usable - stats["samples"] / spi


class LearnerPace:
    """Background reader of replay's counters; :meth:`hold` says whether the actor must wait."""

    def __init__(
        self,
        read_stats: Callable[[], dict[str, Any]],
        lead_steps: int,
        poll_s: float = POLL_S,
    ):
        self.read_stats = read_stats
        self.lead_steps = int(lead_steps)
        self.poll_s = poll_s
        self.ahead = 0.0
        """Steps replay holds beyond what the learner consumed (the latest reading)."""
        self.waited_s = 0.0
        """Seconds the actor spent waiting for the learner."""
        self.reachable = True
        self._changed = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the reader -------------------------------------------------------------------------
    def read_once(self) -> None:
        try:
            ahead = steps_ahead(self.read_stats())
        except Exception as err:  # replay down: the delivery path reports it; do not hold
            if self.reachable:
                log.info("pace: replay counters unavailable (%s); not holding", err)
            self.reachable, self.ahead = False, 0.0
        else:
            self.reachable, self.ahead = True, ahead
        self._changed.set()

    def start(self) -> LearnerPace:
        def loop() -> None:
            while not self._stop.is_set():
                self.read_once()
                self._stop.wait(self.poll_s)

        self._thread = threading.Thread(target=loop, name="learner-pace", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._changed.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    # --- the actor's side -------------------------------------------------------------------
    def hold(self) -> bool:
        """True while replay holds more than ``lead_steps`` steps the learner has not used."""
        return self.reachable and self.ahead > self.lead_steps

    def wait(self, timeout_s: float) -> None:
        """Block until the next reading (at most ``timeout_s``); counted in ``waited_s``."""
        t0 = time.monotonic()
        self._changed.clear()
        self._changed.wait(timeout_s)
        self.waited_s += time.monotonic() - t0


def make_pace(cfg: Any) -> LearnerPace | None:
    """The pace of a simulated actor with ``actor.pace_to_learner``; None on the robot."""
    a = cfg.actor
    if cfg.env.kind != "sim" or not a.pace_to_learner or cfg.learner.utd_ratio <= 0:
        return None
    lead = a.pace_lead_steps or 2 * cfg.env.max_episode_steps
    from robofume.replay_client.info import stats_client, table_stats

    address = cfg.deploy.replay_address
    client: list[Any] = []

    def read() -> dict[str, Any]:
        if not client:
            client.append(stats_client(address))
        return table_stats(client[0], timeout_s=cfg.replay.rpc_timeout_s)

    return LearnerPace(read, lead)
