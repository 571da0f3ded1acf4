"""The actor's writer: one closed episode -> one Reverb trajectory with one item per step.

Usage (actor side)::

    from robofume.replay_client.writer import EpisodeWriter
    from robofume.replay_client.errors import ReplayUnavailableError, EpisodeRejectedError

    writer = EpisodeWriter(cfg.deploy.replay_address, cfg)
    try:
        n = writer.write(episode)          # blocks until the server confirmed every item
    except ReplayUnavailableError:         # server down / no answer: keep it, retry later
        ...
    except EpisodeRejectedError:           # malformed episode: retrying will not help
        ...

``EpisodeWriter(address, cfg=None, *, timeout_s=None, flush_every=None, max_wait_s=None)``:
``address`` is ``host:port`` of the replay server; ``cfg`` (an ExperimentConfig) supplies the
discount for missing Monte-Carlo returns and the defaults of ``timeout_s``
(``replay.rpc_timeout_s``) and ``flush_every`` (``replay.flush_every``). Thread-safe (one
write at a time).

What is written: the episode's ``rewards`` and ``terminals`` as they are (the actor derives
them from the reward model's labels), ``mc_returns`` (computed with ``learner.discount`` when
missing), ``task_index(episode.task)``, and per step its ``episode_id`` and ``step`` index.
The episode id is ``episode.meta["replay_episode_id"]``; an episode without one gets a random
63-bit id there on its first write, so writing the same Episode again (a redelivery after a
replay restart) reuses it and the learner's sampler can recognise the copy.
:meth:`EpisodeWriter.read_marker` reads the server's epoch and checkpoint marker
(``robofume.replay_client.marker``). See ``robofume.replay_client.tables`` for the item layout: each
frame is stored once, item t references steps t and t+1 of the episode's own trajectory.

Semantics of :meth:`EpisodeWriter.write`:

* Everything is validated before the first byte is sent, against the table signature the
  server reports: a malformed episode raises ``EpisodeRejectedError`` naming episode, key and
  shapes, and nothing is written.
* It returns only after every item is confirmed by the server (flushes every ``flush_every``
  items, then ``end_episode``). A successful return is the only point at which the episode
  counts as delivered.
* ``ReplayUnavailableError`` (a ``ConnectionError``) is raised when the server cannot be
  reached or stops answering within ``timeout_s``; the writer is then discarded and the
  episode should be retried as a whole. Delivery is at-least-once: if the connection breaks
  in the middle of an episode, the items the server had already confirmed stay in the table
  and the retry writes them again (bounded to that one episode). The usual failures (server
  down before the write, server restarted from its checkpoint) duplicate nothing.
* While the server is reachable but the UTD rate limiter holds inserts back (the actors are
  ``replay.insert_lead_steps`` ahead of the learner), ``write`` waits: that is the
  back-pressure the limiter exists for. With ``max_wait_s`` it gives up after that long with
  ``ReplayUnavailableError`` (the episode may then be partly in the table, see above).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from robofume.auth import transition_macs
from robofume.replay_client.errors import (
    EpisodeRejectedError,
    ReplayConfigMismatchError,
    ReplayUnavailableError,
)
from robofume.replay_client.info import server_info
from robofume.replay_client.marker import Marker, read_marker
from robofume.replay_client.tables import (
    OBS_COLUMNS,
    ONLINE_TABLE,
    STEP_COLUMNS,
    signature_to_spec,
    transition_spec,
)

if TYPE_CHECKING:
    from robofume.config import ExperimentConfig
    from robofume.types import Episode

log = logging.getLogger(__name__)

EPISODE_ID_META = "replay_episode_id"
"""``Episode.meta`` key of the id its transitions carry in replay (given on the first write)."""

TRANSITION_COLUMNS = tuple(c for c in STEP_COLUMNS if c not in OBS_COLUMNS)
"""Per-transition columns of a trajectory step (empty at the last step of an episode)."""


def episode_id(episode: Episode) -> int:
    """The episode's replay id, given (random, 63 bits, never 0) on first use."""
    value = episode.meta.get(EPISODE_ID_META)
    if value is None:
        value = secrets.randbits(63) or 1
        episode.meta[EPISODE_ID_META] = value
    return int(value)


class EpisodeWriter:
    """Writes closed episodes to the ``online`` table of the replay server at ``address``."""

    def __init__(
        self,
        address: str,
        cfg: ExperimentConfig | None = None,
        *,
        timeout_s: float | None = None,
        flush_every: int | None = None,
        max_wait_s: float | None = None,
        secret: bytes | None = None,
    ):
        import reverb

        from robofume.auth import deployment_secret

        if secret is None and cfg is None:
            raise ValueError(
                "EpisodeWriter needs the deployment secret (secret=..., or a config to read "
                "it from): the learner drops transitions that are not signed with it"
            )
        self._secret = secret if secret is not None else deployment_secret(cfg.deploy)
        self.address = address
        self.cfg = cfg
        from robofume.tasks import SIM_TASKS, task_table

        self._tasks = task_table(cfg) if cfg is not None else SIM_TASKS
        self.timeout_s = float(
            timeout_s if timeout_s is not None else (cfg.replay.rpc_timeout_s if cfg else 10.0)
        )
        self.flush_every = max(1, int(flush_every or (cfg.replay.flush_every if cfg else 32)))
        self.discount = cfg.learner.discount if cfg else None
        self.max_wait_s = max_wait_s
        self._client = reverb.Client(address)
        self._lock = threading.Lock()
        self.episodes_written = 0
        self.transitions_written = 0

    # -- public -------------------------------------------------------------------------------
    def write(self, episode: Episode) -> int:
        """Write one closed episode; returns the number of transitions (items) written."""
        with self._lock:
            spec = self._server_spec()
            steps = self._columns(episode, spec)
            n = self._send(steps)
            self.episodes_written += 1
            self.transitions_written += n
            return n

    def read_marker(self) -> Marker:
        """The server's epoch and checkpoint marker (see ``robofume.replay_client.marker``); raises
        ReplayUnavailableError when it does not answer (or is still starting)."""
        return read_marker(self._client, self.timeout_s, self.address, self._secret)

    def close(self) -> None:
        """Nothing is held between writes; kept for symmetry with the other clients."""

    def __enter__(self) -> EpisodeWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- checks -------------------------------------------------------------------------------
    def _server_spec(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        try:
            infos = server_info(self._client, self.timeout_s)
        except Exception as err:
            raise ReplayUnavailableError(
                f"replay server at {self.address} unreachable: {err}"
            ) from err
        if ONLINE_TABLE not in infos or infos[ONLINE_TABLE].signature is None:
            raise ReplayConfigMismatchError(
                f"server at {self.address} has no '{ONLINE_TABLE}' table with a signature; "
                f"tables: {sorted(infos)}"
            )
        spec = signature_to_spec(infos[ONLINE_TABLE].signature)
        if self.cfg is not None:
            mine = transition_spec(self.cfg)
            diff = {k: (spec.get(k), mine[k]) for k in mine if spec.get(k) != mine[k]}
            if diff:
                detail = "; ".join(f"{k}: server {s}, config {m}" for k, (s, m) in diff.items())
                raise ReplayConfigMismatchError(
                    f"replay server at {self.address} was started with another config: {detail}"
                )
        return spec

    def _columns(self, ep: Episode, spec: dict) -> dict[str, np.ndarray]:
        """Validated per-step arrays, or EpisodeRejectedError naming what is wrong."""
        where = f"episode {ep.task!r} ({ep.kind}, meta {_short(ep.meta)})"
        try:
            ep.validate()
        except ValueError as err:
            raise EpisodeRejectedError(f"{where}: {err}") from None
        t = len(ep)
        if t < 1:
            raise EpisodeRejectedError(f"{where}: has no transitions")
        mc = ep.mc_returns
        if mc is None:
            if self.discount is None:
                raise EpisodeRejectedError(
                    f"{where}: mc_returns missing (pass a config to compute them)"
                )
            from robofume.data import mc_returns

            mc = mc_returns(ep.rewards, ep.terminals, self.discount)
        try:
            task = self._tasks.index(ep.task)
        except KeyError as err:
            raise EpisodeRejectedError(f"{where}: {err.args[0]}") from None
        cols = {
            "image": (np.asarray(ep.images), (t + 1, *spec["image"][0]), np.uint8),
            "proprio": (np.asarray(ep.proprio), (t + 1, *spec["proprio"][0]), np.float32),
            "action": (np.asarray(ep.actions), (t, *spec["action"][0]), np.float32),
            "reward": (np.asarray(ep.rewards), (t,), np.float32),
            "terminal": (np.asarray(ep.terminals), (t,), np.float32),
            "mc_return": (np.asarray(mc), (t,), np.float32),
        }
        out: dict[str, np.ndarray] = {}
        for key, (arr, shape, dtype) in cols.items():
            if arr.shape != shape:
                raise EpisodeRejectedError(
                    f"{where}: {key} has shape {arr.shape}, the replay table needs {shape}"
                )
            if dtype is np.uint8 and arr.dtype != np.uint8:
                raise EpisodeRejectedError(f"{where}: {key} has dtype {arr.dtype}, needs uint8")
            if dtype is np.float32 and arr.dtype.kind not in "fbiu":
                raise EpisodeRejectedError(f"{where}: {key} has dtype {arr.dtype}, needs float")
            arr = np.ascontiguousarray(arr, dtype=dtype)
            if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
                bad = int(np.flatnonzero(~np.isfinite(arr).reshape(arr.shape[0], -1).all(1))[0])
                raise EpisodeRejectedError(f"{where}: {key} is NaN or inf at step {bad}")
            out[key] = arr
        out["task"] = np.full((t,), task, np.int64)
        try:
            eid = episode_id(ep)
        except (TypeError, ValueError):
            raise EpisodeRejectedError(
                f"{where}: meta {EPISODE_ID_META!r} is {ep.meta.get(EPISODE_ID_META)!r}, "
                "not an integer"
            ) from None
        if not 0 < eid < 2**63:
            raise EpisodeRejectedError(f"{where}: episode id {eid} is not in [1, 2**63)")
        out["episode_id"] = np.full((t,), eid, np.int64)
        out["step"] = np.arange(t, dtype=np.int32)
        rows = {k: v for k, v in out.items() if k not in ("image", "proprio")}
        rows.update(
            image=out["image"][:-1],
            proprio=out["proprio"][:-1],
            next_image=out["image"][1:],
            next_proprio=out["proprio"][1:],
        )
        out["mac"] = transition_macs(self._secret, rows)
        return out

    # -- sending ------------------------------------------------------------------------------
    def _send(self, cols: dict[str, np.ndarray]) -> int:
        import reverb

        t = int(cols["action"].shape[0])
        writer = self._client.trajectory_writer(num_keep_alive_refs=2, validate_items=False)
        try:
            for key in ("image", "proprio"):
                writer.configure((key,), num_keep_alive_refs=2, max_chunk_length=1)
            for i in range(t + 1):
                step: dict[str, Any] = {"image": cols["image"][i], "proprio": cols["proprio"][i]}
                for key in TRANSITION_COLUMNS:
                    step[key] = cols[key][i] if i < t else None
                writer.append(step)
                if i == 0:
                    continue
                h = writer.history
                writer.create_item(
                    ONLINE_TABLE,
                    1.0,
                    {
                        "image": h["image"][-2],
                        "proprio": h["proprio"][-2],
                        "task": h["task"][-2],
                        "action": h["action"][-2],
                        "reward": h["reward"][-2],
                        "terminal": h["terminal"][-2],
                        "next_image": h["image"][-1],
                        "next_proprio": h["proprio"][-1],
                        "mc_return": h["mc_return"][-2],
                        "episode_id": h["episode_id"][-2],
                        "step": h["step"][-2],
                        "mac": h["mac"][-2],
                    },
                )
                if i % self.flush_every == 0:
                    self._wait(writer.flush)
            self._wait(writer.flush)
            self._wait(writer.end_episode)
        except ReplayUnavailableError:
            _discard(writer)
            raise
        except (RuntimeError, reverb.errors.ReverbError) as err:
            _discard(writer)
            msg = f"writing to replay at {self.address} failed: {err}"
            raise ReplayUnavailableError(msg) from err
        except BaseException:
            _discard(writer)
            raise
        writer.close()
        return t

    def _wait(self, op: Any) -> None:
        """Run flush/end_episode with a deadline; keep waiting only while the server answers."""
        import reverb

        timeout_ms = max(1, int(self.timeout_s * 1000))
        waited_since: float | None = None
        while True:
            try:
                op(timeout_ms=timeout_ms)
                return
            except reverb.errors.DeadlineExceededError as err:
                try:
                    server_info(self._client, self.timeout_s)
                except Exception:
                    raise ReplayUnavailableError(
                        f"replay server at {self.address} stopped answering: {err}"
                    ) from err
                if waited_since is None:
                    waited_since = time.monotonic()
                    log.info(
                        "replay at %s holds inserts back (the learner is behind the UTD "
                        "target); waiting",
                        self.address,
                    )
                elif self.max_wait_s is not None and (
                    time.monotonic() - waited_since > self.max_wait_s
                ):
                    raise ReplayUnavailableError(
                        f"replay at {self.address} held inserts back for more than "
                        f"{self.max_wait_s:.0f} s (rate limiter)"
                    ) from err


def _discard(writer: Any) -> None:
    """Drop a writer whose stream failed without waiting for its pending items."""
    try:
        writer.close()
    except Exception as err:  # pragma: no cover - best effort
        log.debug("closing a failed trajectory writer: %s", err)


def _short(meta: dict) -> str:
    keep = {k: meta[k] for k in list(meta)[:4]}
    return str(keep)
