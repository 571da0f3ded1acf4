"""Online fine-tuning: the pre-training update on mixed offline + Reverb batches.

```python
from learner.online import run_online_learner
result = run_online_learner(cfg, stop_event)          # until stop_event is set (the cluster)
result = run_online_learner(cfg, updates=200)         # until 200 online updates in total
```
``robofume learner --preset sim-cpu`` runs the same (see ``learner/online_cli.py``).

Start: the newest checkpoint in ``<out>/checkpoints`` (``<run_dir>/online``) when there is one,
so a crashed or restarted learner resumes (networks, optimisers, RNGs, the offline sampler, the
online update counter) while the actors keep running; otherwise the newest pre-training
checkpoint (``<run_dir>/pretrain/checkpoints`` or ``pretrained=``), whose networks, optimisers
and update counter carry on. Policy versions are the learner's total update count
(pre-training included), so they only grow across the switch to online training.

Every update: ``round(mixing_ratio * batch_size)`` transitions from the offline data held by
the learner (:class:`learner.buffer.OfflineBuffer`, the pre-training demos) and the rest from
the ``online`` table (:class:`robofume.replay_client.sampler.OnlineSampler`), mixed with
:func:`learner.buffer.mix_batches` and given to :meth:`learner.learner.Learner.update`, the
same Cal-QL + BC step as pre-training. With ``learner.online_calibration`` off, the online
rows get ``mc_return = NO_CALIBRATION`` so the Cal-QL bound is inactive on them.

The UTD ratio is enforced by the replay table's rate limiter: the sampler blocks once the
learner is ahead of ``utd_ratio`` updates per environment step; ``learner/utd_ratio`` shows
the effective ratio (online updates / transitions inserted). Weights are published every
``learner.publish_every`` updates (and at start and stop), checkpoints written every
``learner.checkpoint_every`` online updates (and at stop). What it reports (TensorBoard, the
heartbeat, the replay watch) is :mod:`learner.telemetry`.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from learner.buffer import OfflineBuffer, mix_batches, split_sizes
from learner.checkpoint import (
    checkpoint_path,
    latest_checkpoint,
    prune_checkpoints,
    read_checkpoint,
)
from learner.learner import Learner
from learner.pretrain import METRIC_TAGS, to_floats
from learner.telemetry import LearnerTelemetry
from robofume.auth import deployment_secret
from robofume.config import ConfigError, ExperimentConfig, save_config
from robofume.node import upload
from robofume.run_dir import RunDir
from robofume.tasks import task_table
from robofume.types import BC_ROWS

log = logging.getLogger(__name__)

NO_CALIBRATION = -1e9
"""mc_return given to online rows when ``learner.online_calibration`` is off (bound inactive)."""
HEARTBEAT_S = 5.0
WAIT_LOG_S = 30.0


@dataclass
class OnlineResult:
    """Where an online run stopped."""

    updates: int
    """Learner updates in total (the policy version)."""
    online_updates: int
    """Updates done during online fine-tuning."""
    checkpoint: Path | None
    published_version: int | None
    metrics: dict[str, float] = field(default_factory=dict)


def default_out_dir(cfg: ExperimentConfig) -> Path:
    return RunDir.of(cfg).online


def _check_same_networks(ckpt: dict, cfg: ExperimentConfig, path: Path) -> None:
    """The pre-trained checkpoint must have the networks and data shapes of ``cfg``."""
    saved = ckpt.get("config", {})
    mine = {
        "network": cfg.network,
        "env.image_size": cfg.env.image_size,
        "env.action_dim": cfg.env.action_dim,
        "learner.algorithm": cfg.learner.algorithm,
    }
    from robofume.config.base import to_dict

    now = to_dict(cfg)
    diffs = []
    for key in mine:
        section, _, name = key.partition(".")
        a = saved.get(section, {}) if not name else saved.get(section, {}).get(name)
        b = now[section] if not name else now[section][name]
        if a != b:
            diffs.append(f"{key}: checkpoint {a!r}, config {b!r}")
    if diffs:
        raise ConfigError(f"pre-trained checkpoint {path} does not fit: {'; '.join(diffs)}")


class OnlineLearner:
    """Owns the Learner, the offline buffer, the online sampler and the weights publisher."""

    def __init__(
        self,
        cfg: ExperimentConfig,
        *,
        pretrained: str | Path | None = None,
        data_dir: str | Path | None = None,
        out_dir: str | Path | None = None,
        replay_address: str | None = None,
        device: str | torch.device | None = None,
    ):
        from robofume.config.base import hashed_values
        from robofume.replay_client.sampler import OnlineSampler
        from robofume.replay_client.weights import WeightsClient

        self.cfg = cfg
        self._config_values = hashed_values(cfg)  # sent with each publish (a mismatch names them)
        lc = cfg.learner
        self.out = Path(out_dir) if out_dir else default_out_dir(cfg)
        self.ckpt_dir = self.out / "checkpoints"
        self.address = replay_address or cfg.deploy.replay_address
        self.n_offline, self.n_online = split_sizes(lc.batch_size, lc.mixing_ratio)
        if self.n_online == 0:
            raise ConfigError(
                f"learner.mixing_ratio {lc.mixing_ratio} leaves no online rows in a batch of "
                f"{lc.batch_size}; online fine-tuning needs mixing_ratio < 1"
            )
        self.online_updates = 0
        self.published: int | None = None
        extra = self._build_learner(pretrained, device)
        self.buffer: OfflineBuffer | None = None
        if self.n_offline:
            from learner.data import load_pretrain_episodes

            episodes = load_pretrain_episodes(cfg, Path(data_dir or cfg.data.dir))
            self.buffer = OfflineBuffer(
                episodes,
                lc.discount,
                self.learner.device,
                seed=lc.seed + 1000,
                target_fraction=lc.target_data_fraction,
                terminal_on_success=lc.terminal_on_success,
                task_index=task_table(cfg).index,
            )
            if "sampler" in extra:
                self.buffer.load_state_dict(extra["sampler"])
        rc = cfg.replay
        self.sampler = OnlineSampler(
            self.address,
            self.n_online,
            self.learner.device,
            rc.prefetch,
            timeout_s=rc.sample_timeout_s,
            rpc_timeout_s=rc.rpc_timeout_s,
            secret=deployment_secret(cfg.deploy),
        )
        self.weights = WeightsClient(
            self.address, timeout_s=rc.rpc_timeout_s, secret=deployment_secret(cfg.deploy)
        )
        self.last_checkpoint: Path | None = latest_checkpoint(self.ckpt_dir)
        self.telemetry = LearnerTelemetry(cfg, self.address, self.sampler, METRIC_TAGS)
        self.out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, self.out / "config.yaml")

    def _build_learner(self, pretrained: str | Path | None, device: Any) -> dict:
        resume = latest_checkpoint(self.ckpt_dir)
        if resume is not None:
            ckpt = read_checkpoint(resume)
            table = ckpt["learner"]["agent"]["task_table"]
            self.learner = Learner(self.cfg, task_table=table, device=device)
            extra = self.learner.restore(resume)
            online = extra.get("online", {})
            self.online_updates = int(online.get("online_updates", 0))
            self.source = Path(online.get("pretrained_from", resume))
            if "rng" in extra:
                np.random.set_state(extra["rng"]["numpy"])
                torch.set_rng_state(extra["rng"]["torch"])
            log.info(
                "online learner resumes %s: update %d (%d online)",
                resume,
                self.learner.num_updates,
                self.online_updates,
            )
            return extra
        src = Path(pretrained) if pretrained else RunDir.of(self.cfg).pretrain
        if src.is_dir():
            found = latest_checkpoint(src) or latest_checkpoint(src / "checkpoints")
            if found is None:
                raise FileNotFoundError(
                    f"no pre-trained checkpoint under {src}; run `robofume pretrain` first "
                    "or pass --pretrained"
                )
            src = found
        ckpt = read_checkpoint(src)
        _check_same_networks(ckpt, self.cfg, src)
        self.learner = Learner(
            self.cfg, task_table=ckpt["learner"]["agent"]["task_table"], device=device
        )
        self.learner.load_state_dict(ckpt["learner"])
        self.source = src
        log.info("online learner starts from %s (update %d)", src, self.learner.num_updates)
        return {}

    # ------------------------------------------------------------------ the loop
    def next_batch(self, timeout: float) -> dict[str, torch.Tensor] | None:
        """A mixed batch, or None when the online sampler had nothing within ``timeout``."""
        online = self.sampler.next(timeout=timeout)
        if online is None:
            return None
        if not self.cfg.learner.online_calibration:
            online["mc_return"] = torch.full_like(online["mc_return"], NO_CALIBRATION)
        lc = self.cfg.learner
        if self.buffer is None:
            batch = online
        else:
            offline = self.buffer.sample(self.n_offline)
            batch = mix_batches(offline, online, lc.mixing_ratio, lc.batch_size)
        if not lc.bc_on_online:  # imitate the demonstrations and prior data, not the robot
            rows = torch.zeros(len(batch["action"]), device=batch["action"].device)
            rows[: self.n_offline] = 1.0
            batch[BC_ROWS] = rows
        return batch

    def run(
        self,
        updates: int | None = None,
        stop_event: threading.Event | None = None,
        max_seconds: float | None = None,
    ) -> OnlineResult:
        """Train until ``updates`` online updates in total, ``stop_event`` or ``max_seconds``."""
        lc = self.cfg.learner
        stop_event = stop_event or threading.Event()
        deadline = time.monotonic() + max_seconds if max_seconds else None
        self.publish()
        result = OnlineResult(self.learner.num_updates, self.online_updates, None, None)
        window = {"t": time.perf_counter(), "updates": self.online_updates, "waited": 0.0}
        last_beat = last_wait_log = 0.0
        dirty = False
        self._heartbeat()
        try:
            while not stop_event.is_set():
                if updates is not None and self.online_updates >= updates:
                    break
                if deadline is not None and time.monotonic() > deadline:
                    break
                t_wait = time.perf_counter()
                batch = self.next_batch(timeout=0.5)
                window["waited"] += time.perf_counter() - t_wait
                if batch is None:
                    if time.monotonic() - last_wait_log > WAIT_LOG_S:
                        last_wait_log = time.monotonic()
                        log.info("waiting for data: %s", self.sampler.state)
                else:
                    metrics = self.learner.update(batch)
                    self.online_updates += 1
                    dirty = True
                    if self.learner.num_updates % lc.publish_every == 0:
                        self.publish()
                    if self.online_updates % lc.log_every == 0:
                        result.metrics = self._log(metrics, window)
                    if lc.checkpoint_every and self.online_updates % lc.checkpoint_every == 0:
                        self.checkpoint()
                        dirty = False
                if time.monotonic() - last_beat > HEARTBEAT_S:
                    last_beat = time.monotonic()
                    self._heartbeat()
        except KeyboardInterrupt:
            log.warning("online learner interrupted at update %d", self.learner.num_updates)
        # a clean stop: keep the last updates and hand the newest weights to the actors
        if dirty:
            self.checkpoint()
        self.publish()
        self._heartbeat()
        result.updates, result.online_updates = self.learner.num_updates, self.online_updates
        result.checkpoint, result.published_version = self.last_checkpoint, self.published
        return result

    # ------------------------------------------------------------------ side effects
    def publish(self) -> bool:
        """Publish the policy variables (version = total updates); False if replay is down."""
        from robofume.replay_client.errors import ReplayUnavailableError

        version = self.learner.num_updates
        if self.published == version:
            return True
        try:
            self.weights.publish(
                self.learner.get_variables(),
                version,
                config_hash=self.cfg.hash,
                config=self._config_values,
            )
        except ReplayUnavailableError as err:
            log.warning("policy weights v%d not published: %s", version, err)
            return False
        self.published = version
        return True

    def checkpoint(self) -> Path:
        """Write ``<out>/checkpoints/ckpt_<update>.pt`` with the online counters."""
        self.learner.check_finite(str(self.last_checkpoint) if self.last_checkpoint else None)
        extra = {
            "rng": {"numpy": np.random.get_state(), "torch": torch.get_rng_state()},
            "online": {
                "online_updates": self.online_updates,
                "pretrained_from": str(self.source),
                "published_version": self.published,
            },
        }
        if self.buffer is not None:
            extra["sampler"] = self.buffer.state_dict()
        path = checkpoint_path(self.ckpt_dir, self.learner.num_updates)
        self.last_checkpoint = self.learner.save(path, extra)
        prune_checkpoints(self.ckpt_dir, self.cfg.learner.checkpoint_keep)
        upload(self.cfg, f"online/checkpoints/{path.name}", path)  # a restart elsewhere
        return self.last_checkpoint

    @property
    def utd_ratio(self) -> float:
        """Effective UTD: online updates per transition inserted into replay."""
        return self.telemetry.utd_ratio(self.online_updates)

    def _log(self, metrics: dict[str, torch.Tensor], window: dict) -> dict[str, float]:
        self.learner.check_finite(str(self.last_checkpoint) if self.last_checkpoint else None)
        values = to_floats(metrics)
        self.telemetry.record(values, self.learner.num_updates, self.online_updates, window)
        return values

    def _heartbeat(self) -> None:
        self.telemetry.heartbeat(
            self.learner.num_updates,
            self.online_updates,
            self.published,
            self.last_checkpoint,
            str(self.learner.device),
        )

    def close(self) -> None:
        self.sampler.close()
        self.telemetry.close()


def run_online_learner(
    cfg: ExperimentConfig,
    stop_event: threading.Event | None = None,
    *,
    updates: int | None = None,
    max_seconds: float | None = None,
    **kwargs: Any,
) -> OnlineResult:
    """Build an :class:`OnlineLearner` (kwargs: pretrained, data_dir, out_dir, replay_address,
    device), run it until ``stop_event``/``updates``/``max_seconds``, close it."""
    learner = OnlineLearner(cfg, **kwargs)
    try:
        return learner.run(updates=updates, stop_event=stop_event, max_seconds=max_seconds)
    finally:
        learner.close()
