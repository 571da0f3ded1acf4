"""The replay server process: a Reverb server with the robofume tables and checkpoints.

``start_replay_server(cfg, port, checkpoint_dir)`` starts it in this process (tests, the Ray
actor of ``deploy/``); ``robofume replay serve`` runs it as a command. On start the server
restores the newest complete checkpoint under the checkpoint directory, so a restarted server
continues with the items (and rate-limiter counters) it had at its last checkpoint. After the
restore it picks a new *epoch* and keeps it, with its checkpoint count, in the
``replay_marker`` table (``replay_client.marker``): around every checkpoint the marker says one
is in progress and then that it completed, so the actors know which episodes are safe in a
checkpoint and which to deliver again after a restart. A
background thread checkpoints every ``replay.checkpoint_every_s`` seconds (Reverb deletes the
previous checkpoint once a new one is complete) and writes the ``replay`` heartbeat for
``robofume status``; :meth:`ReplayServer.stop` takes a last checkpoint.

Reverb listens on all interfaces of the port (its Python API has no bind address); put the
server behind the cluster's firewall or on a loopback-only host when that matters.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from robofume.auth import deployment_secret
from robofume.replay_client.errors import ReplayConfigMismatchError
from robofume.replay_client.info import server_info, table_stats
from robofume.replay_client.marker import Marker, read_marker, write_marker
from robofume.replay_client.tables import (
    ID_KEYS,
    MARKER_TABLE,
    ONLINE_TABLE,
    make_tables,
    online_rate_limit,
    signature_to_spec,
    transition_spec,
)
from robofume.run_dir import RunDir

if TYPE_CHECKING:
    from robofume.config import ExperimentConfig

log = logging.getLogger(__name__)

HEARTBEAT_S = 5.0


def resolve_checkpoint_dir(cfg: ExperimentConfig, checkpoint_dir: str | Path | None) -> Path:
    """The argument, else ``replay.checkpoint_dir``, else ``<run_dir>/replay``."""
    if checkpoint_dir:
        return Path(checkpoint_dir)
    return RunDir.of(cfg).replay


def list_replay_checkpoints(checkpoint_dir: str | Path) -> list[Path]:
    """Complete Reverb checkpoints under ``checkpoint_dir``, oldest first."""
    root = Path(checkpoint_dir)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and (p / "DONE").exists())


class ReplayServer:
    """A running Reverb server with the ``online``/``policy_weights``/``policy_version`` tables."""

    def __init__(
        self,
        cfg: ExperimentConfig,
        port: int | None = None,
        checkpoint_dir: str | Path | None = None,
        *,
        checkpoint_every_s: float | None = None,
        heartbeat: bool = True,
    ):
        import reverb

        self.cfg = cfg
        self.checkpoint_dir = resolve_checkpoint_dir(cfg, checkpoint_dir)
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self.checkpoint_every_s = (
            cfg.replay.checkpoint_every_s if checkpoint_every_s is None else checkpoint_every_s
        )
        found = list_replay_checkpoints(self.checkpoint_dir)
        checkpointer = reverb.checkpointers.DefaultCheckpointer(str(self.checkpoint_dir))
        self._server = reverb.Server(make_tables(cfg), port=port or None, checkpointer=checkpointer)
        self.port = int(self._server.port)
        self.address = f"127.0.0.1:{self.port}"
        self._client = reverb.Client(self.address)
        self._secret = deployment_secret(cfg.deploy)
        """Authenticates the marker (``replay_client.marker``) to the actors and the learner."""
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self.last_checkpoint: str | None = str(found[-1]) if found else None
        self.restored_checkpoint: str | None = self.last_checkpoint
        self.last_checkpoint_time: float | None = found[-1].stat().st_mtime if found else None
        """Wall-clock time the last checkpoint completed (restored: its directory's mtime)."""
        self.checkpoints_written = 0
        self.started_at = time.time()
        restored: Marker | None = None
        if found:
            try:
                self._verify_restored(found[-1])
                restored = read_marker(self._client, cfg.replay.rpc_timeout_s, self.address)
            except Exception:
                self._server.stop()
                raise
        self.restored_epoch = restored.epoch if restored else None
        # start times, and later than the restored one even if the clock went back
        self.epoch = max(time.time_ns(), restored.epoch + 1 if restored else 0)
        completed = 0
        if restored is not None:  # written just before that checkpoint: it is one more
            completed = restored.completed + (1 if restored.in_progress else 0)
        self.marker = Marker(self.epoch, completed, False)
        try:
            write_marker(self._client, self.marker, cfg.replay.rpc_timeout_s, self._secret)
        except Exception:
            self._server.stop()
            raise
        stats = self.stats()
        log.warning(
            "replay server listening on ALL interfaces port %d (Reverb cannot bind a single "
            "interface; clients use %s): anyone who reaches this port can read and write "
            "replay, so keep it behind a firewall or on a trusted network",
            self.port,
            self.address,
        )
        log.info(
            "replay server on port %d (checkpoints in %s%s): epoch %d, online size %d",
            self.port,
            self.checkpoint_dir,
            f", restored {found[-1].name} of epoch {self.restored_epoch}"
            if found
            else ", none to restore",
            self.epoch,
            stats["size"],
        )
        self._heartbeat = heartbeat
        self._thread = threading.Thread(target=self._background, name="replay-ckpt", daemon=True)
        self._thread.start()

    def _verify_restored(self, checkpoint: Path) -> None:
        """A restored checkpoint brings its own tables: they must be the ones ``cfg`` asks for."""
        infos = server_info(self._client, self.cfg.replay.rpc_timeout_s)
        info = infos[ONLINE_TABLE]
        have = signature_to_spec(info.signature) if info.signature is not None else {}
        if (
            MARKER_TABLE not in infos
            or infos[MARKER_TABLE].current_size < 1
            or any(k not in have for k in ID_KEYS)
        ):
            raise ReplayConfigMismatchError(
                f"replay checkpoint {checkpoint} was written by a version without episode ids "
                f"and checkpoint markers (its items lack {'/'.join(ID_KEYS)}), so the actors "
                "could not tell which of their episodes it holds; start with another "
                "--checkpoint-dir (or move that one aside)"
            )
        want = transition_spec(self.cfg)
        diffs = [
            f"{k}: checkpoint {have.get(k)}, config {v}"
            for k, v in want.items()
            if have.get(k) != v
        ]
        size = self.cfg.replay.online_max_size
        if info.max_size != size:
            diffs.append(f"online_max_size: checkpoint {info.max_size}, config {size}")
        limit = online_rate_limit(self.cfg)
        lim = info.rate_limiter_info
        if limit is not None:
            pairs = {
                "samples_per_insert": (lim.samples_per_insert, limit.samples_per_insert),
                "min_size_to_sample": (lim.min_size_to_sample, limit.min_size_to_sample),
                "rate limiter range": (
                    (lim.min_diff, lim.max_diff),
                    (limit.min_diff, limit.max_diff),
                ),
            }
            for name, (a, b) in pairs.items():
                if not np.allclose(np.asarray(a, float), np.asarray(b, float)):
                    diffs.append(f"{name}: checkpoint {a}, config {b}")
        if diffs:
            raise ReplayConfigMismatchError(
                f"replay checkpoint {checkpoint} was written for another config "
                f"({'; '.join(diffs)}); start with another --checkpoint-dir (or remove that one)"
            )

    # -- operations ---------------------------------------------------------------------------
    def checkpoint(self) -> str:
        """Write a checkpoint now (blocks while writing); returns its path.

        The marker says ``in_progress`` while it is written and counts it once it completed.
        """
        timeout = self.cfg.replay.rpc_timeout_s
        with self._lock:
            n = self.marker.completed
            write_marker(self._client, Marker(self.epoch, n, True), timeout, self._secret)
            try:
                path = self._client.checkpoint()
            except BaseException:
                self.marker = Marker(self.epoch, n, False)
                write_marker(self._client, self.marker, timeout, self._secret)
                raise
            self.marker = Marker(self.epoch, n + 1, False)
            write_marker(self._client, self.marker, timeout, self._secret)
            self.last_checkpoint = path
            self.last_checkpoint_time = time.time()
            self.checkpoints_written += 1
        log.info("replay checkpoint %s (epoch %d, %d completed)", path, self.epoch, n + 1)
        return path

    def stats(self) -> dict[str, Any]:
        """Sizes and insert/sample counters of the tables (see ``replay_client.info.table_stats``)
        and what tells a restart: ``epoch``, ``started_at``, ``restored_checkpoint`` (None:
        started empty), ``restored_epoch``, ``checkpoints_completed``, ``last_checkpoint``
        and ``last_checkpoint_age_s`` (None before the first)."""
        stats = table_stats(self._client, timeout_s=self.cfg.replay.rpc_timeout_s)
        done = self.last_checkpoint_time
        stats.update(
            epoch=self.epoch,
            started_at=self.started_at,
            restored_checkpoint=self.restored_checkpoint,
            restored_epoch=self.restored_epoch,
            checkpoints_completed=self.marker.completed,
            last_checkpoint=self.last_checkpoint,
            last_checkpoint_time=done,
            last_checkpoint_age_s=None if done is None else round(time.time() - done, 1),
        )
        return stats

    def stop(self, checkpoint: bool = True) -> None:
        """Stop serving; with ``checkpoint`` take a last checkpoint first. Idempotent."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        if checkpoint:
            try:
                self.checkpoint()
            except Exception as err:  # a failed last checkpoint must not block the stop
                log.error("final replay checkpoint failed: %s", err)
        self._thread.join(timeout=5.0)
        self._server.stop()
        log.info("replay server on port %d stopped", self.port)

    def wait(self) -> None:
        """Block until the server is stopped (by :meth:`stop` or SIGINT)."""
        self._server.wait()

    def __enter__(self) -> ReplayServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop(checkpoint=False)

    # -- background ---------------------------------------------------------------------------
    def _background(self) -> None:
        every = self.checkpoint_every_s
        next_ckpt = time.monotonic() + every if every > 0 else float("inf")
        last_inserts, last_t = None, time.monotonic()
        while not self._stopped.wait(min(HEARTBEAT_S, max(0.05, next_ckpt - time.monotonic()))):
            if time.monotonic() >= next_ckpt:
                try:
                    self.checkpoint()
                except Exception as err:
                    log.error("replay checkpoint failed: %s", err)
                next_ckpt = time.monotonic() + every
            if not self._heartbeat:
                continue
            try:
                stats = self.stats()
            except Exception as err:  # pragma: no cover - the server is in this process
                log.warning("replay stats unavailable: %s", err)
                continue
            now = time.monotonic()
            rate = 0.0
            if last_inserts is not None and now > last_t:
                rate = (stats["inserts"] - last_inserts) / (now - last_t)
            last_inserts, last_t = stats["inserts"], now
            self._write_status(stats, rate)

    def _write_status(self, stats: dict[str, Any], inserts_per_sec: float) -> None:
        from robofume.status import write_status

        try:
            write_status(
                self.cfg.deploy.run_dir,
                "replay",
                {
                    "address": self.address,
                    "port": self.port,
                    "inserts_per_sec": inserts_per_sec,
                    **stats,
                },
            )
        except OSError as err:
            log.warning("replay heartbeat not written: %s", err)


def start_replay_server(
    cfg: ExperimentConfig,
    port: int | None = None,
    checkpoint_dir: str | Path | None = None,
    **kwargs: Any,
) -> ReplayServer:
    """Start a replay server in this process (port None or 0: a free port is picked).

    Restores the newest checkpoint under ``checkpoint_dir`` (default ``replay.checkpoint_dir``,
    else ``<run_dir>/replay``). Keyword arguments go to :class:`ReplayServer`
    (``checkpoint_every_s``, ``heartbeat``). Stop it with ``server.stop()``.
    """
    return ReplayServer(cfg, port=port, checkpoint_dir=checkpoint_dir, **kwargs)
