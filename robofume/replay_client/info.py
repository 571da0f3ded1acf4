"""Table statistics of a replay server (for metrics, heartbeats and ``robofume status``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from robofume.replay_client.errors import ReplayUnavailableError
from robofume.replay_client.tables import ONLINE_TABLE, WEIGHTS_TABLE


def run_with_deadline(fn: Callable[[], Any], timeout_s: float, name: str) -> Any:
    """``fn()`` in a helper thread, so a hung Reverb stream cannot block the caller past
    ``timeout_s`` (+1 s): raises TimeoutError then, and whatever ``fn`` raised otherwise."""
    future: Future = Future()

    def target() -> None:
        try:
            future.set_result(fn())
        except BaseException as err:
            future.set_exception(err)

    threading.Thread(target=target, name=name, daemon=True).start()
    return future.result(timeout=timeout_s + 1.0)


RECONNECT_WAITS_S = (0.25, 1.25)
"""Pauses before the second and third ``server_info`` try: gRPC waits about 1 s (its initial
reconnect backoff) before it dials an address again whose last connection failed."""


def server_info(client: Any, timeout_s: float) -> dict[str, Any]:
    """``client.server_info`` with a deadline, tried up to three times.

    The later tries cover the first call after a server (re)started on a port that this
    process last saw closed: gRPC may send it down the old connection ("Socket closed") or
    still be backing off from the failed one ("connections to all backends failing"). Errors
    propagate as raised by Reverb (DeadlineExceededError, RuntimeError).
    """
    deadline = max(1, round(timeout_s))
    for wait in RECONNECT_WAITS_S:
        try:
            return client.server_info(timeout=deadline)
        except RuntimeError:
            time.sleep(wait)
    return client.server_info(timeout=deadline)


def table_stats(client: Any, timeout_s: float = 10.0) -> dict[str, Any]:
    """Counters of the ``online`` and ``policy_weights`` tables.

    ``size``/``max_size``: items in ``online``; ``inserts``/``samples``: items inserted into and
    sampled from ``online`` (rate-limiter counters, restored with a checkpoint); ``episodes``:
    trajectories that added items; ``samples_per_insert``: the UTD target in samples;
    ``weights_published``: inserts into ``policy_weights``.
    Raises ReplayUnavailableError when the server does not answer within ``timeout_s``.
    """
    try:
        infos = server_info(client, timeout_s)
    except Exception as err:
        raise ReplayUnavailableError(
            f"replay server at {client.server_address} unreachable: {err}"
        ) from err
    online = infos[ONLINE_TABLE]
    limiter = online.rate_limiter_info
    out = {
        "size": int(online.current_size),
        "max_size": int(online.max_size),
        "inserts": int(limiter.insert_stats.completed),
        "samples": int(limiter.sample_stats.completed),
        "episodes": int(online.num_episodes),
        "samples_per_insert": float(limiter.samples_per_insert),
        "min_size_to_sample": int(limiter.min_size_to_sample),
    }
    weights = infos.get(WEIGHTS_TABLE)
    if weights is not None:
        out["weights_published"] = int(weights.rate_limiter_info.insert_stats.completed)
    return out


def unexplained_shrink(prev: dict[str, Any], now: dict[str, Any], deleted: int) -> str | None:
    """Why ``online`` lost items between two :func:`table_stats` (with ``epoch``), or None.

    In normal operation the table never shrinks: FIFO eviction keeps it at ``max_size`` and a
    restart (a new epoch) restores a checkpoint. What else shrinks it is a reset or deletes by
    someone else (``deleted``: items this process deleted itself, duplicates and forgeries).
    """
    if not prev or not now:
        return None
    if now.get("epoch", 0) < prev.get("epoch", 0):  # epochs are start times: played back
        return (
            f"replay marker went back from epoch {prev['epoch']} to {now['epoch']} (a recorded "
            f"marker played back) while table '{ONLINE_TABLE}' went from {prev['size']} to "
            f"{now['size']} items"
        )
    if prev.get("epoch") != now.get("epoch"):
        return None
    lost = prev["size"] - now["size"] - deleted
    if lost <= max(8, 0.05 * prev["size"]):
        return None
    return (
        f"replay table '{ONLINE_TABLE}' shrank from {prev['size']} to {now['size']} items "
        f"without a server restart ({lost} items unexplained): it was reset or items were "
        "deleted by another client; the actors keep what a checkpoint does not hold yet, but "
        "what the table held before is gone"
    )


def stats_client(address: str) -> Any:
    """A client for :func:`table_stats` and ``marker.read_marker`` (the learner and the
    status command never import Reverb themselves)."""
    import reverb

    return reverb.Client(address)


def stats_at(address: str, timeout_s: float = 10.0) -> dict[str, Any]:
    """:func:`table_stats` of the server at ``address`` (host:port)."""
    import reverb

    return table_stats(reverb.Client(address), timeout_s)
