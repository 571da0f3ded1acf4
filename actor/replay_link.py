"""The actor's link to replay: writes episodes, reconnects, and keeps the outbox in step.

:class:`ReplayLink` is used by the delivery queue's sender thread only. It opens the sink
lazily (and again after an unreachable server), writes the pieces of a segment not yet written
and, with an :class:`actor.outbox.Outbox` and a sink that reads the server's marker, records
every write there and writes again what a replay restart lost, before anything new.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from actor.episodes import Segment
from actor.outbox import Outbox
from robofume.types import Episode

log = logging.getLogger(__name__)


class EpisodeSink(Protocol):
    """What the actor needs from :class:`robofume.replay_client.writer.EpisodeWriter`."""

    def write(self, episode: Episode) -> None:
        """Insert one episode; raise ReplayUnavailableError when the server is unreachable."""


class MarkedSink(EpisodeSink, Protocol):
    """A sink that also reads the server's marker (epoch, checkpoints: ``replay_client.marker``)."""

    def read_marker(self) -> Any:
        """The server's current ``Marker``; raise ReplayUnavailableError when unreachable."""


def is_unavailable(err: BaseException) -> bool:
    """Unreachable-server errors are retried (``ReplayUnavailableError`` is a
    ConnectionError); anything else means the episode is refused."""
    return isinstance(err, (ConnectionError, TimeoutError))


class ReplayLink:
    """Writes to replay through a sink it (re)opens; says whether replay is reachable."""

    def __init__(
        self,
        sink_factory: Callable[[], EpisodeSink],
        outbox: Outbox | None,
        address: str,
        buffered: Callable[[], str],
    ):
        self._sink_factory = sink_factory
        self._sink: EpisodeSink | None = None
        self.outbox = outbox
        """Written episodes not yet in a replay checkpoint (None: forget them once written)."""
        self.address = address
        self._buffered = buffered
        """Says what the actor keeps meanwhile, for the warning."""
        self.down_since: float | None = None
        """When replay became unreachable (None while it answers)."""
        self.last_error = ""
        """Why replay is unreachable now ("" while it answers)."""
        self.writing_since: float | None = None
        """When the write in progress started (None between writes)."""

    def _marked(self) -> MarkedSink | None:
        """The sink, opened if needed, when there is an outbox and the sink reads markers."""
        if self._sink is None:
            self._sink = self._sink_factory()
        if self.outbox is None or not hasattr(self._sink, "read_marker"):
            return None
        return self._sink  # type: ignore[return-value]

    def write(self, seg: Segment, episodes: list[Episode]) -> bool:
        """Write the pieces of ``seg`` not yet written; False to retry later (unreachable)."""
        self.writing_since = time.monotonic()
        try:
            marked = self._marked()
            if marked is not None:
                self.outbox.resend_lost(marked)
            while seg.pieces_delivered < len(episodes):
                episode = episodes[seg.pieces_delivered]
                self._sink.write(episode)
                seg.pieces_delivered += 1
                if marked is not None:
                    self.outbox.add(episode)
                    self.outbox.observe_from(marked)
            if marked is not None and self.outbox.due:  # a restart showed after a write
                self.outbox.resend_lost(marked)
        except Exception as err:
            self.writing_since = None
            if not is_unavailable(err):
                raise
            self._sink = None  # reconnect on the next try
            # the warning goes out before the state says unreachable, so whoever sees the
            # state (status, tests) finds the warning in the log too
            log.warning("replay unreachable at %s (%s); %s", self.address, err, self._buffered())
            self.last_error = f"replay: {err}"
            if self.down_since is None:
                self.down_since = time.monotonic()
            return False
        self.writing_since = None
        self.last_error = ""
        if self.down_since is not None:
            log.info(
                "replay at %s reachable again after %.1f s; delivering the buffered episodes",
                self.address,
                time.monotonic() - self.down_since,
            )
            self.down_since = None
        return True

    def poll(self) -> None:
        """While idle: read the marker (drops covered episodes, notices a restart) and write
        again what a restart lost."""
        if self.outbox is None:
            return
        try:
            marked = self._marked()
            if marked is not None:
                self.outbox.resend_lost(marked)
        except Exception as err:
            if not is_unavailable(err):
                raise
            self._sink = None
            log.debug("replay marker not readable at %s (%s); retrying later", self.address, err)
