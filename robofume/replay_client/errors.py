"""Errors raised by the replay clients (importable without TensorFlow or Reverb)."""

from __future__ import annotations


class ReplayUnavailableError(ConnectionError):
    """The replay server cannot be reached (or did not answer within the deadline).

    Retrying later is the right reaction: nothing was counted as written. The actor keeps the
    episode and writes it again once the server is back.
    """


class EpisodeRejectedError(ValueError):
    """An episode does not fit the replay table (shape, dtype, task, non-finite values).

    Retrying does not help; the message names the episode, the key and the shapes.
    """


class ReplayConfigMismatchError(ValueError):
    """The server's table signature differs from what this process' config expects."""


class ReplayMarkerForgedError(ReplayUnavailableError):
    """The replay marker does not carry the authenticator of this deployment's secret: someone
    other than the replay server wrote it. It is ignored, as if unreadable (nothing an actor
    keeps is forgotten for it, and no restart is assumed from it)."""
