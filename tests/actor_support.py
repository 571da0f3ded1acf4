"""Shared setup of the actor tests: real Reverb replay, real gRPC reward server, small config."""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from robofume.config import ExperimentConfig, load_config


def actor_cfg(run_dir: Path, *overrides: str) -> ExperimentConfig:
    """Smoke preset, 32 px, free-running ticks, short episodes, quick reports and retries; the
    deployment's secret exists (the test plays the head that made it)."""
    from robofume.auth import deployment_secret

    cfg = load_config(
        "smoke",
        overrides=[
            "--env.image_size", "32",
            "--reward.image_size", "32",
            "--reward.backend", "cnn",
            "--reward.text_encoder", "hash",
            "--env.max_episode_steps", "12",
            "--actor.human_reset_every", "0",
            "--actor.tick_hz", "-1",
            "--actor.keyboard", "false",
            "--actor.report_every_s", "0.5",
            "--actor.retry_s", "0.2",
            "--actor.label_wait_s", "1.0",
            "--actor.reward_deadline_s", "1.0",
            "--actor.initial_weights_timeout_s", "20",
            "--actor.weights_poll_s", "0.2",
            "--deploy.run_dir", str(run_dir),
            "--deploy.control_port", "0",
            *overrides,
        ],
    )  # fmt: skip
    deployment_secret(cfg.deploy, create=True)
    return cfg


def with_addresses(cfg: ExperimentConfig, replay: str, reward: str) -> ExperimentConfig:
    deploy = dataclasses.replace(cfg.deploy, replay_address=replay, reward_addresses=(reward,))
    return cfg.replace(deploy=deploy)


def policy_variables(cfg: ExperimentConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """Variables as ``Learner.get_variables`` publishes them (a fresh policy network)."""
    import torch

    from robofume.networks import PolicyModel
    from robofume.tasks import task_names

    torch.manual_seed(seed)
    net = cfg.network
    table = torch.randn(len(task_names()), 8)
    model = PolicyModel(net, cfg.env.image_size, cfg.env.action_dim, net.proprio_dim, table)
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


@functools.cache
def reward_model(image_size: int = 32) -> Any:
    """An (untrained) cnn reward model with the model-free question embedding, built once."""
    from reward_server.backends import make_reward_model
    from robofume.config.reward import RewardConfig

    cfg = RewardConfig(backend="cnn", image_size=image_size, text_encoder="hash")
    return make_reward_model(cfg, "cpu")


def start_reward_server(cfg: ExperimentConfig, model: Any = None, port: int = 0) -> Any:
    from reward_server.server import start_server_thread

    return start_server_thread(model or reward_model(), cfg.reward, port=port)


def start_replay(cfg: ExperimentConfig, ckpt: Path, port: int = 0) -> Any:
    from replay.server import start_replay_server

    return start_replay_server(
        cfg, port=port, checkpoint_dir=ckpt, checkpoint_every_s=0, heartbeat=False
    )


def replay_size(address: str) -> int:
    from robofume.replay_client.info import stats_at

    return stats_at(address)["size"]


def publish(cfg: ExperimentConfig, version: int, config_hash: str | None = None) -> None:
    from robofume.auth import deployment_secret
    from robofume.replay_client.weights import WeightsClient

    WeightsClient(cfg.deploy.replay_address, secret=deployment_secret(cfg.deploy)).publish(
        policy_variables(cfg, seed=version), version, config_hash or cfg.hash
    )


class Tee:
    """Sink factory: the real EpisodeWriter, remembering what it delivered."""

    def __init__(self, cfg: ExperimentConfig):
        self.cfg = cfg
        self.episodes: list = []

    def __call__(self) -> Tee:
        from robofume.replay_client.writer import EpisodeWriter

        self.writer = EpisodeWriter(self.cfg.deploy.replay_address, self.cfg, timeout_s=2.0)
        return self

    def write(self, episode: Any) -> int:
        n = self.writer.write(episode)
        self.episodes.append(episode)
        return n

    def read_marker(self) -> Any:
        return self.writer.read_marker()

    @property
    def firsts(self) -> list:
        """Each episode once, at its first delivery (a replay restart delivers some again)."""
        out: dict[int, Any] = {}
        for ep in self.episodes:
            out.setdefault(ep.meta["replay_episode_id"], ep)
        return list(out.values())


class Background:
    """``run_actor`` on a thread, with its loop exposed once built."""

    def __init__(self, cfg: ExperimentConfig, **kwargs: Any):
        from actor.run import run_actor

        self.stop_event = threading.Event()
        self.loop: Any = None
        self.result: dict | None = None
        self.error: BaseException | None = None

        def target() -> None:
            try:
                self.result = run_actor(
                    cfg, self.stop_event, on_loop=lambda lp: setattr(self, "loop", lp), **kwargs
                )
            except BaseException as err:
                self.error = err

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def join(self, timeout: float = 60.0) -> dict:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "actor did not stop"
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result

    def stop(self) -> dict:
        self.stop_event.set()
        return self.join()


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` (a deadlock guard, not a speed assertion)."""
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)
